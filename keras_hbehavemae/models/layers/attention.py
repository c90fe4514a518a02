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

import math

import keras
from keras import ops

from keras_hbehavemae.models.layers.dense_rows import FusedBiasDense, dense_on_rows

# Under JAX, attention runs in batch chunks whose float32 logits fit in this many bytes.
JAX_LOGITS_CHUNK_BYTES = 4 * 2**20


def heads_axis_attention(query, key, value):
    """Softmax attention `[B, L, N, e]` (the layout of `keras.ops.dot_product_attention`).

    Under torch, PyTorch's fused CPU/GPU kernel is called on transposed views: Keras' own
    torch path copies every input into `[B, N, L, e]` first. The kernel reads the strided
    views directly and gives identical numbers; on Shot7M2's windowed stage-0 attention
    (`[8, 96, 100, 48]`, one thread) it took 37 instead of 96 ms, and its output transposed
    back is contiguous, so the reshape after it copies nothing either.

    Under JAX it runs in batch chunks (`batch_chunked_attention`): XLA's CPU code writes
    the whole `[B, N, L, S]` logits tensor to memory and reads it back for the softmax, and
    on Shot7M2 at batch 32 the global stage-1 attention's logits are 184 MB. Chunks of at
    most `JAX_LOGITS_CHUNK_BYTES` gave the same numbers (bit for bit) and took the JAX
    encoder batch from 4.35 to 3.59 s, 4.73 to 4.08 s and 4.14 to 3.74 s (three A/B runs,
    one process each) and the training step from 4.01 to 3.75 s. Under TensorFlow with
    XLA chunks gave no consistent gain (2.6–3.1 s whole against 2.9–3.5 s chunked), so
    TensorFlow and torch take the whole batch.
    """
    backend = keras.config.backend()
    if backend == "torch":
        import torch

        if isinstance(query, torch.Tensor):
            attended = torch.nn.functional.scaled_dot_product_attention(
                query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))  # [B, N, L, e]
            return attended.transpose(1, 2)  # [B, L, N, e]
    if backend == "jax":
        return batch_chunked_attention(query, key, value, JAX_LOGITS_CHUNK_BYTES)
    return ops.dot_product_attention(query, key, value)


