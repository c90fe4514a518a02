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
from keras_hbehavemae.files.npy import read_npy
from keras_hbehavemae.files.pickle_files import load_pickled_file
from keras_hbehavemae.files.unpickling import describe


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


def _frame_map_from(value: Any, where: str) -> dict[str, tuple[int, int]]:
    """A file's frame number map, checked: name → `(start, end)` with 0 ≤ start ≤ end."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: 'frame_number_map' is {describe(value)}, not a dict of "
                         "sequence name → [start, end]")
    spans = {}
    for name, span in value.items():
        try:
            start, end = (int(bound) for bound in span)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: frame_number_map[{name!r}] is {span!r}, not a pair of "
                             "frame numbers [start, end]") from None
        if not 0 <= start <= end:
            raise ValueError(f"{where}: frame_number_map[{name!r}] = ({start}, {end}) is not "
                             "a span 0 ≤ start ≤ end")
        spans[str(name)] = (start, end)
    return spans


def _labels_dict(path: str) -> Mapping[str, Any]:
    content = load_pickled_file(path)
    if not isinstance(content, Mapping):
        raise ValueError(
            f"{path}: holds {describe(content)}, not a labels dict; a labels file is a .npy "
            "file holding a dict with 'frame_number_map', 'label_array' and 'vocabulary' "
            "(as write_labels_file writes it)"
        )
    missing = [key for key in ("frame_number_map", "label_array", "vocabulary")
               if key not in content]
    if missing:
        raise ValueError(f"{path}: the labels dict has no {missing}; it has {list(content)}")
    return content


def load_labels_file(path: str | os.PathLike[str]) -> LabelsFile:
    """Reads a published-layout labels `.npy` dict (see `write_labels_file`).

    The file is read with the restricted unpickler: nothing in it is executed.
    `task_type` may be a list parallel to `vocabulary` or one string for all tasks;
    "Discrete" (any case) is classification, anything else regression.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: for a damaged file, a file that holds no labels dict (e.g. a plain
            array), or a dict whose entries do not fit together; the message names the file.
    """
    path = os.fspath(path)
    content = _labels_dict(path)
    try:
        label_array = np.asarray(content["label_array"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: 'label_array' is {describe(content['label_array'])}, not "
                         "a numeric array [n_tasks, n_frames]") from None
    vocabulary = content["vocabulary"]
    if isinstance(vocabulary, str) or not isinstance(vocabulary, Sequence | np.ndarray):
        raise ValueError(f"{path}: 'vocabulary' is {describe(vocabulary)}, not a list of "
                         "task names")
    vocabulary = [str(name) for name in vocabulary]
    if label_array.ndim != 2 or label_array.shape[0] != len(vocabulary):
        raise ValueError(
            f"{path}: label_array must be [n_tasks={len(vocabulary)}, n_frames], got "
            f"{label_array.shape}"
        )
    frame_map = _frame_map_from(content["frame_number_map"], path)
    last = max((end for _, end in frame_map.values()), default=0)
    if last > label_array.shape[1]:
        raise ValueError(f"{path}: frame_number_map reaches frame {last}, but label_array "
                         f"has {label_array.shape[1]} frames")
    task_type = content.get("task_type", "Discrete")
    types = [task_type] * len(vocabulary) if isinstance(task_type, str) else list(task_type)
    if len(types) != len(vocabulary):
        raise ValueError(f"{path}: task_type has {len(types)} entries for {len(vocabulary)} "
                         "tasks")
    return LabelsFile(
        frame_number_map=frame_map,
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


def _read_frame_map_json(path: str) -> dict[str, tuple[int, int]]:
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    return _frame_map_from(content, path)


def _submission(path: str) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """The embeddings and frame map of a `test_submission_*.npy` dict."""
    content = load_pickled_file(path)
    if not isinstance(content, Mapping) or not {"embeddings", "frame_number_map"} <= set(content):
        found = list(content) if isinstance(content, Mapping) else describe(content)
        raise ValueError(f"{path}: a submission file holds a dict with 'embeddings' and "
                         f"'frame_number_map'; found {found}")
    embeddings = content["embeddings"]
    if not isinstance(embeddings, np.ndarray) or embeddings.dtype.kind not in "iuf":
        raise ValueError(f"{path}: 'embeddings' is {describe(embeddings)}, not a numeric array")
    return embeddings, _frame_map_from(content["frame_number_map"], path)


def load_embedding_folder(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, tuple[int, int]]]]:
    """Reads per-level embeddings written by the extraction script.

    Either `level_{k}.npy` arrays `[N_frames, D_k]` with one `frame_number_map.json`
    (name → `[start, end]`), or `test_submission_{k}.npy` dicts `{frame_number_map,
    embeddings}`. Levels are named `level_{k}` and sorted by k; a `level_combined.npy` or
    `test_submission_combined.npy` becomes "combined", last. Submission dicts are read with
    the restricted unpickler; `level_*.npy` files must hold numeric arrays.

    Returns:
        `(level name → float32 [N_frames, D_k], level name → its frame number map)`.

    Raises:
        FileNotFoundError: if the folder holds no embedding files.
        ValueError: for a damaged file or one of another layout; the message names it.
    """
    directory = os.fspath(directory)
    files = sorted(os.listdir(directory))
    arrays, maps, sources = {}, {}, {}
    level_files = [name for name in files if re.fullmatch(r"level_\w+\.npy", name)]
    if level_files:
        map_path = os.path.join(directory, "frame_number_map.json")
        if not os.path.exists(map_path):
            raise FileNotFoundError(f"{directory}: level_*.npy without frame_number_map.json")
        frame_map = _read_frame_map_json(map_path)
        for name in level_files:
            suffix = name[len("level_") : -len(".npy")]
            level = f"level_{suffix}" if suffix.isdigit() else suffix
            sources[level] = os.path.join(directory, name)
            arrays[level] = read_npy(sources[level])
            maps[level] = frame_map
    else:
        for name in files:
            match = re.fullmatch(r"test_submission_?(\w*)\.npy", name)
            if not match:
                continue
            suffix = match.group(1)
            level = f"level_{suffix}" if suffix.isdigit() else (suffix or "submission")
            sources[level] = os.path.join(directory, name)
            arrays[level], maps[level] = _submission(sources[level])
    if not arrays:
        raise FileNotFoundError(
            f"{directory}: no level_*.npy or test_submission_*.npy embedding files"
        )
    for level, array in arrays.items():
        if array.ndim != 2 or array.dtype.kind not in "iuf":
            raise ValueError(f"{sources[level]}: embeddings must be a 2-D numeric array "
                             f"[N_frames, D], got shape {array.shape} and dtype {array.dtype}")
        arrays[level] = array.astype(np.float32, copy=False)
    order = sorted(arrays, key=_level_sort_key)
    return {level: arrays[level] for level in order}, {level: maps[level] for level in order}
