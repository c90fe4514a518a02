"""Keypoint inputs of the models: the one check per public entry point, and the package's
policy on non-finite keypoints.

Non-finite keypoints are rejected
---------------------------------
The package has one policy for NaN, infinite and huge keypoints: they are rejected, in the
Python API and in the commands. They are never masked, filled or passed on silently. (A
SavedModel serves a compiled graph, which cannot raise on values; `serving.export` says how
it reports them.)

- `HBehaveMAEBackbone` and `HBehaveMAE` check keypoints whose values are known (NumPy arrays
  and eager tensors). This covers `__call__`, `predict`, `predict_on_batch` and `encode`,
  `compute_targets` and `compute_pretraining_loss`, and the arrays given to
  `HBehaveMAE.fit` and `evaluate`. A value that is NaN, ±inf or larger in magnitude than
  `MAX_ABS_KEYPOINT` raises a ValueError. The error names the sample, its first bad frame
  and how many frames are bad.
- `embeddings.embed_sequence(s)` and `embeddings.reconstruction.reconstruct` reject such
  values in the same way. `embeddings.imputation.impute` accepts any value in the frames
  it is told are bad, because those frames are hidden from the model and replaced. It
  rejects them elsewhere.
- Inside a compiled training step the values are not known. There the pretrainer's
  `train_step` skips an update whose loss or gradient norm is not finite. The loss
  (`HBehaveMAE.pretraining_loss`) is NaN whenever a keypoint of the batch is NaN or inf,
  tested on the keypoints themselves: the masked pass embeds only the kept units, so a
  NaN in a discarded, untargeted frame would otherwise reach neither the loss nor the
  gradients. The weights and the optimizer state stay as they were, and the
  `skipped_steps` metric counts the step. So a plain `model.fit` on data with a NaN frame
  never makes a weight non-finite and never trains on that batch. The pretraining command
  stops at the first skipped step (`training.callbacks.NonFiniteLossGuard`) and keeps
  every checkpoint.
- `convert.checkpoint` refuses a checkpoint with non-finite weights unless the caller
  allows them explicitly.

`MAX_ABS_KEYPOINT` is 1e6. Keypoints are coordinates in normalised units, metres or pixels.
Raw pixel coordinates of even the largest videos stay below 1e4. A magnitude beyond 1e6 is
a corrupt value, or a sentinel such as -1e9 for "not tracked". From about 1e19 on, the
squares inside the layer norms and the loss overflow float32, and whole samples turn into
NaN.

Validated once
--------------
Each public entry point checks its keypoints exactly once, with `standardize_keypoints`
(through `HBehaveMAEBackbone.standardize_keypoints`). The internal calls it makes skip the
check: `validated_inputs(model)` marks the model's inputs as checked while Keras's own
machinery (`predict`, `fit`) calls the model back.

Example:

>>> import numpy as np
>>> x = np.zeros((2, 8, 1, 3), "float32")
>>> x[1, 5, 0, 2] = np.nan
>>> check_keypoint_values(x)
Traceback (most recent call last):
...
ValueError: keypoints: sample 1 has 1 bad frame, the first is frame 5 (NaN). ...
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import ops

#: The largest keypoint magnitude the models accept (see the module docstring).
MAX_ABS_KEYPOINT = 1e6
_BOUND = format(MAX_ABS_KEYPOINT, ".0e").replace("e+0", "e")  # "1e6"


# ---------------------------------------------------------------------- values

def has_concrete_values(tensor) -> bool:
    """True when `tensor`'s values are known now: not symbolic and not being traced."""
    if isinstance(tensor, np.ndarray):
        return True
    if isinstance(tensor, keras.KerasTensor):
        return False
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and not tf.is_symbolic_tensor(tensor)
    if backend == "jax":
        import jax

        return not isinstance(tensor, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return False


def _all_within_bound(tensor) -> bool:
    """True when every value is finite with magnitude at most `MAX_ABS_KEYPOINT`.

    One comparison covers NaN (which compares False), ±inf and huge values. A JAX array is
    compared in NumPy: inside a `jax.jit` trace even a concrete array's operations are traced.
    """
    if isinstance(tensor, np.ndarray) or keras.config.backend() == "jax":
        return bool((np.abs(np.asarray(tensor)) <= MAX_ABS_KEYPOINT).all())
    within = ops.all(ops.less_equal(ops.abs(tensor), MAX_ABS_KEYPOINT))
    return bool(ops.convert_to_numpy(within))


def _describe(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}, beyond ±{_BOUND}"


def bad_frames(array: np.ndarray) -> np.ndarray:
    """`[B, T]` True for every frame of `array [B, T, ...]` holding a value the models reject."""
    array = np.asarray(array)
    within = np.abs(array) <= MAX_ABS_KEYPOINT
    return ~within.reshape(array.shape[0], array.shape[1], -1).all(axis=2)


def bad_values_error(array: np.ndarray, where: str = "keypoints",
                     names: list[str] | None = None) -> ValueError | None:
    """The ValueError for the rejected values of `array [B, T, ...]`, or None if none.

    `names` label the samples in the message (default "sample i").
    """
    array = np.asarray(array)
    frames = bad_frames(array)
    if not frames.any():
        return None
    sample = int(np.argmax(frames.any(axis=1)))
    frame = int(np.argmax(frames[sample]))
    values = array[sample, frame].reshape(-1)
    first = values[~(np.abs(values) <= MAX_ABS_KEYPOINT)][0]
    label = names[sample] if names is not None else f"sample {sample}"
    count = int(frames[sample].sum())
    total, samples = int(frames.sum()), int(frames.any(axis=1).sum())
    summary = "" if samples == 1 else (
        f"; {total} frames of {samples} samples hold such values in all")
    return ValueError(
        f"{where}: {label} has {count} bad frame{'s' if count > 1 else ''}, the first is "
        f"frame {frame} ({_describe(float(first))}){summary}. The models reject NaN, inf and "
        f"values beyond ±{_BOUND} (see keras_hbehavemae.models.inputs): fill or "
        "drop untracked frames first, e.g. read_keypoint_arrays(..., fill='interpolate')")


def check_keypoint_values(keypoints, where: str = "keypoints",
                          names: list[str] | None = None) -> None:
    """Raises `bad_values_error` for keypoints `[B, T, ...]` whose values are known.

    Symbolic and traced tensors pass unchecked: their values do not exist yet (the training
    step skips non-finite updates instead; see the module docstring).
    """
    if not has_concrete_values(keypoints) or _all_within_bound(keypoints):
        return
    array = keypoints if isinstance(keypoints, np.ndarray) else ops.convert_to_numpy(keypoints)
    error = bad_values_error(np.asarray(array), where, names)
    if error is not None:
        raise error


# ---------------------------------------------------------------------- structure

def standardize_keypoints(keypoints, input_size, check_values: bool = True):
    """The check of keypoints at a public entry point; returns them as `[B, T, H, W]`.

    Checks the dtype (floating point) and the shape (`[B, T, H, W]`, or `[B, T, H·W]`,
    which is reshaped), and with `check_values` the values, when they are known (see
    `check_keypoint_values`).

    Raises:
        ValueError: naming the keypoints and what they should be.
    """
    frames, rows, features = input_size
    dtype = getattr(keypoints, "dtype", None)
    if dtype is None:
        keypoints = np.asarray(keypoints)
        dtype = keypoints.dtype
    try:
        dtype_name = keras.backend.standardize_dtype(dtype)
    except ValueError:  # numpy strings and objects have no Keras dtype name
        dtype_name = str(dtype)
    if "float" not in dtype_name:
        raise ValueError(
            f"keypoints: dtype {dtype_name} is not supported; the model takes floating-point "
            "keypoints (convert with x.astype('float32'))")
    shape = tuple(keypoints.shape)
    if len(shape) == 3 and tuple(shape[1:]) == (frames, rows * features):
        reshape = np.reshape if isinstance(keypoints, np.ndarray) else ops.reshape
        keypoints = reshape(keypoints, (-1, frames, rows, features))  # [B, T, H, W]
    elif len(shape) != 4 or tuple(shape[1:]) != (frames, rows, features):
        raise ValueError(
            f"keypoints: shape {shape} does not fit this model; expected [batch, "
            f"{frames}, {rows}, {features}] (or [batch, {frames}, {rows * features}]) "
            f"for input_size {tuple(input_size)}; window your sequences to {frames} frames")
    if shape[0] == 0:
        raise ValueError("keypoints: the batch is empty (batch size 0)")
    if check_values:
        check_keypoint_values(keypoints)
    return keypoints


def is_array_input(inputs) -> bool:
    """True for inputs whose values can be checked now: arrays, eager tensors, or a dict of
    them (not a `tf.data.Dataset`, generator or `keras.utils.PyDataset`)."""
    if isinstance(inputs, dict):
        return all(value is None or is_array_input(value) for value in inputs.values())
    if isinstance(inputs, np.ndarray | list | tuple):
        return True
    return keras.ops.is_tensor(inputs) and has_concrete_values(inputs)


@contextlib.contextmanager
def validated_inputs(model, checked: bool = True):
    """Marks `model`'s inputs as checked (or, with `checked=False`, as not checked) while an
    entry point runs Keras's machinery.

    Inside, the model's own `__call__` and its training and test steps skip the check the
    entry point made already. A `tf.data.Dataset` given to `fit`, `evaluate` or `predict` runs
    with `checked=False`, so its batches are checked in the traced step even when that entry
    point is called from inside another one (the held-out `evaluate` inside `fit`).
    """
    previous = getattr(model, "_inputs_validated", False)
    model._inputs_validated = checked
    try:
        yield
    finally:
        model._inputs_validated = previous


def inputs_validated(model) -> bool:
    """True while an entry point of `model` has checked its inputs (`validated_inputs`)."""
    return bool(getattr(model, "_inputs_validated", False))
