"""Unknown keys raise everywhere a configuration is read, naming the key and the closest valid
name: the model constructors, a preset's `config.json` and `task.json` (their parameters and
their Keras-level keys), a `.keras` file's configuration, `HBehaveMAEConfig.from_dict`, and a
published checkpoint's `args` (which may hold the published training settings, and nothing
else unless the caller names it). Keras's own keys (name, trainable, dtype, build_config, ...)
are accepted.

No test here builds a model: every error is raised before a weight is created (the built-in
`hbehavemae_shot7m2` preset has no weights and serves as the folder to damage).
"""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from helpers import SHOT7M2_ARGS, TINY, TINY_CHECKPOINT_ARGS, load_golden
from helpers import save_published_checkpoint as save_checkpoint

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.convert.checkpoint import from_torch_checkpoint
from keras_hbehavemae.convert.published import (
    PUBLISHED_TRAINING_ARGS,
    config_from_checkpoint_args,
    config_from_published_arguments,
)
from keras_hbehavemae.loading import load_model, read_model_config
from keras_hbehavemae.presets import preset_parameters
from keras_hbehavemae.presets.registry import BUILTIN_ROOT

# ---------------------------------------------------------------- constructors


def test_backbone_keyword_misspelled_is_named_with_the_closest_parameter():
    # keras.Model's **kwargs used to swallow it: the model was built with 2 heads.
    with pytest.raises(ValueError, match=r"^HBehaveMAEBackbone: unknown key 'init_num_head' "
                                         r"\(did you mean 'init_num_heads'\?\)$"):
        HBehaveMAEBackbone(**TINY, init_num_head=4)


def test_backbone_keyword_without_a_close_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^HBehaveMAEBackbone: unknown key 'colour'; valid "
                                         r"keys: dim_mul, drop_path_rate, dtype, "):
        HBehaveMAEBackbone(**TINY, colour="red")


class _BackboneStub:
    config_object = HBehaveMAEConfig(**TINY)
    dtype_policy = "float32"


def test_pretrainer_keyword_misspelled_is_named_with_the_closest_parameter():
    with pytest.raises(ValueError, match=r"^HBehaveMAE: unknown keys 'decoder_embed_dims' \(did "
                                         r"you mean 'decoder_embed_dim'\?\), 'maskratio' \(did "
                                         r"you mean 'mask_ratio'\?\)$"):
        HBehaveMAE(_BackboneStub(), decoder_embed_dims=16, maskratio=0.5)


# ---------------------------------------------------------------- preset folders


@pytest.fixture
def preset(tmp_path):
    """A copy of the built-in, weightless `hbehavemae_shot7m2` preset, to damage."""
    folder = tmp_path / "preset"
    shutil.copytree(BUILTIN_ROOT / "hbehavemae_shot7m2", folder)
    return folder


def edit(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def rename(mapping, old, new):
    mapping[new] = mapping.pop(old)


CONFIG_LOADERS = {
    "backbone-from_preset": lambda folder: HBehaveMAEBackbone.from_preset(
        folder, allow_random_weights=True),
    "pretrainer-from_preset": lambda folder: HBehaveMAE.from_preset(
        folder, allow_random_weights=True),
    "config-from_preset": HBehaveMAEConfig.from_preset,
    "load_model": lambda folder: load_model(folder, allow_random_weights=True),
    "read_model_config": read_model_config,
}


@pytest.mark.parametrize("loader", list(CONFIG_LOADERS))
def test_misspelled_parameter_in_config_json_is_named(preset, loader):
    (preset / "task.json").unlink()  # a backbone preset: every loader reads config.json
    edit(preset / "config.json", lambda c: rename(c["config"], "init_num_heads", "init_num_head"))
    with pytest.raises(ValueError, match=r"unknown key 'init_num_head' \(did you mean "
                                         r"'init_num_heads'\?\)") as error:
        CONFIG_LOADERS[loader](preset)
    assert "config.json" in str(error.value) or "task.json" in str(error.value)


@pytest.mark.parametrize("loader", ["pretrainer-from_preset", "config-from_preset",
                                    "load_model", "read_model_config"])
def test_misspelled_parameter_in_task_json_is_named(preset, loader):
    edit(preset / "task.json", lambda c: rename(c["config"], "mask_ratio", "mask_ration"))
    with pytest.raises(ValueError, match=r"task\.json.*unknown key 'mask_ration' \(did you mean "
                                         r"'mask_ratio'\?\)"):
        CONFIG_LOADERS[loader](preset)


@pytest.mark.parametrize("loader", ["pretrainer-from_preset", "load_model",
                                    "read_model_config"])
def test_misspelled_parameter_of_the_nested_backbone_in_task_json_is_named(preset, loader):
    # A required parameter: misspelled, it used to be Python's "missing 1 required argument".
    edit(preset / "task.json",
         lambda c: rename(c["config"]["backbone"]["config"], "stages", "stage"))
    with pytest.raises(ValueError, match=r"task\.json.*unknown key 'stage' \(did you mean "
                                         r"'stages'\?\)"):
        CONFIG_LOADERS[loader](preset)


@pytest.mark.parametrize("loader", list(CONFIG_LOADERS))
def test_misspelled_keras_key_of_config_json_is_named(preset, loader):
    (preset / "task.json").unlink()
    edit(preset / "config.json", lambda c: rename(c, "config", "confg"))
    with pytest.raises(ValueError, match=r"config\.json: unknown key 'confg' \(did you mean "
                                         r"'config'\?\)"):
        CONFIG_LOADERS[loader](preset)


def test_keras_bookkeeping_keys_are_accepted(preset):
    edit(preset / "config.json", lambda c: c.update(build_config={"input_shape": None}))
    assert HBehaveMAEConfig.from_preset(preset) == HBehaveMAEConfig.from_preset(
        BUILTIN_ROOT / "hbehavemae_shot7m2")
    assert "name" not in preset_parameters(preset) and "dtype" not in preset_parameters(preset)


def test_decoder_override_misspelled_is_named(preset):
    (preset / "task.json").unlink()
    with pytest.raises(ValueError, match=r"unknown key 'decoder_depths' \(did you mean "
                                         r"'decoder_depth'\?\)"):
        HBehaveMAE.from_preset(preset, allow_random_weights=True, decoder_depths=2)


def test_misspelled_parameter_in_a_keras_file_is_named(preset, tmp_path):
    serialized = json.loads((preset / "task.json").read_text())
    rename(serialized["config"], "norm_loss", "normloss")
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(serialized))
    with pytest.raises(ValueError, match=r"model\.keras.*unknown key 'normloss' \(did you mean "
                                         r"'norm_loss'\?\)"):
        read_model_config(path)


