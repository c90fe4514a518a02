"""Readers for the published datasets and for generic keypoint arrays.

Every reader returns a `KeypointSequences` of float32 `[T, H, W]` arrays in the
order of the source file:

| reader | source layout | output |
|---|---|---|
| `read_mabe_mouse_triplets` | `{"sequences": {id: {"keypoints": [T, 3, 12, 2]}}}` | `[T, 3, 24]` |
| `read_shot7m2` | `{"sequences": {"keypoints": {episode: [T, 1, 26, 3]}}}` | `[T, 1, 72]` |
| `read_hbabel` | `[{"poses", "joint_positions_processed": [L, 25, 3]}]` | `[L, 1, 75]` |
| `read_keypoint_arrays` | folders of .npy/.npz/.csv files, or arrays | `[T, H, W]` |

MABe22 output stays in arena pixels.

Where normalisation happens: readers never normalise. The MABe22 recipe augments
each window in pixels and only then maps coordinates to (v - 425) / 425, so the
reader keeps pixels and the pipeline (`pipeline.py`) applies the augmentation and
then `ArenaNormalisation` per window. Shot7M2 and hBABEL are not
normalised at all.

The published files are pickled (`.npy` object arrays, and joblib files for hBABEL).
A pickle can run code when it is loaded, so these readers read every file through the
package's restricted unpickler (`files.pickle_files.load_pickled_file`), which rebuilds
only containers and NumPy arrays and executes nothing. Every reader also accepts the
already-loaded object instead of a path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.data.filling import fill_mouse_holes
from keras_hbehavemae.data.keypoint_arrays import read_keypoint_arrays
from keras_hbehavemae.data.sequences import KeypointSequences, LabelInfo
from keras_hbehavemae.data.validation import check_sequence, numeric_array, require_keys
from keras_hbehavemae.files.pickle_files import load_pickled_file

__all__ = [
    "HBABEL_JOINT_ORDER",
    "MOUSE_BODY_PARTS",
    "SHOT7M2_JOINT_SELECTION",
    "read_hbabel",
    "read_keypoint_arrays",
    "read_mabe_mouse_triplets",
    "read_shot7m2",
]

#: MABe22 body parts, in the order of the keypoint axis.
MOUSE_BODY_PARTS = (
    "nose", "ear_left", "ear_right", "neck", "forepaw_left", "forepaw_right",
    "center", "hindpaw_left", "hindpaw_right", "tail_base", "tail_middle", "tail_tip",
)  # fmt: skip

#: The 24 of 26 Shot7M2 joints kept, grouped by body part (centre, hips and lumbar; left leg;
#: right leg; head; left arm; right arm).
SHOT7M2_JOINT_SELECTION = (
    0, 1, 6, 11, 2, 3, 4, 5, 7, 8, 9, 10, 14, 19, 20, 21, 15, 16, 17, 18, 22, 23, 24, 25,
)  # fmt: skip

#: The hBABEL joint grouping applied to the 25 processed joints (left arm and hand, right arm
#: and hand, left leg and shoulder, right leg and shoulder, head and spine).
HBABEL_JOINT_ORDER = (
    5, 6, 7, 21, 22, 9, 10, 11, 23, 24, 4, 12, 13, 14, 15, 8, 16, 17, 18, 19, 0, 1, 2, 3, 20,
)  # fmt: skip


def _load_source(source: Any) -> tuple[Any, str]:
    """Returns the loaded object and a name for it to use in messages."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return load_pickled_file(path), path
    return source, "<in-memory data>"


def _build(where: str, **arguments: Any) -> KeypointSequences:
    """Builds the container, prefixing its consistency errors with the source name."""
    try:
        return KeypointSequences(**arguments)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


# --------------------------------------------------------------------- MABe22
def _label_info_from(data: Mapping[str, Any], label_names: Sequence[str]) -> dict[str, LabelInfo]:
    """Reads optional label metadata stored at the top level of a MABe-style dict."""
    info: dict[str, LabelInfo] = {}
    for name, entry in dict(data.get("label_info", {})).items():
        class_names = entry.get("class_names")
        info[str(name)] = LabelInfo(
            task_type=entry.get("task_type", "discrete"),
            timescale=entry.get("timescale"),
            class_names=None if class_names is None else tuple(str(c) for c in class_names),
        )
    task_types = data.get("task_type")
    if task_types is not None and len(task_types) == len(label_names):
        for name, task_type in zip(label_names, task_types, strict=True):
            if name not in info:
                discrete = str(task_type).lower() == "discrete"
                info[name] = LabelInfo("discrete" if discrete else "continuous")
    return info


