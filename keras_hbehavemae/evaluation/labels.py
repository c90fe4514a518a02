"""Labels and embedding folders on disk: the published labels file, submission folders."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.evaluation.protocol import task_kind
from keras_hbehavemae.evaluation.splits import FrameNumberMap


@dataclasses.dataclass
class LabelsFile:
    """A labels file in the published layout, read back.

    Attributes:
        frame_number_map: name → half-open `(start, end)`.
        labels: task name → float `[N_frames]` (NaN = unlabelled), in vocabulary order.
        task_types: task name → "discrete" or "continuous".
    """

    frame_number_map: dict[str, tuple[int, int]]
    labels: dict[str, np.ndarray]
    task_types: dict[str, str]


def write_labels_file(
    sequences: Any,
    path: str | os.PathLike[str],
    *,
    tasks: Sequence[str] | None = None,
    binarize_discrete: bool = False,
) -> dict[str, Any]:
    """Writes the labels of a `KeypointSequences` as a published-layout labels `.npy` dict.

    The dict holds `frame_number_map` (name → `(start, end)`, cumulative in sequence
    order), `label_array` float32 `[n_tasks, n_frames]` (NaN = unlabelled),
    `vocabulary` (task names) and `task_type` (per task, "Discrete" or "Continuous").

    Args:
        sequences: a `KeypointSequences` with labels.
        path: the `.npy` file to write (with `allow_pickle`).
        tasks: label names to write (default: all, sorted).
        binarize_discrete: replace each discrete label with more than two classes by
            one binary task per class, named `"<label>=<class name>"` (the published
            Shot7M2 and hBABEL tasks are binary in this way).

    Returns:
        the dict written.
    """
    if not sequences.label_names:
        raise ValueError("the sequences carry no labels")
    tasks = list(tasks) if tasks is not None else sequences.label_names
    vocabulary, rows, types = [], [], []
    for task in tasks:
        values = sequences.label_array(task).astype(np.float32)
        info = sequences.label_info[task]
        classes = np.unique(values[np.isfinite(values)])
        if info.task_type == "discrete" and binarize_discrete and len(classes) > 2:
            names = info.class_names or ()
            for value in classes:
                index = int(value)
                class_name = names[index] if 0 <= index < len(names) else f"{value:g}"
                binary = np.where(values == value, 1.0, 0.0).astype(np.float32)
                binary[~np.isfinite(values)] = np.nan
                vocabulary.append(f"{task}={class_name}")
                rows.append(binary)
                types.append("Discrete")
        else:
            vocabulary.append(task)
            rows.append(values)
            types.append("Discrete" if info.task_type == "discrete" else "Continuous")
    content = {
        "frame_number_map": dict(sequences.frame_number_map()),
        "label_array": np.stack(rows).astype(np.float32),
        "vocabulary": vocabulary,
        "task_type": types,
    }
    np.save(path, np.array(content, dtype=object), allow_pickle=True)
    return content


def _normalised_frame_map(frame_map: Mapping[Any, Any]) -> dict[str, tuple[int, int]]:
    return {str(name): (int(span[0]), int(span[1])) for name, span in frame_map.items()}


def load_labels_file(path: str | os.PathLike[str]) -> LabelsFile:
    """Reads a published-layout labels `.npy` dict (see `write_labels_file`).

    `task_type` may be a list parallel to `vocabulary` or one string for all tasks;
    "Discrete" (any case) is classification, anything else regression.
    """
    content = np.load(path, allow_pickle=True)
    content = content.item() if isinstance(content, np.ndarray) else content
    for key in ("frame_number_map", "label_array", "vocabulary"):
        if key not in content:
            raise ValueError(f"{os.fspath(path)}: the labels dict has no {key!r}")
    label_array = np.asarray(content["label_array"], dtype=np.float64)
    vocabulary = [str(name) for name in content["vocabulary"]]
    if label_array.ndim != 2 or label_array.shape[0] != len(vocabulary):
        raise ValueError(
            f"label_array must be [n_tasks={len(vocabulary)}, n_frames], got {label_array.shape}"
        )
    task_type = content.get("task_type", "Discrete")
    types = [task_type] * len(vocabulary) if isinstance(task_type, str) else list(task_type)
    if len(types) != len(vocabulary):
        raise ValueError(f"task_type has {len(types)} entries for {len(vocabulary)} tasks")
    return LabelsFile(
        frame_number_map=_normalised_frame_map(content["frame_number_map"]),
        labels={name: label_array[index] for index, name in enumerate(vocabulary)},
        task_types={name: task_kind(kind) for name, kind in zip(vocabulary, types, strict=True)},
    )


def align_frames(
    array: np.ndarray, source_map: FrameNumberMap, target_map: FrameNumberMap
) -> np.ndarray:
    """Reorders the rows of `array` (laid out by `source_map`) into `target_map`'s layout.

    Every target sequence must exist in the source with the same number of frames.
    Returns `array` itself when the maps are equal.
    """
    source, target = _normalised_frame_map(source_map), _normalised_frame_map(target_map)
    if source == target:
        return array
    total = max((end for _, end in target.values()), default=0)
    aligned = np.zeros((total,) + array.shape[1:], dtype=array.dtype)
    for name, (start, end) in target.items():
        if name not in source:
            raise ValueError(f"sequence {name!r} of the labels is missing from the embeddings")
        source_start, source_end = source[name]
        if source_end - source_start != end - start:
            raise ValueError(
                f"sequence {name!r}: {source_end - source_start} embedded frames, "
                f"{end - start} labelled frames"
            )
        aligned[start:end] = array[source_start:source_end]
    return aligned


def _level_sort_key(name: str) -> tuple[int, int, str]:
    suffix = name.split("_")[-1]
    return (0, int(suffix), name) if suffix.isdigit() else (1, 0, name)


def load_embedding_folder(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, tuple[int, int]]]]:
    """Reads per-level embeddings written by the extraction script.

    Either `level_{k}.npy` arrays `[N_frames, D_k]` with one `frame_number_map.json`
    (name → `[start, end]`), or `test_submission_{k}.npy` dicts `{frame_number_map,
    embeddings}` (SPEC §10). Levels are named `level_{k}` and sorted by k; a
    `level_combined.npy` or `test_submission_combined.npy` becomes "combined", last.

    Returns:
        `(level name → float32 [N_frames, D_k], level name → its frame number map)`.
    """
    directory = os.fspath(directory)
    files = sorted(os.listdir(directory))
    arrays, maps = {}, {}
    level_files = [name for name in files if re.fullmatch(r"level_\w+\.npy", name)]
    if level_files:
        map_path = os.path.join(directory, "frame_number_map.json")
        if not os.path.exists(map_path):
            raise FileNotFoundError(f"{directory}: level_*.npy without frame_number_map.json")
        with open(map_path, encoding="utf-8") as file:
            frame_map = _normalised_frame_map(json.load(file))
        for name in level_files:
            suffix = name[len("level_") : -len(".npy")]
            level = f"level_{suffix}" if suffix.isdigit() else suffix
            arrays[level] = np.load(os.path.join(directory, name))
            maps[level] = frame_map
    else:
        for name in files:
            match = re.fullmatch(r"test_submission_?(\w*)\.npy", name)
            if not match:
                continue
            suffix = match.group(1)
            level = f"level_{suffix}" if suffix.isdigit() else (suffix or "submission")
            content = np.load(os.path.join(directory, name), allow_pickle=True).item()
            arrays[level] = np.asarray(content["embeddings"])
            maps[level] = _normalised_frame_map(content["frame_number_map"])
    if not arrays:
        raise FileNotFoundError(
            f"{directory}: no level_*.npy or test_submission_*.npy embedding files"
        )
    for level, array in arrays.items():
        if array.ndim != 2:
            raise ValueError(f"{level}: embeddings must be 2-D, got shape {array.shape}")
        arrays[level] = array.astype(np.float32, copy=False)
    order = sorted(arrays, key=_level_sort_key)
    return {level: arrays[level] for level in order}, {level: maps[level] for level in order}
