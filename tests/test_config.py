"""Tests of `keras_hbehavemae.config`: parsing of the published forms and SPEC §1.2 validation.

Rules 1-4, 8 and 10 are checked when `HBehaveMAEConfig` is constructed; rules 5-7 need the
derived geometry and are checked by `compute_geometry` (which every model constructor calls);
rule 9 is checked by `validate_for_training`.
"""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pytest

from keras_hbehavemae.config import (
    ENCODER_FIELDS,
    PRETRAINER_FIELDS,
    HBehaveMAEConfig,
    parse_bool,
    parse_bool_sequence,
    parse_int_sequence,
    parse_q_strides,
    parse_triple,
)
from keras_hbehavemae.geometry import compute_geometry

# The Shot7M2 configuration of SPEC §7.1.
SHOT7M2 = dict(
    input_size=(400, 1, 72), patch_kernel=(2, 1, 3), stages=(2, 3, 4),
    q_strides="2,1,4;2,1,6", out_embed_dims=(78, 128, 256), init_embed_dim=96,
    init_num_heads=2, decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=1,
    decoding_strategy="single", norm_loss=False, mask_ratio=0.70,
)

# The tiny fixture configuration of SPEC §7.1.
TINY = dict(
    input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
    q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
    decoder_embed_dim=16, mask_ratio=0.75,
)

# The training-argument namespace stored in a published checkpoint (`args`, SPEC §5.3): the
# model fields in their command-line spellings plus many training-only settings.
PUBLISHED_ARGS = {
    "batch_size": 512,
    "epochs": 200,
    "accum_iter": 1,
    "model": "hbehavemae",
    "input_size": [400, 1, 72],
    "stages": [2, 3, 4],
    "q_strides": "2,1,4;2,1,6",
    "mask_unit_attn": ["True", "False", "False"],
    "patch_kernel": [2, 1, 3],
    "init_embed_dim": 96,
    "init_num_heads": 2,
    "out_embed_dims": [78, 128, 256],
    "decoder_embed_dim": 128,
    "decoder_depth": 1,
    "decoder_num_heads": 1,
    "decoding_strategy": "single",
    "norm_loss": False,
    "non_hierarchical": False,
    "mask_ratio": 0.70,
    "num_frames": 400,
    "weight_decay": 0.05,
    "lr": None,
    "blr": 1.6e-4,
    "min_lr": 0.0,
    "warmup_epochs": 40,
    "clip_grad": 0.02,
    "dataset": "shot7m2",
    "path_to_data_dir": "data/Shot7M2/train/train_dictionary_poses.npy",
    "output_dir": "outputs/shot7m2/experiment1",
    "seed": 0,
    "num_workers": 8,
    "pin_mem": True,
    "distributed": True,
    "sliding_window": 17,
    "fill_holes": False,
}
MODEL_ARG_NAMES = (
    "input_size", "stages", "q_strides", "mask_unit_attn", "patch_kernel", "init_embed_dim",
    "init_num_heads", "out_embed_dims", "decoder_embed_dim", "decoder_depth",
    "decoder_num_heads", "decoding_strategy", "norm_loss", "non_hierarchical", "mask_ratio",
)


def make(base=SHOT7M2, **changes) -> HBehaveMAEConfig:
    return HBehaveMAEConfig(**{**base, **changes})


def build_model_geometry(base=SHOT7M2, **changes):
    """What a model constructor does: build the config, then derive the geometry."""
    return compute_geometry(make(base, **changes))


