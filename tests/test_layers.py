"""Layer configs round-trip, and the attention matches a plain numpy reference."""

import keras
import numpy as np
import pytest
from helpers import to_numpy

from keras_hbehavemae.models.layers import (
    HieraBlock,
    MAEDecoder,
    MaskUnitAttention,
    MultiScaleFusionHead,
    PatchEmbedding,
    PositionEmbedding,
    TokenPermute,
)

LAYERS = [
    PatchEmbedding(16, (2, 1, 3)),
    PositionEmbedding((16, 4, 4), separable=False),
    TokenPermute((2, 3), (1, 0), (6,)),
    MaskUnitAttention(32, 4, query_stride=4, window_size=4, use_mask_unit_attention=True),
    HieraBlock(16, 32, 4, 4, 4, True, mlp_ratio=2.0, layer_norm_eps=1e-5, drop_path_rate=0.1,
               seed=3),
    MultiScaleFusionHead(16),
    MAEDecoder(16, 16, 2, 2, 48, mlp_ratio=3.0),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: type(layer).__name__)
def test_config_round_trip(layer):
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"].startswith("keras_hbehavemae>")
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


def reference_attention(x, qkv_kernel, qkv_bias, proj_kernel, proj_bias, heads, stride, windows):
    """Mask-unit attention written with numpy loops over windows and heads."""
    batch, tokens, _ = x.shape
    dim = proj_kernel.shape[0]
    head_dim = dim // heads
    qkv = x @ qkv_kernel + qkv_bias  # [B, N, 3D]
    per_window = tokens // windows
    output = np.zeros((batch, tokens // stride, dim))
    for b in range(batch):
        for window in range(windows):
            members = np.arange(per_window) * windows + window  # token n = r·n_w + window
            for head in range(heads):
                channels = slice(head * head_dim, (head + 1) * head_dim)
                q = qkv[b, members, channels]
                k = qkv[b, members, dim:][:, channels]
                v = qkv[b, members, 2 * dim:][:, channels]
                q = q.reshape(stride, per_window // stride, head_dim).max(axis=0)
                scores = q @ k.T / np.sqrt(head_dim)
                weights = np.exp(scores - scores.max(axis=1, keepdims=True))
                weights /= weights.sum(axis=1, keepdims=True)
                rows = np.arange(per_window // stride) * windows + window
                output[b, rows, channels] = weights @ v
    return output @ proj_kernel + proj_bias


@pytest.mark.parametrize("stride,window,use_mask_units", [(4, 4, True), (1, 16, True),
                                                          (2, 1, False)])
def test_attention_matches_reference(stride, window, use_mask_units):
    layer = MaskUnitAttention(8, 2, stride, window, use_mask_units)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64, 6)).astype("float32")
    layer.build(x.shape)
    for dense in (layer.qkv, layer.proj):  # non-zero biases, so their column order counts
        dense.bias.assign(rng.standard_normal(dense.bias.shape).astype("float32"))
    y = to_numpy(layer(x))
    windows = 64 // (stride * window) if use_mask_units else 1
    expected = reference_attention(
        x.astype("float64"), *(to_numpy(w).astype("float64") for w in (
            layer.qkv.kernel, layer.qkv.bias, layer.proj.kernel, layer.proj.bias)),
        heads=2, stride=stride, windows=windows)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_attention_batch_chunks_keep_logits_within_the_budget():
    from keras_hbehavemae.models.layers.attention import attention_batch_chunks

    # Shot7M2's global stage-1 attention at batch 32: 184 MB of logits, 4 MiB chunks.
    assert attention_batch_chunks((32, 600, 4, 48), 600, 4 * 2**20) == 32
    assert attention_batch_chunks((32, 96, 100, 48), 96, 4 * 2**20) == 29
    assert attention_batch_chunks((32, 8, 2, 4), 8, 4 * 2**20) == 1  # small: one call
    assert attention_batch_chunks((5, 8, 2, 4), 8, 1) == 5  # at most one sample a chunk
    assert attention_batch_chunks((None, 8, 2, 4), 8, 1) == 1  # symbolic batch


@pytest.mark.parametrize("batch,budget", [(5, 1), (7, 2 * 6 * 6 * 4 * 3), (3, 2**30)])
def test_batch_chunked_attention_equals_one_call(batch, budget):
    """Chunks of 1, 3 (7 = 2 + 3 + 2) and all samples give the whole batch's result."""
    from keras_hbehavemae.models.layers.attention import (
        attention_batch_chunks,
        batch_chunked_attention,
    )

    rng = np.random.default_rng(batch)
    query, key, value = (rng.standard_normal((batch, 6, 2, 4)).astype("float32")
                         for _ in range(3))
    expected = to_numpy(keras.ops.dot_product_attention(query, key, value))
    assert attention_batch_chunks(query.shape, 6, budget) == {5: 5, 7: 3, 3: 1}[batch]
    np.testing.assert_allclose(to_numpy(batch_chunked_attention(query, key, value, budget)),
                               expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 7, 8), (3, 2, 1, 4, 8)])
def test_dense_on_rows_is_the_dense_layer(shape):
    """The flat `[rows, C]` product gives the Dense layer's own result and keeps a symbolic
    batch dimension."""
    from keras_hbehavemae.models.layers.dense_rows import dense_on_rows

    dense = keras.layers.Dense(5, bias_initializer="glorot_uniform")
    tokens = np.random.default_rng(0).standard_normal(shape).astype("float32")
    expected = to_numpy(dense(tokens))
    np.testing.assert_allclose(to_numpy(dense_on_rows(dense, tokens)), expected, rtol=1e-6,
                               atol=1e-6)
    symbolic = dense_on_rows(dense, keras.Input(shape[1:]))
    assert tuple(symbolic.shape) == (None, *shape[1:-1], 5)
