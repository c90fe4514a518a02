"""Extraction modes: which windows each mode runs over a sequence, and how many.

**exact** (the standard mode). A length-L sequence is edge-padded by
num_frames − 1 at both ends and cut into every stride-1 window (L + num_frames − 1
windows, `data.windows.extraction_windows`). Per window and level, the tokens are
flattened over (h, w, channel) to `[T_k, H_k·W_k·out_k]` (or, with `embedsum`,
averaged over the H_k·W_k tokens to `[T_k, out_k]`) and each time token is
repeated τ_k times to `[num_frames, D]`. Window w covers padded frames
[w, w + num_frames); original frame f (padded frame f + num_frames − 1) lies in
exactly num_frames windows, and its embedding is the mean of those num_frames rows.

*How the mean is computed.* Windows stream through the backbone in batches and
only per-frame running sums are kept, never all windows' embeddings. Because a
time token covers τ_k consecutive frames, its contribution to the per-frame sums
is a constant over a frame range; the sums are therefore kept as a float64
difference array (add the token at the range start, subtract it after the range
end) and recovered with one cumulative sum at the end: O(T_k) updates per window
instead of O(num_frames), with the same per-frame sums. Memory is O(L·D) per
level, whatever the batch size, and the result does not depend on `batch_size`.

**fast** (optional, published; docs/model.md, "Embedding extraction (exact and fast
modes)"). In detail:

1. stride s = 2 if num_frames is even, else 1; pad = (num_frames − s) / 2
   (an integer in both cases), edge-padded on each side.
2. Windows of num_frames frames start every s padded frames. Window i starts at
   padded frame i·s, so its window-relative frame `pad` is original frame i·s.
   From each window and level only the time token at index pad // τ_k is kept
   (the token holding window frame `pad`, i.e. the centre of the window), and
   its row is repeated s times: it becomes the embedding of original frames
   i·s … i·s + s − 1. No averaging.
3. The padded sequence of length L + 2·pad gives ⌊L / s⌋ windows. When
   windows × s ≠ L (L odd with s = 2, or L < s), the padded sequence is edge-padded
   by s more frames at the end, which adds one window, and the rows are truncated
   to L. Together: ⌈L / s⌉ windows, window i at padded start i·s; we realise all
   edge padding by clipping frame indices into [0, L − 1], which is the same.

So fast mode runs ⌈L / 2⌉ windows (even num_frames) instead of
L + num_frames − 1, and the frame embedding is one centre token instead of a mean
over all num_frames windows covering the frame. For a sequence whose windows are
all identical and whose tokens do not vary along time the two modes agree.

**strided** (ours, not published). Exact mode with every k-th window only: the
windows of exact mode (padded start 0, k, 2k, …), and each frame's row the mean over
the windows that cover it (⌊T/k⌋ or ⌈T/k⌉ of them, counted per frame). k = 1 is exact
mode. The default k = ⌊T/4⌋ runs about L/k + 4 windows, so every frame still averages
about four windows in different positions. For an 1800-frame sequence that is 2199
against 22 windows with Shot7M2's T = 400, about 100× cheaper. Published fast mode
saves only 2.4× (900 windows).

Example:

>>> fast_mode_stride_and_padding(900), fast_mode_stride_and_padding(45)
((2, 449), (1, 22))
>>> count_windows(1800, 900, "exact"), count_windows(1800, 900, "fast")
(2699, 900)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_hbehavemae.data.windows import WindowPlan, extraction_windows

MODES = ("exact", "fast", "strided")


def fast_mode_stride_and_padding(num_frames: int) -> tuple[int, int]:
    """`(stride, pad)` of fast mode: stride 2 for even num_frames, else 1; pad = (T − stride)/2.

    Example:
        >>> fast_mode_stride_and_padding(32), fast_mode_stride_and_padding(400)
        ((2, 15), (2, 199))
    """
    stride = 2 if num_frames % 2 == 0 else 1
    return stride, (num_frames - stride) // 2


def fast_mode_plan(length: int, num_frames: int) -> WindowPlan:
    """The fast-mode windows of one length-L sequence: ⌈L / stride⌉ windows, start i·stride.

    `pad_before` is the fast-mode pad; frames past either end are edge frames
    (`WindowPlan.frame_indices` clips), which covers both the symmetric padding and
    the extra `stride` frames added at the end when windows × stride ≠ L.

    Example:
        >>> plan = fast_mode_plan(5, num_frames=4)
        >>> len(plan), plan.pad_before, plan.frame_indices().tolist()
        (3, 1, [[0, 0, 1, 2], [1, 2, 3, 4], [3, 4, 4, 4]])
    """
    if int(length) != length or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    stride, pad = fast_mode_stride_and_padding(num_frames)
    count = -(-int(length) // stride)
    return WindowPlan(
        num_frames=int(num_frames),
        sampling_rate=1,
        pad_before=pad,
        sequence_lengths=np.asarray([length], np.int64),
        sequence_ids=np.zeros(count, np.int64),
        starts=stride * np.arange(count, dtype=np.int64),
    )


def strided_window_stride(num_frames: int, window_stride: int | None = None) -> int:
    """The window stride k of strided mode: `window_stride`, or ⌊T/4⌋ (at least 1).

    Example:
        >>> strided_window_stride(400), strided_window_stride(3), strided_window_stride(400, 7)
        (100, 1, 7)
    """
    if window_stride is None:
        return max(int(num_frames) // 4, 1)
    if int(window_stride) != window_stride or not 1 <= window_stride <= num_frames:
        raise ValueError(f"window_stride must be an integer in [1, num_frames={num_frames}], "
                         f"got {window_stride!r}")
    return int(window_stride)


def count_windows(length: int, num_frames: int, mode: str = "exact",
                  window_stride: int | None = None) -> int:
    """Backbone windows needed for one length-L sequence: L + T − 1 (exact), ⌈L/stride⌉
    (fast), ⌈(L + T − 1)/k⌉ (strided).

    Example:
        >>> [count_windows(1800, 400, mode) for mode in ("exact", "fast", "strided")]
        [2199, 900, 22]
    """
    check_mode(mode)
    if mode == "fast":
        return len(fast_mode_plan(length, num_frames))
    stride = 1 if mode == "exact" else strided_window_stride(num_frames, window_stride)
    return -(-(int(length) + int(num_frames) - 1) // stride)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is invalid: must be one of {MODES}")


def window_plan(length: int, num_frames: int, mode: str = "exact",
                window_stride: int | None = None) -> WindowPlan:
    """The windows `mode` runs over one length-L sequence.

    Example:
        >>> len(window_plan(1800, 400, "strided")), len(window_plan(1800, 400, "fast"))
        (22, 900)
    """
    check_mode(mode)
    if mode == "fast":
        return fast_mode_plan(length, num_frames)
    plan = extraction_windows([length], num_frames)
    if mode == "exact":
        return plan
    every = strided_window_stride(num_frames, window_stride)
    return dataclasses.replace(plan, sequence_ids=plan.sequence_ids[::every],
                               starts=plan.starts[::every])
