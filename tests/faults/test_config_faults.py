"""Invalid configurations: each raises a ValueError whose message names the parameter and the
broken rule (docs/model.md, "Configuration rules"), whether it reaches `HBehaveMAEConfig`,
`compute_geometry`, the model constructors, `HBehaveMAEConfig.from_dict`, `TrainingConfig` or
the data recipes.

Rules 1-4, 8 and 10 are checked when `HBehaveMAEConfig` is constructed; rules 5-7 need the
derived geometry and are checked by `compute_geometry` (which every model constructor calls);
rule 9 is checked by `validate_for_training` (which the `HBehaveMAE` constructor calls).
No test here builds a model: every constructor fails before creating a weight.
"""

from __future__ import annotations

import re

import keras
import pytest
from helpers import (
    MODEL_ARG_NAMES,
    SHOT7M2,
    SMALL,
    TINY,
    TINY_CONFIG,
    small_data,
    small_training,
)
from helpers import SHOT7M2_ARGS as PUBLISHED_ARGS
from helpers import config_geometry as build_model_geometry
from helpers import make_config as make

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.convert.published import config_from_checkpoint_args
from keras_hbehavemae.data.recipes import load_pretraining_data
from keras_hbehavemae.models.geometry import compute_geometry
from keras_hbehavemae.training import build_training_run, setup_distribution
from keras_hbehavemae.training.optimizer import published_optimizer

# ---------------------------------------------------------------------------------------------
# Validation rules (docs/model.md, "Configuration rules"): errors raised when the config is
# constructed (rules 1, 2, 3, 4, 6-decoder, 8) and the range checks of the scalar fields. Each
# row: (id, changes, message regex). Every regex names the parameter first (`<parameter>: ...`)
# and then the broken rule.
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
    # Multipliers too small: the error names the multiplier and the rule, not the heads or a
    # Dense layer's `units` (as it did).
    ("dim_mul-too-small", dict(dim_mul=0.01),
     r"^dim_mul: 0.01 shrinks stage 1 to width 0 \(int\(96 · 0.01\)\); every stage width "
     r"int\(previous width · dim_mul\) must be at least 1"),
    ("dim_mul-below-one", dict(dim_mul=0.4),
     r"^init_num_heads/head_mul: stage 1 width 38 must be divisible by its head count 4 \(width "
     r"int\(96 · dim_mul 0.4\), heads int\(2 · head_mul 2.0\)\)"),
    ("head_mul-too-small", dict(head_mul=0.1),
     r"^head_mul: 0.1 leaves stage 1 0 heads \(int\(2 · 0.1\)\); every stage head count "
     r"int\(previous heads · head_mul\) must be at least 1"),
    ("mlp_ratio-too-small", dict(mlp_ratio=0.005),
     r"^mlp_ratio: 0.005 gives the blocks of stage 0 \(width 96\) an MLP hidden width "
     r"int\(96 · 0.005\) = 0; it must be at least 1 \(mlp_ratio >= 1/96\)"),
]


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in GEOMETRY_ERRORS],
    ids=[row[0] for row in GEOMETRY_ERRORS],
)
def test_model_construction_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        build_model_geometry(**changes)

def test_error_message_of_spec_example_names_the_values():
    # The documented example of rule 5:
    # `q_strides: mask-unit size (4,1,24) must divide token grid (200,1,24)`.
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


def test_rule9_tiny_and_unit_grid():
    # Tiny: U = 16; mask_ratio 0.95 keeps int(16·0.05) = int(0.8) = 0 units.
    with pytest.raises(ValueError, match=r"^mask_ratio: .*= 0 of U = 16"):
        make(TINY_CONFIG, mask_ratio=0.95).validate_for_training()
    make(TINY_CONFIG, mask_ratio=0.9).validate_for_training()  # K = int(1.6) = 1


# ---------------------------------------------------------------------------------------------
# Non-finite numbers raise a ValueError that names the parameter.

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
        config_from_checkpoint_args({**PUBLISHED_ARGS, "num_frames": "four hundred"}, "ckpt")


# ---------------------------------------------------------------------------------------------
# HBehaveMAEConfig.from_dict: unknown, missing and inconsistent keys.

def test_from_dict_rejects_the_training_settings_of_checkpoint_args():
    with pytest.raises(ValueError, match=r"^HBehaveMAEConfig: unknown keys .*'batch_size'"):
        HBehaveMAEConfig.from_dict(PUBLISHED_ARGS)
    with pytest.raises(ValueError, match=r"^HBehaveMAEConfig: unknown key 'num_frames'"):
        HBehaveMAEConfig.from_dict(
            {name: PUBLISHED_ARGS[name] for name in (*MODEL_ARG_NAMES, "num_frames")})