def _mouse_labels(
    entry: Mapping[str, Any], vocabulary: Sequence[str] | None, where: str
) -> dict[str, np.ndarray] | None:
    if "labels" in entry:
        return {str(name): np.asarray(values) for name, values in dict(entry["labels"]).items()}
    if "annotations" in entry:
        annotations = np.asarray(entry["annotations"], dtype=np.float32)
        if annotations.ndim == 1:
            annotations = annotations[None]
        if annotations.ndim != 2:
            raise ValueError(f"{where}: annotations must be [n_tasks, T], got {annotations.shape}")
        names = list(vocabulary) if vocabulary is not None else []
        if len(names) != annotations.shape[0]:
            names = [f"task_{index}" for index in range(annotations.shape[0])]
        return {str(name): row for name, row in zip(names, annotations, strict=True)}
    return None


def center_align_mice(
    keypoints: np.ndarray, centre_keypoint: int = 6, heading_keypoint: int = 3
) -> np.ndarray:
    """Moves each mouse's centre to the origin and turns its centre→neck axis to +x.

    Works per frame and per mouse on `[T, n_mice, n_keypoints, 2]`. A mouse whose
    neck coincides with its centre is only translated. The result is no longer
    in arena pixels, so arena augmentation and normalisation do not apply to it.

    Example:
        >>> mouse = np.zeros((1, 1, 12, 2)); mouse[0, 0, 6] = (5, 5); mouse[0, 0, 3] = (5, 7)
        >>> np.round(center_align_mice(mouse)[0, 0, 3], 6)
        array([2., 0.])
    """
    centred = keypoints - keypoints[:, :, centre_keypoint : centre_keypoint + 1, :]
    heading = centred[:, :, heading_keypoint, :]
    angle = np.arctan2(heading[..., 1], heading[..., 0])[..., None]
    cosine, sine = np.cos(-angle), np.sin(-angle)
    x, y = centred[..., 0], centred[..., 1]
    return np.stack([cosine * x - sine * y, sine * x + cosine * y], axis=-1)


