"""Time-strided regression targets and the masked reconstruction loss.

The rules are in docs/model.md ("Decoder and prediction targets", "Loss").

Example:

>>> import numpy as np
>>> from keras_hbehavemae.models.config import HBehaveMAEConfig
>>> from keras_hbehavemae.models.geometry import compute_geometry
>>> geometry = compute_geometry(HBehaveMAEConfig(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16))
>>> tuple(time_strided_targets(np.zeros((2, 32, 4, 12), "float32"), geometry).shape)
(2, 16, 48)
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_hbehavemae.models.geometry import Geometry

NORM_LOSS_EPSILON = 1e-6


def time_strided_targets(keypoints, geometry: Geometry, norm_loss: bool = False):
    """Targets `[B, U, P]` from keypoints `[B, T, H, W]` (float32).

    Uses the first frame of every temporal patch, cut into the final grid with patch
    (a, b, c) = (M_t, ph·M_h, pw·M_w), each target row-major over (t, h, w). With
    `norm_loss`, every target is standardised with its unbiased variance.
    """
    frames, rows, features = geometry.config.input_size
    patch_t = geometry.config.patch_kernel[0]
    grid_t, grid_h, grid_w = geometry.mask_grid
    patch_a, patch_b, patch_c = geometry.label_patch
    keypoints = ops.cast(keypoints, "float32")
    strided = ops.reshape(keypoints, (-1, frames // patch_t, patch_t, rows, features))
    strided = strided[:, :, 0]  # [B, T/pt, H, W]: first frame of each temporal patch
    targets = ops.reshape(  # [B, G_t, a, G_h, b, G_w, c]
        strided, (-1, grid_t, patch_a, grid_h, patch_b, grid_w, patch_c))
    targets = ops.transpose(targets, (0, 1, 3, 5, 2, 4, 6))  # [B, G_t, G_h, G_w, a, b, c]
    targets = ops.reshape(targets, (-1, geometry.num_mask_units, geometry.pred_stride))
    if norm_loss:
        mean = ops.mean(targets, axis=-1, keepdims=True)
        centred = targets - mean
        variance = ops.sum(centred * centred, axis=-1, keepdims=True) / (
            geometry.pred_stride - 1)
        targets = centred / ops.sqrt(variance + NORM_LOSS_EPSILON)
    return targets


def masked_reconstruction_loss(pred, targets, mask):
    """Mean squared error over the masked units (mask False) and all P values, float32."""
    pred = ops.cast(pred, "float32")
    squared = ops.mean(ops.square(pred - targets), axis=-1)  # [B, U]
    masked = 1.0 - ops.cast(mask, "float32")
    return ops.sum(squared * masked) / ops.sum(masked)


def unpatchify(pred, geometry: Geometry):
    """Inverts the target layout: `[B, U, P]` tokens → time-strided keypoints `[B, T/pt, H, W]`.

    The exact inverse of the reshape/transpose in `time_strided_targets` (without
    `norm_loss`), so `unpatchify(time_strided_targets(x)) == x[:, ::pt]` bit for bit.
    A numpy array gives a numpy array (no backend dispatch); a backend tensor gives a
    backend tensor, so the function also works inside traced/compiled functions.
    """
    frames, rows, features = geometry.config.input_size
    patch_t = geometry.config.patch_kernel[0]
    grid_t, grid_h, grid_w = geometry.mask_grid
    patch_a, patch_b, patch_c = geometry.label_patch
    shape = tuple(pred.shape)
    if len(shape) != 3 or tuple(shape[1:]) != (geometry.num_mask_units, geometry.pred_stride):
        raise ValueError(
            f"pred: shape {shape} is invalid; expected [batch, {geometry.num_mask_units}, "
            f"{geometry.pred_stride}] (U mask units × pred_stride P)")
    xp = np if isinstance(pred, np.ndarray) else ops  # same reshape/transpose semantics
    tokens = xp.reshape(pred, (-1, grid_t, grid_h, grid_w, patch_a, patch_b, patch_c))
    tokens = xp.transpose(tokens, (0, 1, 4, 2, 5, 3, 6))  # [B, G_t, a, G_h, b, G_w, c]
    return xp.reshape(tokens, (-1, frames // patch_t, rows, features))