# ---------------------------------------------------------------------------------------------
# SPEC §1.2: errors raised when the config is constructed (rules 1, 2, 3, 4, 6-decoder, 8) and
# the range checks of the scalar fields. Each row: (id, changes, message regex). Every regex
# names the parameter first (`<parameter>: ...`) and then the broken rule.
CONSTRUCTION_ERRORS = [
    # Rule 1: input_size, patch_kernel and every q_strides entry are triples of positive ints.
    ("rule1-input_size-pair", dict(input_size=(400, 72)),
     r"^input_size: .*must be a \(t, h, w\) triple"),
    ("rule1-input_size-quad", dict(input_size="400 1 72 1"),
     r"^input_size: .*must be a \(t, h, w\) triple"),
    ("rule1-patch_kernel-pair", dict(patch_kernel=[2, 3]),
     r"^patch_kernel: .*must be a \(t, h, w\) triple"),
    ("rule1-q_strides-pair", dict(q_strides="2,1;2,1,6"),
     r"^q_strides: .*must be a \(t, h, w\) triple"),
    ("rule1-q_strides-flat-not-multiple-of-3", dict(q_strides=[2, 1, 4, 2]),
     r"^q_strides: .*multiple of 3"),
    ("rule1-input_size-zero", dict(input_size=(400, 0, 72)),
     r"^input_size: .*every entry must be a positive integer"),
    ("rule1-input_size-negative", dict(input_size=(400, -1, 72)),
     r"^input_size: .*every entry must be a positive integer"),
    ("rule1-patch_kernel-zero", dict(patch_kernel=(0, 1, 3)),
     r"^patch_kernel: .*every entry must be a positive integer"),
    ("rule1-q_strides-zero", dict(q_strides="2,1,4;0,1,6"),
     r"^q_strides: .*every entry must be a positive integer"),
    ("rule1-q_strides-negative", dict(q_strides=[[2, 1, 4], [2, -1, 6]]),
     r"^q_strides: .*every entry must be a positive integer"),
    ("rule1-input_size-boolean", dict(input_size=(True, 1, 72)),
     r"^input_size: .*got a boolean"),
    # Rule 2: input_size % patch_kernel == 0 on every axis.
    ("rule2-time", dict(patch_kernel=(3, 1, 3)),
     r"^patch_kernel: .*must divide input_size \(400, 1, 72\).*axis t: 400 % 3 != 0"),
    ("rule2-features", dict(patch_kernel=(2, 1, 5)),
     r"^patch_kernel: .*must divide input_size \(400, 1, 72\).*axis w: 72 % 5 != 0"),
    # Rule 3: stages non-empty, every entry >= 1.
    ("rule3-empty", dict(stages=(), out_embed_dims=(), mask_unit_attn=()),
     r"^stages: \(\) is invalid: must hold at least one stage"),
    ("rule3-zero-stage", dict(stages=(2, 0, 4)),
     r"^stages: \(2, 0, 4\) is invalid: every stage needs at least 1 block"),
    ("rule3-negative-stage", dict(stages=(2, -3, 4)),
     r"^stages: .*every stage needs at least 1 block"),
    # Rule 4: lengths.
    ("rule4-mask_unit_attn-short", dict(mask_unit_attn=(True, False)),
     r"^mask_unit_attn: .*one entry per stage \(3 stages\)"),
    ("rule4-mask_unit_attn-long", dict(mask_unit_attn="True False False False"),
     r"^mask_unit_attn: .*one entry per stage \(3 stages\)"),
    ("rule4-out_embed_dims-short", dict(out_embed_dims=(78, 128)),
     r"^out_embed_dims: .*one entry per stage \(3 stages\)"),
    ("rule4-out_embed_dims-long", dict(out_embed_dims=(78, 128, 256, 512)),
     r"^out_embed_dims: .*one entry per stage \(3 stages\)"),
    ("rule4-q_strides-as-many-as-stages", dict(q_strides="2,1,4;2,1,6;1,1,1"),
     r"^q_strides: .*between 1 and 2 q-stride triples"),
    ("rule4-q_strides-empty-string", dict(q_strides=""),
     r"^q_strides: .*between 1 and 2 q-stride triples"),
    ("rule4-q_strides-empty-list", dict(q_strides=[]),
     r"^q_strides: .*between 1 and 2 q-stride triples"),
    ("rule4-q_strides-one-stage", dict(stages=(4,), out_embed_dims=(78,), q_strides="2,1,4"),
     r"^q_strides: .*between 1 and 0 q-stride triples"),
    # Rule 6 (decoder half): decoder_embed_dim % decoder_num_heads == 0.
    ("rule6-decoder-heads", dict(decoder_num_heads=3),
     r"^decoder_num_heads: 3 is invalid: must divide decoder_embed_dim \(128\)"),
    # Rule 8: decoding_strategy in {"multi", "single"}.
    ("rule8-decoding_strategy", dict(decoding_strategy="mean"),
     r"^decoding_strategy: 'mean' is invalid: must be one of \('multi', 'single'\)"),
    # Scalar ranges.
    ("mask_ratio-one", dict(mask_ratio=1.0), r"^mask_ratio: 1.0 is invalid: must lie in \[0, 1\)"),
    ("mask_ratio-above-one", dict(mask_ratio=1.5), r"^mask_ratio: .*must lie in \[0, 1\)"),
    ("mask_ratio-negative", dict(mask_ratio=-0.1), r"^mask_ratio: .*must lie in \[0, 1\)"),
    ("mask_ratio-nan", dict(mask_ratio=float("nan")),
     r"^mask_ratio: nan is invalid: must be a finite number"),
    ("decoder_depth-negative", dict(decoder_depth=-1),
     r"^decoder_depth: -1 is invalid: must be 0 or more"),
    ("drop_path_rate-one", dict(drop_path_rate=1.0),
     r"^drop_path_rate: .*must lie in \[0, 1\)"),
    ("drop_path_rate-negative", dict(drop_path_rate=-0.1),
     r"^drop_path_rate: .*must lie in \[0, 1\)"),
    ("out_embed_dims-zero", dict(out_embed_dims=(78, 0, 256)),
     r"^out_embed_dims: .*every width must be positive"),
    ("init_embed_dim-zero", dict(init_embed_dim=0),
     r"^init_embed_dim: 0 is invalid: must be a positive integer"),
    ("init_num_heads-zero", dict(init_num_heads=0),
     r"^init_num_heads: 0 is invalid: must be a positive integer"),
    ("decoder_embed_dim-negative", dict(decoder_embed_dim=-128),
     r"^decoder_embed_dim: .*must be a positive integer"),
    ("mlp_ratio-zero", dict(mlp_ratio=0.0), r"^mlp_ratio: .*must be positive"),
    ("layer_norm_eps-negative", dict(layer_norm_eps=-1e-6), r"^layer_norm_eps: .*must be positive"),
    # Non-integer widths.
    ("init_embed_dim-fraction", dict(init_embed_dim=96.5),
     r"^init_embed_dim: 96.5 is invalid: must be an integer"),
    ("decoder_embed_dim-fraction", dict(decoder_embed_dim=127.5),
     r"^decoder_embed_dim: .*must be an integer"),
    ("out_embed_dims-fraction", dict(out_embed_dims=(78.5, 128, 256)),
     r"^out_embed_dims: .*expected integers"),
    ("stages-fraction", dict(stages=(2, 3.5, 4)), r"^stages: .*expected integers"),
    ("decoder_depth-boolean", dict(decoder_depth=True),
     r"^decoder_depth: True is invalid: must be an integer"),
    # String garbage in numeric fields.
    ("input_size-garbage", dict(input_size="400 x 72"), r"^input_size: .*expected integers"),
    ("stages-garbage", dict(stages="2 x 4"), r"^stages: '2 x 4' is invalid: expected integers"),
    ("q_strides-garbage", dict(q_strides="2,a,4;2,1,6"), r"^q_strides: .*expected integers"),
    ("q_strides-none", dict(q_strides=None), r"^q_strides: None is invalid"),
    ("patch_kernel-mapping", dict(patch_kernel={"t": 2}),
     r"^patch_kernel: .*expected a sequence of integers"),
    ("init_embed_dim-garbage", dict(init_embed_dim="abc"),
     r"^init_embed_dim: 'abc' is invalid: must be an integer"),
    ("mask_ratio-garbage", dict(mask_ratio="seventy"),
     r"^mask_ratio: 'seventy' is invalid: must be a finite number"),
    ("dim_mul-garbage", dict(dim_mul="two"),
     r"^dim_mul: 'two' is invalid: must be a finite number"),
    ("norm_loss-garbage", dict(norm_loss="maybe"),
     r"^norm_loss: 'maybe' is invalid: expected a boolean"),
    ("norm_loss-two", dict(norm_loss=2), r"^norm_loss: 2 is invalid: expected a boolean"),
    ("mask_unit_attn-garbage", dict(mask_unit_attn="True maybe False"),
     r"^mask_unit_attn: 'maybe' is invalid: expected a boolean"),
]


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in CONSTRUCTION_ERRORS],
    ids=[row[0] for row in CONSTRUCTION_ERRORS],
)
def test_construction_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        make(**changes)