def read_mabe_mouse_triplets(
    source: str | os.PathLike[str] | Mapping[str, Any],
    fill_holes: bool = False,
    center_align: bool = False,
    expected_hw: tuple[int, int] | None = None,
    num_frames: int | None = None,
    pad_short_sequences: bool = True,
) -> KeypointSequences:
    """Reads MABe22 mouse-triplet keypoints, kept in arena pixels.

    The file is a pickled dict `{"sequences": {id: {"keypoints": [T, n_mice,
    n_keypoints, 2], ...}}, ...}` (published: `[1800, 3, 12, 2]` in an 850×850
    arena). Each sequence becomes `[T, n_mice, n_keypoints·2]` ordered (mouse,
    keypoint, xy). Normalisation to (v - 425) / 425 is left to the pipeline, after
    augmentation (see the module docstring).

    Optional labels per sequence: `"labels": {name: [T]}` (the synthetic dataset),
    or `"annotations": [n_tasks, T]` named by a top-level `"vocabulary"` list.
    Top-level `"label_info"` (`{name: {"task_type", "timescale", "class_names"}}`)
    or `"task_type"` (a list parallel to the vocabulary) describe them.

    The validity mask is True where every keypoint of the frame has x != 0 and
    finite coordinates, computed before hole filling.

    Args:
        source: path of the `.npy` file, or the loaded dict.
        fill_holes: apply the MABe hole rule (x == 0 is missing; see
            `filling.fill_mouse_holes`). Off in the published run.
        center_align: per frame, translate each mouse so its centre keypoint is
            at the origin and rotate its centre→neck axis to +x. Not part of the
            published recipe; do not combine with arena augmentation.
        expected_hw: the model's `(H, W)`; a mismatch raises ValueError.
        num_frames: the model's window length, checked only with
            `pad_short_sequences=False`.
        pad_short_sequences: accept sequences shorter than `num_frames` (they are
            edge-padded in training, as published).

    Returns:
        `KeypointSequences` with float32 `[T, n_mice, 2·n_keypoints]` pixels.

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: for a wrong dict layout or bad keypoints; the message names the
            file, the sequence and the problem.

    Example:
        >>> data = {"sequences": {"m1": {"keypoints": np.full((5, 3, 12, 2), 400.0)}}}
        >>> sequences = read_mabe_mouse_triplets(data)
        >>> sequences.feature_shape, sequences.keypoints[0][0, 0, 0]
        ((3, 24), np.float32(400.0))
    """
    data, where = _load_source(source)
    require_keys(data, "sequences", where)
    sequences = data["sequences"]
    if not isinstance(sequences, Mapping) or not sequences:
        raise ValueError(f"{where}: 'sequences' must be a non-empty dict of id -> sequence")
    vocabulary = data.get("vocabulary")
    names, arrays, validity, labels = [], [], [], []
    for name, entry in sequences.items():
        sequence_where = f"{where}, sequence {name!r}"
        require_keys(entry, "keypoints", sequence_where)
        keypoints = numeric_array(entry["keypoints"], sequence_where)
        if keypoints.ndim != 4 or keypoints.shape[-1] != 2:
            raise ValueError(
                f"{sequence_where}: expected keypoints [T, n_mice, n_keypoints, 2], "
                f"got shape {keypoints.shape}"
            )
        observed = np.isfinite(keypoints).all(axis=-1) & (keypoints[..., 0] != 0)
        validity.append(observed.all(axis=(1, 2)))
        if fill_holes:
            keypoints = fill_mouse_holes(keypoints)
        if center_align:
            keypoints = center_align_mice(keypoints)
        num_frames_here, num_mice, num_keypoints = keypoints.shape[:3]
        flat = keypoints.reshape(num_frames_here, num_mice, 2 * num_keypoints).astype(np.float32)
        check_sequence(flat, sequence_where, expected_hw, num_frames, pad_short_sequences)
        names.append(str(name))
        arrays.append(flat)
        labels.append(_mouse_labels(entry, vocabulary, sequence_where))
    has_labels = [sequence_labels is not None for sequence_labels in labels]
    if any(has_labels) and not all(has_labels):
        missing = [name for name, present in zip(names, has_labels, strict=True) if not present]
        raise ValueError(
            f"{where}: some sequences have labels and some do not, e.g. {missing[0]!r}"
        )
    labels_or_none = labels if all(has_labels) else None
    label_names = list(labels[0]) if labels_or_none else []  # source (vocabulary) order
    return _build(
        where,
        names=names,
        keypoints=arrays,
        labels=labels_or_none,
        label_info=_label_info_from(data, label_names),
        validity=validity,
    )


# -------------------------------------------------------------------- Shot7M2
def read_shot7m2(
    source: str | os.PathLike[str] | Mapping[str, Any],
    expected_hw: tuple[int, int] | None = None,
    num_frames: int | None = None,
    pad_short_sequences: bool = True,
) -> KeypointSequences:
    """Reads Shot7M2 poses and keeps the 24 joints of `SHOT7M2_JOINT_SELECTION`.

    The file is a pickled dict `{"sequences": {"keypoints": {episode: [T, 1, 26,
    3]}}}`. Each episode becomes `[T, 1, 72]` ordered (joint, xyz), with raw,
    unnormalised coordinates.

    Args:
        source: path of the `.npy` file, or the loaded dict.
        expected_hw: the model's `(H, W)`; a mismatch raises ValueError.
        num_frames: the model's window length, checked only with
            `pad_short_sequences=False`.
        pad_short_sequences: accept sequences shorter than `num_frames`.

    Returns:
        `KeypointSequences` of float32 `[T, 1, 72]`.

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: for a wrong dict layout or bad keypoints.

    Example:
        >>> poses = np.arange(2 * 26 * 3, dtype=np.float32).reshape(2, 1, 26, 3)
        >>> sequences = read_shot7m2({"sequences": {"keypoints": {"e1": poses}}})
        >>> sequences.feature_shape, sequences.keypoints[0][0, 0, 3:6]
        ((1, 72), array([3., 4., 5.], dtype=float32))
    """
    data, where = _load_source(source)
    require_keys(data, "sequences", where)
    require_keys(data["sequences"], "keypoints", f"{where}['sequences']")
    episodes = data["sequences"]["keypoints"]
    if not isinstance(episodes, Mapping) or not episodes:
        raise ValueError(
            f"{where}: ['sequences']['keypoints'] must be a non-empty dict of episode -> poses"
        )
    names, arrays = [], []
    for name, poses in episodes.items():
        episode_where = f"{where}, episode {name!r}"
        poses = numeric_array(poses, episode_where)
        if poses.ndim != 4 or poses.shape[2:] != (26, 3):
            raise ValueError(
                f"{episode_where}: expected poses [T, 1, 26, 3], got shape {poses.shape}"
            )
        selected = poses[:, :, list(SHOT7M2_JOINT_SELECTION), :]
        flat = selected.reshape(poses.shape[0], poses.shape[1], 3 * len(SHOT7M2_JOINT_SELECTION))
        check_sequence(flat, episode_where, expected_hw, num_frames, pad_short_sequences)
        names.append(str(name))
        arrays.append(flat)
    return _build(where, names=names, keypoints=arrays)


