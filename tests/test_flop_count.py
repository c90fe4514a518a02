"""Analytic FLOP counts (`benchmarks/flop_count.py`): published sizes and a hand count."""

import flop_count
import pytest

from keras_hbehavemae.models.config import HBehaveMAEConfig, published_configuration
from keras_hbehavemae.models.geometry import compute_geometry

pytestmark = pytest.mark.backend_independent

# A configuration small enough to count by hand: input (8, 1, 4), patch (2, 1, 2) → token
# grid (4, 1, 2), N0 = 8; one pooling stride (2, 1, 2) → mask unit of 4 tokens, U = 2;
# mask ratio 0.5 → K = 1; widths 8 → 16 (2 → 4 heads); out dims 4, 4; decoder 8/1/1.
HAND = HBehaveMAEConfig(
    input_size=(8, 1, 4), patch_kernel=(2, 1, 2), stages=(1, 1), q_strides="2,1,2",
    out_embed_dims=(4, 4), init_embed_dim=8, decoder_embed_dim=8, decoding_strategy="multi",
    mask_ratio=0.5)


def test_dense_and_attention_formulas():
    assert flop_count.dense_flops(3, 5, 7) == 2 * 3 * 5 * 7
    # q·kᵀ and attn·v, each 2·q·k·D per window.
    assert flop_count.attention_flops(windows=3, queries=2, keys=5, dim=4) == 3 * 2 * (
        2 * 2 * 5 * 4)


def test_hand_counted_full_encoder():
    geometry = compute_geometry(HAND)
    parts = flop_count.encoder_forward_breakdown(geometry)
    patch = 2 * 8 * 4 * 8  # 8 tokens, 2·1·2 inputs → 8 channels
    # Block 0: 8 tokens, 8 → 8, mask-unit attention in 2 windows of 4 tokens.
    block0 = (2 * 8 * 8 * 24  # qkv
              + 2 * (2 * 2 * 4 * 4 * 8)  # scores and values
              + 2 * 8 * 8 * 8  # attention projection
              + 2 * (2 * 8 * 8 * 32))  # fc1 + fc2
    # Block 1: 8 → 2 tokens (query stride 4), 8 → 16, mask-unit attention (lag-by-one) in
    # 2 windows of 1 query × 4 keys, projected residual on the 8 input tokens.
    block1 = (2 * 8 * 8 * 48 + 2 * 8 * 8 * 16 + 2 * (2 * 2 * 1 * 4 * 16) + 2 * 2 * 16 * 16
              + 2 * (2 * 2 * 16 * 64))
    projections = [2 * 8 * 8 * 4, 2 * 2 * 16 * 4]  # level grids (4, 1, 2) and (2, 1, 1)
    assert parts == {"patch_embedding": patch, "blocks/0": block0, "blocks/1": block1,
                     "projections/0": projections[0], "projections/1": projections[1]}
    assert (patch, block0, block1) == (512, 13312, 17920)
    assert flop_count.encoder_forward_flops(geometry) == 32512


def test_hand_counted_training_step():
    geometry = compute_geometry(HAND)
    assert (geometry.num_mask_units, geometry.num_kept_units, geometry.pred_stride) == (2, 1, 8)
    # Masked pass: the 4 tokens of the one kept unit.
    patch = 2 * 4 * 4 * 8
    block0 = 2 * 4 * 8 * 24 + 2 * (2 * 1 * 4 * 4 * 8) + 2 * 4 * 8 * 8 + 2 * (2 * 4 * 8 * 32)
    block1 = (2 * 4 * 8 * 48 + 2 * 4 * 8 * 16 + 2 * (2 * 1 * 1 * 4 * 16) + 2 * 1 * 16 * 16
              + 2 * (2 * 1 * 16 * 64))
    projections = 2 * 4 * 8 * 4 + 2 * 1 * 16 * 4  # K·|m_0| = 4 and K·|m_1| = 1 tokens
    assert flop_count.masked_encoder_forward_flops(geometry) == (
        patch + block0 + block1 + projections) == 16256
    # Fusion head 0: a Dense over the kept unit's (2, 1, 2) window of 4 channels → 4.
    assert flop_count.fusion_forward_flops(geometry) == 2 * 1 * (4 * 4) * 4 == 128
    decoder = (2 * 1 * 4 * 8  # decoder_embed on K tokens
               + 2 * 2 * 8 * 24 + 2 * (2 * 2 * 2 * 8) + 2 * 2 * 8 * 8 + 2 * (2 * 2 * 8 * 32)
               + 2 * 2 * 8 * 8)  # decoder_pred: U tokens → P = 8
    assert flop_count.decoder_forward_flops(geometry) == decoder == 3520
    assert flop_count.pretraining_forward_flops(geometry) == 16256 + 128 + 3520
    assert flop_count.training_step_flops(geometry) == 3 * 19904


