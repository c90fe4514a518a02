"""Which frames make up each window: pure NumPy index logic for training and extraction.

A window is `num_frames` frames of one sequence after edge padding. Three
schemes are used (docs/model.md, "Data recipes (MABe22, Shot7M2, hBABEL)" and
"Embedding extraction (exact and fast modes)"):

| scheme | padding of a length-L sequence | window starts |
|---|---|---|
| `training_windows` (Shot7M2, MABe22) | p//2 before, p − 1 − p//2 after | 0, s, 2s, … |
| `end_padded_windows` (hBABEL) | at the end only, up to num_frames | 0, s, 2s, … |
| `extraction_windows` | num_frames − 1 on both sides | 0, 1, 2, … |

Here p = min(num_frames, 120) (60 before and 59 after for long windows) and s is
`sliding_window` (published 17; hBABEL 11).

Edge padding replicates the first and last frames, which is the same as
clipping frame indices into `[0, L − 1]`. So a window never needs a padded copy
of its sequence: `WindowPlan.frame_indices` gives, for each window, the indices
of its frames in the *original* sequence, and a `tf.data` pipeline can gather
them from the unpadded data.

`sampling_rate` r (an addition of this package; the published runs use 1): a
window takes every r-th frame, `start + r·i` for i < num_frames, so it spans
`(num_frames − 1)·r + 1` padded frames. Padding and starts are in source frames.

Sequences too short to hold one window after the scheme's padding (e.g. L +
119 < num_frames for `training_windows`) are additionally edge-padded at the end
until one window fits, so every sequence with at least one frame yields at least
one window. The published datasets never contain such sequences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: The published maximum edge padding of training windows.
MAX_TRAINING_PADDING = 120


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """The windows of a set of sequences.

    Attributes:
        num_frames: frames per window.
        sampling_rate: stride between consecutive frames of a window.
        pad_before: edge frames added before every sequence.
        sequence_lengths: the unpadded length L of each sequence.
        sequence_ids: `[n_windows]`, the sequence of each window.
        starts: `[n_windows]`, the first frame of each window in padded
            coordinates (padded frame j is original frame j − pad_before).
    """

    num_frames: int
    sampling_rate: int
    pad_before: int
    sequence_lengths: np.ndarray
    sequence_ids: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def windows_per_sequence(self) -> np.ndarray:
        """The number of windows of each sequence, `[n_sequences]`."""
        return np.bincount(self.sequence_ids, minlength=len(self.sequence_lengths))

    def padded_frame_indices(self) -> np.ndarray:
        """`[n_windows, num_frames]` indices into the padded sequences."""
        offsets = self.sampling_rate * np.arange(self.num_frames)
        return self.starts[:, None] + offsets[None, :]

    def frame_indices(self) -> np.ndarray:
        """`[n_windows, num_frames]` indices into the original (unpadded) sequences.

        Edge padding is index clipping, so these gather a padded window directly.
        """
        lengths = self.sequence_lengths[self.sequence_ids][:, None]
        return np.clip(self.padded_frame_indices() - self.pad_before, 0, lengths - 1)


def training_padding(num_frames: int) -> tuple[int, int]:
    """Edge frames `(before, after)` added to each sequence for training windows.

    Example:
        >>> training_padding(900), training_padding(400), training_padding(32)
        ((60, 59), (60, 59), (16, 15))
    """
    pad_length = num_frames if num_frames < MAX_TRAINING_PADDING else MAX_TRAINING_PADDING
    return pad_length // 2, pad_length - 1 - pad_length // 2


def _window_span(num_frames: int, sampling_rate: int) -> int:
    return (num_frames - 1) * sampling_rate + 1


def _check_arguments(num_frames: int, stride: int, sampling_rate: int) -> None:
    for name, value in (("num_frames", num_frames), ("sliding_window", stride),
                        ("sampling_rate", sampling_rate)):  # fmt: skip
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def window_starts(padded_length: int, span: int, stride: int) -> np.ndarray:
    """Starts 0, stride, 2·stride, … ≤ padded_length − span (at least `[0]`).

    Example:
        >>> len(window_starts(1919, 900, 17)), len(window_starts(1919, 400, 17))
        (60, 90)
    """
    return np.arange(0, max(padded_length - span, 0) + 1, stride, dtype=np.int64)


def _plan(
    lengths: Sequence[int],
    num_frames: int,
    stride: int,
    sampling_rate: int,
    pad_before: int,
    pad_after: int,
) -> WindowPlan:
    _check_arguments(num_frames, stride, sampling_rate)
    lengths_array = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if (lengths_array < 1).any():
        raise ValueError("every sequence needs at least one frame")
    span = _window_span(num_frames, sampling_rate)
    starts = [
        window_starts(int(length) + pad_before + pad_after, span, stride)
        for length in lengths_array
    ]
    counts = [len(sequence_starts) for sequence_starts in starts]
    return WindowPlan(
        num_frames=int(num_frames),
        sampling_rate=int(sampling_rate),
        pad_before=int(pad_before),
        sequence_lengths=lengths_array,
        sequence_ids=np.repeat(np.arange(len(lengths_array), dtype=np.int64), counts),
        starts=np.concatenate(starts) if starts else np.zeros(0, np.int64),
    )


def training_windows(
    lengths: Sequence[int], num_frames: int, sliding_window: int = 17, sampling_rate: int = 1
) -> WindowPlan:
    """Training windows of Shot7M2 and MABe22.

    Args:
        lengths: the length of each sequence.
        num_frames: frames per window (the model's T).
        sliding_window: stride between window starts (published 17).
        sampling_rate: stride between frames inside a window (published 1).

    Example:
        >>> plan = training_windows([1800, 1800], num_frames=900)
        >>> len(plan), plan.windows_per_sequence().tolist()
        (120, [60, 60])
    """
    pad_before, pad_after = training_padding(num_frames)
    return _plan(lengths, num_frames, sliding_window, sampling_rate, pad_before, pad_after)


def end_padded_windows(
    lengths: Sequence[int], num_frames: int, sliding_window: int = 11, sampling_rate: int = 1
) -> WindowPlan:
    """hBABEL windows: end-only padding up to one window, starts every `sliding_window`.

    Example:
        >>> end_padded_windows([100, 450, 472], num_frames=450).windows_per_sequence().tolist()
        [1, 1, 3]
    """
    return _plan(lengths, num_frames, sliding_window, sampling_rate, 0, 0)


def extraction_windows(lengths: Sequence[int], num_frames: int) -> WindowPlan:
    """Embedding-extraction windows: pad num_frames − 1 on both sides, stride 1.

    A sequence of length L yields L + num_frames − 1 windows; window w covers
    padded frames [w, w + num_frames), and original frame f is padded frame
    f + num_frames − 1.

    Example:
        >>> extraction_windows([10], num_frames=4).windows_per_sequence().tolist()
        [13]
    """
    return _plan(lengths, num_frames, 1, 1, num_frames - 1, num_frames - 1)
