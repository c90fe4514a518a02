"""Checkpoint conversion: published `.pth` files, `.npz` fixtures, export, the script. Files
that do not fit or are unsafe: tests/faults/test_file_faults.py."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import FIXTURES, compiled, load_golden, save_published_checkpoint, to_numpy

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone
from keras_hbehavemae.convert.checkpoint import (
    build_from_torch_checkpoint,
    export_torch_state_dict,
    from_torch_checkpoint,
    load_torch_state_dict,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def golden():
    return load_golden("hbehavemae_tiny_multi")


@pytest.fixture(scope="module")
def published_checkpoint(tmp_path_factory, golden):
    """A checkpoint in the published layout, written by torch.save."""
    pytest.importorskip("torch")
    _, arrays, _ = golden
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint-199.pth"
    return save_published_checkpoint(path, arrays)


def check_golden_prediction(model, arrays):
    forward = compiled(model, lambda x, mask: model(x, unit_mask=mask)["pred"])
    np.testing.assert_allclose(to_numpy(forward(arrays["input"], arrays["mask"])),
                               arrays["pred"], atol=1e-5, rtol=0)


def test_published_pth_converts_with_config_from_args(published_checkpoint, golden):
    config, arrays, _ = golden
    converted_config, state = from_torch_checkpoint(published_checkpoint)
    assert converted_config == config
    assert len(state) == 88
    model = build_from_torch_checkpoint(published_checkpoint)
    assert isinstance(model, HBehaveMAE)
    check_golden_prediction(model, arrays)


def test_backbone_only_conversion_reports_decoder_keys(published_checkpoint, golden):
    config, arrays, _ = golden
    _, state = from_torch_checkpoint(published_checkpoint)
    backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
    report = load_torch_state_dict(backbone, state)
    assert "decoder_pred.weight" in report["ignored"] and "mask_token" in report["ignored"]
    assert len(report["loaded"]) + len(report["ignored"]) == len(state)
    levels = compiled(backbone, backbone)(arrays["input"])
    for index, level in enumerate(levels):
        np.testing.assert_allclose(to_numpy(level), arrays[f"full/intermediate/{index}"],
                                   atol=1e-5, rtol=0)


def test_npz_with_torch_names_converts_with_a_config(golden):
    config, arrays, _ = golden
    path = FIXTURES / "hbehavemae_tiny_multi.npz"
    model = build_from_torch_checkpoint(path, config)
    check_golden_prediction(model, arrays)


def test_export_round_trip(golden):
    config, arrays, _ = golden
    model = build_from_torch_checkpoint(FIXTURES / "hbehavemae_tiny_multi.npz", config)
    exported = export_torch_state_dict(model)
    for key, value in exported.items():
        np.testing.assert_array_equal(value, arrays[f"param/{key}"], err_msg=key)


@pytest.mark.slow
def test_convert_script_writes_a_preset(published_checkpoint, tmp_path, golden):
    _, arrays, _ = golden
    output = tmp_path / "preset"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_checkpoint.py"),
         f"--checkpoint={published_checkpoint}", f"--output={output}"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "83,300 parameters" in result.stdout
    model = HBehaveMAE.from_preset(output)
    check_golden_prediction(model, arrays)
    backbone = HBehaveMAEBackbone.from_preset(output)
    assert backbone.count_params() == 75748