# Rules 5, 6 (stage widths) and 7 need the derived sizes: `compute_geometry` (called by every
# model constructor) raises them.
GEOMETRY_ERRORS = [
    # Rule 5: token grid (201, 1, 24) is not divisible by the mask unit (4, 1, 24) on t.
    ("rule5-time", dict(input_size=(402, 1, 72)),
     r"^q_strides: mask-unit size \(4, 1, 24\).*must divide the token grid \(201, 1, 24\)"
     r".*axis t: 201 % 4 != 0"),
    # Rule 5: the published stride product (4,1,24) on a grid (200,1,12) (patch 2,1,6).
    ("rule5-features", dict(patch_kernel=(2, 1, 6)),
     r"^q_strides: mask-unit size \(4, 1, 24\).*must divide the token grid \(200, 1, 12\)"
     r".*axis w: 12 % 24 != 0"),
    # Rule 5 on the individuals axis: pooling over 3 mice with only 2 individuals.
    ("rule5-individuals", dict(input_size=(900, 2, 24), patch_kernel=(3, 1, 24),
                               q_strides="5,1,1;1,3,1", init_embed_dim=128),
     r"^q_strides: mask-unit size \(5, 3, 1\).*must divide the token grid \(300, 2, 1\)"),
    # Rule 6: stage width D_k divisible by h_k.
    ("rule6-stage0-heads", dict(init_num_heads=5),
     r"^init_num_heads/head_mul: stage 0 width 96 must be divisible by its head count 5"),
    # widths 96, 192, 384 with heads 2, 6, 18: stage 2 breaks the rule.
    ("rule6-later-stage-heads", dict(head_mul=3.0),
     r"^init_num_heads/head_mul: stage 2 width 384 must be divisible by its head count 18"),
    # Rule 7: a pooling transition with dim_mul=1.0 keeps the width.
    ("rule7-dim_mul-one", dict(dim_mul=1.0, head_mul=1.0),
     r"^dim_mul: 1.0 keeps the width at 96 across the pooling transition into stage 1"),
    ("rule7-dim_mul-one-with-heads", dict(dim_mul=1.0),
     r"^dim_mul: 1.0 keeps the width .*a pooling stage must change the width"),
]


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in GEOMETRY_ERRORS],
    ids=[row[0] for row in GEOMETRY_ERRORS],
)
def test_model_construction_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        build_model_geometry(**changes)


