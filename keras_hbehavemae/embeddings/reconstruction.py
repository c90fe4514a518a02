"""Reconstructions and imputation of keypoints with a pretrained `HBehaveMAE`.

The pretrainer predicts, for every mask unit u, the *time-strided* keypoints of that unit:
`pred [B, U, P]` is laid out exactly like `losses.time_strided_targets`, i.e. the first
frame of every temporal patch (frames 0, pt, 2·pt, …), cut into the final grid G with the
label patch (a, b, c) = (M_t, ph·M_h, pw·M_w), each token row-major over (t, h, w).
`unpatchify` inverts that layout, `reconstruct` runs the model and fills the pt − 1 frames
between strided frames (and `imputation.impute` re-predicts badly tracked frames).

Example:

>>> import numpy as np
>>> from keras_hbehavemae import HBehaveMAEConfig, compute_geometry
>>> from keras_hbehavemae.models.losses import time_strided_targets
>>> geometry = compute_geometry(HBehaveMAEConfig(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16))
>>> x = np.random.default_rng(0).standard_normal((2, 32, 4, 12)).astype("float32")
>>> targets = to_numpy(time_strided_targets(x, geometry))  # [B, U, P] = [2, 16, 48]
>>> bool((unpatchify(targets, geometry) == x[:, ::2]).all())
True
>>> hidden = hidden_element_mask(np.eye(16, dtype=bool)[[0, 5]], geometry)  # 1 unit kept
>>> hidden.shape, int(hidden[0].sum()), 15 * 32 * 4 * 12 // 16
((2, 32, 4, 12), 1440, 1440)

With a pretrainer `model` (see `HBehaveMAE`): `reconstruct(model, x, mask)` returns the
reconstruction `[B, T, H, W]` and the masks; `imputation.impute(model, x, bad_frames)`
replaces badly tracked frames. Both also take a preset (name or folder) or a `.keras` file
instead of a model, loaded through `loading.load_model`; a preset without trained or
converted weights is refused unless `allow_random_weights=True`.
"""

from __future__ import annotations

import os

import numpy as np
from keras import ops

from keras_hbehavemae.errors import invalid
from keras_hbehavemae.loading import load_model
from keras_hbehavemae.models.geometry import Geometry
from keras_hbehavemae.models.inputs import check_keypoint_values, validated_inputs
from keras_hbehavemae.models.losses import NORM_LOSS_EPSILON, time_strided_targets, unpatchify
from keras_hbehavemae.models.masking import check_unit_mask, random_unit_mask

FILL_MODES = ("hold", "linear")


def to_numpy(value) -> np.ndarray:
    """A numpy array of a backend tensor or an array-like."""
    if isinstance(value, np.ndarray | list | tuple | bool | int | float):
        return np.asarray(value)
    return np.asarray(ops.convert_to_numpy(value))


# ---------------------------------------------------------------------- layout


def unit_extent(geometry: Geometry) -> tuple[int, int, int]:
    """(frames, rows, features) of the input covered by one mask unit."""
    patch_a, patch_b, patch_c = geometry.label_patch
    return patch_a * geometry.config.patch_kernel[0], patch_b, patch_c


def hidden_element_mask(mask, geometry: Geometry) -> np.ndarray:
    """Per-element mask `[B, T, H, W]`, True where the element lies in a *hidden* unit.

    `mask` is the unit mask `[B, U]` (True = kept/visible). A mask unit spans
    `unit_extent(geometry)` = (M_t·pt frames, ph·M_h rows, pw·M_w features), so a frame
    can be partly hidden when the mask grid has more than one cell along H or W.
    """
    hidden = ~np.asarray(mask, dtype=bool).reshape(-1, *geometry.mask_grid)
    for axis, extent in enumerate(unit_extent(geometry)):
        hidden = np.repeat(hidden, extent, axis=axis + 1)
    return hidden


def fill_strided_frames(strided, patch_t: int, fill: str = "hold") -> np.ndarray:
    """Full-rate frames `[B, T, ...]` from time-strided frames `[B, T/pt, ...]` (numpy).

    Strided frame k sits at frame k·pt. The pt − 1 frames after it are filled with

    - `"hold"`: a copy of strided frame k (a step function);
    - `"linear"`: `s_k + (j / pt)·(s_{k+1} − s_k)` at frame k·pt + j, a linear
      interpolation towards the next strided frame; after the last strided frame
      (no next one) the value is held.
    """
    if fill not in FILL_MODES:
        raise ValueError(f"fill: {fill!r} is not one of {FILL_MODES}")
    strided = np.asarray(strided)
    held = np.repeat(strided, patch_t, axis=1)
    if fill == "hold" or patch_t == 1:
        return held
    following = np.concatenate([strided[:, 1:], strided[:, -1:]], axis=1)  # hold at the end
    step = np.repeat(following - strided, patch_t, axis=1)
    shape = [1] * strided.ndim
    shape[1] = -1
    fraction = (np.arange(held.shape[1]) % patch_t / patch_t).reshape(shape)
    return (held + fraction * step).astype(strided.dtype)


