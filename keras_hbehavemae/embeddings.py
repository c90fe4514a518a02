"""Per-frame embeddings from a trained encoder, PCA, and submission files (SPEC §10).

Extraction runs the encoder only, unmasked. The level-k embedding of a window
is the level map L_k `[T_k, H_k, W_k, out_k]` (rerolled, projected, not
normalised); `encoder_norm` and the fusion heads are not used. Every derived
number (T_k, τ_k = `frames_per_token`, the level grids) comes from
`backbone.geometry`; the extraction windows come from `data.windows`.

Two modes turn window embeddings into one row per frame:

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

**fast** (optional, SPEC §10 "Fast mode"). Our reading of the SPEC:

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

**strided** (ours, not in the SPEC). Exact mode with every k-th window only: the
windows of exact mode (padded start 0, k, 2k, …), and each frame's row the mean over
the windows that cover it (⌊T/k⌋ or ⌈T/k⌉ of them, counted per frame). k = 1 is exact
mode. The default k = ⌊T/4⌋ runs about L/k + 4 windows, so every frame still averages
about four windows in different positions. For an 1800-frame sequence that is 2199
against 22 windows with Shot7M2's T = 400, about 100× cheaper. Published fast mode
saves only 2.4× (900 windows).

**PCA** (SPEC §10 table). When a level's D exceeds the limit, PCA is fitted on
the extracted embeddings themselves: exact full-SVD PCA if D < 100, otherwise
"incremental" PCA over batches of 320,000 rows. Our incremental PCA streams the
data once and accumulates, in float64, the row count, the sum and the matrix of
sums of outer products of the rows (shifted by the first batch's mean for
numerical stability), then takes the eigendecomposition of the covariance. Memory
is O(D² + batch·D); the result equals full PCA up to rounding. (It is therefore
not bit-identical to scikit-learn's `IncrementalPCA`, which truncates to the
kept components after every batch and is only approximately equal to full PCA.)
Both paths order components by decreasing explained variance, fix each
component's sign so that its largest-magnitude loading is positive, and output
float32.

**Submission files** (`write_submission`): per level k, `test_submission_{k}.npy`,
a NumPy-saved dict `{"frame_number_map": {name: (start, end)}, "embeddings":
float32 [N, D]}` (load with `np.load(path, allow_pickle=True).item()`), the plain
array `level_{k}.npy`, and `frame_number_map.json`; optionally
`test_submission_combined.npy` / `level_combined.npy`.

Example:

>>> fast_mode_stride_and_padding(900), fast_mode_stride_and_padding(45)
((2, 449), (1, 22))
>>> count_windows(1800, 900, "exact"), count_windows(1800, 900, "fast")
(2699, 900)
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from keras_hbehavemae.atomic_files import write_atomically, write_text_atomically
from keras_hbehavemae.data.sequences import KeypointSequences
from keras_hbehavemae.data.windows import WindowPlan, extraction_windows

MODES = ("exact", "fast", "strided")

#: Full-SVD PCA is used when D is below this; incremental PCA otherwise (SPEC §10).
FULL_SVD_MAX_DIM = 100

#: Rows per batch of the incremental PCA (SPEC §10).
INCREMENTAL_PCA_BATCH = 320_000

#: The published PCA limits per dataset (SPEC §10 table).
PCA_LIMITS = {"shot7m2": 64, "mabe_mice": 128, "hbabel": 64}

#: Default windows per backbone call.
DEFAULT_BATCH_SIZE = 64

Normalisation = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "FULL_SVD_MAX_DIM",
    "INCREMENTAL_PCA_BATCH",
    "MODES",
    "PCA",
    "PCA_LIMITS",
    "apply_pca_limit",
    "count_windows",
    "embed_sequence",
    "embed_sequences",
    "embedding_dims",
    "encode_levels",
    "fast_mode_plan",
    "fast_mode_stride_and_padding",
    "strided_window_stride",
    "fit_pca",
    "level_rows",
    "pca_limit_for",
    "write_submission",
]


# ---------------------------------------------------------------- geometry helpers
def _num_frames(backbone) -> int:
    return int(backbone.geometry.config.input_size[0])


def _frame_shape(backbone) -> tuple[int, int]:
    _, height, width = backbone.geometry.config.input_size
    return int(height), int(width)


def _resolve_levels(backbone, levels: int | Sequence[int] | None) -> list[int]:
    """Level indices (negative ones counted from the end), in the order given."""
    count = len(backbone.geometry.levels)
    if levels is None:
        return list(range(count))
    if isinstance(levels, (int, np.integer)):
        levels = [levels]
    resolved = []
    for level in levels:
        if int(level) != level or not -count <= level < count:
            raise ValueError(f"levels: {level!r} is not a level of this model (0 … {count - 1})")
        resolved.append(int(level) % count)
    if not resolved:
        raise ValueError("levels: the list is empty")
    return resolved


def embedding_dims(backbone, levels=None, embedsum: bool = False) -> list[int]:
    """D_k per level: H_k·W_k·out_k (flatten) or out_k (`embedsum`), from the geometry."""
    dims = []
    for level in _resolve_levels(backbone, levels):
        geometry = backbone.geometry.levels[level]
        _, height, width = geometry.grid
        dims.append(geometry.out_dim if embedsum else height * width * geometry.out_dim)
    return dims


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
    _check_mode(mode)
    if mode == "fast":
        return len(fast_mode_plan(length, num_frames))
    stride = 1 if mode == "exact" else strided_window_stride(num_frames, window_stride)
    return -(-(int(length) + int(num_frames) - 1) // stride)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


# ---------------------------------------------------------------- the backbone
def _as_windows(backbone, windows) -> np.ndarray:
    frames = _num_frames(backbone)
    height, width = _frame_shape(backbone)
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim == 3 and windows.shape[1:] == (frames, height * width):
        windows = windows.reshape(-1, frames, height, width)
    if windows.ndim != 4 or windows.shape[1:] != (frames, height, width):
        raise ValueError(
            f"windows: expected [batch, {frames}, {height}, {width}] for this model, got shape "
            f"{windows.shape}")
    return windows


def encode_levels(backbone, windows, levels=None) -> list[np.ndarray]:
    """The unmasked level maps of a batch of windows, as float32 NumPy arrays.

    Runs the backbone's compiled predict path (`predict_on_batch`: a `tf.function`
    on TensorFlow, `jax.jit` on JAX, `no_grad` on PyTorch). Each new input shape is
    compiled once (seconds for the tiny model under JAX, much longer for published
    ones), so the batch is padded, by repeating its last window, to the next power of
    two (above 1024: the next multiple of 1024); the padding rows are dropped.

    Args:
        backbone: an `HBehaveMAEBackbone`.
        windows: `[B, T, H, W]` (or `[B, T, H·W]`) model windows, already preprocessed.
        levels: level indices to return (default all), in the order given.

    Returns:
        One float32 array `[B, T_k, H_k, W_k, out_k]` per requested level.
    """
    windows = _as_windows(backbone, windows)
    count = windows.shape[0]
    if count == 0:
        raise ValueError("windows: the batch is empty")
    rows = _padded_size(count)
    if rows > count:  # repeat the last window; its outputs are dropped
        windows = np.concatenate([windows, np.repeat(windows[-1:], rows - count, axis=0)])
    return [level[:count] for level in _predict(backbone, windows, levels)]


def _predict(backbone, windows: np.ndarray, levels) -> list[np.ndarray]:
    """The selected level maps of `windows` through the compiled predict path, float32."""
    outputs = backbone.predict_on_batch(windows)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(outputs[level], dtype=np.float32)
            for level in _resolve_levels(backbone, levels)]


def level_rows(level_map: np.ndarray, embedsum: bool = False) -> np.ndarray:
    """`[B, T_k, H_k, W_k, C]` → `[B, T_k, D]`: flatten (h, w, c), or mean over H_k·W_k tokens.

    Example:
        >>> level = np.arange(2 * 3 * 2 * 1 * 4, dtype=np.float32).reshape(2, 3, 2, 1, 4)
        >>> level_rows(level).shape, level_rows(level, embedsum=True).shape
        ((2, 3, 8), (2, 3, 4))
    """
    batch, frames, height, width, channels = level_map.shape
    if embedsum:
        return level_map.reshape(batch, frames, height * width, channels).mean(axis=2)
    return level_map.reshape(batch, frames, height * width * channels)


# ---------------------------------------------------------------- one sequence
def _as_sequence(backbone, sequence) -> np.ndarray:
    height, width = _frame_shape(backbone)
    sequence = np.asarray(sequence, dtype=np.float32)
    if sequence.ndim == 2 and sequence.shape[1] == height * width:
        sequence = sequence.reshape(-1, height, width)
    if sequence.ndim != 3 or sequence.shape[1:] != (height, width):
        raise ValueError(
            f"sequence: expected [L, {height}, {width}] (or [L, {height * width}]) for this "
            f"model, got shape {sequence.shape}")
    if sequence.shape[0] < 1:
        raise ValueError("sequence: it has no frames")
    if not np.isfinite(sequence).all():
        bad = int(np.count_nonzero(~np.isfinite(sequence).all(axis=(1, 2))))
        raise ValueError(
            f"sequence: {bad} frame(s) hold NaN or inf; fill untracked values first "
            "(e.g. read_keypoint_arrays(..., fill='interpolate'))")
    return sequence


def _padded_size(count: int) -> int:
    """Rows to run for `count` windows in `encode_levels`: the next power of two up to 1024,
    else the next multiple of 1024, so arbitrary batch sizes compile only a few shapes."""
    if count <= 1024:
        return 1 << max(count - 1, 0).bit_length()
    return -(-count // 1024) * 1024


def _stream_levels(backbone, sequence, plan: WindowPlan, levels, batch_size, normalise):
    """Yields `(first_window, [level maps of windows first … first + b))` batch by batch."""
    offsets = np.arange(plan.num_frames) * plan.sampling_rate
    last = int(plan.sequence_lengths[0]) - 1
    for first in range(0, len(plan), batch_size):
        starts = plan.starts[first:first + batch_size]
        count = len(starts)
        if count < batch_size:  # one compiled shape: repeat the last window, drop its outputs
            starts = np.concatenate([starts, np.full(batch_size - count, starts[-1])])
        indices = np.clip(starts[:, None] - plan.pad_before + offsets[None, :], 0, last)
        windows = sequence[indices]  # [rows, T, H, W], edge padding by clipping
        if normalise is not None:
            windows = np.asarray(normalise(windows), dtype=np.float32)
        maps = _predict(backbone, windows, levels)
        yield first, [level_map[:count] for level_map in maps]


def embed_sequence(
    backbone,
    sequence,
    levels: int | Sequence[int] | None = None,
    mode: str = "exact",
    embedsum: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    normalise: Normalisation | None = None,
    window_stride: int | None = None,
) -> list[np.ndarray]:
    """Per-frame embeddings of one sequence (SPEC §10; details in the module docstring).

    - "exact": every stride-1 window of the sequence edge-padded by T − 1 on both
      sides (L + T − 1 windows); frame f's row is the mean of the T window rows
      covering it (each time token repeated τ_k times), accumulated as running sums.
    - "fast": stride s = 2 (T even) or 1, pad (T − s)/2 per side, ⌈L/s⌉ windows;
      window i contributes only its time token pad // τ_k (the token holding window
      frame `pad`, which is original frame i·s), repeated s times for frames
      i·s … i·s + s − 1; the rows are truncated to L.
    - "strided": the exact-mode windows at starts 0, k, 2k, … only (k = `window_stride`,
      default ⌊T/4⌋); frame f's row is the mean over the windows covering it.

    Args:
        backbone: an `HBehaveMAEBackbone`.
        sequence: `[L, H, W]` (or `[L, H·W]`) keypoints of any length L ≥ 1, in the
            units the reader returns (e.g. MABe22 pixels).
        levels: a level index or a list of them (default: all levels), in the
            order the results are returned.
        mode: "exact" (mean over all stride-1 windows), "fast" (centre token) or
            "strided" (mean over every k-th window).
        embedsum: mean over the H_k·W_k tokens (published for MABe22 only) instead
            of flattening them.
        batch_size: windows per backbone call. Does not change the result (up to
            floating-point rounding inside the backbone). The last batch of a sequence
            is padded to `batch_size` so that the backbone compiles one shape only.
        normalise: optional `normalise(windows) -> windows`, applied to every batch
            of windows `[B, T, H, W]` before the backbone (e.g. `ArenaNormalisation()`
            for MABe22, as in training without augmentation).
        window_stride: k of strided mode (default ⌊T/4⌋); only with mode="strided".

    Returns:
        One float32 array `[L, D_k]` per requested level, D_k = H_k·W_k·out_k
        (flatten) or out_k (embedsum).
    """
    _check_mode(mode)
    if window_stride is not None and mode != "strided":
        raise ValueError(f"window_stride applies to mode='strided' only, not {mode!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    sequence = _as_sequence(backbone, sequence)
    levels = _resolve_levels(backbone, levels)
    geometry = backbone.geometry
    num_frames, length = _num_frames(backbone), sequence.shape[0]
    taus = [geometry.levels[level].frames_per_token for level in levels]
    dims = embedding_dims(backbone, levels, embedsum)

    if mode == "fast":
        plan = fast_mode_plan(length, num_frames)
        stride = fast_mode_stride_and_padding(num_frames)[0]
        kept = [plan.pad_before // tau for tau in taus]
        outputs = [np.empty((len(plan) * stride, dim), np.float32) for dim in dims]
        for first, maps in _stream_levels(backbone, sequence, plan, levels, batch_size,
                                          normalise):
            for output, level_map, token in zip(outputs, maps, kept, strict=True):
                rows = level_rows(level_map[:, token:token + 1], embedsum)[:, 0]  # [b, D]
                output[first * stride:(first + len(rows)) * stride] = np.repeat(
                    rows, stride, axis=0)
        return [output[:length] for output in outputs]

    # Exact and strided mode: per-frame running sums, kept as difference arrays over the
    # padded frame axis (index j = original frame + T − 1, so nothing is ever out of range).
    plan = extraction_windows([length], num_frames)
    if mode == "strided":
        every = strided_window_stride(num_frames, window_stride)
        plan = dataclasses.replace(plan, sequence_ids=plan.sequence_ids[::every],
                                   starts=plan.starts[::every])
    padded_length = length + 2 * (num_frames - 1)
    differences = [np.zeros((padded_length + 1, dim), np.float64) for dim in dims]
    for first, maps in _stream_levels(backbone, sequence, plan, levels, batch_size, normalise):
        starts = plan.starts[first:first + maps[0].shape[0]]  # padded first frame of each window
        for difference, level_map, tau in zip(differences, maps, taus, strict=True):
            rows = level_rows(level_map, embedsum).astype(np.float64)  # [b, T_k, D]
            for token in range(rows.shape[1]):
                begin = starts + token * tau  # unique within the batch
                difference[begin] += rows[:, token]
                difference[begin + tau] -= rows[:, token]
    # Windows covering each padded frame: T for every original frame in exact mode.
    coverage = np.zeros(padded_length + 1, np.int64)
    np.add.at(coverage, plan.starts, 1)
    np.add.at(coverage, plan.starts + num_frames, -1)
    counts = np.cumsum(coverage)[num_frames - 1:num_frames - 1 + length, None]
    embeddings = []
    for difference in differences:
        sums = np.cumsum(difference, axis=0)[num_frames - 1:num_frames - 1 + length]
        embeddings.append((sums / counts).astype(np.float32))
    return embeddings


# ---------------------------------------------------------------- many sequences
def _named_sequences(sequences) -> tuple[list[str], list[np.ndarray]]:
    if isinstance(sequences, KeypointSequences):
        return list(sequences.names), list(sequences.keypoints)
    if isinstance(sequences, Mapping):
        return [str(name) for name in sequences], list(sequences.values())
    arrays = list(sequences)
    return [str(index) for index in range(len(arrays))], arrays


def embed_sequences(
    backbone,
    sequences: KeypointSequences | Sequence[np.ndarray] | Mapping[str, np.ndarray],
    levels: int | Sequence[int] | None = None,
    mode: str = "exact",
    embedsum: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    normalise: Normalisation | None = None,
    verbose: int = 1,
    window_stride: int | None = None,
) -> tuple[dict[str, tuple[int, int]], list[np.ndarray]]:
    """Embeds every sequence and concatenates the frames in source order.

    Args:
        backbone: an `HBehaveMAEBackbone`.
        sequences: `KeypointSequences`, a list of `[L_i, H, W]` arrays (named "0",
            "1", …) or a dict name → array; iteration order is the source order.
        levels, mode, embedsum, batch_size, normalise, window_stride: as in
            `embed_sequence`.
        verbose: 1 shows a `keras.utils.Progbar` over sequences, 0 nothing.

    Returns:
        `(frame_number_map, embeddings)`: the map name → (start, end), half-open and
        cumulative in source order, and one float32 `[N_frames, D_k]` per level.
    """
    names, arrays = _named_sequences(sequences)
    if not arrays:
        raise ValueError("sequences: nothing to embed")
    if len(set(names)) != len(names):
        raise ValueError("sequences: names must be unique")
    levels = _resolve_levels(backbone, levels)
    frame_number_map, start = {}, 0
    for name, array in zip(names, arrays, strict=True):
        frame_number_map[name] = (start, start + int(np.shape(array)[0]))
        start += int(np.shape(array)[0])
    outputs = [np.empty((start, dim), np.float32)
               for dim in embedding_dims(backbone, levels, embedsum)]
    progress = None
    if verbose:
        import keras

        progress = keras.utils.Progbar(len(arrays), unit_name="sequence")
    for index, (name, array) in enumerate(zip(names, arrays, strict=True)):
        try:
            embeddings = embed_sequence(backbone, array, levels, mode, embedsum, batch_size,
                                        normalise, window_stride)
        except ValueError as error:
            raise ValueError(f"sequence {name!r}: {error}") from None
        begin, end = frame_number_map[name]
        for output, embedding in zip(outputs, embeddings, strict=True):
            output[begin:end] = embedding
        if progress is not None:
            progress.update(index + 1)
    return frame_number_map, outputs


# ---------------------------------------------------------------- PCA
@dataclasses.dataclass(frozen=True)
class PCA:
    """A fitted PCA: `transform(x) = (x − mean) · componentsᵀ`, float32.

    Attributes:
        mean: `[D]` float64, the mean of the fitted rows.
        components: `[k, D]` float64 orthonormal rows, by decreasing variance.
        explained_variance: `[k]` float64, the variance along each component
            (sample variance, N − 1 in the denominator).
        method: "full" (SVD of the centred data) or "incremental" (streamed covariance).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    method: str

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x, batch_size: int = INCREMENTAL_PCA_BATCH) -> np.ndarray:
        """`[N, D]` → float32 `[N, k]`, in batches of rows."""
        x = np.asarray(x)
        result = np.empty((x.shape[0], self.n_components), np.float32)
        for first in range(0, x.shape[0], batch_size):
            chunk = x[first:first + batch_size].astype(np.float64) - self.mean
            result[first:first + batch_size] = chunk @ self.components.T
        return result

    def inverse_transform(self, y) -> np.ndarray:
        """`[N, k]` → float32 `[N, D]`, the reconstruction in the original space."""
        return (np.asarray(y, np.float64) @ self.components + self.mean).astype(np.float32)