def test_rule7_allows_same_width_where_no_pooling():
    # Unit strides (1,1,1) do not pool (|S| = 1), so dim_mul = 1 is allowed there.
    geometry = build_model_geometry(TINY, q_strides="1,1,1;1,1,1", dim_mul=1.0, head_mul=1.0)
    assert [block.dim for block in geometry.blocks] == [16, 16, 16, 16]
    assert not any(block.has_projection for block in geometry.blocks)


def test_error_message_of_spec_example_names_the_values():
    # SPEC §1.2 example: `q_strides: mask-unit size (4,1,24) must divide token grid (200,1,24)`.
    # input (400,1,72) / patch (2,1,3) is the grid (200,1,24); strides (8,1,4),(2,1,6) make the
    # mask unit (16,1,24), which does not divide 200 on t.
    with pytest.raises(ValueError) as error:
        build_model_geometry(q_strides="8,1,4;2,1,6")
    message = str(error.value)
    assert message.startswith("q_strides:")
    assert "(16, 1, 24)" in message and "(200, 1, 24)" in message


# Rule 9: 1 <= K < U, checked by validate_for_training (U = 50 for Shot7M2).
@pytest.mark.parametrize("mask_ratio, kept", [(0.99, 0), (0.985, 0), (0.0, 50)])
def test_rule9_validate_for_training_rejects(mask_ratio, kept):
    config = make(mask_ratio=mask_ratio)  # construction accepts it: embedding never masks
    compute_geometry(config)
    message = rf"^mask_ratio: {re.escape(repr(mask_ratio))} is invalid: keeps K = .* = {kept} "
    message += r"of U = 50 mask units; training needs 1 <= K < U"
    with pytest.raises(ValueError, match=message):
        config.validate_for_training()


