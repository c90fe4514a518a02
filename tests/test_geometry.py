"""Tests of `keras_hbehavemae.models.geometry` against the published configurations.

Every expected number below is a literal of the published model (settings and geometry,
per-block tables, parameter counts, state-dict key counts; docs/model.md), not recomputed by
the geometry's formulas. The unroll/reroll permutations are checked against an independent
construction from their definition (docs/model.md, "Unroll, reroll and mask units").
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from keras_hbehavemae.models.config import HBehaveMAEConfig
from keras_hbehavemae.models.geometry import compute_geometry

pytestmark = pytest.mark.backend_independent

CONFIGS = {
    "shot7m2": dict(
        input_size=(400, 1, 72), patch_kernel=(2, 1, 3), stages=(2, 3, 4),
        q_strides="2,1,4;2,1,6", out_embed_dims=(78, 128, 256), init_embed_dim=96,
        decoder_embed_dim=128, decoding_strategy="single", norm_loss=False, mask_ratio=0.70),
    "mabe22": dict(
        input_size=(900, 3, 24), patch_kernel=(3, 1, 24), stages=(3, 4, 5),
        q_strides="5,1,1;1,3,1", out_embed_dims=(128, 192, 256), init_embed_dim=128,
        decoder_embed_dim=128, decoding_strategy="multi", norm_loss=True, mask_ratio=0.875),
    "hbabel": dict(
        input_size=(450, 1, 75), patch_kernel=(3, 1, 75), stages=(2, 3, 4),
        q_strides="5,1,1;3,1,1", out_embed_dims=(64, 96, 128), init_embed_dim=128,
        decoder_embed_dim=128, decoding_strategy="multi", norm_loss=False, mask_ratio=0.75),
    "tiny": dict(
        input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
        q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
        decoder_embed_dim=16, decoding_strategy="multi", norm_loss=True, mask_ratio=0.75),
}
NAMES = tuple(CONFIGS)


def config_of(name: str, **changes) -> HBehaveMAEConfig:
    return HBehaveMAEConfig(**{**CONFIGS[name], **changes})


_GEOMETRIES = {}


def geometry_of(name: str):
    if name not in _GEOMETRIES:
        _GEOMETRIES[name] = compute_geometry(config_of(name))
    return _GEOMETRIES[name]


# ---------------------------------------------------------------------------------------------
# Settings and geometry of the published configurations.

TABLE_7_1 = {
    "shot7m2": dict(
        q_strides=((2, 1, 4), (2, 1, 6)), mask_unit_attn=(True, False, False),
        widths=(96, 192, 384), heads=(2, 4, 8), head_dim=48, out=(78, 128, 256),
        decoder=(128, 1, 1), decoding="single", norm_loss=False,
        tokens=(200, 1, 24), n0=4800, mask_unit=(4, 1, 24), mu_size=96,
        mask_grid=(50, 1, 1), units=50, kept=15, effective_ratio=0.700,
        stage_ends=(1, 4, 8), pooling_blocks=(2, 5), m0=(4, 1, 24), m1=(2, 1, 6),
        pred_stride=288, label_patch=(4, 1, 72),
        level_maps=((200, 1, 24), (100, 1, 6), (50, 1, 1)), frames_per_token=(2, 4, 8)),
    "mabe22": dict(
        q_strides=((5, 1, 1), (1, 3, 1)), mask_unit_attn=(True, False, False),
        widths=(128, 256, 512), heads=(2, 4, 8), head_dim=64, out=(128, 192, 256),
        decoder=(128, 1, 1), decoding="multi", norm_loss=True,
        tokens=(300, 3, 1), n0=900, mask_unit=(5, 3, 1), mu_size=15,
        mask_grid=(60, 1, 1), units=60, kept=7, effective_ratio=0.883,
        stage_ends=(2, 6, 11), pooling_blocks=(3, 7), m0=(5, 3, 1), m1=(1, 3, 1),
        pred_stride=360, label_patch=(5, 3, 24),
        level_maps=((300, 3, 1), (60, 3, 1), (60, 1, 1)), frames_per_token=(3, 15, 15)),
    "hbabel": dict(
        q_strides=((5, 1, 1), (3, 1, 1)), mask_unit_attn=(True, False, False),
        widths=(128, 256, 512), heads=(2, 4, 8), head_dim=64, out=(64, 96, 128),
        decoder=(128, 1, 1), decoding="multi", norm_loss=False,
        tokens=(150, 1, 1), n0=150, mask_unit=(15, 1, 1), mu_size=15,
        mask_grid=(10, 1, 1), units=10, kept=2, effective_ratio=0.800,
        stage_ends=(1, 4, 8), pooling_blocks=(2, 5), m0=(15, 1, 1), m1=(3, 1, 1),
        pred_stride=1125, label_patch=(15, 1, 75),
        level_maps=((150, 1, 1), (30, 1, 1), (10, 1, 1)), frames_per_token=(3, 15, 45)),
    "tiny": dict(
        q_strides=((2, 1, 2), (2, 2, 1)), mask_unit_attn=(True, False, False),
        widths=(16, 32, 64), heads=(2, 4, 8), head_dim=8, out=(8, 12, 16),
        decoder=(16, 1, 1), decoding="multi", norm_loss=True,
        tokens=(16, 4, 4), n0=256, mask_unit=(4, 2, 2), mu_size=16,
        mask_grid=(4, 2, 2), units=16, kept=4, effective_ratio=0.75,
        stage_ends=(0, 2, 3), pooling_blocks=(1, 3), m0=(4, 2, 2), m1=(2, 2, 1),
        pred_stride=48, label_patch=(4, 2, 6),
        level_maps=((16, 4, 4), (8, 4, 2), (4, 2, 2)), frames_per_token=(2, 4, 8)),
}


@pytest.mark.parametrize("name", NAMES)
def test_settings(name):
    expected, config = TABLE_7_1[name], config_of(name)
    assert config.q_strides == expected["q_strides"]
    assert config.mask_unit_attn == expected["mask_unit_attn"]
    assert config.out_embed_dims == expected["out"]
    assert (config.decoder_embed_dim, config.decoder_depth, config.decoder_num_heads) == (
        expected["decoder"])
    assert config.decoding_strategy == expected["decoding"]
    assert config.norm_loss is expected["norm_loss"]
    assert config.init_num_heads == 2


@pytest.mark.parametrize("name", NAMES)
def test_widths_heads_and_head_dim(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    assert tuple(level.dim for level in geometry.levels) == expected["widths"]
    assert tuple(level.num_heads for level in geometry.levels) == expected["heads"]
    assert {block.head_dim for block in geometry.blocks} == {expected["head_dim"]}
    assert tuple(level.out_dim for level in geometry.levels) == expected["out"]
    assert geometry.out_embed_dims == expected["out"]


@pytest.mark.parametrize("name", NAMES)
def test_tokens_and_mask_units(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    assert geometry.token_grid == expected["tokens"]
    assert geometry.num_tokens == expected["n0"]
    assert geometry.q_strides == expected["q_strides"]
    assert geometry.num_pooling_stages == 2
    assert geometry.mask_unit == expected["mask_unit"]
    assert geometry.mask_unit_tokens == expected["mu_size"]
    assert geometry.mask_grid == expected["mask_grid"]
    assert geometry.num_mask_units == expected["units"]


@pytest.mark.parametrize("name", NAMES)
def test_kept_units_and_effective_ratio(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    assert geometry.num_kept_units == expected["kept"]
    assert geometry.num_masked_units == expected["units"] - expected["kept"]
    assert round(geometry.effective_mask_ratio, 3) == expected["effective_ratio"]
    config_of(name).validate_for_training()


@pytest.mark.parametrize("name", NAMES)
def test_stage_ends_and_pooling_blocks(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    assert geometry.stage_ends == expected["stage_ends"]
    assert geometry.pooling_blocks == expected["pooling_blocks"]
    assert tuple(level.stage_end_block for level in geometry.levels) == expected["stage_ends"]
    assert tuple(b.index for b in geometry.blocks if b.is_stage_end) == expected["stage_ends"]
    assert tuple(b.index for b in geometry.blocks if b.query_stride > 1) == (
        expected["pooling_blocks"])
    assert geometry.depth == expected["stage_ends"][-1] + 1


@pytest.mark.parametrize("name", NAMES)
def test_fusion_windows(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    assert geometry.fused_levels == (0, 1)
    assert geometry.levels[0].window == expected["m0"]
    assert geometry.levels[1].window == expected["m1"]
    assert geometry.levels[2].window == (1, 1, 1)  # the final mask unit is one token


@pytest.mark.parametrize("name", NAMES)
def test_pred_stride(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    assert geometry.pred_stride == expected["pred_stride"]
    assert geometry.label_patch == expected["label_patch"]


def test_shot7m2_pred_stride_is_not_192():
    # The circulating value 192 uses patch[t]·patch[h] instead of patch[h]·patch[w].
    assert geometry_of("shot7m2").pred_stride != 192


@pytest.mark.parametrize("name", NAMES)
def test_level_maps_and_frames_per_token(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    assert tuple(level.grid for level in geometry.levels) == expected["level_maps"]
    assert tuple(level.num_tokens for level in geometry.levels) == tuple(
        int(np.prod(grid)) for grid in expected["level_maps"])
    assert tuple(level.frames_per_token for level in geometry.levels) == (
        expected["frames_per_token"])
    assert geometry.levels[-1].grid == expected["mask_grid"]


@pytest.mark.parametrize("name", NAMES)
def test_summary_dict(name):
    expected, summary = TABLE_7_1[name], geometry_of(name).summary_dict()
    assert summary["token_grid"] == expected["tokens"]
    assert summary["num_tokens"] == expected["n0"]
    assert summary["mask_unit"] == expected["mask_unit"]
    assert summary["mask_unit_tokens"] == expected["mu_size"]
    assert summary["mask_grid"] == expected["mask_grid"]
    assert summary["num_mask_units"] == expected["units"]
    assert summary["num_kept_units"] == expected["kept"]
    assert summary["stage_ends"] == expected["stage_ends"]
    assert summary["pooling_blocks"] == expected["pooling_blocks"]
    assert summary["pred_stride"] == expected["pred_stride"]
    assert summary["label_patch"] == expected["label_patch"]
    assert summary["level_grids"] == expected["level_maps"]
    assert summary["level_windows"][:2] == (expected["m0"], expected["m1"])
    assert summary["frames_per_token"] == expected["frames_per_token"]


# ---------------------------------------------------------------------------------------------
# Per-block tables. Row: (first block, last block, d_in, D, +proj, heads, s, 3-D s,
# w, MU, lag, masked (N_in, windows, queries/window, keys/window), full (N_in, windows)).

TABLE_7_2 = {
    "shot7m2": [
        (0, 1, 96, 96, False, 2, 1, (1, 1, 1), 96, True, False, (1440, 15, 96, 96), (4800, 50)),
        (2, 2, 96, 192, True, 4, 8, (2, 1, 4), 12, True, True, (1440, 15, 12, 96), (4800, 50)),
        (3, 4, 192, 192, False, 4, 1, (1, 1, 1), 12, False, False, (180, 1, 180, 180),
         (600, 1)),
        (5, 5, 192, 384, True, 8, 12, (2, 1, 6), 1, False, True, (180, 1, 15, 180), (600, 1)),
        (6, 8, 384, 384, False, 8, 1, (1, 1, 1), 1, False, False, (15, 1, 15, 15), (50, 1)),
    ],
    "mabe22": [
        (0, 2, 128, 128, False, 2, 1, (1, 1, 1), 15, True, False, (105, 7, 15, 15), (900, 60)),
        (3, 3, 128, 256, True, 4, 5, (5, 1, 1), 3, True, True, (105, 7, 3, 15), (900, 60)),
        (4, 6, 256, 256, False, 4, 1, (1, 1, 1), 3, False, False, (21, 1, 21, 21), (180, 1)),
        (7, 7, 256, 512, True, 8, 3, (1, 3, 1), 1, False, True, (21, 1, 7, 21), (180, 1)),
        (8, 11, 512, 512, False, 8, 1, (1, 1, 1), 1, False, False, (7, 1, 7, 7), (60, 1)),
    ],
    "hbabel": [
        (0, 1, 128, 128, False, 2, 1, (1, 1, 1), 15, True, False, (30, 2, 15, 15), (150, 10)),
        (2, 2, 128, 256, True, 4, 5, (5, 1, 1), 3, True, True, (30, 2, 3, 15), (150, 10)),
        (3, 4, 256, 256, False, 4, 1, (1, 1, 1), 3, False, False, (6, 1, 6, 6), (30, 1)),
        (5, 5, 256, 512, True, 8, 3, (3, 1, 1), 1, False, True, (6, 1, 2, 6), (30, 1)),
        (6, 8, 512, 512, False, 8, 1, (1, 1, 1), 1, False, False, (2, 1, 2, 2), (10, 1)),
    ],
    # The tiny rows (d_in→D, +proj, MU/lag, s, w, heads) and their token/window counts (K = 4,
    # mu_size 16) were worked out by hand from the rules and the tiny fixture's settings.
    "tiny": [
        (0, 0, 16, 16, False, 2, 1, (1, 1, 1), 16, True, False, (64, 4, 16, 16), (256, 16)),
        (1, 1, 16, 32, True, 4, 4, (2, 1, 2), 4, True, True, (64, 4, 4, 16), (256, 16)),
        (2, 2, 32, 32, False, 4, 1, (1, 1, 1), 4, False, False, (16, 1, 16, 16), (64, 1)),
        (3, 3, 32, 64, True, 8, 4, (2, 2, 1), 1, False, True, (16, 1, 4, 16), (64, 1)),
    ],
}
BLOCK_CASES = [
    pytest.param(name, index, row, id=f"{name}-block{index}")
    for name, rows in TABLE_7_2.items()
    for row in rows
    for index in range(row[0], row[1] + 1)
]


@pytest.mark.parametrize("name, index, row", BLOCK_CASES)
def test_block_row(name, index, row):
    (_, _, d_in, dim, proj, heads, stride, stride_3d, window, use_mu, lag, masked, full) = row
    block = geometry_of(name).blocks[index]
    assert block.index == index
    assert (block.input_dim, block.dim) == (d_in, dim)
    assert block.has_projection is proj
    assert block.num_heads == heads
    assert block.head_dim * heads == dim
    assert block.query_stride == stride
    assert block.query_stride_3d == stride_3d
    assert block.window_size == window
    assert block.use_mask_unit_attention is use_mu
    assert block.opens_stage is lag
    assert block.mlp_hidden_dim == 4 * dim
    assert (block.tokens_in_masked, block.windows_masked, block.queries_per_window_masked,
            block.keys_per_window_masked) == masked
    assert (block.tokens_in_full, block.windows_full) == full
    assert block.tokens_out_masked == masked[0] // stride
    assert block.tokens_out_full == full[0] // stride


@pytest.mark.parametrize("name", NAMES)
def test_block_tables_cover_every_block(name):
    rows = TABLE_7_2[name]
    assert [index for row in rows for index in range(row[0], row[1] + 1)] == list(
        range(geometry_of(name).depth))


@pytest.mark.parametrize("name", NAMES)
def test_lag_by_one_rule(name):
    # The first (pooling) block of stage 1 keeps stage 0's mask-unit attention (the lag-by-one
    # rule; "stage 1 attends globally from its first block" is a frequent misreading).
    geometry = geometry_of(name)
    first_of_stage_1 = geometry.stage_ends[0] + 1
    assert geometry.blocks[first_of_stage_1].stage == 1
    assert geometry.blocks[first_of_stage_1].use_mask_unit_attention is True
    assert geometry.blocks[first_of_stage_1 + 1].use_mask_unit_attention is False


def test_lag_by_one_rule_with_other_attention_pattern():
    # mask_unit_attn (F, T, F): block 1 (first of stage 1) keeps stage 0's global attention;
    # block 2 uses mask units; block 3 (first of stage 2) keeps stage 1's mask units.
    geometry = compute_geometry(config_of("tiny", mask_unit_attn="False True False"))
    assert [b.use_mask_unit_attention for b in geometry.blocks] == [False, False, True, True]
    assert [b.windows_full for b in geometry.blocks] == [1, 1, 16, 16]
    assert [b.windows_masked for b in geometry.blocks] == [1, 1, 4, 4]


@pytest.mark.parametrize("name, shapes", [
    ("shot7m2", [(15, 4, 1, 24, 78), (15, 2, 1, 6, 128), (15, 1, 1, 1, 256)]),
    ("tiny", [(4, 4, 2, 2, 8), (4, 2, 2, 1, 12), (4, 1, 1, 1, 16)]),
])
def test_masked_level_output_shapes(name, shapes):
    # Masked level outputs [B, K, m_k..., out_k] (the fixtures' intermediate/<k> arrays).
    geometry = geometry_of(name)
    for level, shape in zip(geometry.levels, shapes, strict=True):
        reroll = geometry.reroll(level.stage, num_units=geometry.num_kept_units)
        assert (*reroll.output_shape, level.out_dim) == shape


@pytest.mark.parametrize("name", NAMES)
def test_reroll_shapes(name):
    expected, geometry = TABLE_7_1[name], geometry_of(name)
    windows = (expected["m0"], expected["m1"], (1, 1, 1))
    for k in range(3):
        assert geometry.reroll(k).output_shape == expected["level_maps"][k]
        assert geometry.reroll(k, num_units=expected["kept"]).output_shape == (
            expected["kept"], *windows[k])
        assert geometry.reroll(k, num_units=expected["units"]).output_shape == (
            expected["units"], *windows[k])


# ---------------------------------------------------------------------------------------------
# Parameter counts and state-dict key counts.

TABLE_7_3 = {
    "shot7m2": dict(
        patch_embed=672, pos_spatial=2_304, pos_temporal=19_200, blocks=8_471_808,
        projections=130_830, encoder=8_624_814, encoder_norm=512,
        fusion=2_310_656, fusion_heads=(1_917_184, 393_472), decoder_embed=32_896,
        mask_token=128, decoder_pos=6_400, decoder_block=198_272, decoder_norm=256,
        decoder_pred=37_152, total=11_211_086, reference_encoder=8_664_082,
        per_block=[111_840] * 2 + [408_000] + [444_864] * 2 + [1_627_008] + [1_774_464] * 3,
        keys=148),
    "mabe22": dict(
        patch_embed=9_344, pos_spatial=384, pos_temporal=38_400, blocks=19_188_096,
        projections=197_184, encoder=19_433_408, encoder_norm=512,
        fusion=639_488, fusion_heads=(491_776, 147_712), decoder_embed=32_896,
        mask_token=128, decoder_pos=7_680, decoder_block=198_272, decoder_norm=256,
        decoder_pred=46_440, total=20_359_080, reference_encoder=19_485_732,
        per_block=[198_272] * 3 + [724_224] + [789_760] * 3 + [2_890_240] + [3_152_384] * 4,
        keys=184),
    "hbabel": dict(
        patch_embed=28_928, pos_spatial=128, pos_temporal=19_200, blocks=15_047_680,
        projections=98_592, encoder=15_194_528, encoder_norm=256,
        fusion=160_000, fusion_heads=(123_008, 36_992), decoder_embed=16_512,
        mask_token=128, decoder_pos=1_280, decoder_block=198_272, decoder_norm=256,
        decoder_pred=145_125, total=15_716_357, reference_encoder=15_246_852,
        per_block=[198_272] * 2 + [724_224] + [789_760] * 2 + [2_890_240] + [3_152_384] * 3,
        keys=148),
    "tiny": dict(
        patch_embed=112, pos_spatial=256, pos_temporal=256, blocks=73_552,
        projections=1_572, encoder=75_748, encoder_norm=32,
        fusion=2_848, fusion_heads=None, decoder_embed=272,
        mask_token=16, decoder_pos=256, decoder_block=3_280, decoder_norm=32,
        decoder_pred=816, total=83_300, reference_encoder=None,
        per_block=[3_280, 11_680, 12_704, 45_888],
        keys=88),
}


@pytest.mark.parametrize("name", NAMES)
def test_table_7_3_is_self_consistent(name):
    # Guards the transcription: the parts add up to the subtotals and the total.
    t = TABLE_7_3[name]
    assert t["patch_embed"] + t["pos_spatial"] + t["pos_temporal"] + t["blocks"] + (
        t["projections"]) == t["encoder"]
    assert sum(t["per_block"]) == t["blocks"]
    decoder = (t["decoder_embed"] + t["mask_token"] + t["decoder_pos"] + t["decoder_block"]
               + t["decoder_norm"] + t["decoder_pred"])
    assert t["encoder"] + t["encoder_norm"] + t["fusion"] + decoder == t["total"]
    if t["fusion_heads"] is not None:
        assert sum(t["fusion_heads"]) == t["fusion"]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_per_part(name):
    t, counts = TABLE_7_3[name], geometry_of(name).parameter_counts
    assert counts["patch_embed"] == t["patch_embed"]
    assert counts["position_embedding"] == t["pos_spatial"] + t["pos_temporal"]
    assert counts["blocks"] == t["blocks"]
    assert counts["projections"] == t["projections"]
    assert counts["encoder"] == t["encoder"]
    assert counts["encoder_norm"] == t["encoder_norm"]
    assert counts["fusion_heads"] == t["fusion"]
    assert counts["decoder"] == (t["decoder_embed"] + t["mask_token"] + t["decoder_pos"]
                                 + t["decoder_block"] + t["decoder_norm"] + t["decoder_pred"])
    assert counts["total"] == t["total"]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_per_block(name):
    geometry = geometry_of(name)
    assert [block.parameters for block in geometry.blocks] == TABLE_7_3[name]["per_block"]
    # Level parameters are the stage's blocks plus its projection.
    assert sum(level.parameters for level in geometry.levels) == (
        TABLE_7_3[name]["blocks"] + TABLE_7_3[name]["projections"])


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_match_state_dict_shapes(name):
    # The parts that `parameter_counts` aggregates, from the geometry's state-dict tensor shapes.
    t, geometry = TABLE_7_3[name], geometry_of(name)
    config = geometry.config
    t_grid, h_grid, w_grid = geometry.token_grid
    assert h_grid * w_grid * config.init_embed_dim == t["pos_spatial"]
    assert t_grid * config.init_embed_dim == t["pos_temporal"]
    decoder_dim, last_out = config.decoder_embed_dim, geometry.out_embed_dims[-1]
    assert decoder_dim * last_out + decoder_dim == t["decoder_embed"]
    assert geometry.num_mask_units * decoder_dim == t["decoder_pos"]
    assert geometry.pred_stride * decoder_dim + geometry.pred_stride == t["decoder_pred"]
    if t["fusion_heads"] is not None:
        for k, head in zip(geometry.fused_levels, t["fusion_heads"], strict=True):
            level = geometry.levels[k]
            assert last_out * level.out_dim * level.window_size + last_out == head


@pytest.mark.parametrize("name", ["shot7m2", "mabe22", "hbabel"])
def test_reference_inference_encoder_count(name):
    # The published inference encoder adds a norm and a 100-class head.
    geometry = geometry_of(name)
    last_dim = geometry.levels[-1].dim
    extra = 2 * last_dim + 100 * last_dim + 100
    assert geometry.parameter_counts["encoder"] + extra == TABLE_7_3[name]["reference_encoder"]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_key_count(name):
    # 6 + 12·depth + 2·(width-changing blocks) + 2·L + 2 + 2·Q + 2 + 12·dd + 4.
    geometry = geometry_of(name)
    width_changing = sum(block.has_projection for block in geometry.blocks)
    keys = (6 + 12 * geometry.depth + 2 * width_changing + 2 * len(geometry.levels) + 2
            + 2 * len(geometry.fused_levels) + 2 + 12 * geometry.config.decoder_depth + 4)
    assert keys == TABLE_7_3[name]["keys"]


def test_decoder_and_latent_shapes():
    # Latent [B, K, 1, 1, 1, out_{L-1}], pred [B, U, P].
    expected = {"shot7m2": (15, 256, 50, 288), "mabe22": (7, 256, 60, 360),
                "hbabel": (2, 128, 10, 1125), "tiny": (4, 16, 16, 48)}
    for name, (kept, last_out, units, pred) in expected.items():
        geometry = geometry_of(name)
        assert (geometry.num_kept_units, geometry.out_embed_dims[-1], geometry.num_mask_units,
                geometry.pred_stride) == (kept, last_out, units, pred)


# ---------------------------------------------------------------------------------------------
# Receptive fields and token extents (Shot7M2).

def test_shot7m2_token_extent_and_receptive_field():
    levels = geometry_of("shot7m2").levels
    assert [level.token_extent for level in levels] == [(2, 1, 3), (4, 1, 12), (8, 1, 72)]
    # Level 0 only uses mask-unit attention: one mask unit of the input (8 frames × 72).
    assert levels[0].receptive_field == (8, 1, 72)
    # Later levels contain global-attention blocks: the whole window.
    assert levels[1].receptive_field == (400, 1, 72)
    assert levels[2].receptive_field == (400, 1, 72)
    assert [level.strides_applied for level in levels] == [(1, 1, 1), (2, 1, 4), (4, 1, 24)]


def test_receptive_field_with_mask_units_in_two_stages():
    # mask_unit_attn (T, T, F) on Shot7M2: stage 1 uses mask units, so level 1 still sees one
    # mask unit; blocks 6-8 of stage 2 are global, so level 2 sees the whole input.
    levels = compute_geometry(config_of("shot7m2", mask_unit_attn="True True False")).levels
    assert [level.receptive_field for level in levels] == [(8, 1, 72), (8, 1, 72),
                                                           (400, 1, 72)]
    # Tiny (T, T, F): stage 2 is the single block 3, which by the lag rule keeps stage 1's
    # mask-unit attention, so no block is global and every level sees one mask unit.
    levels = compute_geometry(config_of("tiny", mask_unit_attn="True True False")).levels
    assert [level.receptive_field for level in levels] == [(8, 2, 6)] * 3
    assert [level.token_extent for level in levels] == [(2, 1, 3), (4, 1, 6), (8, 2, 6)]


# ---------------------------------------------------------------------------------------------
# Unroll, built independently from its definition:
# t = gt·Mt + o2t·s1t + o1t (same for h, w); unrolled index = row-major over
# (o1t, o1h, o1w, o2t, o2h, o2w, u), u = (gt·Gh + gh)·Gw + gw.

def expected_unroll(name: str) -> np.ndarray:
    """expected[n] = natural (row-major grid) index of the token at unrolled position n."""
    config = config_of(name)
    s1, s2 = config.q_strides
    grid = tuple(i // p for i, p in zip(config.input_size, config.patch_kernel, strict=True))
    mask_unit = tuple(a * b for a, b in zip(s1, s2, strict=True))
    mask_grid = tuple(g // m for g, m in zip(grid, mask_unit, strict=True))
    order = []
    for o1t, o1h, o1w, o2t, o2h, o2w in itertools.product(
            range(s1[0]), range(s1[1]), range(s1[2]), range(s2[0]), range(s2[1]), range(s2[2])):
        for gt, gh, gw in itertools.product(*(range(g) for g in mask_grid)):
            t = gt * mask_unit[0] + o2t * s1[0] + o1t
            h = gh * mask_unit[1] + o2h * s1[1] + o1h
            w = gw * mask_unit[2] + o2w * s1[2] + o1w
            order.append((t * grid[1] + h) * grid[2] + w)
    return np.array(order)


def natural_tokens(n: int) -> np.ndarray:
    return np.arange(n)[None, :, None]


@pytest.mark.parametrize("name", NAMES)
def test_unroll_matches_definition(name):
    geometry = geometry_of(name)
    unrolled = geometry.unroll.apply_numpy(natural_tokens(geometry.num_tokens))
    assert unrolled.shape == (1, geometry.num_tokens, 1)
    expected = expected_unroll(name)
    assert sorted(expected.tolist()) == list(range(geometry.num_tokens))  # a permutation
    np.testing.assert_array_equal(unrolled[0, :, 0], expected)


def test_unroll_tiny_first_entries_by_hand():
    # Tiny: grid (16,4,4), s1 (2,1,2), s2 (2,2,1), M (4,2,2), G (4,2,2). Position n < 16 has all
    # offsets 0 and unit u = n: token (4·gt, 2·gh, 2·gw) → index (4gt·4 + 2gh)·4 + 2gw.
    unrolled = geometry_of("tiny").unroll.apply_numpy(natural_tokens(256))[0, :, 0]
    assert unrolled[:16].tolist() == [0, 2, 8, 10, 64, 66, 72, 74, 128, 130, 136, 138,
                                      192, 194, 200, 202]
    # n = 16: o2w (size 1) is skipped, o2h = 1 → h + 1 → +4; n = 32: o2t = 1 → t + 2 → +32.
    assert unrolled[16] == 4 and unrolled[32] == 32
    # n = 64: o1w = 1 → w + 1; n = 128: o1t = 1 → t + 1 → +16.
    assert unrolled[64] == 1 and unrolled[128] == 16


def test_unroll_keeps_channels_and_batch():
    geometry = geometry_of("tiny")
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(3, 256, 5))
    unrolled = geometry.unroll.apply_numpy(tokens)
    expected = expected_unroll("tiny")
    np.testing.assert_array_equal(unrolled, tokens[:, expected, :])


def unit_of_natural_index(geometry, index: np.ndarray) -> np.ndarray:
    _, h_grid, w_grid = geometry.token_grid
    t, h, w = index // (h_grid * w_grid), (index // w_grid) % h_grid, index % w_grid
    gt, gh, gw = (t // geometry.mask_unit[0], h // geometry.mask_unit[1],
                  w // geometry.mask_unit[2])
    return (gt * geometry.mask_grid[1] + gh) * geometry.mask_grid[2] + gw


@pytest.mark.parametrize("name", NAMES)
def test_unit_of_unrolled_position_is_n_mod_u(name):
    # The unit of unrolled position n is n mod U, spot-checked on Shot7M2 (and the others).
    geometry = geometry_of(name)
    unrolled = geometry.unroll.apply_numpy(natural_tokens(geometry.num_tokens))[0, :, 0]
    positions = np.arange(geometry.num_tokens)
    units = unit_of_natural_index(geometry, unrolled)
    np.testing.assert_array_equal(units, positions % geometry.num_mask_units)


def test_shot7m2_unit_of_masked_position_is_n_mod_k():
    # Consequence (a) after masking and (c): [mu_size, U] -> take kept u -> [mu_size·K].
    geometry = geometry_of("shot7m2")
    kept = np.array([0, 3, 4, 7, 11, 12, 18, 20, 25, 29, 33, 38, 41, 45, 49])
    assert len(kept) == geometry.num_kept_units
    unrolled = geometry.unroll.apply_numpy(natural_tokens(4800))[0, :, 0]
    masked = unrolled.reshape(96, 50)[:, kept].reshape(-1)
    units = unit_of_natural_index(geometry, masked)
    np.testing.assert_array_equal(units, kept[np.arange(96 * 15) % 15])


# ---------------------------------------------------------------------------------------------
# Reroll.

def pool(tokens: np.ndarray, stride: int) -> np.ndarray:
    """maxpool_s over the whole sequence: max over the s leading chunks."""
    batch, length, channels = tokens.shape
    return tokens.reshape(batch, stride, length // stride, channels).max(axis=1)


def pooled_level_tokens(geometry, tokens: np.ndarray, level: int) -> np.ndarray:
    for stride in geometry.q_strides[:level]:
        tokens = pool(tokens, int(np.prod(stride)))
    return tokens


def strides_before(name: str, level: int) -> tuple[int, int, int]:
    applied = [1, 1, 1]
    for stride in config_of(name).q_strides[:level]:
        applied = [a * s for a, s in zip(applied, stride, strict=True)]
    return tuple(applied)


@pytest.mark.parametrize("name", NAMES)
def test_reroll_level0_inverts_unroll(name):
    # reroll(0) ∘ unroll is the identity on a natural-order token grid.
    geometry = geometry_of(name)
    tokens = natural_tokens(geometry.num_tokens)
    level_map = geometry.reroll(0).apply_numpy(geometry.unroll.apply_numpy(tokens))
    assert level_map.shape == (1, *geometry.token_grid, 1)
    np.testing.assert_array_equal(level_map.reshape(-1), np.arange(geometry.num_tokens))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("level", [1, 2])
def test_reroll_after_pooling_gives_natural_level_map(name, level):
    # Natural indices increase with every coordinate, so the max over a pooling group is the
    # token at the group's last offset: level-k position p ↦ stage-0 token p·A + A − 1.
    geometry = geometry_of(name)
    tokens = geometry.unroll.apply_numpy(natural_tokens(geometry.num_tokens))
    level_map = geometry.reroll(level).apply_numpy(pooled_level_tokens(geometry, tokens, level))
    grid = TABLE_7_1[name]["level_maps"][level]
    applied = strides_before(name, level)
    _, h_grid, w_grid = geometry.token_grid
    expected = np.zeros(grid, dtype=int)
    for t, h, w in itertools.product(*(range(g) for g in grid)):
        t0, h0, w0 = ((p + 1) * a - 1 for p, a in zip((t, h, w), applied, strict=True))
        expected[t, h, w] = (t0 * h_grid + h0) * w_grid + w0
    np.testing.assert_array_equal(level_map[0, ..., 0], expected)


def test_tiny_masked_reroll_by_hand():
    # Tiny, level 0, one kept unit: the 16 tokens of the unit come in the unrolled order
    # (o1t, o1h, o1w, o2t, o2h, o2w) with sizes (2, 1, 2, 2, 2, 1), so sequence position
    # n = 8·o1t + 4·o1w + 2·o2t + o2h. Within the window (4, 2, 2) the coordinate is
    # wt = 2·o2t + o1t, wh = o2h, ww = o1w (coarsest stride most significant), row-major.
    reroll = geometry_of("tiny").reroll(0, num_units=1)
    windows = reroll.apply_numpy(natural_tokens(16))
    assert windows.shape == (1, 1, 4, 2, 2, 1)
    expected = [
        [[0, 4], [1, 5]],  # wt = 0: o2t = 0, o1t = 0
        [[8, 12], [9, 13]],  # wt = 1: o2t = 0, o1t = 1
        [[2, 6], [3, 7]],  # wt = 2: o2t = 1, o1t = 0
        [[10, 14], [11, 15]],  # wt = 3: o2t = 1, o1t = 1
    ]
    np.testing.assert_array_equal(windows[0, 0, ..., 0], expected)
    # With two kept units the unit is the innermost axis: sequence position 2·n + r.
    windows = geometry_of("tiny").reroll(0, num_units=2).apply_numpy(natural_tokens(32))
    assert windows.shape == (1, 2, 4, 2, 2, 1)
    for r in range(2):
        np.testing.assert_array_equal(windows[0, r, ..., 0], 2 * np.array(expected) + r)


def test_tiny_masked_reroll_level1_by_hand():
    # Level 1, one unit: the remaining offsets (o2t, o2h, o2w) of sizes (2, 2, 1) give the
    # window (2, 2, 1) directly: position n = 2·o2t + o2h.
    windows = geometry_of("tiny").reroll(1, num_units=1).apply_numpy(natural_tokens(4))
    assert windows.shape == (1, 1, 2, 2, 1, 1)
    np.testing.assert_array_equal(windows[0, 0, :, :, 0, 0], [[0, 1], [2, 3]])
    # Level 2: one token per unit; units in order.
    windows = geometry_of("tiny").reroll(2, num_units=3).apply_numpy(natural_tokens(3))
    assert windows.shape == (1, 3, 1, 1, 1, 1)
    np.testing.assert_array_equal(windows.reshape(-1), [0, 1, 2])


@pytest.mark.parametrize("level", [0, 1, 2])
def test_tiny_masked_pass_windows_hold_the_kept_units(level):
    # Full masked pipeline: unroll, keep units (ascending), pool, reroll(k, K). Window r holds
    # unit kept[r]; its position (wt, wh, ww) is level-k coordinate g·m_k + (wt, wh, ww).
    geometry = geometry_of("tiny")
    kept = np.array([1, 6, 7, 12])
    tokens = geometry.unroll.apply_numpy(natural_tokens(256))
    tokens = tokens.reshape(1, 16, 16, 1)[:, :, kept, :].reshape(1, 64, 1)
    windows = geometry.reroll(level, num_units=4).apply_numpy(
        pooled_level_tokens(geometry, tokens, level))
    window = (TABLE_7_1["tiny"]["m0"], TABLE_7_1["tiny"]["m1"], (1, 1, 1))[level]
    assert windows.shape == (1, 4, *window, 1)
    applied = strides_before("tiny", level)
    for r, unit in enumerate(kept):
        g = (unit // 4, (unit // 2) % 2, unit % 2)  # mask grid (4, 2, 2)
        for wt, wh, ww in itertools.product(*(range(m) for m in window)):
            level_coord = [gi * mi + wi for gi, mi, wi in zip(g, window, (wt, wh, ww),
                                                             strict=True)]
            t0, h0, w0 = ((c + 1) * a - 1 for c, a in zip(level_coord, applied, strict=True))
            assert windows[0, r, wt, wh, ww, 0] == (t0 * 4 + h0) * 4 + w0


# ---------------------------------------------------------------------------------------------
# Non-hierarchical variant.

def non_hierarchical_geometry():
    with pytest.warns(UserWarning, match="non_hierarchical=True overrides"):
        config = config_of("shot7m2", non_hierarchical=True)
    return compute_geometry(config)


def test_non_hierarchical_overrides():
    geometry = non_hierarchical_geometry()
    assert geometry.q_strides == ((1, 1, 1),) * 3
    assert geometry.num_pooling_stages == 3  # Q = L
    assert geometry.out_embed_dims == (78, 78, 78)
    assert [level.out_dim for level in geometry.levels] == [78, 78, 78]
    assert [level.dim for level in geometry.levels] == [96, 96, 96]
    assert [level.num_heads for level in geometry.levels] == [2, 2, 2]
    assert geometry.fused_levels == (0, 1, 2)  # all L levels get a 1×1×1 head


def test_non_hierarchical_blocks():
    geometry = non_hierarchical_geometry()
    assert geometry.depth == 9
    for block in geometry.blocks:
        assert (block.input_dim, block.dim, block.num_heads) == (96, 96, 2)
        assert block.use_mask_unit_attention is False
        assert block.query_stride == 1 and block.query_stride_3d == (1, 1, 1)
        assert block.has_projection is False
        assert block.window_size == 1
        assert (block.tokens_in_full, block.windows_full) == (4800, 1)
        assert (block.tokens_in_masked, block.windows_masked) == (1440, 1)
        assert block.parameters == 111_840


def test_non_hierarchical_mask_unit_is_one_token():
    geometry = non_hierarchical_geometry()
    assert geometry.mask_unit == (1, 1, 1)
    assert geometry.mask_unit_tokens == 1
    assert geometry.mask_grid == (200, 1, 24)
    assert geometry.num_mask_units == 4800  # U = N0
    assert geometry.num_kept_units == 1440  # int(4800 · 0.3)
    assert geometry.pred_stride == 3 and geometry.label_patch == (1, 1, 3)
    for level in geometry.levels:
        assert level.grid == (200, 1, 24)
        assert level.window == (1, 1, 1)
        assert level.frames_per_token == 2
        assert level.receptive_field == (400, 1, 72)


def test_non_hierarchical_permutations_are_identities():
    geometry = non_hierarchical_geometry()
    tokens = natural_tokens(4800)
    np.testing.assert_array_equal(geometry.unroll.apply_numpy(tokens), tokens)
    for k in range(3):
        np.testing.assert_array_equal(geometry.reroll(k).apply_numpy(tokens).reshape(-1),
                                      np.arange(4800))
        windows = geometry.reroll(k, num_units=1440).apply_numpy(natural_tokens(1440))
        assert windows.shape == (1, 1440, 1, 1, 1, 1)
        np.testing.assert_array_equal(windows.reshape(-1), np.arange(1440))


def test_non_hierarchical_parameter_counts():
    counts = non_hierarchical_geometry().parameter_counts
    assert counts["blocks"] == 9 * 111_840
    assert counts["projections"] == 3 * (96 * 78 + 78)
    assert counts["fusion_heads"] == 3 * (78 * 78 + 78)
    assert counts["encoder_norm"] == 2 * 78


def test_non_hierarchical_without_conflict_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = config_of("tiny", non_hierarchical=True, q_strides=(),
                           out_embed_dims=(8, 8, 8))
    geometry = compute_geometry(config)
    assert geometry.num_mask_units == geometry.num_tokens == 256
    assert geometry.fused_levels == (0, 1, 2)


# ---------------------------------------------------------------------------------------------
# Fewer q-strides than stage transitions (Q < L − 1): hand-worked on the tiny input.

def test_single_q_stride_with_three_stages():
    geometry = compute_geometry(config_of("tiny", q_strides="2,1,2", stages=(1, 1, 1)))
    assert geometry.num_pooling_stages == 1
    assert geometry.mask_unit == (2, 1, 2) and geometry.mask_unit_tokens == 4
    assert geometry.mask_grid == (8, 4, 2) and geometry.num_mask_units == 64
    assert geometry.num_kept_units == 16
    assert geometry.pooling_blocks == (1,)
    assert [b.query_stride for b in geometry.blocks] == [1, 4, 1]
    assert [b.window_size for b in geometry.blocks] == [4, 1, 1]
    assert [(b.input_dim, b.dim) for b in geometry.blocks] == [(16, 16), (16, 32), (32, 64)]
    assert [b.has_projection for b in geometry.blocks] == [False, True, True]
    assert [level.grid for level in geometry.levels] == [(16, 4, 4), (8, 4, 2), (8, 4, 2)]
    assert [level.window for level in geometry.levels] == [(2, 1, 2), (1, 1, 1), (1, 1, 1)]
    assert geometry.fused_levels == (0,)
    assert geometry.pred_stride == 2 * 1 * 6 and geometry.label_patch == (2, 1, 6)