def test_from_dict_rejects_a_training_setting():
    with pytest.raises(ValueError, match=r"^HBehaveMAEConfig: unknown key 'epochs'; valid "
                                         r"keys: decoder_depth, "):
        HBehaveMAEConfig.from_dict({**SHOT7M2, "epochs": 200})


@pytest.mark.parametrize("num_frames", [300, 401, "300"])
def test_from_dict_num_frames_must_equal_window_length(num_frames):
    with pytest.raises(ValueError, match=r"^num_frames: .*must equal input_size\[0\] = 400"):
        config_from_checkpoint_args({**PUBLISHED_ARGS, "num_frames": num_frames}, "ckpt")


@pytest.mark.parametrize("missing", ["input_size", "patch_kernel", "stages", "q_strides",
                                     "out_embed_dims", "init_embed_dim"])
def test_from_dict_missing_required_key(missing):
    values = {name: value for name, value in PUBLISHED_ARGS.items() if name != missing}
    with pytest.raises(ValueError, match=rf"^ckpt: args: missing required configuration "
                                         rf"parameters \['{missing}'\]"):
        config_from_checkpoint_args(values, "ckpt")


def test_from_dict_missing_several_keys():
    with pytest.raises(ValueError, match=r"missing required configuration parameters \[.*\]"):
        HBehaveMAEConfig.from_dict({"input_size": [400, 1, 72]})


def test_from_dict_validates():
    with pytest.raises(ValueError, match=r"^decoding_strategy: "):
        config_from_checkpoint_args({**PUBLISHED_ARGS, "decoding_strategy": "avg"}, "ckpt")


# `replace` validates the changed copy.
REPLACE_ERRORS = [
    ("mask_ratio-one", dict(mask_ratio=1.0), r"^mask_ratio: "),
    ("decoding_strategy-unknown", dict(decoding_strategy="last"), r"^decoding_strategy: "),
    ("q_strides-too-many", dict(q_strides="2,1,4;2,1,6;1,1,1"), r"^q_strides: .*between 1 and 2"),
    ("stages-longer-than-mask_unit_attn",
     dict(stages=(2, 3, 4, 1), out_embed_dims=(78, 128, 256, 256)),
     r"^mask_unit_attn: .*one entry per stage"),
    ("input_size-not-divisible", dict(input_size=(401, 1, 72)), r"^patch_kernel: "),
]


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in REPLACE_ERRORS], ids=[row[0] for row in REPLACE_ERRORS],
)
def test_replace_revalidates(changes, message):
    with pytest.raises(ValueError, match=message):
        make().replace(**changes)


# ---------------------------------------------------------------------------------------------
# The model constructors raise the same errors (before any layer or weight is created).

BACKBONE_ERRORS = [
    ("input-not-divisible-by-patch", dict(patch_kernel=(3, 1, 3)),
     r"^patch_kernel: .*axis t: 32 % 3 != 0"),
    ("tokens-not-divisible-by-mask-unit", dict(q_strides="2,1,2;3,2,1"),
     r"^q_strides: mask-unit size \(6, 2, 2\).*token grid \(16, 4, 4\).*axis t: 16 % 6 != 0"),
    ("heads-do-not-divide-width", dict(init_num_heads=3),
     r"^init_num_heads/head_mul: stage 0 width 16 must be divisible by its head count 3"),
    ("pooling-keeps-the-width", dict(dim_mul=1.0, head_mul=1.0),
     r"^dim_mul: 1.0 keeps the width at 16 .*a pooling stage must change the width"),
    ("stages-and-out_embed_dims-lengths", dict(stages=(1, 2)),
     r"^out_embed_dims: .*one entry per stage \(2 stages\)"),
    ("stages-and-mask_unit_attn-lengths", dict(mask_unit_attn=(True, False)),
     r"^mask_unit_attn: .*one entry per stage \(3 stages\)"),
    ("as-many-q_strides-as-stages", dict(q_strides="2,1,2;2,2,1;1,1,1"),
     r"^q_strides: .*between 1 and 2 q-stride triples"),
    ("negative-width", dict(init_embed_dim=-16),
     r"^init_embed_dim: -16 is invalid: must be a positive integer"),
    ("integer-dtype", dict(dtype="int32"),
     r"^dtype: 'int32' is invalid: must be a floating-point policy"),
    ("unknown-dtype", dict(dtype="float8"),
     r"^dtype: 'float8' is invalid: must be a Keras dtype policy such as 'float32'"),
]


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in BACKBONE_ERRORS],
    ids=[row[0] for row in BACKBONE_ERRORS],
)
def test_backbone_constructor_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        HBehaveMAEBackbone(**{**TINY, **changes})