def token_statistics(keypoints, geometry: Geometry):
    """Per-token mean and std `[B, U, 1]` of the raw targets, as `norm_loss` computes them
    (unbiased variance, std = sqrt(var + 1e-6)); numpy."""
    targets = to_numpy(time_strided_targets(keypoints, geometry, norm_loss=False))
    mean = targets.mean(axis=-1, keepdims=True)
    variance = ((targets - mean) ** 2).sum(axis=-1, keepdims=True) / (geometry.pred_stride - 1)
    return mean, np.sqrt(variance + NORM_LOSS_EPSILON)


def composite_frames(strided_pred, hidden, keypoints, patch_t: int, fill: str) -> np.ndarray:
    """The input where visible, the reconstruction where hidden (numpy, `[B, T, H, W]`).

    The strided frames are the predictions where hidden and the *input* where visible, and
    the frames in between are filled from those (see `fill_strided_frames`), so a
    `"linear"` fill at the edge of a hidden span interpolates towards the true visible
    frame rather than towards an (untrained) prediction of a visible unit.
    """
    strided = np.where(hidden[:, ::patch_t], strided_pred, keypoints[:, ::patch_t])
    return np.where(hidden, fill_strided_frames(strided, patch_t, fill), keypoints)


# ---------------------------------------------------------------------- model runs


def resolve_pretrainer(model, allow_random_weights: bool):
    """`model`, or the pretrainer of a preset name/folder or `.keras` file."""
    if isinstance(model, str | os.PathLike):
        return load_model(model, kind="pretrainer", allow_random_weights=allow_random_weights,
                          parameter="model")
    return model


def standardize_keypoints(model, keypoints, check_values: bool = True):
    """`(keypoints [B, T, H, W] float32 numpy, input shape)`; ValueError on a bad shape and,
    with `check_values`, on NaN, inf or huge values (naming the sample and frame)."""
    if not hasattr(model, "geometry") or not hasattr(model, "decoder"):
        raise ValueError(
            f"model: expected an HBehaveMAE pretrainer (with a decoder), got "
            f"{type(model).__name__}; load one with HBehaveMAE.from_preset(...)")
    array = to_numpy(keypoints)
    input_shape = array.shape
    if array.dtype.kind != "f":
        raise ValueError(
            f"keypoints: dtype {array.dtype} is not supported; expected floating point")
    standardized = model.backbone.standardize_keypoints(array.astype("float32"), check_values)
    return np.asarray(to_numpy(standardized)), input_shape


def _unit_mask(model, mask, batch: int, seed) -> np.ndarray:
    geometry = model.geometry
    units, kept = geometry.num_mask_units, geometry.num_kept_units
    if mask is None:
        generator = model.seed_generator if seed is None else seed
        return to_numpy(random_unit_mask(batch, units, kept, generator)).astype(bool)
    mask = to_numpy(mask)
    if mask.ndim == 1:
        mask = np.broadcast_to(mask, (batch, mask.shape[0]))
    if mask.ndim == 2 and mask.shape[0] != batch:
        raise ValueError(
            f"mask: batch size {mask.shape[0]} does not match the keypoints' batch size {batch}")
    try:
        check_unit_mask(mask, units, kept)
    except ValueError as error:
        raise ValueError(
            f"{error}. This model keeps K = {kept} of U = {units} units (mask_ratio "
            f"{model.config_object.mask_ratio}); build the mask with exactly K True values "
            "per row, or rebuild the pretrainer with another mask_ratio") from None
    return mask.astype(bool)


def predict_tokens(model, keypoints, mask, batch_size: int | None = None) -> np.ndarray:
    """`pred [B, U, P]` (numpy) of `model` for keypoints `[B, T, H, W]` and a *valid* mask.

    Runs through `predict_on_batch` / `predict`, which compile the forward pass on every
    backend (JAX's eager mode would compile op by op).
    """
    inputs = {"keypoints": np.asarray(keypoints, "float32"), "mask": np.asarray(mask, bool)}
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size
                                   or batch_size < 1):
        raise invalid("batch_size", batch_size, "must be a positive integer or None")
    if batch_size is None or batch_size >= len(inputs["keypoints"]):
        outputs = model.predict_on_batch(inputs)
    else:
        outputs = model.predict(inputs, batch_size=int(batch_size), verbose=0)
    return np.asarray(to_numpy(outputs["pred"]), "float32")


def predict_checked_tokens(model, keypoints, mask, batch_size) -> np.ndarray:
    """`predict_tokens` of inputs this module has checked (the model does not check again)."""
    with validated_inputs(model):
        return predict_tokens(model, keypoints, mask, batch_size)


