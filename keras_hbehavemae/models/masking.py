"""Mask-unit masking: True = keep, K units per row, kept units ascending.

Example:

>>> import keras
>>> mask = random_unit_mask(2, num_units=16, num_kept=4, seed=keras.random.SeedGenerator(0))
>>> keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.cast(mask, "int32"), axis=1)).tolist()
[4, 4]
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _tensorflow_replica_context():
    """The replica context of a TensorFlow strategy with several replicas, else None."""
    if keras.config.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def unit_noise(shape, seed):
    """U[0, 1) noise of `shape` `[rows, units]` from `seed` (a `keras.random.SeedGenerator`
    or an int).

    Under a TensorFlow strategy with several replicas (`MirroredStrategy`, or
    `MultiWorkerMirroredStrategy` over several processes), every replica holds a copy of the
    same seed-generator state. Each replica draws the noise of the whole global batch
    (`rows` × replicas rows, as one device would for that batch) and keeps its own block
    of rows: replica r holds rows [r·rows, (r+1)·rows) of the global batch, the order in
    which the strategies split a batch. The replicas therefore mask their samples
    differently, and exactly as one device masks the same global batch. Everywhere else
    (one device; JAX `DataParallel`, which draws the global batch's noise in one sharded
    computation) the draw is the plain `keras.random.uniform`.
    """
    context = _tensorflow_replica_context()
    if context is None:
        return keras.random.uniform(shape, seed=seed)
    import tensorflow as tf

    rows, units = shape
    replicas = context.num_replicas_in_sync
    noise = keras.random.uniform((rows * replicas, units), seed=seed)  # [R·rows, U]
    first = context.replica_id_in_sync_group * rows
    return tf.slice(noise, tf.stack([first, 0]), tf.stack([rows, units]))  # [rows, U]


def random_unit_mask(batch_size, num_units: int, num_kept: int, seed):
    """`[B, U]` bool keeping the `num_kept` units with the smallest uniform noise.

    `seed` is a `keras.random.SeedGenerator` or an int; see `unit_noise` for how the
    replicas of a TensorFlow strategy draw the masks one device would draw.
    """
    noise = unit_noise((batch_size, num_units), seed)
    kept_ids = ops.argsort(noise, axis=1)[:, :num_kept]  # [B, K]
    return ops.any(ops.one_hot(kept_ids, num_units, dtype="int32") > 0, axis=1)  # [B, U]


def kept_unit_ids(mask, num_kept: int):
    """The kept units of `mask [B, U]` in ascending order, `[B, K]` int32 (static form)."""
    num_units = mask.shape[-1]
    positions = ops.arange(num_units, dtype="int32")
    sort_key = ops.where(mask, positions, positions + num_units)  # kept first, each ascending
    return ops.cast(ops.argsort(sort_key, axis=1)[:, :num_kept], "int32")


def concrete_value(tensor):
    """A numpy copy of `tensor` when it holds concrete values, else None (while tracing)."""
    if isinstance(tensor, np.ndarray | list | tuple):
        return np.asarray(tensor)
    if isinstance(tensor, keras.KerasTensor):
        return None
    try:
        return np.asarray(ops.convert_to_numpy(tensor))
    except Exception:  # a symbolic tensor or JAX tracer has no value yet
        return None


def check_unit_mask(mask, num_units: int, num_kept: int, batch_size: int | None = None):
    """Validates a user mask `[B, U]` (True = keep, exactly K per row); returns it as bool.

    `batch_size` is the keypoints' batch size where it is known (checked when both it and
    the mask's first dimension are static).

    Raises:
        ValueError: wrong rank, unit count or batch size, or (when the values are known) a
            row keeping other than `num_kept` units.
    """
    shape = tuple(mask.shape)
    if len(shape) != 2 or shape[1] != num_units:
        raise ValueError(
            f"mask: shape {shape} is invalid; expected [batch, {num_units}] (one bool per "
            "mask unit, True = keep)")
    if isinstance(batch_size, int) and isinstance(shape[0], int) and shape[0] != batch_size:
        raise ValueError(
            f"mask: batch size {shape[0]} does not match the keypoints' batch size "
            f"{batch_size}; give one mask row per window")
    values = concrete_value(mask)
    if values is not None:
        if values.dtype.kind not in "biuf":
            raise ValueError(f"mask: dtype {values.dtype} is invalid; expected bool")
        if values.dtype.kind != "b" and not np.isin(values, (0, 1)).all():
            raise ValueError("mask: values must be True/False (or 1/0)")
        kept = values.astype(bool).sum(axis=1)
        bad_rows = np.flatnonzero(kept != num_kept)
        if bad_rows.size:
            raise ValueError(
                f"mask: every row must keep exactly K = {num_kept} of {num_units} mask units "
                f"(mask_ratio decides K); rows {bad_rows[:8].tolist()} keep "
                f"{kept[bad_rows[:8]].tolist()}")
    return ops.cast(mask, "bool")