@pytest.mark.parametrize("mask_ratio, kept", [(0.98, 1), (0.70, 15), (0.01, 49)])
def test_rule9_validate_for_training_accepts(mask_ratio, kept):
    config = make(mask_ratio=mask_ratio)
    config.validate_for_training()
    assert compute_geometry(config).num_kept_units == kept


def test_rule9_tiny_and_unit_grid():
    # Tiny: U = 16; mask_ratio 0.95 keeps int(16·0.05) = int(0.8) = 0 units.
    with pytest.raises(ValueError, match=r"^mask_ratio: .*= 0 of U = 16"):
        make(TINY, mask_ratio=0.95).validate_for_training()
    make(TINY, mask_ratio=0.9).validate_for_training()  # K = int(1.6) = 1


# Rule 10: non_hierarchical overrides q_strides and out_embed_dims and warns about conflicts.
def test_rule10_non_hierarchical_warns_about_conflicting_q_strides_and_out_dims():
    with pytest.warns(UserWarning, match=r"non_hierarchical=True overrides q_strides") as record:
        config = make(non_hierarchical=True)
    message = str(record[0].message)
    assert "((2, 1, 4), (2, 1, 6))" in message and "(78, 128, 256)" in message
    assert config.q_strides == ((2, 1, 4), (2, 1, 6))  # kept as given; geometry overrides


def test_rule10_warns_for_out_dims_alone():
    with pytest.warns(UserWarning, match=r"out_embed_dims"):
        make(non_hierarchical=True, q_strides="1,1,1;1,1,1;1,1,1")


def test_rule10_no_warning_without_conflict():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(non_hierarchical=True, q_strides="1,1,1;1,1,1;1,1,1", out_embed_dims=(78, 78, 78))
        make(non_hierarchical=True, q_strides=(), out_embed_dims=(78, 78, 78))


def test_non_hierarchical_skips_the_q_strides_count_rule():
    with pytest.warns(UserWarning):
        config = make(non_hierarchical=True, q_strides="2,1,4;2,1,6;2,1,1")
    assert compute_geometry(config).num_pooling_stages == 3


# ---------------------------------------------------------------------------------------------
# Non-finite numbers raise a ValueError that names the parameter (SPEC §1.2).

def test_infinite_width_raises_value_error():
    with pytest.raises(ValueError, match=r"^init_embed_dim: "):
        make(init_embed_dim=float("inf"))


def test_nan_width_names_the_parameter():
    with pytest.raises(ValueError, match=r"^init_embed_dim: "):
        make(init_embed_dim=float("nan"))


def test_infinite_string_in_input_size_raises_value_error():
    with pytest.raises(ValueError, match=r"^input_size: "):
        make(input_size="400 1 inf")


def test_nan_string_in_input_size_names_the_parameter():
    with pytest.raises(ValueError, match=r"^input_size: "):
        make(input_size="400 1 nan")


def test_garbage_num_frames_names_the_parameter():
    with pytest.raises(ValueError, match=r"^num_frames: "):
        HBehaveMAEConfig.from_dict({**PUBLISHED_ARGS, "num_frames": "four hundred"},
                                   strict=False)


# ---------------------------------------------------------------------------------------------
# Parsing of the published command-line forms.

