"""`benchmarks/compare_published.py` at tiny size: without published code (ratios to R) and
against a fake "published" checkout written here (the import path, the timm stand-in,
the interleaved slots and the speed-up table). Behaviour only: no speed is checked.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import pytest

from keras_hbehavemae.allocator import reuse_freed_memory

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
BACKEND = keras.config.backend()

# Worker subprocesses build and warm up models; the variants name their backends
# themselves, so one leg runs the harness.
pytestmark = [pytest.mark.slow, pytest.mark.backend_independent]

#: A minimal stand-in for a checkout of the published code: `models/models_defs.py` with
#: the two factory functions, a relative import and the timm import of the real one.
FAKE_MODELS_DEFS = '''
import torch
from .blocks import TinyNet


def hbehavemae(**args):
    return TinyNet(args["input_size"], args["init_embed_dim"], training_model=True)


def gen_hiera(**args):
    return TinyNet(args["input_size"], args["init_embed_dim"], training_model=False)
'''
FAKE_BLOCKS = '''
import math

import torch
from timm.models.layers import DropPath, Mlp


class TinyNet(torch.nn.Module):
    def __init__(self, input_size, width, training_model):
        super().__init__()
        self.features = math.prod(input_size[1:])
        self.mlp = Mlp(self.features, width, act_layer=torch.nn.GELU)
        self.drop = DropPath(0.0)
        self.training_model = training_model

    def forward(self, x, targets=None, mask_ratio=0.0, mask_strategy="random",
                return_intermediates=False):
        if self.training_model:  # [B, T, H, W]
            out = self.drop(self.mlp(x.flatten(2)))
            loss = (out - x.flatten(2)).square().mean()
            return loss, out, x, None, None
        out = self.mlp(x.flatten(3))  # [B, 1, T, H·W]
        return out.mean(), [out[:, 0, :, None, None, :]]  # [B, T, 1, 1, D]
'''


def _compare(tmp_path, *arguments, timeout=1500):
    output = tmp_path / "compare.json"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(BENCHMARKS.parent), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare_published.py"), "--config=tiny",
         "--batch_size=4", "--rounds=2", "--units=1", "--warmup=1", "--matmul_size=256",
         f"--variants={BACKEND}", f"--output={output}", *arguments],
        cwd=BENCHMARKS.parent, env=environment, capture_output=True, text=True,
        timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout, json.loads(output.read_text())


def test_without_published_code_it_reports_ratios_to_the_machine_rate(tmp_path):
    stdout, content = _compare(tmp_path, "--jobs=train")
    assert "| job | variant | s/unit | ratio to R | load |" in stdout
    (result,) = content["results"]
    assert result["variant"] == BACKEND and result["job"] == "train"
    assert len(result["slots"]) == 2 and result["reference_slots"] is None
    assert result["ready"]["backend"] == BACKEND
    # The package's worker keeps freed memory for reuse, as its commands do.
    assert result["ready"]["reuse_freed_memory"] is reuse_freed_memory(BACKEND, apply=False)
    assert 0 < result["ratio_to_machine_matmul"] and result["seconds_per_unit"] > 0
    assert "speedup" not in result


def test_against_a_fake_published_checkout_it_interleaves_and_prints_speedups(tmp_path):
    pytest.importorskip("torch")
    package = tmp_path / "checkout" / "models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models_defs.py").write_text(textwrap.dedent(FAKE_MODELS_DEFS))
    (package / "blocks.py").write_text(textwrap.dedent(FAKE_BLOCKS))
    stdout, content = _compare(tmp_path, f"--behavemae_dir={tmp_path / 'checkout'}",
                               "--jobs=train,extract", "--timm=stand-in")
    assert "× published (median, range)" in stdout
    assert {result["job"] for result in content["results"]} == {"train", "extract"}
    for result in content["results"]:
        assert len(result["slots"]) == 2 and len(result["reference_slots"]) == 3
        assert len(result["speedups"]) == 2 and result["speedup"] > 0
        assert result["reference_ready"]["timm_layers"].startswith("stand-in Mlp/DropPath")
        assert result["reference_ready"]["reuse_freed_memory"] is False  # its own defaults
        assert f"| {result['job']} | {BACKEND} |" in stdout


def test_a_folder_without_the_published_code_is_refused(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import published_model
    finally:
        sys.path.remove(str(BENCHMARKS))
    with pytest.raises(published_model.PublishedCodeError, match="no models/models_defs.py"):
        published_model.load_published_models(tmp_path)
