"""Presets: built-in names, folders, cross-backend loading, installed wheel. Unknown names and
damaged or mismatched preset files: tests/faults/test_file_faults.py."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import TINY, build_pretrainer, to_numpy

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.presets import list_presets, save_to_preset
from keras_hbehavemae.presets.registry import BUILTIN_ROOT

ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBLISHED = {"hbehavemae_shot7m2": 8_624_814, "hbehavemae_mabe22_mice": 19_433_408,
             "hbehavemae_hbabel": 15_194_528}
CONFIG = HBehaveMAEConfig(**TINY, decoder_embed_dim=16)


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    model = build_pretrainer(CONFIG, seed=0)
    directory = tmp_path_factory.mktemp("preset") / "tiny"
    save_to_preset(model, directory, model_card="# tiny\n")
    return model, directory


def test_builtin_presets_are_listed_and_load_by_name():
    names = list_presets()
    assert set(PUBLISHED) <= set(names)
    backbone = HBehaveMAEBackbone.from_preset("hbehavemae_hbabel", load_weights=False)
    assert backbone.count_params() == PUBLISHED["hbehavemae_hbabel"]
    for name in PUBLISHED:
        config = json.loads((BUILTIN_ROOT / name / "config.json").read_text())
        assert config["registered_name"] == "keras_hbehavemae>HBehaveMAEBackbone"


def test_published_pretrainer_preset_keeps_its_recipe():
    model = HBehaveMAE.from_preset("hbehavemae_shot7m2", load_weights=False)
    assert model.config_object.decoding_strategy == "single"
    assert model.geometry.pred_stride == 288 and model.geometry.num_kept_units == 15


def test_folder_round_trip(tiny_preset):
    model, directory = tiny_preset
    assert {p.name for p in directory.iterdir()} >= {
        "config.json", "model.weights.h5", "task.json", "task.weights.h5", "metadata.json",
        "README.md"}
    x = np.random.default_rng(0).standard_normal((2, 32, 4, 12)).astype("float32")
    mask = np.zeros((2, 16), bool)
    mask[:, :4] = True
    restored = HBehaveMAE.from_preset(directory)
    np.testing.assert_allclose(to_numpy(restored(x, unit_mask=mask)["pred"]),
                               to_numpy(model(x, unit_mask=mask)["pred"]), atol=1e-6)
    backbone = HBehaveMAEBackbone.from_preset(directory)
    for a, b in zip(backbone(x), model.backbone(x), strict=True):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)


@pytest.mark.slow
def test_preset_loads_under_another_backend(tiny_preset, tmp_path):
    model, directory = tiny_preset
    x = np.random.default_rng(1).standard_normal((2, 32, 4, 12)).astype("float32")
    expected = [to_numpy(level) for level in model.backbone(x)]
    np.save(tmp_path / "x.npy", x)
    other = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[keras.config.backend()]
    script = (
        "import sys, numpy as np, keras\n"
        "from keras_hbehavemae import HBehaveMAEBackbone\n"
        f"backbone = HBehaveMAEBackbone.from_preset({str(directory)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "levels = [keras.ops.convert_to_numpy(level) for level in backbone(x)]\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, *levels)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": other}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as loaded:
        for index, level in enumerate(expected):
            np.testing.assert_allclose(loaded[f"arr_{index}"], level, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(keras.config.backend() != "tensorflow",
                    reason="backend-independent packaging check; runs in the TensorFlow leg")
def test_installed_wheel_loads_a_preset_by_name(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheel_dir), str(ROOT)], check=True, timeout=600)
    wheel = next(wheel_dir.glob("keras_hbehavemae-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=600)
    script = ("import keras_hbehavemae\n"
              "from keras_hbehavemae import HBehaveMAEBackbone\n"
              "from keras_hbehavemae.presets import list_presets\n"
              "print(keras_hbehavemae.__file__)\n"
              "print(sorted(list_presets()))\n"
              "backbone = HBehaveMAEBackbone.from_preset('hbehavemae_shot7m2',\n"
              "                                          load_weights=False)\n"
              "print(backbone.count_params())\n")
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(str(venv)), f"imported from {lines[0]}, not the installed wheel"
    assert "hbehavemae_shot7m2" in lines[1]
    assert lines[2] == "8624814"


def synthetic_windows(num_frames: int, seed: int = 123) -> np.ndarray:
    """Held-out synthetic windows (a seed the preset never saw), normalised as in training."""
    from keras_hbehavemae.data.synthetic import generate_synthetic_behaviour

    data = generate_synthetic_behaviour(2, 2 * num_frames, seed=seed)
    windows = []
    for sequence in data["sequences"].values():
        keypoints = sequence["keypoints"].reshape(2 * num_frames, 3, 24)
        windows += [keypoints[:num_frames], keypoints[num_frames:]]
    return ((np.stack(windows) - 425.0) / 425.0).astype("float32")


def test_trained_synthetic_preset_beats_an_untrained_model():
    trained = HBehaveMAE.from_preset("hbehavemae_synthetic_mice")
    untrained = HBehaveMAE.from_preset("hbehavemae_synthetic_mice", load_weights=False)
    x = synthetic_windows(trained.config_object.input_size[0])
    units, kept = trained.geometry.num_mask_units, trained.geometry.num_kept_units
    mask = np.zeros((len(x), units), bool)
    mask[:, np.linspace(0, units - 1, kept).round().astype(int)] = True  # spread-out kept units
    losses = [float(to_numpy(model.compute_pretraining_loss(x, model(x, unit_mask=mask))))
              for model in (trained, untrained)]
    assert np.isfinite(losses).all()
    assert losses[0] < 0.5 * losses[1], losses
