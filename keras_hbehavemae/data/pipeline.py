"""`tf.data` pipelines that cut keypoint sequences into model windows.

All sequences stay in memory once, unpadded and concatenated into one float32
tensor. The dataset iterates over a small table with one row per window
(sequence offset, sequence length, first frame) and gathers each window inside
`Dataset.map`; edge padding is done by clipping frame indices (see `windows.py`),
so neither padded copies nor all windows are ever materialised.

Per window, in the published order: gather, `augment(window, seed)` in raw
units (pixels for MABe22), `normalise(window)`, cast to float32. Each element
gets its own `[2]` seed, re-drawn every epoch, so augmentation is fresh per item
and per epoch yet the whole pipeline is deterministic for a given `seed`.

An endless training stream (`repeat=True`) is a stateless function of `seed`: the
window order and the seeds of pass p come from the key `(seed, p)`. Every iterator
over it therefore yields the same stream (TensorFlow's distribution strategies
iterate a dataset once before training), and it can start at any window
(`first_window`: a resumed run continues the stream where it stopped). A single
pass (`repeat=False`) reshuffles on every iteration, as `tf.data` does.

The datasets yield only `x`, float32 `[batch, num_frames, H, W]`: the model
computes its reconstruction targets from `x`.

Published settings: Shot7M2 `num_frames=400`, no augmentation or normalisation;
MABe22 `num_frames=900`, `augment=ArenaAugmentation()`,
`normalise=ArenaNormalisation()`; hBABEL `num_frames=450`, `sliding_window=11`,
`padding="end_only"`. All use `sampling_rate=1`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import tensorflow as tf

from keras_hbehavemae.data.sequences import KeypointSequences
from keras_hbehavemae.data.windows import (
    WindowPlan,
    end_padded_windows,
    training_windows,
)

Augmentation = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
Normalisation = Callable[[tf.Tensor], tf.Tensor]


def _as_arrays(sequences: KeypointSequences | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(sequences, KeypointSequences):
        return list(sequences.keypoints)
    arrays = [np.asarray(array, dtype=np.float32) for array in sequences]
    if not arrays:
        raise ValueError("no sequences given")
    for index, array in enumerate(arrays):
        if array.ndim != 3 or array.shape[0] < 1:
            raise ValueError(f"sequence {index}: expected [T, H, W] with T ≥ 1, got {array.shape}")
        if array.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"sequence {index} has per-frame shape {array.shape[1:]}, sequence 0 has "
                f"{arrays[0].shape[1:]}"
            )
    return arrays


def _check_input_size(
    num_frames: int,
    feature_shape: tuple[int, ...],
    expected_input_size: tuple[int, int, int] | None,
) -> None:
    if expected_input_size is None:
        return
    time, height, width = (int(size) for size in expected_input_size)
    if num_frames != time:
        raise ValueError(
            f"num_frames={num_frames} must equal the model's input_size T={time} "
            f"(input_size={tuple(expected_input_size)})"
        )
    if tuple(feature_shape) != (height, width):
        raise ValueError(
            f"the sequences have per-frame shape (H, W) = {tuple(feature_shape)}, but the model's "
            f"input_size is {tuple(expected_input_size)}"
        )


def _plan_for(
    lengths: list[int],
    num_frames: int,
    sliding_window: int,
    sampling_rate: int,
    padding: str,
) -> WindowPlan:
    if padding == "both_ends":
        return training_windows(lengths, num_frames, sliding_window, sampling_rate)
    if padding == "end_only":
        return end_padded_windows(lengths, num_frames, sliding_window, sampling_rate)
    raise ValueError(f"padding must be 'both_ends' or 'end_only', got {padding!r}")


def window_dataset(
    sequences: KeypointSequences | Sequence[np.ndarray],
    plan: WindowPlan,
    batch_size: int,
    augment: Augmentation | None = None,
    normalise: Normalisation | None = None,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    repeat: bool = False,
    shard: tuple[int, int] | None = None,
    first_window: int = 0,
) -> tf.data.Dataset:
    """Batches the windows of `plan`, gathered from `sequences`, as float32 `[B, T, H, W]`.

    The building block of the other constructors; use it for custom window plans.

    Args:
        sequences: the sequences the plan was made for, `[T_i, H, W]` each.
        plan: which windows to take (`windows.py`).
        batch_size: windows per batch.
        augment: optional `augment(window, seed) -> window`, applied first.
        normalise: optional `normalise(window) -> window`, applied after `augment`.
        shuffle: shuffle all windows, differently every epoch, from `seed`.
        seed: the seed of the shuffle and of the per-element augmentation seeds.
        drop_remainder: drop the last incomplete batch (with `repeat`: of every pass).
        repeat: repeat forever (each pass reshuffled), as one stream that every
            iterator yields alike.
        shard: `(count, index)`, for one of `count` processes that train together: of
            every batch of `batch_size` windows keep only the `index`-th of `count` equal
            blocks (`batch_size // count` windows), chosen before any window is gathered,
            so each process gathers only its own windows, with the augmentation seeds the
            whole batch gives them. Needs `drop_remainder=True`.
        first_window: with `repeat`, start the stream at this window (counted over all
            passes, after each pass's remainder is dropped) instead of at 0.

    Returns:
        A `tf.data.Dataset` of float32 `[batch, num_frames, H, W]` (`[batch // count, ...]`
        with `shard`).

    Example:
        >>> from keras_hbehavemae.data.windows import extraction_windows
        >>> plan = extraction_windows([5], num_frames=3)
        >>> dataset = window_dataset([np.zeros((5, 1, 2))], plan, batch_size=4)
        >>> [tuple(batch.shape) for batch in dataset]
        [(4, 3, 1, 2), (3, 3, 1, 2)]
    """
    arrays = _as_arrays(sequences)
    if [array.shape[0] for array in arrays] != plan.sequence_lengths.tolist():
        raise ValueError("the window plan was made for sequences of other lengths")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    height, width = arrays[0].shape[1:]
    num_frames, sampling_rate = plan.num_frames, plan.sampling_rate
    if drop_remainder and len(plan) < batch_size:
        raise ValueError(
            f"only {len(plan)} windows, fewer than batch_size={batch_size}, so drop_remainder=True "
            "would leave no batch"
        )

    if shard is not None:
        count, index = shard
        if not (0 <= index < count and batch_size % count == 0 and drop_remainder):
            raise ValueError(
                f"shard={shard!r} is invalid for batch_size={batch_size}: give (count, index) "
                "with 0 <= index < count, a batch_size divisible by count and "
                "drop_remainder=True")

    offsets = np.concatenate([[0], np.cumsum([array.shape[0] for array in arrays])[:-1]])
    table = np.stack(
        [
            offsets[plan.sequence_ids],
            plan.sequence_lengths[plan.sequence_ids],
            plan.starts - plan.pad_before,
        ],
        axis=1,
    ).astype(np.int64)
    frames = tf.constant(np.concatenate(arrays, axis=0))
    frame_steps = tf.constant(sampling_rate * np.arange(num_frames), tf.int64)

    def make_window(row: tf.Tensor, element_seed: tf.Tensor) -> tf.Tensor:
        offset, length, first_frame = row[0], row[1], row[2]
        indices = tf.clip_by_value(first_frame + frame_steps, 0, length - 1) + offset
        window = tf.gather(frames, indices)
        if augment is not None:
            window = augment(window, element_seed)
        if normalise is not None:
            window = normalise(window)
        return tf.ensure_shape(tf.cast(window, tf.float32), [num_frames, height, width])

    if int(first_window) != first_window or first_window < 0 or (first_window and not repeat):
        raise ValueError(f"first_window must be an integer >= 0 (and 0 without repeat), got "
                         f"{first_window!r}")
    if repeat:
        dataset = _endless_stream(table, shuffle, seed, batch_size if drop_remainder else 1,
                                  int(first_window))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(table)
        if shuffle:
            dataset = dataset.shuffle(len(table), seed=seed, reshuffle_each_iteration=True)
        element_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip((dataset, element_seeds.batch(2)))
    if shard is not None:
        block = batch_size // count
        first, last = index * block, (index + 1) * block
        dataset = dataset.batch(int(batch_size), drop_remainder=True).map(
            lambda rows, seeds: (rows[first:last], seeds[first:last])).unbatch()
        batch_size = block
    dataset = dataset.map(make_window, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _endless_stream(table: np.ndarray, shuffle: bool, seed: int, multiple: int,
                    first_window: int) -> tf.data.Dataset:
    """`(row, element seed)` pairs of pass after pass over `table`, from `first_window` on.

    Pass p takes its order and seeds from the key `(seed, p)` (stateless random ops) and
    keeps its first `multiple`·⌊N / multiple⌋ windows (whole batches only).
    """
    num_windows = len(table) // multiple * multiple
    rows_of_table = tf.constant(table)

    def one_pass(index: tf.Tensor) -> tf.data.Dataset:
        key = tf.stack([tf.constant(seed, tf.int64), index])  # the pass's own random key
        order = tf.range(len(table))
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=key)
        rows = tf.gather(rows_of_table, order[:num_windows])  # [N', 3]
        element_seeds = tf.random.stateless_uniform(  # [N', 2], any int64
            [num_windows, 2], tf.random.experimental.stateless_fold_in(key, 1),
            minval=None, maxval=None, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((rows, element_seeds))

    first_pass, skipped = divmod(first_window, num_windows)
    passes = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max)
    return passes.flat_map(one_pass).skip(skipped)


def make_pretraining_dataset(
    sequences: KeypointSequences | Sequence[np.ndarray],
    num_frames: int,
    batch_size: int,
    sliding_window: int = 17,
    sampling_rate: int = 1,
    augment: Augmentation | None = None,
    normalise: Normalisation | None = None,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = True,
    repeat: bool = False,
    expected_input_size: tuple[int, int, int] | None = None,
    padding: Literal["both_ends", "end_only"] = "both_ends",
    shard: tuple[int, int] | None = None,
    first_window: int = 0,
) -> tf.data.Dataset:
    """The pre-training dataset: shuffled, augmented, normalised windows.

    Args:
        sequences: `KeypointSequences` or arrays `[T_i, H, W]` (pixels for MABe22).
        num_frames: frames per window; must equal the model's T.
        batch_size: windows per batch (per replica).
        sliding_window: stride between window starts (published 17; hBABEL 11).
        sampling_rate: stride between frames inside a window (published 1).
        augment: optional `augment(window, seed)`, e.g. `ArenaAugmentation()`.
        normalise: optional `normalise(window)`, e.g. `ArenaNormalisation()`,
            applied after `augment`.
        shuffle: reshuffle all windows every epoch.
        seed: makes the shuffle and the augmentation reproducible.
        drop_remainder: drop the last incomplete batch (published: True).
        repeat: repeat forever.
        expected_input_size: the model's `(T, H, W)`; checked against `num_frames`
            and the sequences' `(H, W)`.
        padding: "both_ends" (60 before, 59 after for long windows) or
            "end_only" (hBABEL).
        shard: `(count, index)`: this process's block of every batch (see `window_dataset`).
        first_window: where the stream of windows starts (see `window_dataset`).

    Returns:
        A `tf.data.Dataset` yielding `x` only, float32 `[batch_size, num_frames, H, W]`.

    Raises:
        ValueError: if `num_frames` or `(H, W)` disagree with `expected_input_size`,
            or no full batch can be formed.

    Example:
        >>> data = [np.zeros((60, 1, 4)), np.ones((45, 1, 4))]
        >>> dataset = make_pretraining_dataset(data, num_frames=20, batch_size=4,
        ...                                    sliding_window=5, expected_input_size=(20, 1, 4))
        >>> next(iter(dataset)).shape
        TensorShape([4, 20, 1, 4])
    """
    arrays = _as_arrays(sequences)
    _check_input_size(num_frames, arrays[0].shape[1:], expected_input_size)
    plan = _plan_for(
        [array.shape[0] for array in arrays], num_frames, sliding_window, sampling_rate, padding
    )
    return window_dataset(
        arrays, plan, batch_size, augment, normalise, shuffle, seed, drop_remainder, repeat,
        shard, first_window
    )


def make_evaluation_dataset(
    sequences: KeypointSequences | Sequence[np.ndarray],
    num_frames: int,
    batch_size: int,
    sliding_window: int = 17,
    sampling_rate: int = 1,
    normalise: Normalisation | None = None,
    expected_input_size: tuple[int, int, int] | None = None,
    padding: Literal["both_ends", "end_only"] = "both_ends",
    drop_remainder: bool = False,
    shard: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """The held-out dataset: the training windows in order, unaugmented, last batch kept
    (unless `drop_remainder`).

    Arguments as in `make_pretraining_dataset`. Used for the held-out loss.

    Example:
        >>> dataset = make_evaluation_dataset([np.zeros((50, 1, 4))], num_frames=20,
        ...                                   batch_size=4, sliding_window=5)
        >>> [batch.shape[0] for batch in dataset]
        [4, 4, 2]
    """
    arrays = _as_arrays(sequences)
    _check_input_size(num_frames, arrays[0].shape[1:], expected_input_size)
    plan = _plan_for(
        [array.shape[0] for array in arrays], num_frames, sliding_window, sampling_rate, padding
    )
    return window_dataset(arrays, plan, batch_size, normalise=normalise,
                          drop_remainder=drop_remainder, shard=shard)
