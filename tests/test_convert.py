"""Checkpoint conversion: published `.pth` files, `.npz` fixtures, strictness, safety."""

import argparse
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from helpers import FIXTURES, compiled, load_golden, to_numpy

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone
from keras_hbehavemae.convert.checkpoint import (
    build_from_torch_checkpoint,
    export_torch_state_dict,
    from_torch_checkpoint,
    load_torch_state_dict,
)
from keras_hbehavemae.convert.torch_pickle import UnsafeCheckpointError

ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBLISHED_ARGS = dict(
    input_size=[32, 4, 12], stages=[1, 2, 1], q_strides="2,1,2;2,2,1",
    mask_unit_attn=["True", "False", "False"], patch_kernel=[2, 1, 3], init_embed_dim=16,
    init_num_heads=2, out_embed_dims=[8, 12, 16], decoder_embed_dim=16, decoder_depth=1,
    decoder_num_heads=1, decoding_strategy="multi", norm_loss=True, non_hierarchical=False,
    mask_ratio=0.75, num_frames=32, batch_size=2, blr=1.6e-4, epochs=200, warmup_epochs=40,
    dataset="mabe_mice", output_dir="/tmp/out")


@pytest.fixture(scope="module")
def golden():
    return load_golden("hbehavemae_tiny_multi")


@pytest.fixture(scope="module")
def published_checkpoint(tmp_path_factory, golden):
    """A checkpoint in the published layout, written by torch.save."""
    torch = pytest.importorskip("torch")
    _, arrays, _ = golden
    state = {key[len("param/"):]: torch.from_numpy(value.copy())
             for key, value in arrays.items() if key.startswith("param/")}
    parameters = [torch.nn.Parameter(value.clone()) for value in state.values()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    for parameter in parameters:
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint-199.pth"
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "epoch": 199,
                "scaler": {}, "args": argparse.Namespace(**PUBLISHED_ARGS)}, path)
    return path


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


def test_npz_with_torch_names_needs_and_checks_config(golden):
    config, arrays, _ = golden
    path = FIXTURES / "hbehavemae_tiny_multi.npz"
    with pytest.raises(ValueError, match="holds no training args"):
        from_torch_checkpoint(path)
    model = build_from_torch_checkpoint(path, config)
    check_golden_prediction(model, arrays)


def test_export_round_trip(golden):
    config, arrays, _ = golden
    model = build_from_torch_checkpoint(FIXTURES / "hbehavemae_tiny_multi.npz", config)
    exported = export_torch_state_dict(model)
    for key, value in exported.items():
        np.testing.assert_array_equal(value, arrays[f"param/{key}"], err_msg=key)


def test_strict_load_lists_every_problem(golden):
    config, arrays, _ = golden
    state = {key[len("param/"):]: value for key, value in arrays.items()
             if key.startswith("param/")}
    del state["decoder_norm.bias"]
    state["head.weight"] = np.zeros((3, 3), "float32")
    state["blocks.0.attn.qkv.weight"] = np.zeros((47, 16), "float32")
    from helpers import build_pretrainer

    model = build_pretrainer(config)
    with pytest.raises(ValueError) as error:
        load_torch_state_dict(model, state)
    message = str(error.value)
    assert "missing keys (1): ['decoder_norm.bias']" in message
    assert "unexpected keys (1): ['head.weight']" in message
    assert "blocks.0.attn.qkv.weight: checkpoint (47, 16)" in message


def test_checkpoint_of_another_architecture_is_rejected(published_checkpoint, golden):
    config, _, _ = golden
    other = config.replace(out_embed_dims=(8, 12, 24))
    with pytest.raises(ValueError, match="differs from the checkpoint's args"):
        from_torch_checkpoint(published_checkpoint, other)


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"model": Exploit()}))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        build_from_torch_checkpoint(path)
    assert not marker.exists()


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
