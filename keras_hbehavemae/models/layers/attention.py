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

from keras_hbehavemae.models.layers.dense_rows import FusedBiasDense, dense_on_rows


def heads_axis_attention(query, key, value):
    """Softmax attention `[B, L, N, e]` (the layout of `keras.ops.dot_product_attention`).

    Under torch, PyTorch's fused CPU/GPU kernel is called on transposed views: Keras' own
    torch path copies every input into `[B, N, L, e]` first. The kernel reads the strided
    views directly and gives identical numbers; on Shot7M2's windowed stage-0 attention
    (`[8, 96, 100, 48]`, one thread) it took 37 instead of 96 ms, and its output transposed
    back is contiguous, so the reshape after it copies nothing either.
    """
    if keras.config.backend() == "torch":
        import torch

        if isinstance(query, torch.Tensor):
            attended = torch.nn.functional.scaled_dot_product_attention(
                query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))  # [B, N, L, e]
            return attended.transpose(1, 2)  # [B, L, N, e]
    return ops.dot_product_attention(query, key, value)


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class MaskUnitAttention(keras.layers.Layer):
    """Multi-head attention inside mask units (or globally) with pooled queries.

    Tokens are in unrolled order: token n belongs to window
    `n mod num_windows`, so windows are a reshape, not a gather. With `query_stride` s > 1
    the queries are max-pooled over the leading s chunks of each window; keys and values
    are not pooled. Attention runs through `keras.ops.dot_product_attention` with the
    windows and heads together as its heads axis (`[B, N/n_w, n_w·h, e]`, a reshape of the
    unrolled tokens), so no windowed tensor is ever transposed.

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
        self.qkv = FusedBiasDense(3 * self.dim, kernel_initializer="glorot_uniform",
                                      dtype=self.dtype_policy, name="qkv")
        self.proj = FusedBiasDense(self.dim, kernel_initializer="glorot_uniform",
                                       dtype=self.dtype_policy, name="proj")

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build((*input_shape[:-1], self.dim))

    def num_windows(self, num_tokens: int) -> int:
        """n_w = N / (s·w) with mask-unit attention, else 1."""
        if not self.use_mask_unit_attention:
            return 1
        return num_tokens // (self.query_stride * self.window_size)

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
            # Token n = (i·(N/(n_w·s)) + r)·n_w + window: pool over the stride chunk i.
            query = ops.reshape(  # [B, s, N/(n_w·s), n_w·D]
                query, (-1, stride, queries, windows * self.dim))
            query = ops.max(query, axis=1)  # [B, N/(n_w·s), n_w·D]
        # Token n = r·n_w + window, so [B, N/n_w, n_w, h, e] is a reshape, and attention
        # inside each window and head is attention over the N/n_w tokens of each of n_w·h
        # "heads": no window transpose in or out.
        query = ops.reshape(query, (-1, queries, windows * heads, head_dim))  # [B, q, n_w·h, e]
        key = ops.reshape(key, (-1, per_window, windows * heads, head_dim))  # [B, k, n_w·h, e]
        value = ops.reshape(value, (-1, per_window, windows * heads, head_dim))
        attended = heads_axis_attention(query, key, value)  # [B, q, n_w·h, e]
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