class _BackboneStub:
    """What `HBehaveMAE.__init__` reads from its backbone before it validates: the encoder
    configuration and the dtype policy (a real backbone would cost a model build)."""

    config_object = HBehaveMAEConfig(**TINY)
    dtype_policy = "float32"


# TINY has U = 16 mask units.
PRETRAINER_ERRORS = [
    ("mask_ratio-keeps-no-unit", dict(mask_ratio=0.95),
     r"^mask_ratio: 0.95 is invalid: keeps K = .* = 0 of U = 16 mask units; training needs"),
    ("mask_ratio-keeps-every-unit", dict(mask_ratio=0.0),
     r"^mask_ratio: 0.0 is invalid: keeps K = .* = 16 of U = 16 mask units; training needs"),
    ("mask_ratio-one", dict(mask_ratio=1.0), r"^mask_ratio: 1.0 is invalid: must lie in \[0, 1\)"),
    ("unknown-decoding-strategy", dict(decoding_strategy="mean"),
     r"^decoding_strategy: 'mean' is invalid: must be one of \('multi', 'single'\)"),
    ("decoder-heads-do-not-divide-width", dict(decoder_embed_dim=16, decoder_num_heads=3),
     r"^decoder_num_heads: 3 is invalid: must divide decoder_embed_dim \(16\)"),
    ("decoder-width-zero", dict(decoder_embed_dim=0),
     r"^decoder_embed_dim: 0 is invalid: must be a positive integer"),
    ("decoder-depth-negative", dict(decoder_depth=-1),
     r"^decoder_depth: -1 is invalid: must be 0 or more"),
    ("seed-not-an-integer", dict(seed="x"), r"^seed: 'x' is invalid: must be an integer or None"),
    ("seed-fraction", dict(seed=1.5), r"^seed: 1.5 is invalid"),
    ("dtype-integer", dict(dtype="int32"), r"^dtype: .int32. is invalid: must be a floating-point"),
    ("mlp_ratio-too-small-for-the-decoder", dict(decoder_embed_dim=4, decoder_num_heads=1),
     None),  # replaced below: needs an mlp_ratio the encoder accepts
]


PRETRAINER_ERRORS[-1] = (
    "mlp_ratio-too-small-for-the-decoder", dict(decoder_embed_dim=4, decoder_num_heads=1),
    r"^mlp_ratio: 0.2 is invalid: gives the decoder blocks \(width decoder_embed_dim = 4\) an "
    r"MLP hidden width int\(4 · 0.2\) = 0; it must be at least 1")


class _NarrowMLPBackboneStub(_BackboneStub):
    """TINY with mlp_ratio 0.2: stage widths 16, 32, 64 keep hidden widths of 3, 6, 12."""

    config_object = HBehaveMAEConfig(**TINY, mlp_ratio=0.2)


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in PRETRAINER_ERRORS],
    ids=[row[0] for row in PRETRAINER_ERRORS],
)
def test_pretrainer_constructor_rejects(changes, message):
    stub = _NarrowMLPBackboneStub() if "mlp_ratio" in message else _BackboneStub()
    with pytest.raises(ValueError, match=message):
        HBehaveMAE(stub, **changes)


# ---------------------------------------------------------------------------------------------
# Training settings (`TrainingConfig`) and what the run checks before it builds anything.

