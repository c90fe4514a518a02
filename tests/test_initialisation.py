"""Weight initialisation follows the published model (docs/model.md, "Initialisation")."""

import math

import numpy as np
import pytest
from helpers import TINY, build_pretrainer, to_numpy

from keras_hbehavemae import HBehaveMAEConfig


@pytest.fixture(scope="module")
def model():
    config = HBehaveMAEConfig(**{**TINY, "init_embed_dim": 64}, decoder_embed_dim=64)
    return build_pretrainer(config)


def values(variable):
    return to_numpy(variable).astype("float64")


def assert_uniform(array, bound):
    """Inside ±bound, reaching close to it, with the uniform distribution's spread."""
    assert np.abs(array).max() <= bound * (1 + 1e-6)
    assert np.abs(array).max() > 0.9 * bound
    assert array.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_dense_kernels_are_glorot_uniform_on_the_fused_qkv(model):
    block = model.backbone.blocks[1]  # 64 -> 128 with projection
    d_in, dim = block.input_dim, block.dim
    assert_uniform(values(block.attn.qkv.kernel), math.sqrt(6 / (d_in + 3 * dim)))
    assert_uniform(values(block.mlp_fc1.kernel), math.sqrt(6 / (dim + 4 * dim)))
    assert_uniform(values(block.proj.kernel), math.sqrt(6 / (d_in + dim)))
    assert_uniform(values(model.decoder.decoder_pred.kernel),
                   math.sqrt(6 / (64 + model.geometry.pred_stride)))
    for layer in (block.attn.qkv, block.attn.proj, block.mlp_fc1, block.mlp_fc2, block.proj,
                  model.backbone.projections[0], model.decoder.decoder_embed):
        assert not np.any(values(layer.bias))
    assert np.all(values(block.norm1.gamma) == 1) and not np.any(values(block.norm1.beta))


def test_patch_embedding_uses_published_fans(model):
    projection = model.backbone.patch_embedding.projection
    patch_size = math.prod(model.config_object.patch_kernel)  # 6; no channel/receptive fans
    assert_uniform(values(projection.kernel), math.sqrt(6 / (patch_size + 64)))
    bias = values(projection.bias)
    assert np.abs(bias).max() <= 1 / math.sqrt(patch_size)
    assert np.abs(bias).max() > 0.5 / math.sqrt(patch_size)


def test_fusion_heads_use_pytorch_conv_defaults(model):
    head = model.fusion_heads[0]
    fan_in = head.dense.kernel.shape[0]  # |m_0| · out_0 = 16 · 8
    assert fan_in == 128
    assert_uniform(values(head.dense.kernel), 1 / math.sqrt(fan_in))
    assert np.abs(values(head.dense.bias)).max() <= 1 / math.sqrt(fan_in)


def test_embeddings_are_untruncated_normal_std_002(model):
    position = model.backbone.position_embedding
    tables = [position.spatial, position.temporal, model.decoder.decoder_pos_embed,
              model.decoder.mask_token]
    assert [tuple(t.shape) for t in tables] == [(1, 16, 64), (1, 16, 64), (1, 16, 64),
                                                (1, 1, 64)]
    pooled = np.concatenate([values(t).ravel() for t in tables])
    assert pooled.std() == pytest.approx(0.02, rel=0.05)  # TruncatedNormal would give 0.0176
    assert np.abs(pooled).max() > 0.04  # tails beyond 2σ exist: not truncated at 2σ
