"""Embedding folders of recordings (`hbehavemae embed --data ...`) as probe inputs.

Such a folder has `recordings.json` (the recordings in order) and per recording
`<name>.npz` (`level_{k}` `[T, D_k]`, `keypoints` `[T, H·W]`, `time`, `frame`, `valid`) with
a JSON sidecar; see `keras_hbehavemae.embeddings.recordings`. `load_recording_folder`
concatenates the recordings in order, as one frame-number map.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import numpy as np

from keras_hbehavemae.evaluation.frame_labels import load_labels, read_labels_per_recording
from keras_hbehavemae.evaluation.labels import LabelsFile

INDEX_FILE = "recordings.json"


@dataclasses.dataclass
class RecordingEmbeddings:
    """A recordings folder, read back.

    Attributes:
        levels: level name → float32 `[N_frames, D_k]`, the recordings concatenated in order.
        frame_number_map: recording name → half-open `(start, end)`.
        keypoints: float32 `[N_frames, H·W]`, the probes' raw-keypoint baseline.
        sources: recording name → its source file.
        labels: recording name → its labels CSV, where the manifest named one.
    """

    levels: dict[str, np.ndarray]
    frame_number_map: dict[str, tuple[int, int]]
    keypoints: np.ndarray
    sources: dict[str, str]
    labels: dict[str, str]


def is_recording_folder(directory) -> bool:
    return os.path.isfile(os.path.join(os.fspath(directory), INDEX_FILE))


def load_recording_folder(directory) -> RecordingEmbeddings:
    """Reads the folder (see the module docstring).

    Raises:
        FileNotFoundError: the index or a recording's file is missing.
        ValueError: a damaged file, or arrays that disagree with the index.
    """
    directory = os.fspath(directory)
    index_path = os.path.join(directory, INDEX_FILE)
    try:
        with open(index_path, encoding="utf-8") as file:
            index = json.load(file)
        entries, level_names = index["recordings"], list(index["levels"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{index_path}: missing; not a recordings folder") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{index_path}: damaged ({error!r})") from None
    parts: dict[str, list[np.ndarray]] = {name: [] for name in level_names + ["keypoints"]}
    frame_map, sources, labels, start = {}, {}, {}, 0
    for entry in entries:
        path = os.path.join(directory, entry["file"])
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in parts}
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: listed in {INDEX_FILE} but missing") from None
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: damaged or incomplete ({error})") from None
        frames = int(entry["frames"])
        for name, array in arrays.items():
            if array.ndim != 2 or array.shape[0] != frames:
                raise ValueError(f"{path}: {name} has shape {array.shape}, expected "
                                 f"[{frames}, D] ({frames} frames in {INDEX_FILE})")
            parts[name].append(array.astype(np.float32, copy=False))
        frame_map[entry["name"]] = (start, start + frames)
        sources[entry["name"]] = entry.get("source", "")
        if entry.get("labels"):
            labels[entry["name"]] = entry["labels"]
        start += frames
    if not frame_map:
        raise ValueError(f"{index_path}: lists no recordings")
    return RecordingEmbeddings(
        levels={name: np.concatenate(parts[name]) for name in level_names},
        frame_number_map=frame_map, keypoints=np.concatenate(parts["keypoints"]),
        sources=sources, labels=labels)


def recording_labels(folder: RecordingEmbeddings, labels_path: str | None) -> LabelsFile:
    """The labels of a recordings folder: `labels_path` (a labels CSV or `.npy`), or the
    per-recording CSVs its manifest named.

    Raises:
        FileNotFoundError: no `labels_path` and no labels in the manifest.
    """
    if labels_path is not None:
        return load_labels(labels_path, folder.frame_number_map, folder.sources)
    if not folder.labels:
        raise FileNotFoundError(
            "no labels: pass --labels (a CSV with recording, frame and label columns, or "
            "the published labels .npy), or give a manifest with a 'labels' column to "
            "hbehavemae embed --data")
    missing = sorted(set(folder.frame_number_map) - set(folder.labels))
    if missing:
        raise FileNotFoundError(f"the manifest names no labels CSV for recordings {missing}; "
                                "pass --labels instead")
    return read_labels_per_recording(folder.labels, folder.frame_number_map)


def recording_probe_inputs(directory, labels_path: str | None, baseline: str | None
                           ) -> tuple[dict[str, np.ndarray], LabelsFile, np.ndarray | None]:
    """Levels, labels and baseline of a recordings folder, for `probe_table`.

    Args:
        directory: the recordings folder.
        labels_path: a labels CSV or `.npy` (None: the manifest's per-recording CSVs).
        baseline: None (the folder's `keypoints`), "none" (no baseline) or a `.npy` file.
    """
    folder = load_recording_folder(directory)
    labels = recording_labels(folder, labels_path)
    if labels.frame_number_map != folder.frame_number_map:
        raise ValueError(f"{labels_path}: its frame_number_map differs from the embeddings' "
                         "(other recordings or frame counts)")
    if baseline is None:
        keypoints = folder.keypoints
    elif baseline.lower() == "none":
        keypoints = None
    else:
        keypoints = np.load(baseline).astype(np.float32)
        keypoints = keypoints.reshape(keypoints.shape[0], -1)
    return folder.levels, labels, keypoints
