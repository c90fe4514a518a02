"""Tests of `keras_hbehavemae.models.config`: parsing of the published forms, defaults,
conversion and the configurations the validation rules accept. The configurations it rejects
are tested in `tests/faults/test_config_faults.py`.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from helpers import MODEL_ARG_NAMES, SHOT7M2
from helpers import SHOT7M2_ARGS as PUBLISHED_ARGS
from helpers import TINY_CONFIG as TINY
from helpers import config_geometry as build_model_geometry
from helpers import make_config as make

from keras_hbehavemae.convert.published import config_from_checkpoint_args
from keras_hbehavemae.models.config import (
    ENCODER_FIELDS,
    PRETRAINER_FIELDS,
    HBehaveMAEConfig,
    parse_bool,
    parse_bool_sequence,
    parse_int_sequence,
    parse_q_strides,
    parse_triple,
)
from keras_hbehavemae.models.geometry import compute_geometry

pytestmark = pytest.mark.backend_independent


def test_rule7_allows_same_width_where_no_pooling():
    # Unit strides (1,1,1) do not pool (|S| = 1), so dim_mul = 1 is allowed there.
    geometry = build_model_geometry(TINY, q_strides="1,1,1;1,1,1", dim_mul=1.0, head_mul=1.0)
    assert [block.dim for block in geometry.blocks] == [16, 16, 16, 16]
    assert not any(block.has_projection for block in geometry.blocks)


@pytest.mark.parametrize("mask_ratio, kept", [(0.98, 1), (0.70, 15), (0.01, 49)])
def test_rule9_validate_for_training_accepts(mask_ratio, kept):
    config = make(mask_ratio=mask_ratio)
    config.validate_for_training()
    assert compute_geometry(config).num_kept_units == kept


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

def test_published_checkpoint_args_give_the_configuration():
    config = config_from_checkpoint_args(PUBLISHED_ARGS, "checkpoint")
    assert config == make()
    assert config.input_size == (400, 1, 72)
    assert config.q_strides == ((2, 1, 4), (2, 1, 6))
    assert config.mask_unit_attn == (True, False, False)
    assert config.decoding_strategy == "single"
    assert config.mask_ratio == 0.70


def test_from_dict_accepts_model_keys_only():
    config = HBehaveMAEConfig.from_dict({name: PUBLISHED_ARGS[name] for name in MODEL_ARG_NAMES})
    assert config == make()


def test_from_dict_num_frames_matching_forms():
    for num_frames in (400, "400", None):
        config = config_from_checkpoint_args({**PUBLISHED_ARGS, "num_frames": num_frames},
                                             "checkpoint")
        assert config.input_size[0] == 400
    values = {**PUBLISHED_ARGS, "input_size": "450 1 75", "patch_kernel": [3, 1, 75],
              "q_strides": "5,1,1;3,1,1", "init_embed_dim": 128, "num_frames": 450}
    assert config_from_checkpoint_args(values, "checkpoint").input_size == (450, 1, 75)


@pytest.mark.parametrize("base", [SHOT7M2, TINY], ids=["shot7m2", "tiny"])
def test_to_dict_from_dict_round_trip(base):
    config = make(base, mask_unit_attn="True False False", norm_loss="true")
    values = config.to_dict()
    assert set(values) == {field.name for field in dataclasses.fields(HBehaveMAEConfig)}
    assert isinstance(values["q_strides"], list)
    assert all(isinstance(triple, list) for triple in values["q_strides"])
    assert isinstance(values["input_size"], list)
    again = HBehaveMAEConfig.from_dict(values)
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


def test_replace_returns_a_changed_copy():
    config = make()
    changed = config.replace(mask_ratio=0.5, q_strides="2,1,4")
    assert changed.mask_ratio == 0.5 and changed.q_strides == ((2, 1, 4),)
    assert config.mask_ratio == 0.70  # the original is unchanged
    assert config.replace(norm_loss="True").norm_loss is True


def test_equal_configs_from_different_spellings():
    a = make(q_strides="2,1,4;2,1,6", mask_unit_attn="True False False", input_size="400 1 72")
    b = make(q_strides=[[2, 1, 4], [2, 1, 6]], mask_unit_attn=[True, False, False],
             input_size=[400, 1, 72])
    assert a == b
    assert hash(a) == hash(b)
