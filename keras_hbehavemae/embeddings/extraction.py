"""Per-frame embeddings from a trained encoder: `embed_sequence` and `embed_sequences`.

Extraction runs the encoder only, unmasked. The level-k embedding of a window
is the level map L_k `[T_k, H_k, W_k, out_k]` (rerolled, projected, not
normalised); `encoder_norm` and the fusion heads are not used. Every derived
number (T_k, τ_k = `frames_per_token`, the level grids) comes from
`backbone.geometry`; the extraction windows come from `data.windows`.

The modes (`exact`, `fast`, `strided`) are described in `modes`, the per-frame
accumulation in `accumulation`; PCA in `pca`; the published submission files in
`submission`.

**Batching.** The windows of all sequences stream through the backbone in batches of
`batch_size` that run across sequence boundaries, so a short sequence (or the end of one)
shares its batch with the next one. Only the job's last batch can be short. Under
TensorFlow and JAX, where every new batch shape is traced and XLA-compiled again, it is
padded to the full batch (the padding rows are dropped); under torch it runs as it is.
A sequence's running sums exist only while its windows are in flight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from keras_hbehavemae.data.sequences import KeypointSequences
from keras_hbehavemae.embeddings.accumulation import FrameAccumulator
from keras_hbehavemae.embeddings.modes import check_mode, window_plan
from keras_hbehavemae.errors import invalid
from keras_hbehavemae.models.inputs import bad_frames, bad_values_error, validated_inputs

#: Default windows per backbone call.
DEFAULT_BATCH_SIZE = 64

Normalisation = Callable[[np.ndarray], np.ndarray]


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


def _predict(backbone, windows: np.ndarray, levels, checked: bool = False) -> list[np.ndarray]:
    """The selected level maps of `windows` through the compiled predict path, float32.

    `checked`: the windows are slices of a sequence checked already (`_as_sequence`), so the
    backbone does not check them again.
    """
    with validated_inputs(backbone) if checked else contextlib.nullcontext():
        outputs = backbone.predict_on_batch(windows)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(outputs[level], dtype=np.float32)
            for level in _resolve_levels(backbone, levels)]


# ---------------------------------------------------------------- one sequence
def _as_sequence(backbone, sequence, check_values: bool = True) -> np.ndarray:
    """`[L, H, W]` float32 of one sequence; NaN, inf or huge values are rejected, naming the
    first bad frame (the models' policy: `keras_hbehavemae.models.inputs`)."""
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
    error = bad_values_error(sequence[None], "sequence", ["the sequence"]) if check_values \
        else None
    if error is not None:
        raise error
    return sequence


def _check_sequences(names: list[str], arrays: list) -> None:
    """Every sequence's values, before any is embedded: the first bad sequence is named with
    its index, first bad frame and count, and how many sequences are bad in all."""
    first, bad = None, 0
    for index, (name, array) in enumerate(zip(names, arrays, strict=True)):
        if np.ndim(array) == 0 or not bad_frames(np.asarray(array)[None]).any():
            continue
        bad += 1
        if first is None:
            first = bad_values_error(np.asarray(array, np.float32)[None], "sequences",
                                     [f"sequence {name!r} (index {index})"])
    if first is not None:
        raise ValueError(f"{first} ({bad} of {len(arrays)} sequences hold such values)")


def _padded_size(count: int) -> int:
    """Rows to run for `count` windows in `encode_levels`: the next power of two up to 1024,
    else the next multiple of 1024, so arbitrary batch sizes compile only a few shapes."""
    if count <= 1024:
        return 1 << max(count - 1, 0).bit_length()
    return -(-count // 1024) * 1024


def _pads_last_batch() -> bool:
    """Whether a short last batch is padded to the full batch: under TensorFlow and JAX,
    where every new input shape is traced (and XLA-compiled) again; torch runs it as is."""
    import keras

    return keras.config.backend() != "torch"


def _stream(backbone, sequences, plans, new_accumulator, levels, batch_size, normalise,
            on_done, on_batch=None):
    """Runs every window of every sequence through the backbone in batches of
    `batch_size` that run across sequence boundaries.

    Each sequence's piece of a batch goes to its accumulator (`new_accumulator(index)`,
    made when its first window is run and dropped when it is complete, so only the
    sequences in flight hold running sums), and `on_done(index, rows)` receives its
    per-frame rows. Only the job's last batch can be short; it is padded (repeating its
    last window, the padding rows dropped) to keep one compiled shape where shapes are
    compiled. `on_batch(windows_done, windows_total)`, if given, follows every batch.
    """
    offsets = np.arange(backbone.geometry.config.input_size[0])
    active, pieces, filled = {}, [], 0  # pieces: (sequence index, first window, windows)
    total_windows, done_windows = sum(len(plan) for plan in plans), [0]

    def run_batch():
        gathered = []
        for index, first, count in pieces:
            plan = plans[index]
            starts = plan.starts[first:first + count] - plan.pad_before
            frames = np.clip(starts[:, None] + plan.sampling_rate * offsets[None, :], 0,
                             int(plan.sequence_lengths[0]) - 1)
            gathered.append(sequences[index][frames])  # [count, T, H, W], edge padding
        windows = np.concatenate(gathered) if len(gathered) > 1 else gathered[0]
        if filled < batch_size and _pads_last_batch():
            windows = np.concatenate(
                [windows, np.repeat(windows[-1:], batch_size - filled, axis=0)])
        if normalise is not None:
            windows = np.asarray(normalise(windows), dtype=np.float32)
        maps = _predict(backbone, windows, levels, checked=normalise is None)
        row = 0
        for index, first, count in pieces:
            if index not in active:
                active[index] = new_accumulator(index)
            active[index].add(first, [level_map[row:row + count] for level_map in maps])
            row += count
            if active[index].done:
                on_done(index, active.pop(index).result())
        done_windows[0] += filled
        if on_batch is not None:
            on_batch(done_windows[0], total_windows)

    for index, plan in enumerate(plans):
        first, total = 0, len(plan)
        while first < total:
            count = min(batch_size - filled, total - first)
            pieces.append((index, first, count))
            filled, first = filled + count, first + count
            if filled == batch_size:
                run_batch()
                pieces, filled = [], 0
    if pieces:
        run_batch()


def _run(backbone, arrays, levels, mode, embedsum, batch_size, normalise, window_stride,
         on_done, on_batch=None) -> None:
    """Embeds the checked `arrays` in `mode`; `on_done(index, rows)` per sequence."""
    geometry = backbone.geometry
    taus = [geometry.levels[level].frames_per_token for level in levels]
    dims = embedding_dims(backbone, levels, embedsum)
    plans = [window_plan(array.shape[0], _num_frames(backbone), mode, window_stride)
             for array in arrays]
    _stream(backbone, arrays, plans,
            lambda index: FrameAccumulator(plans[index], mode, taus, dims, embedsum),
            levels, batch_size, normalise, on_done, on_batch)


def _check_options(mode, window_stride, batch_size) -> int:
    check_mode(mode)
    if window_stride is not None and mode != "strided":
        raise ValueError(f"window_stride applies to mode='strided' only, not {mode!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise invalid("batch_size", batch_size, "must be a positive integer")
    return int(batch_size)


def embed_sequence(
    backbone,
    sequence,
    levels: int | Sequence[int] | None = None,
    mode: str = "exact",
    embedsum: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    normalise: Normalisation | None = None,
    window_stride: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """Per-frame embeddings of one sequence (details in the module docstring).

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
            floating-point rounding inside the backbone). See "Batching" in the module
            docstring for the last batch.
        normalise: optional `normalise(windows) -> windows`, applied to every batch
            of windows `[B, T, H, W]` before the backbone (e.g. `ArenaNormalisation()`
            for MABe22, as in training without augmentation).
        window_stride: k of strided mode (default ⌊T/4⌋); only with mode="strided".
        on_batch: optional `on_batch(windows_done, windows_total)`, called after every
            batch (a progress bar).

    Returns:
        One float32 array `[L, D_k]` per requested level, D_k = H_k·W_k·out_k
        (flatten) or out_k (embedsum).
    """
    batch_size = _check_options(mode, window_stride, batch_size)
    sequence = _as_sequence(backbone, sequence)
    levels = _resolve_levels(backbone, levels)
    results = []
    _run(backbone, [sequence], levels, mode, embedsum, batch_size, normalise, window_stride,
         on_done=lambda index, rows: results.append(rows), on_batch=on_batch)
    return results[0]


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
    batch_size = _check_options(mode, window_stride, batch_size)
    _check_sequences(names, arrays)
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
    checked = []
    for name, array in zip(names, arrays, strict=True):
        try:
            checked.append(_as_sequence(backbone, array, check_values=False))
        except ValueError as error:
            raise ValueError(f"sequence {name!r}: {error}") from None

    def write(index, embeddings):
        begin, end = frame_number_map[names[index]]
        for output, embedding in zip(outputs, embeddings, strict=True):
            output[begin:end] = embedding
        if progress is not None:
            progress.update(index + 1)

    _run(backbone, checked, levels, mode, embedsum, batch_size, normalise, window_stride,
         on_done=write)
    return frame_number_map, outputs