@pytest.mark.parametrize("value", [
    "2,1,4;2,1,6",
    "2,1,4;2,1,6;",
    " 2,1,4 ; 2,1,6 ",
    "2 1 4;2 1 6",
    [2, 1, 4, 2, 1, 6],
    (2, 1, 4, 2, 1, 6),
    [2.0, 1.0, 4.0, 2.0, 1.0, 6.0],
    [[2, 1, 4], [2, 1, 6]],
    ((2, 1, 4), (2, 1, 6)),
    ["2,1,4", "2,1,6"],
    [["2", "1", "4"], ["2", "1", "6"]],
    np.array([[2, 1, 4], [2, 1, 6]]),
    np.array([2, 1, 4, 2, 1, 6]),
])
def test_q_strides_forms(value):
    assert parse_q_strides(value) == ((2, 1, 4), (2, 1, 6))
    config = make(q_strides=value)
    assert config.q_strides == ((2, 1, 4), (2, 1, 6))
    assert all(type(entry) is int for triple in config.q_strides for entry in triple)


def test_q_strides_single_triple_forms():
    assert parse_q_strides("5,1,1") == ((5, 1, 1),)
    assert parse_q_strides([5, 1, 1]) == ((5, 1, 1),)
    assert parse_q_strides([[5, 1, 1]]) == ((5, 1, 1),)
    assert make(q_strides="2,1,4").q_strides == ((2, 1, 4),)  # Q = 1 <= L - 1 is valid


@pytest.mark.parametrize("value", [
    "True False False",
    "True,False,False",
    "true false false",
    ["True", "False", "False"],
    [True, False, False],
    (1, 0, 0),
    ["1", "0", "0"],
    np.array([True, False, False]).tolist(),
])
def test_mask_unit_attn_forms(value):
    assert parse_bool_sequence(value, "mask_unit_attn") == (True, False, False)
    assert make(mask_unit_attn=value).mask_unit_attn == (True, False, False)


def test_mask_unit_attn_other_values():
    assert make(mask_unit_attn="True True False").mask_unit_attn == (True, True, False)
    assert make(mask_unit_attn=["False"] * 3).mask_unit_attn == (False, False, False)


@pytest.mark.parametrize("value", [
    "400 1 72", "400,1,72", " 400  1  72 ", [400, 1, 72], (400, 1, 72), [400.0, 1.0, 72.0],
    ["400", "1", "72"], np.array([400, 1, 72]),
])
def test_input_size_forms(value):
    assert parse_triple(value, "input_size") == (400, 1, 72)
    config = make(input_size=value)
    assert config.input_size == (400, 1, 72)
    assert all(type(entry) is int for entry in config.input_size)


def test_int_sequence_forms():
    assert parse_int_sequence("2 3 4", "stages") == (2, 3, 4)
    assert parse_int_sequence("2,3,4", "stages") == (2, 3, 4)
    assert make(stages="2 3 4").stages == (2, 3, 4)
    assert make(out_embed_dims="78 128 256").out_embed_dims == (78, 128, 256)
    assert make(patch_kernel="2 1 3").patch_kernel == (2, 1, 3)


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("True", True), ("TRUE", True), (" true ", True), ("1", True), (1, True),
    (1.0, True), (True, True),
    ("false", False), ("False", False), ("FALSE", False), ("0", False), (0, False),
    (0.0, False), (False, False),
])
def test_norm_loss_boolean_forms(value, expected):
    assert parse_bool(value, "norm_loss") is expected
    config = make(norm_loss=value)
    assert config.norm_loss is expected
    assert make(non_hierarchical=False, sep_pos_embed=value).sep_pos_embed is expected


def test_numeric_fields_are_normalised():
    config = make(init_embed_dim=96.0, decoder_depth=1.0, dim_mul=2, mask_ratio=0)
    assert type(config.init_embed_dim) is int and config.init_embed_dim == 96
    assert type(config.decoder_depth) is int
    assert type(config.dim_mul) is float and config.dim_mul == 2.0
    assert type(config.mask_ratio) is float and config.mask_ratio == 0.0


def test_decoding_strategy_is_normalised():
    assert make(decoding_strategy=" Multi ").decoding_strategy == "multi"
    assert make(decoding_strategy="SINGLE").decoding_strategy == "single"


# ---------------------------------------------------------------------------------------------
# Defaults.

