"""The untrained control: a run's initial weights as a preset (`--save_initial`, `--epochs 0`)
and the control columns of the probe table built from exactly those weights."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SMALL, pretrain_script, small_data
from helpers import parse_pretrain_flags as parse

from keras_hbehavemae import HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.presets import read_metadata
from keras_hbehavemae.training import TrainingConfig, build_training_run, run_pretraining
from keras_hbehavemae.training.initial import INITIAL_PRESET_FOLDER, save_initial_preset

SEED = 3


def _weights(model):
    return [np.asarray(weight) for weight in model.get_weights()]


def _assert_same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_initial_preset_holds_the_weights_a_run_starts_from(tmp_path):
    config = HBehaveMAEConfig(**SMALL)
    save_initial_preset(config, SEED, tmp_path / "initial")
    assert read_metadata(tmp_path / "initial")["weights"] == "initial"
    with pytest.raises(ValueError, match="allow_random_weights"):
        HBehaveMAEBackbone.from_preset(tmp_path / "initial")
    saved = HBehaveMAEBackbone.from_preset(tmp_path / "initial", allow_random_weights=True)
    run = build_training_run(config, small_data(), TrainingConfig(
        batch_size=4, epochs=1, warmup_epochs=0, seed=SEED))
    _assert_same(_weights(saved), _weights(run.model.backbone))


@pytest.mark.slow  # a training run
def test_save_initial_run_and_the_control_of_its_preset(tmp_path):
    """`run_pretraining(save_initial=True)` keeps the initial weights next to the trained
    preset; `hbehavemae embed --control initial` rebuilds the same weights from the trained
    preset's configuration and seed; both differ from the trained weights."""
    from keras_hbehavemae.cli.embed import control_backbone

    config = HBehaveMAEConfig(**SMALL)
    training = TrainingConfig(batch_size=4, epochs=1, warmup_epochs=0, seed=SEED,
                              steps_per_epoch=2)
    run_pretraining(config, small_data(), training, str(tmp_path), verbose=0, save_initial=True)
    initial = HBehaveMAEBackbone.from_preset(tmp_path / INITIAL_PRESET_FOLDER,
                                             allow_random_weights=True)
    trained = HBehaveMAEBackbone.from_preset(tmp_path / "preset")
    assert read_metadata(tmp_path / "preset")["training"]["seed"] == SEED
    assert any(not np.array_equal(a, b) for a, b in zip(_weights(initial), _weights(trained),
                                                        strict=True))
    rebuilt, kind = control_backbone("initial", str(tmp_path / "preset"), trained, None)
    assert kind == f"initial, seed {SEED}"
    _assert_same(_weights(rebuilt), _weights(initial))
    loaded, kind = control_backbone(str(tmp_path / INITIAL_PRESET_FOLDER),
                                    str(tmp_path / "preset"), trained, None)
    assert kind == "initial"
    _assert_same(_weights(loaded), _weights(initial))
    with pytest.raises(ValueError, match="save_initial"):
        run_pretraining(config, small_data(), training, str(tmp_path / "other"), verbose=0,
                        save_initial=True, preset=str(tmp_path / "preset"))


def test_control_of_another_architecture_is_refused(tmp_path):
    from keras_hbehavemae.cli.embed import control_backbone

    save_initial_preset(HBehaveMAEConfig(**SMALL), SEED, tmp_path / "small")
    other = HBehaveMAEConfig(**dict(SMALL, out_embed_dims=(8, 24)))
    save_initial_preset(other, SEED, tmp_path / "other")
    backbone = HBehaveMAEBackbone.from_preset(tmp_path / "small", allow_random_weights=True)
    with pytest.raises(ValueError, match="same architecture"):
        control_backbone(str(tmp_path / "other"), str(tmp_path / "small"), backbone, None)


@pytest.mark.slow  # the command in process, and a training run built
def test_pretrain_epochs_zero_saves_only_the_initial_weights(tmp_path):
    flags = parse(f"--output_dir={tmp_path}", "--epochs=0", f"--seed={SEED}",
                  "--input_size=24,3,24", "--patch_kernel=3,1,24", "--stages=1,1",
                  "--q_strides=2,1,1", "--mask_unit_attn=True,False", "--init_embed_dim=8",
                  "--out_embed_dims=8,16", "--decoder_embed_dim=8")
    assert pretrain_script().run(flags) == 0
    # The preset and the run folder's lock file (held while writing it), nothing trained.
    assert sorted(path.name for path in tmp_path.iterdir()) == [INITIAL_PRESET_FOLDER,
                                                                 "run.lock"]
    saved = HBehaveMAEBackbone.from_preset(tmp_path / INITIAL_PRESET_FOLDER,
                                           allow_random_weights=True)
    metadata = read_metadata(tmp_path / INITIAL_PRESET_FOLDER)
    assert metadata["weights"] == "initial" and metadata["seed"] == SEED
    run = build_training_run(pretrain_script().model_config(flags), small_data(),
                             TrainingConfig(batch_size=4, epochs=1, warmup_epochs=0, seed=SEED))
    _assert_same(_weights(saved), _weights(run.model.backbone))
