"""Mask-unit attention with max-pooled queries (docs/model.md, "Mask-unit attention and
query pooling").

Example:

>>> import numpy as np
>>> attention = MaskUnitAttention(dim=32, num_heads=4, query_stride=4, window_size=4,
...                               use_mask_unit_attention=True)
>>> tuple(attention(np.zeros((2, 256, 16), "float32")).shape)
(2, 64, 32)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_hbehavemae.models.layers.dense_rows import dense_on_rows


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class MaskUnitAttention(keras.layers.Layer):
    """Multi-head attention inside mask units (or globally) with pooled queries.

    Tokens are in unrolled order: token n belongs to window
    `n mod num_windows`, so windows are a reshape, not a gather. With `query_stride` s > 1
    the queries are max-pooled over the leading s chunks of each window; keys and values
    are not pooled. Attention runs through `keras.ops.dot_product_attention`.

    Args:
        dim: output width D (the fused qkv projection maps d_in → 3D).
        num_heads: attention heads; D must be divisible by it.
        query_stride: flattened query-pooling stride s (1 = none).
        window_size: flattened mask-unit size after this block's pooling, w.
        use_mask_unit_attention: attend within mask units (True) or globally (False).
    """

    def __init__(self, dim: int, num_heads: int, query_stride: int = 1, window_size: int = 1,
                 use_mask_unit_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        if dim % num_heads:
            raise ValueError(f"num_heads: {num_heads} must divide dim {dim}")
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.dim // self.num_heads
        self.query_stride = int(query_stride)
        self.window_size = int(window_size)
        self.use_mask_unit_attention = bool(use_mask_unit_attention)
        self.qkv = keras.layers.Dense(3 * self.dim, kernel_initializer="glorot_uniform",
                                      dtype=self.dtype_policy, name="qkv")
        self.proj = keras.layers.Dense(self.dim, kernel_initializer="glorot_uniform",
                                       dtype=self.dtype_policy, name="proj")

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build((*input_shape[:-1], self.dim))

    def num_windows(self, num_tokens: int) -> int:
        """n_w = N / (s·w) with mask-unit attention, else 1."""
        if not self.use_mask_unit_attention:
            return 1
        return num_tokens // (self.query_stride * self.window_size)

    def _windows_first(self, tensor, per_window: int, windows: int):
        """[B, N, D] in unrolled order → [B, n_w, N/n_w, h, e] (window-major)."""
        tensor = ops.reshape(  # [B, N/n_w, n_w, h, e]: token n = r·n_w + window
            tensor, (-1, per_window, windows, self.num_heads, self.head_dim))
        if windows == 1:
            return ops.reshape(tensor, (-1, 1, per_window, self.num_heads, self.head_dim))
        return ops.transpose(tensor, (0, 2, 1, 3, 4))  # [B, n_w, N/n_w, h, e]

    def call(self, tokens):
        num_tokens = tokens.shape[1]
        windows = self.num_windows(num_tokens)
        per_window = num_tokens // windows
        stride, heads, head_dim = self.query_stride, self.num_heads, self.head_dim
        queries = per_window // stride
        # The fused projection's output axis is (3, h, e): three contiguous slices of width D.
        # Splitting it (rather than indexing a transposed [3, ...] tensor) keeps the backward
        # pass a concatenation instead of three zero-filled scatters.
        query, key, value = ops.split(dense_on_rows(self.qkv, tokens), 3, axis=-1)  # 3×[B, N, D]
        if stride > 1:
            # Token n = (i·(N/(n_w·s)) + r)·n_w + window: pool over the stride chunk i first,
            # so only the pooled queries are transposed.
            query = ops.reshape(  # [B, s, N/(n_w·s), n_w, D]
                query, (-1, stride, queries, windows, self.dim))
            query = ops.max(query, axis=1)  # [B, N/(n_w·s), n_w, D]
        query = self._windows_first(query, queries, windows)  # [B, n_w, q, h, e]
        key = self._windows_first(key, per_window, windows)  # [B, n_w, k, h, e]
        value = self._windows_first(value, per_window, windows)
        query = ops.reshape(query, (-1, queries, heads, head_dim))  # [B·n_w, q, h, e]
        key = ops.reshape(key, (-1, per_window, heads, head_dim))  # [B·n_w, k, h, e]
        value = ops.reshape(value, (-1, per_window, heads, head_dim))
        attended = ops.dot_product_attention(query, key, value)  # [B·n_w, q, h, e]
        attended = ops.reshape(attended, (-1, windows, queries, self.dim))  # [B, n_w, q, D]
        if windows > 1:
            attended = ops.transpose(attended, (0, 2, 1, 3))  # [B, q, n_w, D]: r'·n_w + window
        attended = ops.reshape(attended, (-1, queries * windows, self.dim))  # [B, N/s, D]
        return dense_on_rows(self.proj, attended)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] // self.query_stride, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, query_stride=self.query_stride,
                      window_size=self.window_size,
                      use_mask_unit_attention=self.use_mask_unit_attention)
        return config