def _fix_signs(components: np.ndarray) -> np.ndarray:
    """Flips each row so its largest-magnitude entry is positive (a deterministic sign)."""
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(components.shape[0]), largest])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def fit_pca(
    x,
    n_components: int,
    method: str = "auto",
    batch_size: int = INCREMENTAL_PCA_BATCH,
) -> PCA:
    """Fits PCA on the rows of `x` `[N, D]` (SPEC §10).

    Args:
        x: the embeddings, `[N, D]`.
        n_components: k ≤ D components to keep.
        method: "auto" (full SVD if D < 100, else incremental), "full" or
            "incremental" (see the module docstring).
        batch_size: rows per batch of the incremental path (published 320,000).

    Example:
        >>> rows = np.random.default_rng(0).standard_normal((50, 5)) * [5, 4, 3, 2, 1]
        >>> pca = fit_pca(rows, 2)
        >>> pca.method, pca.transform(rows).shape, pca.transform(rows).dtype
        ('full', (50, 2), dtype('float32'))
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"PCA: expected embeddings [N, D] with N ≥ 1, got shape {x.shape}")
    rows, dim = x.shape
    if int(n_components) != n_components or not 1 <= n_components <= dim:
        raise ValueError(f"PCA: n_components must be in 1 … {dim}, got {n_components!r}")
    if method == "auto":
        method = "full" if dim < FULL_SVD_MAX_DIM else "incremental"
    if method not in ("full", "incremental"):
        raise ValueError(f"PCA: method must be 'auto', 'full' or 'incremental', got {method!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"PCA: batch_size must be a positive integer, got {batch_size!r}")
    denominator = max(rows - 1, 1)
    if method == "full":
        mean = x.mean(axis=0, dtype=np.float64)
        centred = x.astype(np.float64) - mean
        _, singular, vt = np.linalg.svd(centred, full_matrices=rows < dim)
        variance = np.zeros(dim)
        variance[:singular.shape[0]] = singular**2 / denominator
        components, variance = vt[:n_components], variance[:n_components]
    else:
        shift = x[:batch_size].mean(axis=0, dtype=np.float64)
        total = np.zeros(dim)
        products = np.zeros((dim, dim))
        for first in range(0, rows, int(batch_size)):
            chunk = x[first:first + batch_size].astype(np.float64) - shift
            total += chunk.sum(axis=0)
            products += chunk.T @ chunk
        centre = total / rows
        covariance = (products - rows * np.outer(centre, centre)) / denominator
        covariance = (covariance + covariance.T) / 2
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
        order = np.argsort(eigenvalues)[::-1][:n_components]
        components = eigenvectors[:, order].T
        variance = np.maximum(eigenvalues[order], 0.0)
        mean = shift + centre
    return PCA(mean=mean, components=_fix_signs(components),
               explained_variance=np.asarray(variance, np.float64), method=method)


def apply_pca_limit(
    embeddings: np.ndarray | Sequence[np.ndarray],
    limit: int,
    method: str = "auto",
    batch_size: int = INCREMENTAL_PCA_BATCH,
):
    """Reduces each level with D > `limit` to `limit` dims by PCA fitted on it; float32 out.

    Levels with D ≤ `limit` are returned unchanged (as float32).

    Args:
        embeddings: one `[N, D]` array, or a list of them (one per level).
        limit: the published limit (`PCA_LIMITS`: 64 Shot7M2 and hBABEL, 128 MABe22).
        method, batch_size: as in `fit_pca`.

    Returns:
        The same structure as `embeddings`, float32.
    """
    if int(limit) != limit or limit < 1:
        raise ValueError(f"PCA limit must be a positive integer, got {limit!r}")

    def reduce(level: np.ndarray) -> np.ndarray:
        level = np.asarray(level)
        if level.shape[1] <= limit:
            return level.astype(np.float32, copy=False)
        return fit_pca(level, int(limit), method, batch_size).transform(level, batch_size)

    if isinstance(embeddings, np.ndarray):
        return reduce(embeddings)
    return [reduce(level) for level in embeddings]


# ---------------------------------------------------------------- submission files
def _checked_map(frame_number_map: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    checked, expected_start = {}, 0
    for name, (start, end) in frame_number_map.items():
        start, end = int(start), int(end)
        if start != expected_start or end < start:
            raise ValueError(
                f"frame_number_map: {name!r} → ({start}, {end}) does not continue the previous "
                f"range ending at {expected_start}; ranges must be half-open and cumulative")
        checked[str(name)] = (start, end)
        expected_start = end
    return checked


def write_submission(
    directory,
    frame_number_map: Mapping[str, Sequence[int]],
    embeddings_per_level: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    combined: bool | np.ndarray | None = None,
) -> dict[str, pathlib.Path]:
    """Writes the submission files of SPEC §10, each atomically (temporary file + rename).

    Args:
        directory: output folder (created if needed).
        frame_number_map: name → (start, end), half-open and cumulative in source order.
        embeddings_per_level: one `[N, D_k]` array per level, as a list (levels 0, 1,
            …) or a dict level index → array (e.g. only the extracted levels).
        combined: None/False for no combined file; True to concatenate the given
            levels along the feature axis; or a `[N, D]` array (e.g. fused embeddings).

    Returns:
        The written paths by key: `"submission_{k}"`, `"level_{k}"` (and
        `"submission_combined"`, `"level_combined"`), `"frame_number_map"`.

    Raises:
        ValueError: if the map is not cumulative, an array is not 2-D with one row per
            frame, or an embedding is not finite.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frame_map = _checked_map(frame_number_map)
    total = max((end for _, end in frame_map.values()), default=0)
    if isinstance(embeddings_per_level, Mapping):
        items = [(str(int(level)), array) for level, array in embeddings_per_level.items()]
    else:
        items = [(str(level), array) for level, array in enumerate(embeddings_per_level)]
    if combined is True:
        combined = np.concatenate([np.asarray(array, np.float32) for _, array in items], axis=1)
    if combined is not None and combined is not False:
        items.append(("combined", combined))

    checked = []
    for key, array in items:  # check everything before writing anything
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != total:
            raise ValueError(
                f"level {key}: expected embeddings [{total}, D] (one row per frame of the map), "
                f"got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"level {key}: the embeddings hold NaN or inf")
        checked.append((key, array))

    paths = {}
    for key, array in checked:
        content = {"frame_number_map": dict(frame_map), "embeddings": array}
        submission = directory / f"test_submission_{key}.npy"
        write_atomically(submission, lambda temporary, c=content: np.save(
            temporary, c, allow_pickle=True))
        plain = directory / f"level_{key}.npy"
        write_atomically(plain, lambda temporary, a=array: np.save(
            temporary, a, allow_pickle=False))
        paths[f"submission_{key}"], paths[f"level_{key}"] = submission, plain
    map_path = directory / "frame_number_map.json"
    write_text_atomically(
        map_path, json.dumps({n: list(r) for n, r in frame_map.items()}, indent=1) + "\n")
    paths["frame_number_map"] = map_path
    return paths


def pca_limit_for(dataset: str) -> int | None:
    """The published PCA limit of a dataset name (`PCA_LIMITS`; synthetic mirrors MABe22)."""
    if dataset == "synthetic":
        return PCA_LIMITS["mabe_mice"]
    return PCA_LIMITS.get(dataset)

