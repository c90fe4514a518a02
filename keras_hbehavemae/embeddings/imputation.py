"""Imputation of badly tracked frames with a pretrained `HBehaveMAE`: the mask units that
hold them are hidden (with random extra units up to the mask ratio) and re-predicted.

Example:

>>> import numpy as np
>>> from keras_hbehavemae import HBehaveMAEConfig, compute_geometry
>>> geometry = compute_geometry(HBehaveMAEConfig(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16))
>>> bad = np.zeros((1, 32), bool)
>>> bad[0, 3] = True  # frame 3 badly tracked
>>> bad_unit_mask(bad, geometry).sum(axis=1).tolist()  # the mask units holding frame 3
[4]
"""

from __future__ import annotations

import numpy as np

from keras_hbehavemae.embeddings.reconstruction import (
    FILL_MODES,
    composite_frames,
    hidden_element_mask,
    predict_checked_tokens,
    resolve_pretrainer,
    standardize_keypoints,
    to_numpy,
    unit_extent,
)
from keras_hbehavemae.models.geometry import Geometry
from keras_hbehavemae.models.inputs import check_keypoint_values
from keras_hbehavemae.models.losses import unpatchify


def bad_unit_mask(bad_frames, geometry: Geometry) -> np.ndarray:
    """`[B, U]` True for every mask unit that contains a bad frame (all its rows/features)."""
    bad_frames = np.asarray(bad_frames, dtype=bool)
    frames_per_unit = unit_extent(geometry)[0]
    grid_t, grid_h, grid_w = geometry.mask_grid
    per_time = bad_frames.reshape(len(bad_frames), grid_t, frames_per_unit).any(axis=2)
    units = np.broadcast_to(per_time[:, :, None, None], (len(bad_frames), grid_t, grid_h, grid_w))
    return units.reshape(len(bad_frames), geometry.num_mask_units)


def imputation_mask(bad_frames, geometry: Geometry, seed: int = 0) -> np.ndarray:
    """Unit mask `[B, U]` (True = kept) hiding every unit with a bad frame, and exactly
    U − K units per row in all.

    When fewer than U − K units are bad, the missing number of extra units is hidden at
    random among the good ones (`numpy.random.default_rng(seed)`, so deterministic):
    the model was trained on random masks, and random extra units leave as much context
    around the bad frames as the mask ratio allows on average.

    Raises:
        ValueError: some row has more than U − K bad units.
    """
    bad = bad_unit_mask(bad_frames, geometry)
    units, kept = geometry.num_mask_units, geometry.num_kept_units
    limit = units - kept
    counts = bad.sum(axis=1)
    if (counts > limit).any():
        row = int(np.argmax(counts))
        raise ValueError(
            f"bad_frames: too many bad frames for this mask ratio: row {row} has bad frames in "
            f"{int(counts[row])} of {units} mask units, but the model hides at most "
            f"U − K = {limit} units (mask_ratio {geometry.config.mask_ratio}, K = {kept} kept; "
            f"one unit spans {unit_extent(geometry)[0]} frames). Impute shorter windows, or "
            "use a pretrainer rebuilt with a higher mask_ratio")
    rng = np.random.default_rng(seed)
    hidden = bad.copy()
    for row in range(len(bad)):
        good = np.flatnonzero(~bad[row])
        extra = rng.choice(good, size=limit - int(counts[row]), replace=False)
        hidden[row, extra] = True
    return ~hidden


def impute(model, keypoints, bad_frames, *, fill: str = "linear", seed: int = 0,
           batch_size: int | None = None, allow_random_weights: bool = False) -> dict:
    """Replaces badly tracked frames by the model's reconstruction.

    Every mask unit containing a bad frame is hidden (a unit covers M_t·pt frames and all
    rows/features of its (h, w) cells; since a bad frame is bad in all of them, all units
    of that time slice are hidden), then further units are hidden at random (`seed`)
    until exactly U − K are hidden, as the model requires (see `imputation_mask`). The
    time-strided frames are taken from the input where their unit is visible and from the
    predictions where it is hidden; the frames in between are filled as in `reconstruct`
    (`"linear"` by default, which then interpolates towards true visible frames). Only
    the bad frames are replaced.

    Args:
        model: an `HBehaveMAE` pretrainer trained *without* `norm_loss` (per-token
            normalised predictions of hidden tokens cannot be mapped back to keypoint
            units), or a preset or `.keras` file holding one (as in `reconstruct`).
        keypoints: `[B, T, H, W]` (or `[B, T, H·W]`) keypoints, preprocessed as in
            training. The values of bad frames are ignored (they are hidden): NaN is fine
            there. Elsewhere NaN, inf and huge values are rejected.
        bad_frames: `[B, T]` bool, True for a badly tracked frame.
        fill: `"hold"` or `"linear"` (see `fill_strided_frames`).
        seed: seed of the extra hidden units.
        batch_size: run the model in batches of this size (default: one batch).
        allow_random_weights: accept a preset without trained or converted weights.

    Returns:
        A dict of numpy arrays: `keypoints` (the input with the bad frames replaced, input
        layout), `composite` (the input with *all* hidden elements replaced, see
        `composite_frames`), `mask` (`[B, U]`, True = kept), `hidden` (`[B, T, H, W]`,
        input layout) and `bad_frames`.

    Raises:
        ValueError: wrong shapes, NaN, inf or huge values outside the bad frames, too many
            bad frames for the mask ratio, or a `norm_loss` model.
    """
    if fill not in FILL_MODES:
        raise ValueError(f"fill: {fill!r} is not one of {FILL_MODES}")
    model = resolve_pretrainer(model, allow_random_weights)
    keypoints, input_shape = standardize_keypoints(model, keypoints, check_values=False)
    if model.config_object.norm_loss:
        raise ValueError(
            "model: impute needs a pretrainer trained without norm_loss; with norm_loss the "
            "predictions are standardised per target token and the mean/std of a hidden "
            "token is unknown, so they cannot be turned back into keypoints")
    geometry = model.geometry
    bad_frames = to_numpy(bad_frames)
    frames = geometry.config.input_size[0]
    if bad_frames.shape != (len(keypoints), frames):
        raise ValueError(
            f"bad_frames: shape {bad_frames.shape} is invalid; expected [batch, frames] = "
            f"{(len(keypoints), frames)}")
    if bad_frames.dtype.kind != "b":
        raise ValueError(f"bad_frames: dtype {bad_frames.dtype} is invalid; expected bool")
    # The values of bad frames are hidden from the model and replaced: any value is accepted
    # there (NaN for untracked), and 0 stands in for it. Elsewhere they must be valid.
    keypoints = np.where(bad_frames[:, :, None, None], np.float32(0), keypoints)
    check_keypoint_values(keypoints, "keypoints outside bad_frames")
    mask = imputation_mask(bad_frames, geometry, seed)
    pred = predict_checked_tokens(model, keypoints, mask, batch_size)
    patch_t = geometry.config.patch_kernel[0]
    predicted = np.asarray(to_numpy(unpatchify(pred, geometry)), "float32")
    hidden = hidden_element_mask(mask, geometry)
    composite = composite_frames(predicted, hidden, keypoints, patch_t, fill)
    imputed = np.where(bad_frames[:, :, None, None], composite, keypoints)
    return {
        "keypoints": imputed.reshape(input_shape),
        "composite": composite.reshape(input_shape),
        "mask": mask,
        "hidden": hidden.reshape(input_shape),
        "bad_frames": bad_frames,
    }