def test_a_preset_given_as_a_number_is_named():
    for load in (HBehaveMAEBackbone.from_preset, HBehaveMAE.from_preset,
                 HBehaveMAEConfig.from_preset):
        with pytest.raises(ValueError, match=r"^preset: 123 is invalid: give a preset folder or "
                                             r"a built-in preset name \(hbehavemae_"):
            load(123)


# ---------------------------------------------------------------- from_dict


def test_from_dict_refuses_a_value_that_is_not_a_mapping():
    with pytest.raises(ValueError, match=r"^HBehaveMAEConfig: \[1, 2\] is invalid: expected a "
                                         r"mapping of parameter names to values"):
        HBehaveMAEConfig.from_dict([1, 2])


def test_from_dict_names_a_misspelled_parameter():
    values = {**HBehaveMAEConfig(**TINY).to_dict(), "q_stride": "2,1,2;2,2,1"}
    with pytest.raises(ValueError, match=r"^HBehaveMAEConfig: unknown key 'q_stride' \(did you "
                                         r"mean 'q_strides'\?\)"):
        HBehaveMAEConfig.from_dict(values)


# ---------------------------------------------------------------- checkpoint args


def test_the_published_args_are_all_known():
    model_keys = set(HBehaveMAEConfig.__dataclass_fields__)
    for args in (SHOT7M2_ARGS, TINY_CHECKPOINT_ARGS):
        assert set(args) <= model_keys | PUBLISHED_TRAINING_ARGS
    assert not model_keys & PUBLISHED_TRAINING_ARGS


def test_checkpoint_args_with_a_misspelled_parameter_are_refused():
    args = dict(SHOT7M2_ARGS)
    rename(args, "init_num_heads", "init_num_head")
    with pytest.raises(ValueError, match=r"^checkpoint-199\.pth: args: unknown key "
                                         r"'init_num_head' \(did you mean 'init_num_heads'\?\)"):
        config_from_checkpoint_args(args, "checkpoint-199.pth")


def test_checkpoint_args_with_an_unknown_training_setting_are_refused_unless_named():
    args = {**SHOT7M2_ARGS, "label_smoothing": 0.1}
    with pytest.raises(ValueError, match=r"args: unknown key 'label_smoothing'; valid keys: "):
        config_from_checkpoint_args(args, "ckpt")
    config = config_from_checkpoint_args(args, "ckpt", extra_training_args=["label_smoothing"])
    assert config == config_from_checkpoint_args(SHOT7M2_ARGS, "ckpt")


def test_a_published_checkpoint_with_a_misspelled_arg_is_refused(tmp_path):
    pytest.importorskip("torch")
    args = dict(TINY_CHECKPOINT_ARGS)
    rename(args, "decoder_depth", "decoder_dept")
    path = save_checkpoint(tmp_path / "checkpoint.pth", load_golden("hbehavemae_tiny_multi")[1],
                           args)
    with pytest.raises(ValueError, match=r"checkpoint\.pth: args: unknown key 'decoder_dept' "
                                         r"\(did you mean 'decoder_depth'\?\)"):
        from_torch_checkpoint(path)


def test_a_fixed_published_argument_with_another_value_is_refused():
    values = dict(load_golden("hbehavemae_tiny_multi")[2]["model"], mask_ratio=0.75)
    assert config_from_published_arguments(values, "fixture").input_size == (32, 4, 12)
    with pytest.raises(ValueError, match=r"^fixture: in_chans: 3 is invalid: this package "
                                         r"supports only 1"):
        config_from_published_arguments({**values, "in_chans": 3}, "fixture")
    with pytest.raises(ValueError, match=r"^fixture: patch_stride: \[1, 1, 3\] is invalid"):
        config_from_published_arguments({**values, "patch_stride": [1, 1, 3]}, "fixture")