def reconstruct(model, keypoints, mask=None, *, fill: str = "hold", denormalise_with=None,
                seed=None, batch_size: int | None = None,
                allow_random_weights: bool = False) -> dict:
    """Masks, encodes and decodes keypoints; returns the reconstruction in input layout.

    Args:
        model: an `HBehaveMAE` pretrainer, or a preset (name or folder) or `.keras` file
            holding one (loaded on every call: pass the model for repeated calls).
        keypoints: `[B, T, H, W]` (or `[B, T, H·W]`) float keypoints, preprocessed as in
            training.
        mask: `[B, U]` (or `[U]`, shared by all rows) bool unit mask, True = kept/visible,
            with exactly K = `model.geometry.num_kept_units` True values per row. None
            draws a random mask (with `seed`, an int or `keras.random.SeedGenerator`,
            or else the model's own seed generator).
        fill: how the pt − 1 frames between two time-strided predictions are filled (the
            model predicts only frames 0, pt, 2·pt, …): `"hold"` repeats the strided frame,
            `"linear"` interpolates linearly in time towards the next strided frame and
            holds after the last one. Irrelevant when pt = 1.
        denormalise_with: for `norm_loss` models only. Their predictions are standardised
            *per target token* (each token's P values have mean 0 and std 1), and the
            statistics of a hidden token cannot be known from the visible data, so by
            default such a reconstruction is in normalised units per token
            (`result["normalised"]` is True). Passing the true keypoints here (usually
            the same array as `keypoints`) maps each token back with its true mean and
            std (`pred·std + mean`): useful for evaluation and plots only, since it
            uses the hidden data.
        seed: seed of the random mask when `mask` is None.
        batch_size: run the model in batches of this size (default: one batch).
        allow_random_weights: accept a preset without trained or converted weights.

    Returns:
        A dict of numpy arrays:

        - `reconstruction`: `[B, T, H, W]` (the input's layout) — the model's output for
          every unit, visible ones included (the predictions of visible units were never
          trained; use `composite` to keep the true visible values), filled with `fill`;
        - `composite`: the input where visible, the reconstruction where hidden, filled
          from the predicted strided frames of hidden units and the *true* strided frames
          of visible ones (see `composite_frames`); None when `normalised` (per-token
          normalised predictions cannot be mixed with keypoints);
        - `strided`: the un-patchified predictions `[B, T/pt, H, W]` (frames 0, pt, …);
        - `mask`: `[B, U]` unit mask used, True = kept/visible;
        - `hidden`: `[B, T, H, W]` (input layout) True where the element lies in a hidden
          mask unit — a unit spans M_t·pt frames *and* ph·M_h rows × pw·M_w features,
          so a frame may be only partly hidden;
        - `frame_mask`: `[B, T]` True where any element of the frame is hidden;
        - `pred`: the raw predictions `[B, U, P]`;
        - `normalised`: True when the values are per-token normalised units.

    Raises:
        ValueError: keypoints of the wrong shape or dtype, or holding NaN, inf or huge
            values (naming the sample and frame); a mask of the wrong shape or with a kept
            count other than K in some row; an unknown `fill`; `denormalise_with` on a
            model without `norm_loss`, of another shape or with such values; or a preset of
            random weights without `allow_random_weights`.
    """
    if fill not in FILL_MODES:
        raise ValueError(f"fill: {fill!r} is not one of {FILL_MODES}")
    model = resolve_pretrainer(model, allow_random_weights)
    keypoints, input_shape = standardize_keypoints(model, keypoints)
    geometry = model.geometry
    norm_loss = bool(model.config_object.norm_loss)
    statistics = None
    if denormalise_with is not None:
        if not norm_loss:
            raise ValueError(
                "denormalise_with: this model was trained without norm_loss; its predictions "
                "are already in keypoint units")
        truth, truth_shape = standardize_keypoints(model, denormalise_with, check_values=False)
        check_keypoint_values(truth, "denormalise_with")
        if truth.shape != keypoints.shape:
            raise ValueError(
                f"denormalise_with: shape {truth_shape} does not match keypoints "
                f"{input_shape}")
        statistics = token_statistics(truth, geometry)
    mask = _unit_mask(model, mask, len(keypoints), seed)
    pred = predict_checked_tokens(model, keypoints, mask, batch_size)
    tokens = pred if statistics is None else pred * statistics[1] + statistics[0]
    patch_t = geometry.config.patch_kernel[0]
    strided = np.asarray(to_numpy(unpatchify(tokens, geometry)), "float32")
    full = fill_strided_frames(strided, patch_t, fill)
    hidden = hidden_element_mask(mask, geometry)
    normalised = norm_loss and statistics is None
    composite = (None if normalised else
                 composite_frames(strided, hidden, keypoints, patch_t, fill).reshape(input_shape))
    return {
        "reconstruction": full.reshape(input_shape),
        "composite": composite,
        "strided": strided,
        "mask": mask,
        "hidden": hidden.reshape(input_shape),
        "frame_mask": hidden.any(axis=(2, 3)),
        "pred": pred,
        "normalised": normalised,
    }