# --------------------------------------------------------------------- hBABEL
def read_hbabel(
    source: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    expected_hw: tuple[int, int] | None = None,
    num_frames: int | None = None,
    pad_short_sequences: bool = True,
) -> KeypointSequences:
    """Reads processed hBABEL sequences and applies the joint grouping.

    The source is a list of dicts, each with `poses` (its length L is the number
    of frames) and `joint_positions_processed` `[≥L, 25, 3]` (the published offline
    preparation: 25 SMPL-H joints, centred and aligned), optionally `babel_id` (used as
    the name; otherwise the list index). Files: the published joblib files (`*.pth.tar`,
    read without joblib and without running code), a `.npy` holding the list (an object
    array) or a pickle (`.pkl`).

    Each sequence becomes `[L, 1, 75]`, joints reordered by `HBABEL_JOINT_ORDER`,
    xyz inner. No normalisation.

    Args:
        source: path of the file, or the loaded list.
        expected_hw: the model's `(H, W)`; a mismatch raises ValueError.
        num_frames: the model's window length, checked only with
            `pad_short_sequences=False`.
        pad_short_sequences: accept sequences shorter than `num_frames` (they are
            end-padded to 450 frames in training, as published).

    Returns:
        `KeypointSequences` of float32 `[L, 1, 75]`.

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: for a wrong layout or bad joint positions.

    Example:
        >>> joints = np.zeros((3, 25, 3), np.float32); joints[:, 5] = 1.0
        >>> sequences = read_hbabel([{"poses": np.zeros((3, 156)),
        ...                           "joint_positions_processed": joints}])
        >>> sequences.feature_shape, sequences.keypoints[0][0, 0, :3]
        ((1, 75), array([1., 1., 1.], dtype=float32))
    """
    data, where = _load_source(source)
    if isinstance(data, np.ndarray) and data.dtype == object:
        data = list(data)
    if isinstance(data, Mapping) or not isinstance(data, Sequence) or not data:
        raise ValueError(
            f"{where}: expected a non-empty list of dicts with keys 'poses' and "
            f"'joint_positions_processed', found {type(data).__name__}"
        )
    names, arrays = [], []
    for index, entry in enumerate(data):
        entry_where = f"{where}, item {index}"
        require_keys(entry, ("poses", "joint_positions_processed"), entry_where)
        length = len(entry["poses"])
        joints = numeric_array(entry["joint_positions_processed"], entry_where)
        if joints.ndim != 3 or joints.shape[1:] != (25, 3):
            raise ValueError(
                f"{entry_where}: expected joint_positions_processed [L, 25, 3], "
                f"got shape {joints.shape}"
            )
        if joints.shape[0] < length:
            raise ValueError(
                f"{entry_where}: poses has {length} frames but joint_positions_processed "
                f"only {joints.shape[0]}"
            )
        grouped = joints[:length, list(HBABEL_JOINT_ORDER), :].reshape(length, 1, 75)
        check_sequence(grouped, entry_where, expected_hw, num_frames, pad_short_sequences)
        names.append(str(entry.get("babel_id", index)))
        arrays.append(grouped)
    return _build(where, names=names, keypoints=arrays)