@pytest.mark.parametrize("stages, q_strides, expected", [
    ((2, 3), "2,1,4", (True, False)),
    ((2, 3, 4), "2,1,4;2,1,6", (True, False, False)),
    ((1, 1, 1, 1, 1), "2,1,1;2,1,1", (True, False, False, False, False)),
])
def test_default_mask_unit_attn(stages, q_strides, expected):
    config = make(stages=stages, q_strides=q_strides, out_embed_dims=(64,) * len(stages),
                  mask_unit_attn=None)
    assert config.mask_unit_attn == expected


def test_default_mask_unit_attn_single_stage_non_hierarchical():
    config = make(stages=(4,), q_strides=(), out_embed_dims=(78,), non_hierarchical=True)
    assert config.mask_unit_attn == (True,)


def test_defaults_are_the_published_ones():
    config = HBehaveMAEConfig(
        input_size=(400, 1, 72), patch_kernel=(2, 1, 3), stages=(2, 3, 4),
        q_strides="2,1,4;2,1,6", out_embed_dims=(78, 128, 256), init_embed_dim=96)
    assert config.mask_unit_attn == (True, False, False)
    assert config.init_num_heads == 2
    assert (config.dim_mul, config.head_mul, config.mlp_ratio) == (2.0, 2.0, 4.0)
    assert config.layer_norm_eps == 1e-6
    assert config.sep_pos_embed is True
    assert config.non_hierarchical is False
    assert config.drop_path_rate == 0.0
    assert (config.decoder_embed_dim, config.decoder_depth, config.decoder_num_heads) == (
        128, 1, 1)
    assert config.decoding_strategy == "multi"


@pytest.mark.parametrize("name", ["input_size", "patch_kernel", "stages", "q_strides",
                                  "out_embed_dims", "init_embed_dim"])
def test_no_default_for_the_shape_parameters(name):
    field = {f.name: f for f in dataclasses.fields(HBehaveMAEConfig)}[name]
    assert field.default is dataclasses.MISSING
    assert field.default_factory is dataclasses.MISSING


def test_config_is_frozen():
    config = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mask_ratio = 0.5


# ---------------------------------------------------------------------------------------------
# from_dict / to_dict / replace / kwargs partition.

def test_from_dict_published_args_non_strict():
    config = HBehaveMAEConfig.from_dict(PUBLISHED_ARGS, strict=False)
    assert config == make()
    assert config.input_size == (400, 1, 72)
    assert config.q_strides == ((2, 1, 4), (2, 1, 6))
    assert config.mask_unit_attn == (True, False, False)
    assert config.decoding_strategy == "single"
    assert config.mask_ratio == 0.70