def test_single_decoding_has_no_fusion_cost():
    geometry = compute_geometry(HAND.replace(decoding_strategy="single"))
    assert flop_count.fusion_forward_flops(geometry) == 0
    assert flop_count.training_step_flops(geometry) == 3 * (16256 + 3520)


def test_shot7m2_matches_the_issue():
    """The performance issue: ≈ 5.43 GFLOP per training sample, ≈ 6.43 GFLOP per window."""
    summary = flop_count.flop_summary(compute_geometry(published_configuration("shot7m2")))
    assert summary["training_step"] == pytest.approx(5.43e9, rel=0.02)
    assert summary["encoder_forward_full"] == pytest.approx(6.43e9, rel=0.02)
    assert summary["encoder_forward_full"] == 6_433_843_200
    assert summary["fusion_forward"] == 0  # "single" decoding


def test_mabe22_counts():
    summary = flop_count.flop_summary(compute_geometry(published_configuration("mabe22")))
    assert summary["encoder_forward_full"] == pytest.approx(4.595e9, rel=1e-3)
    assert summary["training_step"] == pytest.approx(1.683e9, rel=1e-3)
    assert summary["fusion_forward"] > 0  # "multi" decoding


@pytest.mark.parametrize("name", ["shot7m2", "mabe22"])
def test_matmul_lists_are_what_is_counted(name):
    """The shape lists that `benchmarks/matmul_ceiling.py` times add up to the counts."""
    geometry = compute_geometry(published_configuration(name))
    training = flop_count.training_step_matmuls(geometry)
    assert sum(matmul.flops for matmul in training) == flop_count.training_step_flops(geometry)
    batch_of_8 = flop_count.training_step_matmuls(geometry, batch_size=8)
    assert sum(matmul.flops for matmul in batch_of_8) == 8 * sum(m.flops for m in training)
    assert len(training) == flop_count.TRAIN_TO_FORWARD * len(
        flop_count.pretraining_matmuls(geometry))
    forward, input_gradient, weight_gradient = training[:3]
    assert input_gradient[1:4] == (forward.rows, forward.cols, forward.inner)
    assert weight_gradient[1:4] == (forward.inner, forward.rows, forward.cols)
    full = [matmul for part in flop_count.encoder_matmuls(geometry).values() for matmul in part]
    assert sum(matmul.flops for matmul in full) == flop_count.encoder_forward_flops(geometry)


def test_attention_shapes_follow_the_heads():
    # Block 0 of Shot7M2 (masked pass): 15 windows of 96 tokens, 2 heads of 48.
    block = compute_geometry(published_configuration("shot7m2")).blocks[0]
    scores, values = flop_count.hiera_block_matmuls(
        block.tokens_in_masked, block.input_dim, block.dim, windows=block.windows_masked,
        num_heads=block.num_heads)["attention"]
    assert scores == flop_count.Matmul("attention/scores", 96, 48, 96, 30, per_window=True)
    assert values == flop_count.Matmul("attention/values", 96, 96, 48, 30, per_window=True)
    assert flop_count.batched(scores, 4).batch == 120
    assert scores.flops + values.flops == flop_count.attention_flops(15, 96, 96, 96)


def test_module_is_pure():
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(flop_count.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "math", "typing", "keras_hbehavemae", "numpy"}
    from_package = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("keras_hbehavemae")}
    assert from_package <= {"keras_hbehavemae.models.geometry"}
