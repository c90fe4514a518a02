"""The MAE decoder and prediction head (docs/model.md, "Decoder and prediction targets").

Example:

>>> import numpy as np
>>> decoder = MAEDecoder(num_units=16, embed_dim=16, depth=1, num_heads=1, pred_stride=48)
>>> latent = np.zeros((2, 4, 16), "float32")
>>> mask = np.zeros((2, 16), bool); mask[:, :4] = True
>>> tuple(decoder(latent, mask).shape)
(2, 16, 48)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_hbehavemae.models.layers.dense_rows import FusedBiasDense
from keras_hbehavemae.models.layers.hiera_block import HieraBlock


def scatter_kept_units(kept, mask, fill):
    """Places kept-unit vectors at their unit positions and `fill` elsewhere.

    Args:
        kept: `[B, K, C]`, kept units in ascending unit order.
        mask: `[B, U]` bool, True = kept; exactly K True per row.
        fill: `[1, 1, C]` vector for masked units.

    Returns:
        `[B, U, C]`. Static-shape form: rank = cumsum(mask) − 1, gather, then where.
    """
    num_kept = kept.shape[1]
    rank = ops.cumsum(ops.cast(mask, "int32"), axis=1) - 1  # [B, U]
    rank = ops.clip(rank, 0, num_kept - 1)
    gathered = ops.take_along_axis(kept, ops.expand_dims(rank, -1), axis=1)  # [B, U, C]
    return ops.where(ops.expand_dims(mask, -1), gathered, ops.cast(fill, gathered.dtype))


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class MAEDecoder(keras.layers.Layer):
    """decoder_embed → mask tokens → position embedding → blocks → norm → prediction.

    The prediction head runs in float32 under mixed precision.

    Args:
        num_units: U, the number of mask units (= decoder tokens, final grid row-major).
        embed_dim: decoder width Cd.
        depth: number of decoder blocks (global attention, no pooling).
        num_heads: decoder heads.
        pred_stride: P, the width of one predicted target token.
        mlp_ratio: MLP hidden width over Cd.
        layer_norm_eps: LayerNorm epsilon.
    """

    def __init__(self, num_units: int, embed_dim: int, depth: int, num_heads: int,
                 pred_stride: int, mlp_ratio: float = 4.0, layer_norm_eps: float = 1e-6,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_units = int(num_units)
        self.embed_dim = int(embed_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.pred_stride = int(pred_stride)
        self.mlp_ratio = float(mlp_ratio)
        self.layer_norm_eps = float(layer_norm_eps)
        policy = self.dtype_policy
        self.decoder_embed = FusedBiasDense(
            self.embed_dim, kernel_initializer="glorot_uniform", dtype=policy,
            name="decoder_embed")
        self.decoder_blocks = [
            HieraBlock(self.embed_dim, self.embed_dim, self.num_heads, mlp_ratio=self.mlp_ratio,
                       layer_norm_eps=self.layer_norm_eps, dtype=policy,
                       name=f"decoder_blocks_{index}")
            for index in range(self.depth)
        ]
        self.decoder_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_eps, dtype=policy, name="decoder_norm")
        self.decoder_pred = FusedBiasDense(
            self.pred_stride, kernel_initializer="glorot_uniform", dtype="float32",
            name="decoder_pred")

    def build(self, latent_shape, mask_shape=None):
        batch = latent_shape[0]
        initializer = keras.initializers.RandomNormal(stddev=0.02)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.embed_dim), initializer=initializer, name="mask_token")
        self.decoder_pos_embed = self.add_weight(
            shape=(1, self.num_units, self.embed_dim), initializer=initializer,
            name="decoder_pos_embed")
        self.decoder_embed.build(latent_shape)
        token_shape = (batch, self.num_units, self.embed_dim)
        for block in self.decoder_blocks:
            block.build(token_shape)
        self.decoder_norm.build(token_shape)
        self.decoder_pred.build(token_shape)

    def call(self, latent, mask, return_intermediates: bool = False):
        """Decodes `latent [B, K, C_last]` with `mask [B, U]` (True = kept) to `[B, U, P]`."""
        embedded = self.decoder_embed(latent)  # [B, K, Cd]
        tokens = scatter_kept_units(embedded, mask, self.mask_token)  # [B, U, Cd]
        tokens = tokens + ops.cast(self.decoder_pos_embed, tokens.dtype)
        decoder_input = tokens
        for block in self.decoder_blocks:
            tokens = block(tokens)
        normed = self.decoder_norm(tokens)
        pred = self.decoder_pred(ops.cast(normed, "float32"))  # [B, U, P] float32
        if return_intermediates:
            return pred, {"decoder/input": decoder_input, "decoder/norm_out": normed}
        return pred

    def compute_output_shape(self, latent_shape, mask_shape=None):
        return (latent_shape[0], self.num_units, self.pred_stride)

    def get_config(self):
        config = super().get_config()
        config.update(num_units=self.num_units, embed_dim=self.embed_dim, depth=self.depth,
                      num_heads=self.num_heads, pred_stride=self.pred_stride,
                      mlp_ratio=self.mlp_ratio, layer_norm_eps=self.layer_norm_eps)
        return config