def test_from_dict_published_args_strict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown configuration parameters \[.*'batch_size'"):
        HBehaveMAEConfig.from_dict(PUBLISHED_ARGS, strict=True)
    with pytest.raises(ValueError, match=r"unknown configuration parameters \['num_frames'\]"):
        HBehaveMAEConfig.from_dict(
            {name: PUBLISHED_ARGS[name] for name in (*MODEL_ARG_NAMES, "num_frames")})


def test_from_dict_strict_accepts_model_keys_only():
    config = HBehaveMAEConfig.from_dict(
        {name: PUBLISHED_ARGS[name] for name in MODEL_ARG_NAMES}, strict=True)
    assert config == make()


def test_from_dict_default_is_strict():
    with pytest.raises(ValueError, match="unknown configuration parameters"):
        HBehaveMAEConfig.from_dict({**SHOT7M2, "epochs": 200})


@pytest.mark.parametrize("num_frames", [300, 401, "300"])
def test_from_dict_num_frames_must_equal_window_length(num_frames):
    with pytest.raises(ValueError, match=r"^num_frames: .*must equal input_size\[0\] = 400"):
        HBehaveMAEConfig.from_dict({**PUBLISHED_ARGS, "num_frames": num_frames}, strict=False)


def test_from_dict_num_frames_matching_forms():
    for num_frames in (400, "400", None):
        config = HBehaveMAEConfig.from_dict({**PUBLISHED_ARGS, "num_frames": num_frames},
                                            strict=False)
        assert config.input_size[0] == 400
    values = {**PUBLISHED_ARGS, "input_size": "450 1 75", "patch_kernel": [3, 1, 75],
              "q_strides": "5,1,1;3,1,1", "init_embed_dim": 128, "num_frames": 450}
    assert HBehaveMAEConfig.from_dict(values, strict=False).input_size == (450, 1, 75)


@pytest.mark.parametrize("missing", ["input_size", "patch_kernel", "stages", "q_strides",
                                     "out_embed_dims", "init_embed_dim"])
def test_from_dict_missing_required_key(missing):
    values = {name: value for name, value in PUBLISHED_ARGS.items() if name != missing}
    with pytest.raises(ValueError, match=rf"missing required configuration parameters "
                                         rf"\['{missing}'\]"):
        HBehaveMAEConfig.from_dict(values, strict=False)


def test_from_dict_missing_several_keys():
    with pytest.raises(ValueError, match=r"missing required configuration parameters \[.*\]"):
        HBehaveMAEConfig.from_dict({"input_size": [400, 1, 72]})


def test_from_dict_validates():
    with pytest.raises(ValueError, match=r"^decoding_strategy: "):
        HBehaveMAEConfig.from_dict({**PUBLISHED_ARGS, "decoding_strategy": "avg"}, strict=False)


@pytest.mark.parametrize("base", [SHOT7M2, TINY], ids=["shot7m2", "tiny"])
def test_to_dict_from_dict_round_trip(base):
    config = make(base, mask_unit_attn="True False False", norm_loss="true")
    values = config.to_dict()
    assert set(values) == {field.name for field in dataclasses.fields(HBehaveMAEConfig)}
    assert isinstance(values["q_strides"], list)
    assert all(isinstance(triple, list) for triple in values["q_strides"])
    assert isinstance(values["input_size"], list)
    again = HBehaveMAEConfig.from_dict(values, strict=True)
    assert again == config
    assert again.to_dict() == values


def test_to_dict_is_json_serialisable():
    import json

    values = make(TINY).to_dict()
    assert HBehaveMAEConfig.from_dict(json.loads(json.dumps(values))) == make(TINY)


def test_kwargs_partition_all_fields():
    config = make()
    encoder, pretrainer = config.encoder_kwargs(), config.pretrainer_kwargs()
    names = {field.name for field in dataclasses.fields(HBehaveMAEConfig)}
    assert not set(encoder) & set(pretrainer)
    assert set(encoder) | set(pretrainer) == names
    assert set(encoder) == set(ENCODER_FIELDS)
    assert set(pretrainer) == set(PRETRAINER_FIELDS)
    assert {**encoder, **pretrainer} == config.to_dict()
    assert HBehaveMAEConfig(**encoder, **pretrainer) == config
    assert "mask_ratio" in pretrainer and "decoder_embed_dim" in pretrainer
    assert "q_strides" in encoder and "input_size" in encoder


def test_replace_revalidates():
    config = make()
    changed = config.replace(mask_ratio=0.5, q_strides="2,1,4")
    assert changed.mask_ratio == 0.5 and changed.q_strides == ((2, 1, 4),)
    assert config.mask_ratio == 0.70  # the original is unchanged
    assert config.replace(norm_loss="True").norm_loss is True
    with pytest.raises(ValueError, match=r"^mask_ratio: "):
        config.replace(mask_ratio=1.0)
    with pytest.raises(ValueError, match=r"^decoding_strategy: "):
        config.replace(decoding_strategy="last")
    with pytest.raises(ValueError, match=r"^q_strides: .*between 1 and 2"):
        config.replace(q_strides="2,1,4;2,1,6;1,1,1")
    with pytest.raises(ValueError, match=r"^mask_unit_attn: .*one entry per stage"):
        config.replace(stages=(2, 3, 4, 1), out_embed_dims=(78, 128, 256, 256))
    with pytest.raises(ValueError, match=r"^patch_kernel: "):
        config.replace(input_size=(401, 1, 72))


def test_equal_configs_from_different_spellings():
    a = make(q_strides="2,1,4;2,1,6", mask_unit_attn="True False False", input_size="400 1 72")
    b = make(q_strides=[[2, 1, 4], [2, 1, 6]], mask_unit_attn=[True, False, False],
             input_size=[400, 1, 72])
    assert a == b
    assert hash(a) == hash(b)