def torch_windowed_qkv(qkv_layer, tokens, windows: int, heads: int):
    """Under torch: query, key and value `[B, N/n_w, n_w·h, e]` as views of one product.

    The fused projection's output axis is (3, h, e). Sliced per q/k/v and reshaped to
    `[B, N/n_w, n_w·h, e]`, each slice needs a copy: the window axis steps by 3D but the
    merged windows-and-heads axis would need it to step by D. Here the kernel's columns
    (and the bias) are reordered to (h, 3, e) before the product, so the window and head
    axes of the output merge and q, k and v are strided views of it: the same products,
    the same numbers (bit for bit), and no copy of the tokens (only of the `[C, 3D]`
    kernel). On Shot7M2's encoder at batch 32 nine copies of `[32, 4800, 96 or 192]` went:
    in one process, 12 interleaved pairs, the batch's CPU time fell from 4.52 to 4.25 s
    (medians) and the paired wall-time ratio was 1.06×. Under autograd the three views'
    gradients are stacked into one tensor, as a split's are concatenated; the training
    step did not change measurably (2.00 against 1.97 s, medians of 8).

    Args:
        qkv_layer: the fused projection, a plain affine `FusedBiasDense` (3D outputs).
        tokens: `[B, N, C]` in unrolled order (token n = r·n_w + window).
        windows: n_w.
        heads: h.

    Returns:
        (query, key, value), each `[B, N/n_w, n_w·h, e]`.
    """
    import torch

    width = qkv_layer.units // 3
    head_dim = width // heads
    kernel = ops.cast(qkv_layer.kernel, tokens.dtype)  # [C, 3D], columns (3, h, e)
    kernel = kernel.reshape(-1, 3, heads, head_dim).transpose(1, 2)  # [C, h, 3, e]
    kernel = kernel.reshape(-1, 3 * width)  # [C, 3D], columns (h, 3, e)
    bias = ops.cast(qkv_layer.bias, tokens.dtype)  # [3D], (3, h, e)
    bias = bias.reshape(3, heads, head_dim).transpose(0, 1).reshape(-1)  # [3D], (h, 3, e)
    rows = tokens.reshape(-1, tokens.shape[-1])  # [B·N, C]
    qkv = torch.nn.functional.linear(rows, kernel.T, bias)  # [B·N, 3D], columns (h, 3, e)
    qkv = qkv.view(  # [B, N/n_w, n_w·h, 3, e]: (n_w, h) merge, as n_w steps by h·3e
        -1, tokens.shape[1] // windows, windows * heads, 3, head_dim)
    return qkv.unbind(3)  # 3 × [B, N/n_w, n_w·h, e], strided views


def attention_batch_chunks(shape, keys: int, budget_bytes: int) -> int:
    """How many batch chunks keep each chunk's float32 logits within `budget_bytes`.

    Args:
        shape: the query shape `[B, L, N, e]`; 1 chunk when B is not a Python integer
            (a symbolic or polymorphic batch).
        keys: S, the keys per head.
        budget_bytes: the largest logits tensor `[b, N, L, S]` (4 bytes a value) a chunk
            may have; a chunk holds at least one sample.
    """
    batch, queries, heads = shape[0], shape[1], shape[2]
    if not isinstance(batch, int) or batch <= 1:
        return 1
    logits_bytes = batch * heads * queries * keys * 4
    return min(batch, max(1, math.ceil(logits_bytes / budget_bytes)))


def batch_chunked_attention(query, key, value, budget_bytes: int):
    """`keras.ops.dot_product_attention` over batch chunks, concatenated.

    The samples of a batch are independent, so the result equals one call on the whole
    batch; only the size of the logits tensor in flight changes.

    Example:

    >>> import numpy as np
    >>> q = np.random.default_rng(0).standard_normal((4, 6, 2, 8)).astype("float32")
    >>> chunked = batch_chunked_attention(q, q, q, budget_bytes=1)  # one sample a chunk
    >>> whole = ops.dot_product_attention(q, q, q)
    >>> bool(np.allclose(ops.convert_to_numpy(chunked), ops.convert_to_numpy(whole)))
    True
    """
    chunks = attention_batch_chunks(tuple(query.shape), key.shape[1], budget_bytes)
    if chunks == 1:
        return ops.dot_product_attention(query, key, value)
    batch = query.shape[0]
    bounds = [round(index * batch / chunks) for index in range(chunks + 1)]
    parts = [ops.dot_product_attention(query[start:stop], key[start:stop], value[start:stop])
             for start, stop in zip(bounds, bounds[1:], strict=False)]  # each [b, L, N, e]
    return ops.concatenate(parts, axis=0)  # [B, L, N, e]


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

    def uses_torch_views(self, tokens, windows: int) -> bool:
        """Whether q, k and v come from `torch_windowed_qkv` (torch tensors, more than one
        window, a plain affine projection); otherwise from a split and reshapes."""
        if windows == 1 or keras.config.backend() != "torch" or not self.qkv.is_plain_affine():
            return False
        import torch

        return isinstance(tokens, torch.Tensor)

    def call(self, tokens):
        num_tokens = tokens.shape[1]
        windows = self.num_windows(num_tokens)
        per_window = num_tokens // windows
        stride, heads, head_dim = self.query_stride, self.num_heads, self.head_dim
        queries = per_window // stride
        if self.uses_torch_views(tokens, windows):
            query, key, value = torch_windowed_qkv(self.qkv, tokens, windows, heads)
        else:
            query, key, value = self.split_qkv(tokens, windows, per_window)
        if stride > 1:
            # Window token r = i·(N/(n_w·s)) + r': pool over the stride chunk i.
            query = ops.reshape(  # [B, s, N/(n_w·s), n_w·h, e]
                query, (-1, stride, queries, windows * heads, head_dim))
            query = ops.max(query, axis=1)  # [B, q, n_w·h, e]
        attended = heads_axis_attention(query, key, value)  # [B, q, n_w·h, e]
        attended = ops.reshape(attended, (-1, queries * windows, self.dim))  # [B, N/s, D]
        return dense_on_rows(self.proj, attended)

    def split_qkv(self, tokens, windows: int, per_window: int):
        """q, k, v, each `[B, N/n_w, n_w·h, e]`, from a split of the fused projection."""
        heads, head_dim = self.num_heads, self.head_dim
        # The fused projection's output axis is (3, h, e): three contiguous slices of width D.
        # Splitting it (rather than indexing a transposed [3, ...] tensor) keeps the backward
        # pass a concatenation instead of three zero-filled scatters.
        query, key, value = ops.split(dense_on_rows(self.qkv, tokens), 3, axis=-1)  # 3×[B, N, D]
        # Token n = r·n_w + window, so [B, N/n_w, n_w, h, e] is a reshape, and attention
        # inside each window and head is attention over the N/n_w tokens of each of n_w·h
        # "heads": no window transpose in or out.
        return tuple(ops.reshape(part, (-1, per_window, windows * heads, head_dim))
                     for part in (query, key, value))  # 3 × [B, N/n_w, n_w·h, e]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] // self.query_stride, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, query_stride=self.query_stride,
                      window_size=self.window_size,
                      use_mask_unit_attention=self.use_mask_unit_attention)
        return config