TRAINING_ERRORS = [
    ("warmup-not-shorter-than-training", dict(warmup_epochs=2),
     r"^warmup_epochs: 2 is invalid: must lie in \[0, epochs=2\)"),
    ("unknown-precision", dict(precision="float16"), r"^precision: 'float16' is invalid"),
    ("unknown-distribution", dict(distribute="model_parallel"),
     r"^distribute: 'model_parallel' is invalid"),
    ("batch_size-zero", dict(batch_size=0), r"^batch_size: 0 is invalid: must be a positive"),
    ("batch_size-fraction", dict(batch_size=2.5), r"^batch_size: 2.5 is invalid"),
    ("epochs-zero", dict(epochs=0), r"^epochs: 0 is invalid: must be a positive integer"),
    ("lr-negative", dict(lr=-1e-3), r"^lr: -0.001 is invalid: must be a finite number >= 0"),
    ("lr-zero", dict(lr=0.0), r"^lr: .* is invalid: must be > 0"),
    ("clip_grad-nan", dict(clip_grad=float("nan")), r"^clip_grad: nan is invalid"),
    ("steps_per_epoch-zero", dict(steps_per_epoch=0), r"^steps_per_epoch: 0 is invalid"),
    ("keep_last-zero", dict(keep_last=0), r"^keep_last: 0 is invalid: must be a positive"),
    # `clip_grad=0` was no clipping in disguise (Keras skips a falsy clip); None says so.
    ("clip_grad-zero", dict(clip_grad=0.0),
     r"^clip_grad: 0.0 is invalid: must be > 0, or None for no clipping"),
    ("seed-negative", dict(seed=-1), r"^seed: -1 is invalid: must be an integer in \[0, 2\*\*32\)"),
    ("seed-fraction", dict(seed=1.5), r"^seed: 1.5 is invalid"),
    ("min_lr-above-lr", dict(lr=1e-3, min_lr=1e-2),
     r"^min_lr: 0.01 is invalid: must not exceed the peak lr = 0.001"),
    ("lr-string", dict(lr="0.001"), r"^lr: '0.001' is invalid: must be a finite number >= 0"),
]


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in TRAINING_ERRORS],
    ids=[row[0] for row in TRAINING_ERRORS],
)
def test_training_config_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        small_training(**changes)


def test_min_lr_above_the_scaled_peak_is_named_before_building():
    config = HBehaveMAEConfig(**SMALL)
    with pytest.raises(ValueError, match=r"^min_lr: 0.5 is invalid: must not exceed the peak "
                                         r"learning rate 7.8125e-06"):
        build_training_run(config, small_data(), small_training(lr=None, blr=1e-3, min_lr=0.5))


def test_training_settings_given_twice_are_refused():
    with pytest.raises(ValueError, match=r"give the training settings as `training` or as "
                                         r"keyword arguments, not both"):
        build_training_run(HBehaveMAEConfig(**SMALL), small_data(), small_training(),
                           epochs=3)


PUBLISHED_OPTIMIZER_ERRORS = [
    ("learning_rate-negative", dict(learning_rate=-1e-3),
     r"^learning_rate: -0.001 is invalid: must be > 0 \(or a schedule\)"),
    ("learning_rate-zero", dict(learning_rate=0.0), r"^learning_rate: 0.0 is invalid"),
    ("learning_rate-nan", dict(learning_rate=float("nan")), r"^learning_rate: nan is invalid"),
    ("weight_decay-negative", dict(weight_decay=-0.05),
     r"^weight_decay: -0.05 is invalid: must be >= 0"),
    ("clip_grad-negative", dict(clip_grad=-1.0),
     r"^clip_grad: -1.0 is invalid: must be > 0, or None for no clipping"),
    ("clip_grad-zero", dict(clip_grad=0), r"^clip_grad: 0 is invalid"),
]


@pytest.mark.parametrize(
    "changes, message", [row[1:] for row in PUBLISHED_OPTIMIZER_ERRORS],
    ids=[row[0] for row in PUBLISHED_OPTIMIZER_ERRORS],
)
def test_published_optimizer_rejects(changes, message):
    arguments = {"learning_rate": 1e-3, **changes}
    with pytest.raises(ValueError, match=message):
        published_optimizer(keras.Sequential(), **arguments)


def test_window_length_other_than_the_models_is_refused_before_building():
    config = HBehaveMAEConfig(**TINY)  # T = 32; small_data() cuts 24-frame windows
    with pytest.raises(ValueError, match=r"^num_frames: 24 is invalid: must equal input_size\[0\]"):
        build_training_run(config, small_data(), small_training())


def test_unknown_dataset_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"^dataset: 'mabe' is invalid: must be one of \("):
        load_pretraining_data("mabe", str(tmp_path), (900, 3, 24))


def test_augmentation_of_a_dataset_without_it_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--fill_holes/--data_augment apply to the mouse"):
        load_pretraining_data("shot7m2", str(tmp_path), (400, 1, 72), data_augment=True)


@pytest.mark.skipif(keras.config.backend() != "torch", reason="torch has no data-parallel path")
def test_data_parallel_is_refused_under_torch():
    with pytest.raises(ValueError, match="torch"):
        setup_distribution("data_parallel")
