"""Tests for keras_hbehavemae.convert.torch_pickle (torch-free checkpoint reading). Damaged,
truncated, legacy and malicious files: tests/faults/test_file_faults.py."""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import read_zip, save_small_checkpoint, write_zip

from keras_hbehavemae.convert.torch_pickle import (
    ArgumentNamespace,
    extract_args,
    extract_state_dict,
    load_torch_file,
)

pytestmark = pytest.mark.backend_independent

_ARGS = {
    "input_size": [400, 1, 72],
    "q_strides": "2,1,4;2,1,6",
    "mask_unit_attn": [True, False, False],
    "norm_loss": False,
    "blr": 1.6e-4,
}


def _assert_same(loaded: Any, original: Any) -> None:
    """Asserts `loaded` mirrors `original`, with every torch tensor as an equal array."""
    import torch

    if isinstance(original, torch.Tensor):
        expected = original.detach()
        if expected.dtype == torch.bfloat16:
            expected = expected.float()
        expected = expected.numpy()
        assert isinstance(loaded, np.ndarray)
        assert loaded.dtype == expected.dtype
        assert loaded.shape == expected.shape
        np.testing.assert_array_equal(loaded, expected)
    elif isinstance(original, dict):
        assert list(loaded) == list(original)
        for key, value in original.items():
            _assert_same(loaded[key], value)
    elif isinstance(original, list | tuple):
        assert len(loaded) == len(original)
        for loaded_item, original_item in zip(loaded, original, strict=True):
            _assert_same(loaded_item, original_item)
    else:
        assert loaded == original


def test_full_training_checkpoint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    shared = torch.randn(4, 6)
    network = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    network(torch.randn(5, 4)).square().sum().backward()
    optimizer.step()
    model = collections.OrderedDict(
        dense=torch.randn(2, 3),
        transposed=base.t(),
        view_rows=shared[1:3],
        view_column=shared[:, 2],
        half=torch.randn(5).half(),
        brain=torch.randn(2, 3).bfloat16(),
        index=torch.arange(-3, 4, dtype=torch.int64),
        scalar=torch.tensor(2.5),
        empty=torch.zeros(0, 4),
        parameter=torch.nn.Parameter(torch.randn(3)),
    )
    assert not model["transposed"].is_contiguous()
    assert model["view_rows"].untyped_storage().data_ptr() == shared.untyped_storage().data_ptr()
    checkpoint = {
        "model": model,
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "scaler": {},
        "args": argparse.Namespace(**_ARGS),
    }
    path = tmp_path / "checkpoint-3.pth"
    torch.save(checkpoint, path)

    loaded = load_torch_file(path)

    _assert_same(loaded["model"], model)
    assert loaded["model"]["brain"].dtype == np.float32
    assert loaded["model"]["half"].dtype == np.float16
    assert loaded["model"]["index"].dtype == np.int64
    _assert_same(loaded["optimizer"], optimizer.state_dict())
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (2, 4)
    assert loaded["epoch"] == 3
    assert loaded["scaler"] == {}
    assert isinstance(loaded["args"], ArgumentNamespace)
    assert loaded["args"].q_strides == "2,1,4;2,1,6"
    assert extract_args(loaded) == _ARGS
    assert type(extract_args(loaded)) is dict
    state = extract_state_dict(loaded)
    assert list(state) == list(model)
    assert all(array.flags.writeable for array in state.values())
    assert not np.shares_memory(state["view_rows"], state["view_column"])


def test_numpy_scalars_and_dtypes_in_args(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    args = argparse.Namespace(lr=np.float64(1.5e-4), steps=np.int32(7), dtype=np.dtype("float32"))
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {}, "args": args}, path)

    loaded = extract_args(load_torch_file(path))

    assert loaded["lr"] == 1.5e-4 and loaded["lr"].dtype == np.float64
    assert loaded["steps"] == 7 and loaded["steps"].dtype == np.int32
    assert loaded["dtype"] == np.dtype("float32")


def test_state_dict_only_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    network = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    path = tmp_path / "state.pt"
    torch.save(network.state_dict(), path)

    loaded = load_torch_file(path)

    _assert_same(loaded, network.state_dict())
    state = extract_state_dict(loaded)
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert extract_args(loaded) is None


@pytest.mark.parametrize("key", ["model", "model_state", "state_dict"])
def test_state_dict_keys_and_module_prefix(tmp_path: Path, key: str) -> None:
    torch = pytest.importorskip("torch")
    weight = torch.randn(2, 2)
    path = tmp_path / "wrapped.pt"
    torch.save({key: {"module.encoder.weight": weight, "module.head.bias": weight[0]}}, path)

    state = extract_state_dict(load_torch_file(path))

    assert list(state) == ["encoder.weight", "head.bias"]
    np.testing.assert_array_equal(state["head.bias"], weight[0].numpy())


def test_big_endian_byteorder(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    model = save_small_checkpoint(tmp_path / "little.pt")
    entries = read_zip(tmp_path / "little.pt")
    root = next(name for name in entries if name.endswith("data.pkl"))[: -len("data.pkl")]
    entries[f"{root}byteorder"] = b"big"
    for name in entries:
        if name.startswith(f"{root}data/"):
            entries[name] = np.frombuffer(entries[name], "<f4").astype(">f4").tobytes()

    loaded = load_torch_file(write_zip(tmp_path / "big.pt", entries))

    _assert_same(loaded["model"], model)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_pickle_of_numpy_arrays(tmp_path: Path, protocol: int) -> None:
    content = {
        "weights": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "mask": np.array([True, False]),
        "scale": np.float32(0.5),
        "names": ["a", "b"],
        "pair": (1, 2.0),
        "raw": b"\x00\xff",
        "tags": {"x", "y"},
        "objects": np.asfortranarray(np.array([[1, "a", 3], [None, 2.5, "z"]], dtype=object)),
    }
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(content, protocol=protocol))

    loaded = load_torch_file(path)

    assert list(loaded) == list(content)
    for key in ("weights", "fortran", "mask"):
        np.testing.assert_array_equal(loaded[key], content[key])
        assert loaded[key].dtype == content[key].dtype
    assert loaded["scale"] == np.float32(0.5) and loaded["scale"].dtype == np.float32
    assert loaded["names"] == ["a", "b"] and loaded["pair"] == (1, 2.0)
    assert loaded["raw"] == b"\x00\xff" and loaded["tags"] == {"x", "y"}
    assert loaded["objects"].tolist() == content["objects"].tolist()
    assert np.dtype("float32").byteorder == "="
    assert extract_state_dict({"weights": loaded["weights"]})["weights"].shape == (3, 4)


def test_plain_pickle_of_a_bare_array(tmp_path: Path) -> None:
    path = tmp_path / "array.pkl"
    path.write_bytes(pickle.dumps(np.arange(5.0)))

    np.testing.assert_array_equal(load_torch_file(path), np.arange(5.0))


@pytest.mark.slow
def test_loads_without_torch(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    model = save_small_checkpoint(tmp_path / "checkpoint.pt")
    # torch cannot be imported in the child (a finder refuses it; a None in sys.modules
    # would break scipy's probe for torch arrays, which Keras imports).
    script = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from keras_hbehavemae.convert.torch_pickle import load_torch_file\n"
        f"checkpoint = load_torch_file({str(tmp_path / 'checkpoint.pt')!r})\n"
        "assert 'torch' not in sys.modules\n"
        "print(checkpoint['model']['weight'].tolist())\n"
    )
    repository = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": str(repository), "KERAS_BACKEND": "tensorflow"}

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(model["weight"].tolist())
