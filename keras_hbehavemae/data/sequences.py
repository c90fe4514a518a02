"""`KeypointSequences`: named keypoint sequences with optional per-frame labels.

Every reader in `keras_hbehavemae.data` returns this container. It holds, in the
order of the source file, one float32 array `[T_i, H, W]` per sequence (time,
individuals, features of one individual). Sequences may have different
lengths, but all share the per-frame shape `(H, W)`.

Optional extras, aligned frame by frame with the keypoints:

- `labels`: one `dict[label_name, float32 [T_i]]` per sequence, NaN = unlabelled.
  `label_info` says, per label name, whether the task is "discrete" or
  "continuous" and at which timescale it lives (e.g. "moveme", "action").
- `validity`: one bool `[T_i]` per sequence, True where every coordinate of the
  frame was observed in the source (before any hole filling).

The iteration order is the source order. Embedding extraction relies on it: the
submission's `frame_number_map` is cumulative in exactly this order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np

TaskType = Literal["discrete", "continuous"]


@dataclasses.dataclass(frozen=True)
class LabelInfo:
    """What a per-frame label means.

    Attributes:
        task_type: "discrete" (class indices stored as float32) or "continuous"
            (regression targets).
        timescale: a free-form name of the behavioural timescale, such as
            "moveme", "action" or "activity"; None when unknown.
        class_names: for discrete labels, the name of each class index, if known.
    """

    task_type: TaskType
    timescale: str | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.task_type not in ("discrete", "continuous"):
            raise ValueError(
                f"task_type must be 'discrete' or 'continuous', got {self.task_type!r}"
            )


class KeypointSequences:
    """An ordered collection of named keypoint sequences.

    Args:
        names: one unique name per sequence, in source order.
        keypoints: one array `[T_i, H, W]` per sequence. It is converted to
            float32; every sequence must have the same `(H, W)` and at least one
            frame.
        labels: optional, one `dict[label_name, array [T_i]]` per sequence. All
            sequences must carry the same label names. Values become float32,
            NaN meaning unlabelled.
        label_info: optional, `LabelInfo` per label name. Names without an entry
            get `LabelInfo("discrete")` if every finite value is an integer and
            `LabelInfo("continuous")` otherwise.
        validity: optional, one bool array `[T_i]` per sequence.

    Raises:
        ValueError: if the arrays do not fit together as described above.

    Example:
        >>> import numpy as np
        >>> sequences = KeypointSequences(
        ...     names=["a", "b"],
        ...     keypoints=[np.zeros((5, 1, 4)), np.ones((3, 1, 4))],
        ... )
        >>> len(sequences), sequences.feature_shape, sequences.lengths
        (2, (1, 4), [5, 3])
        >>> sequences.frame_number_map()
        {'a': (0, 5), 'b': (5, 8)}
        >>> [(name, array.shape) for name, array in sequences]
        [('a', (5, 1, 4)), ('b', (3, 1, 4))]
    """

    def __init__(
        self,
        names: Sequence[str],
        keypoints: Sequence[np.ndarray],
        labels: Sequence[Mapping[str, np.ndarray]] | None = None,
        label_info: Mapping[str, LabelInfo] | None = None,
        validity: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.names: list[str] = [str(name) for name in names]
        self.keypoints: list[np.ndarray] = [
            np.ascontiguousarray(array, dtype=np.float32) for array in keypoints
        ]
        self._check_keypoints()
        self.labels: list[dict[str, np.ndarray]] | None = (
            None if labels is None else self._checked_labels(labels)
        )
        self.label_info: dict[str, LabelInfo] = self._completed_label_info(label_info or {})
        self.validity: list[np.ndarray] | None = (
            None if validity is None else self._checked_validity(validity)
        )

    # ----------------------------------------------------------------- checks
    def _check_keypoints(self) -> None:
        if len(self.names) != len(self.keypoints):
            raise ValueError(
                f"got {len(self.names)} names but {len(self.keypoints)} keypoint arrays"
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError("sequence names must be unique")
        if not self.keypoints:
            raise ValueError("KeypointSequences needs at least one sequence")
        for name, array in zip(self.names, self.keypoints, strict=True):
            if array.ndim != 3:
                raise ValueError(
                    f"sequence {name!r}: keypoints must be [T, H, W], got shape {array.shape}"
                )
            if array.shape[0] < 1:
                raise ValueError(f"sequence {name!r} has no frames")
        first_shape = self.keypoints[0].shape[1:]
        for name, array in zip(self.names, self.keypoints, strict=True):
            if array.shape[1:] != first_shape:
                raise ValueError(
                    f"sequence {name!r} has per-frame shape {array.shape[1:]}, but sequence "
                    f"{self.names[0]!r} has {first_shape}; all sequences must share (H, W)"
                )

    def _checked_labels(
        self, labels: Sequence[Mapping[str, np.ndarray]]
    ) -> list[dict[str, np.ndarray]]:
        if len(labels) != len(self.keypoints):
            raise ValueError(f"got labels for {len(labels)} of {len(self.keypoints)} sequences")
        label_names = sorted(labels[0]) if labels else []
        checked = []
        for name, length, sequence_labels in zip(
            self.names, self.lengths, labels, strict=True
        ):
            if sorted(sequence_labels) != label_names:
                raise ValueError(
                    f"sequence {name!r} has labels {sorted(sequence_labels)}, expected "
                    f"{label_names} like the first sequence"
                )
            converted = {}
            for label_name, values in sequence_labels.items():
                values = np.asarray(values, dtype=np.float32)
                if values.shape != (length,):
                    raise ValueError(
                        f"sequence {name!r}, label {label_name!r}: expected shape ({length},), "
                        f"got {values.shape}"
                    )
                converted[label_name] = values
            checked.append(converted)
        return checked

    def _completed_label_info(self, label_info: Mapping[str, LabelInfo]) -> dict[str, LabelInfo]:
        completed = dict(label_info)
        for label_name in self.label_names:
            if label_name not in completed:
                values = np.concatenate([labels[label_name] for labels in self.labels or []])
                finite = values[np.isfinite(values)]
                integral = bool(np.all(finite == np.round(finite)))
                completed[label_name] = LabelInfo("discrete" if integral else "continuous")
        return completed

    def _checked_validity(self, validity: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(validity) != len(self.keypoints):
            raise ValueError(
                f"got validity for {len(validity)} of {len(self.keypoints)} sequences"
            )
        checked = []
        for name, length, mask in zip(self.names, self.lengths, validity, strict=True):
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (length,):
                raise ValueError(
                    f"sequence {name!r}: validity must have shape ({length},), got {mask.shape}"
                )
            checked.append(mask)
        return checked

    # ------------------------------------------------------------- properties
    @property
    def feature_shape(self) -> tuple[int, int]:
        """The per-frame shape `(H, W)` shared by all sequences."""
        height, width = self.keypoints[0].shape[1:]
        return int(height), int(width)

    @property
    def lengths(self) -> list[int]:
        """The number of frames of each sequence, in source order."""
        return [int(array.shape[0]) for array in self.keypoints]

    @property
    def total_frames(self) -> int:
        """The number of frames of all sequences together."""
        return sum(self.lengths)

    @property
    def label_names(self) -> list[str]:
        """The label names carried by every sequence (empty without labels)."""
        return sorted(self.labels[0]) if self.labels else []

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.keypoints)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yields `(name, keypoints [T, H, W])` in source order."""
        return iter(zip(self.names, self.keypoints, strict=True))

    def __getitem__(self, name: str) -> np.ndarray:
        """The keypoints `[T, H, W]` of the sequence called `name`."""
        try:
            return self.keypoints[self.names.index(name)]
        except ValueError:
            raise KeyError(name) from None

    def __repr__(self) -> str:
        return (
            f"KeypointSequences({len(self)} sequences, feature_shape={self.feature_shape}, "
            f"total_frames={self.total_frames}, labels={self.label_names})"
        )

    def frame_number_map(self) -> dict[str, tuple[int, int]]:
        """Maps each name to its half-open `(start, end)` frame range, cumulative in order.

        This is the `frame_number_map` of a submission file.
        """
        frame_map = {}
        start = 0
        for name, length in zip(self.names, self.lengths, strict=True):
            frame_map[name] = (start, start + length)
            start += length
        return frame_map

    def label_array(self, label_name: str) -> np.ndarray:
        """All sequences' values of one label, concatenated in source order, float32 `[N]`."""
        if label_name not in self.label_names:
            raise KeyError(f"no label {label_name!r}; labels are {self.label_names}")
        return np.concatenate([labels[label_name] for labels in self.labels or []])

    def with_keypoints(self, keypoints: Sequence[np.ndarray]) -> KeypointSequences:
        """A copy with new keypoint arrays (same lengths), keeping names, labels and validity."""
        return KeypointSequences(
            self.names, keypoints, self.labels, self.label_info, self.validity
        )
