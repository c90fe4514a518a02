"""Patch embedding and position embedding (docs/model.md, "Patch and position embedding").

Example:

>>> import numpy as np
>>> patches = PatchEmbedding(embed_dim=16, patch_kernel=(2, 1, 3))
>>> tokens = patches(np.zeros((2, 32, 4, 12), "float32"))
>>> tuple(tokens.shape)
(2, 16, 4, 4, 16)
>>> tuple(PositionEmbedding(token_grid=(16, 4, 4))(tokens).shape)
(2, 16, 4, 4, 16)
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_hbehavemae.models.layers.dense_rows import FusedBiasDense, dense_on_rows


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class PatchEmbedding(keras.layers.Layer):
    """Non-overlapping 3-D patches of `[B, T, H, W]` to tokens `[B, T', H', W', C0]`.

    Implemented as reshape + Dense, which equals the published Conv3D with kernel =
    stride = `patch_kernel` and one input channel (its kernel flattened in (kt, kh, kw)
    order) and exports from every backend.

    Args:
        embed_dim: token width C0.
        patch_kernel: (pt, ph, pw).
    """

    def __init__(self, embed_dim: int, patch_kernel, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.patch_kernel = tuple(int(v) for v in patch_kernel)
        patch_size = math.prod(self.patch_kernel)
        bound = 1.0 / math.sqrt(patch_size)
        # Published init: Xavier-uniform over [C0, pt·ph·pw] (no receptive field in the
        # fans) and PyTorch's default conv bias U(±1/sqrt(fan_in)).
        self.projection = FusedBiasDense(
            self.embed_dim,
            kernel_initializer="glorot_uniform",
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            dtype=self.dtype_policy,
            name="proj",
        )

    def build(self, input_shape):
        self.projection.build((*input_shape[:-1], math.prod(self.patch_kernel)))

    def call(self, keypoints):
        return self.embed_patches(self.patches(keypoints))  # [B, T', H', W', C0]

    def patches(self, keypoints):
        """The flattened patches `[B, T', H', W', pt·ph·pw]` of keypoints `[B, T, H, W]`."""
        frames, rows, features = keypoints.shape[1:]
        patch_t, patch_h, patch_w = self.patch_kernel
        grid = (frames // patch_t, rows // patch_h, features // patch_w)
        patches = ops.reshape(  # [B, T', pt, H', ph, W', pw]
            keypoints, (-1, grid[0], patch_t, grid[1], patch_h, grid[2], patch_w)
        )
        patches = ops.transpose(patches, (0, 1, 3, 5, 2, 4, 6))  # [B, T', H', W', pt, ph, pw]
        return ops.reshape(patches, (-1, *grid, patch_t * patch_h * patch_w))

    def embed_patches(self, patches):
        """Tokens `[B, *S, C0]` of flattened patches `[B, *S, pt·ph·pw]`, in any token order.

        Each token depends on its own patch only, so the masked pass embeds just the
        patches of the kept mask units (`backbone.embed_kept_units`).
        """
        return dense_on_rows(self.projection, patches)  # [B, *S, C0]

    def compute_output_shape(self, input_shape):
        grid = tuple(size // patch for size, patch in zip(input_shape[1:], self.patch_kernel,
                                                          strict=True))
        return (input_shape[0], *grid, self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update(embed_dim=self.embed_dim, patch_kernel=list(self.patch_kernel))
        return config


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class PositionEmbedding(keras.layers.Layer):
    """Adds learned position embeddings to tokens `[B, T', H', W', C]`.

    Separable (published): `pos[t, s] = spatial[s] + temporal[t]` with tables
    `pos_embed_spatial [1, H'·W', C]` and `pos_embed_temporal [1, T', C]`. Otherwise one
    table `pos_embed [1, T'·H'·W', C]`. Tables keep the published 3-D shapes so they are
    weight-decayed like the reference. Initialised N(0, 0.02).

    Args:
        token_grid: (T', H', W').
        separable: use the separable spatial + temporal form.
    """

    def __init__(self, token_grid, separable: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.token_grid = tuple(int(v) for v in token_grid)
        self.separable = bool(separable)

    def build(self, input_shape):
        channels = input_shape[-1]
        frames, rows, features = self.token_grid
        initializer = keras.initializers.RandomNormal(stddev=0.02)
        if self.separable:
            self.spatial = self.add_weight(
                shape=(1, rows * features, channels), initializer=initializer,
                name="pos_embed_spatial")
            self.temporal = self.add_weight(
                shape=(1, frames, channels), initializer=initializer, name="pos_embed_temporal")
        else:
            self.table = self.add_weight(
                shape=(1, frames * rows * features, channels), initializer=initializer,
                name="pos_embed")

    def position_table(self):
        """The full table `[1, T', H', W', C]` in token-grid order."""
        frames, rows, features = self.token_grid
        if not self.separable:
            return ops.reshape(self.table, (1, frames, rows, features, -1))
        spatial = ops.reshape(self.spatial, (1, 1, rows, features, -1))  # tiled over T'
        temporal = ops.reshape(self.temporal, (1, frames, 1, 1, -1))  # repeated over H'·W'
        return spatial + temporal

    def call(self, tokens):
        return tokens + ops.cast(self.position_table(), tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(token_grid=list(self.token_grid), separable=self.separable)
        return config
