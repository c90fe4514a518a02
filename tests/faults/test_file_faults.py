"""Bad files: damaged, truncated, empty or mismatched preset folders, weights, published
checkpoints and run folders, and pickles that try to run code. Each raises an error of a
clear type whose message names the file (or flag) and the problem; a malicious pickle raises
`UnsafeCheckpointError` and runs nothing. Bad data files: `test_data_faults.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    FIXTURES,
    SHOT7M2_ARGS,
    TINY_CHECKPOINT_ARGS,
    load_golden,
    read_zip,
    run_small_pretraining,
    save_small_checkpoint,
    write_zip,
)

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone
from keras_hbehavemae.convert.checkpoint import (
    build_from_torch_checkpoint,
    from_torch_checkpoint,
    load_torch_state_dict,
)
from keras_hbehavemae.convert.torch_pickle import (
    UnsafeCheckpointError,
    extract_state_dict,
    load_torch_file,
)
from keras_hbehavemae.loading import load_weights_into, read_model_config
from keras_hbehavemae.presets.folder import save_to_preset
from keras_hbehavemae.training import run_directory


@pytest.fixture(scope="module")
def golden():
    return load_golden("hbehavemae_tiny_multi")


@pytest.fixture(scope="module")
def tiny_preset(tiny_pretrainer, tmp_path_factory):
    """The shared tiny pretrainer saved as a preset folder (backbone and task files)."""
    directory = tmp_path_factory.mktemp("preset") / "tiny"
    save_to_preset(tiny_pretrainer, directory, model_card="# tiny\n")
    return tiny_pretrainer, directory


# ---------------------------------------------------------------- preset folders

def test_bogus_name_lists_available_presets():
    with pytest.raises(ValueError, match="Available presets: .*hbehavemae_shot7m2"):
        HBehaveMAEBackbone.from_preset("hbehavemae_does_not_exist")


def copy_preset(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _truncate(path):
    path.write_bytes(path.read_bytes()[:2000])


# (file, damage, loader, error, message): one damaged file of a saved preset each.
DAMAGED_PRESET_FILES = {
    "corrupt_config": ("config.json", lambda path: path.write_text("{not json"), "backbone",
                       ValueError, r"config\.json: not valid JSON"),
    "truncated_weights": ("model.weights.h5", _truncate, "backbone", ValueError,
                          r"model\.weights\.h5: cannot load these weights"),
    "empty_backbone_weights": ("model.weights.h5", lambda path: path.write_bytes(b""),
                               "backbone", ValueError,
                               r"model\.weights\.h5: cannot load these weights .*"
                               r"file is corrupt"),
    "empty_pretrainer_weights": ("task.weights.h5", lambda path: path.write_bytes(b""),
                                 "pretrainer", ValueError,
                                 r"task\.weights\.h5: cannot load these weights"),
    "missing_config": ("config.json", lambda path: path.unlink(), "backbone",
                       FileNotFoundError, r"config\.json: missing from the preset folder"),
    "corrupt_task_config": ("task.json",
                            lambda path: path.write_text('{"class_name": "HBehaveMAE", "con'),
                            "pretrainer", ValueError, r"task\.json: not valid JSON"),
}


@pytest.mark.parametrize("case", list(DAMAGED_PRESET_FILES))
def test_damaged_preset_file_is_named(tiny_preset, tmp_path, case):
    file_name, damage, loader, error, message = DAMAGED_PRESET_FILES[case]
    _, directory = tiny_preset
    broken = copy_preset(directory, tmp_path / case)
    damage(broken / file_name)
    model_class = HBehaveMAEBackbone if loader == "backbone" else HBehaveMAE
    with pytest.raises(error, match=message):
        model_class.from_preset(broken)


def test_weights_of_another_architecture_are_rejected(tiny_preset, tmp_path):
    model, directory = tiny_preset
    mixed = copy_preset(directory, tmp_path / "mixed")
    other_config = model.config_object.replace(out_embed_dims=(8, 12, 24))
    other = HBehaveMAEBackbone(**other_config.encoder_kwargs())
    other.save_weights(mixed / "model.weights.h5")
    with pytest.raises(ValueError, match=r"model\.weights\.h5: cannot load"):
        HBehaveMAEBackbone.from_preset(mixed)


def test_config_of_another_model_class_is_named(tiny_preset, tmp_path):
    import keras

    _, directory = tiny_preset
    other = copy_preset(directory, tmp_path / "sequential")
    sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    (other / "config.json").write_text(json.dumps(keras.saving.serialize_keras_object(sequential)))
    with pytest.raises(ValueError, match=r"config\.json: holds a Sequential, expected "
                                         r"HBehaveMAEBackbone"):
        HBehaveMAEBackbone.from_preset(other)


def test_task_config_holding_a_backbone_is_named(tiny_preset, tmp_path):
    _, directory = tiny_preset
    other = copy_preset(directory, tmp_path / "backbone_as_task")
    shutil.copy(directory / "config.json", other / "task.json")
    with pytest.raises(ValueError, match=r"task\.json: holds a HBehaveMAEBackbone, expected "
                                         r"HBehaveMAE"):
        HBehaveMAE.from_preset(other)


def test_invalid_configuration_in_a_preset_names_file_and_parameter(tiny_preset, tmp_path):
    _, directory = tiny_preset
    broken = copy_preset(directory, tmp_path / "invalid")
    config = json.loads((directory / "config.json").read_text())
    config["config"]["patch_kernel"] = [3, 1, 3]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json: cannot build a model from this config "
                                         r"\(patch_kernel: \(3, 1, 3\) is invalid"):
        HBehaveMAEBackbone.from_preset(broken)


# ---------------------------------------------------------------- a preset to start training from

def test_damaged_keras_file_as_starting_preset_is_named(tmp_path):
    path = tmp_path / "start.keras"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match=r"--preset '.*start\.keras': not a readable \.keras"):
        read_model_config(str(path), "--preset")


def test_damaged_preset_folder_as_starting_preset_is_named(tiny_preset, tmp_path):
    _, directory = tiny_preset
    broken = copy_preset(directory, tmp_path / "start")
    (broken / "task.json").write_text("{")
    with pytest.raises(ValueError, match=r"task\.json: not valid JSON"):
        read_model_config(str(broken), "--preset")


def test_truncated_weights_file_as_starting_preset_is_named(tiny_pretrainer, tiny_preset,
                                                            tmp_path):
    _, directory = tiny_preset
    path = tmp_path / "start.weights.h5"
    path.write_bytes((directory / "task.weights.h5").read_bytes()[:2000])
    # The file cannot even be opened, so nothing is assigned to the shared model.
    with pytest.raises(ValueError, match=r"--preset '.*start\.weights\.h5': cannot load its "
                                         r"weights into the configured model"):
        load_weights_into(tiny_pretrainer, str(path), parameter="--preset")


# ---------------------------------------------------------------- published checkpoints

def test_strict_load_lists_every_missing_extra_and_misshapen_key(golden, tiny_pretrainer):
    config, arrays, _ = golden
    state = {key[len("param/"):]: value for key, value in arrays.items()
             if key.startswith("param/")}
    del state["decoder_norm.bias"]
    state["head.weight"] = np.zeros((3, 3), "float32")
    state["blocks.0.attn.qkv.weight"] = np.zeros((47, 16), "float32")
    model = tiny_pretrainer  # of `config`; the load checks everything before it assigns
    assert model.config_object == config
    with pytest.raises(ValueError, match="checkpoint does not match the model configuration") \
            as error:
        load_torch_state_dict(model, state)
    message = str(error.value)
    assert "missing keys (1): ['decoder_norm.bias']" in message
    assert "unexpected keys (1): ['head.weight']" in message
    assert "blocks.0.attn.qkv.weight: checkpoint (47, 16)" in message


def test_checkpoint_of_another_architecture_is_rejected(golden, tmp_path):
    config, _, _ = golden
    checkpoint = tmp_path / "checkpoint-199.pth"  # the published `args` of the golden model
    checkpoint.write_bytes(pickle.dumps(
        {"model": {}, "args": argparse.Namespace(**TINY_CHECKPOINT_ARGS)}, protocol=2))
    other = config.replace(out_embed_dims=(8, 12, 24))
    with pytest.raises(ValueError, match="differs from the checkpoint's args"):
        from_torch_checkpoint(checkpoint, other)


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




def test_npz_without_training_args_needs_a_config():
    with pytest.raises(ValueError, match="holds no training args"):
        from_torch_checkpoint(FIXTURES / "hbehavemae_tiny_multi.npz")


def test_checkpoint_args_with_an_invalid_configuration_name_the_parameter(tmp_path):
    args = argparse.Namespace(**{**SHOT7M2_ARGS, "patch_kernel": [3, 1, 3]})
    path = tmp_path / "invalid.pth"
    path.write_bytes(pickle.dumps({"model": {}, "args": args}, protocol=2))
    with pytest.raises(ValueError, match=r"^patch_kernel: \(3, 1, 3\) is invalid: must divide "
                                         r"input_size"):
        from_torch_checkpoint(path)


def test_checkpoint_args_without_the_architecture_name_the_missing_keys(tmp_path):
    args = argparse.Namespace(batch_size=512, epochs=200, lr=None)
    path = tmp_path / "no_model_args.pth"
    path.write_bytes(pickle.dumps({"model": {}, "args": args}, protocol=2))
    with pytest.raises(ValueError, match=r"missing required configuration parameters "
                                         r"\['input_size', 'patch_kernel'"):
        from_torch_checkpoint(path)


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.pth: checkpoint file not found"):
        from_torch_checkpoint(tmp_path / "absent.pth")


# ---------------------------------------------------------------- run folders
# (`run_small_pretraining` resumes a run folder; a damaged file must stop it with a message
# that names the file, before any training.)

def test_damaged_state_file_is_named(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "state.json").write_text('{"completed_epochs": 2, "checkp')
    with pytest.raises(ValueError, match=r"state\.json: not valid JSON .*the file is damaged"):
        run_small_pretraining(output)


def test_damaged_run_configuration_is_named(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "run_config.json").write_bytes(b"\x00\xff\xfe binary garbage")
    with pytest.raises(ValueError, match=r"run_config\.json: not valid JSON"):
        run_small_pretraining(output)


def copy_run(finished_run, target: Path) -> tuple[Path, dict]:
    """A copy of the finished run folder and its state."""
    shutil.copytree(finished_run[0], target)
    return target, run_directory.read_state(str(target))


def test_truncated_checkpoint_to_resume_from_is_named(finished_run, tmp_path):
    output, state = copy_run(finished_run, tmp_path / "run")
    checkpoint = output / state["checkpoint"]
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(ValueError, match=rf"cannot resume from {state['checkpoint']} .*the file "
                                         r"is damaged; restore the file"):
        run_small_pretraining(output)


def test_missing_checkpoint_to_resume_from_is_named(finished_run, tmp_path):
    output, state = copy_run(finished_run, tmp_path / "run")
    (output / state["checkpoint"]).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{state['checkpoint']}, the checkpoint named "
                                                r"in state\.json, is missing"):
        run_small_pretraining(output)


# ---------------------------------------------------------------- torch pickles, read without torch

class _Exploit:
    """Pickles as a call of `function(*arguments)`, the classic pickle attack."""

    def __init__(self, function: Callable, *arguments: Any) -> None:
        self.function = function
        self.arguments = arguments

    def __reduce__(self) -> tuple:
        return self.function, self.arguments


class _ForgedDtype:
    """Pickles as `numpy.dtype('f8')` with a forged BUILD state."""

    def __init__(self, state: tuple) -> None:
        self.state = state

    def __reduce__(self) -> tuple:
        return np.dtype, ("f8", False, True), self.state


def test_numpy_dtype_with_forged_object_flags_is_rebuilt_clean(tmp_path: Path) -> None:
    path = tmp_path / "dtype.pkl"
    object_flags = (3, ">", None, None, None, -1, -1, 0x3F)
    path.write_bytes(pickle.dumps(_ForgedDtype(object_flags), protocol=2))

    loaded = load_torch_file(path)

    assert loaded == np.dtype(">f8") and not loaded.hasobject
    assert np.dtype("f8").flags == 0 and np.dtype("f8").byteorder == "="


def test_numpy_dtype_state_with_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dtype.pkl"
    fields = {"x": (np.dtype("f4"), 0)}
    path.write_bytes(pickle.dumps(_ForgedDtype((3, "<", None, ("x",), fields, 4, 1, 0))))
    with pytest.raises(ValueError, match="unsupported numpy dtype state"):
        load_torch_file(path)


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (lambda marker: _Exploit(os.system, f"touch {marker}"), ("os.system", "posix.system")),
        (lambda marker: _Exploit(eval, f"open({str(marker)!r}, 'w')"), ("builtins.eval",)),
        (
            lambda marker: _Exploit(subprocess.Popen, ["touch", str(marker)]),
            ("subprocess.Popen",),
        ),
    ],
    ids=["os.system", "eval", "subprocess.Popen"],
)
@pytest.mark.parametrize("container", ["plain", "torch_zip"])
def test_malicious_pickle_is_refused(
    tmp_path: Path, payload: Callable, refused: tuple[str, ...], container: str
) -> None:
    marker = tmp_path / "pwned"
    malicious = pickle.dumps({"model": payload(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if container == "plain":
        path.write_bytes(malicious)
    else:
        write_zip(path, {"checkpoint/data.pkl": malicious, "checkpoint/version": b"3\n"})

    with pytest.raises(UnsafeCheckpointError) as error:
        load_torch_file(path)

    message = str(error.value)
    assert any(name in message for name in refused), message
    assert "malicious" in message and "not" in message and "executed" in message
    assert str(path) in message
    assert not marker.exists()


def test_getattr_global_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "getattr.pkl"
    path.write_bytes(b"\x80\x02cbuiltins\ngetattr\nq\x00.")

    with pytest.raises(UnsafeCheckpointError, match="builtins.getattr"):
        load_torch_file(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")

    with pytest.raises(ValueError, match="empty file") as error:
        load_torch_file(path)
    assert str(path) in str(error.value)


def test_not_a_zip_or_pickle(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")

    with pytest.raises(ValueError, match="not a zip or pickle"):
        load_torch_file(path)


def test_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    np.savez(path, weight=np.ones(3))

    with pytest.raises(ValueError, match=r"\.npz") as error:
        load_torch_file(path)
    assert str(path) in str(error.value)


def test_truncated_zip(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    save_small_checkpoint(tmp_path / "full.pt")
    path = tmp_path / "truncated.pt"
    content = (tmp_path / "full.pt").read_bytes()
    path.write_bytes(content[: len(content) // 2])

    with pytest.raises(ValueError, match="truncated or corrupt zip"):
        load_torch_file(path)


def test_truncated_pickle(tmp_path: Path) -> None:
    path = tmp_path / "truncated.pkl"
    path.write_bytes(pickle.dumps({"weights": np.ones(4)}, protocol=4)[:-10])

    with pytest.raises(ValueError, match="truncated or corrupt pickle"):
        load_torch_file(path)


def test_zip_without_data_pkl(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "nopickle.pt", {"archive/version": b"3\n"})

    with pytest.raises(ValueError, match="missing data.pkl"):
        load_torch_file(path)


def test_storage_entry_too_short(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "full.pt"
    torch.save({"model": {"weight": torch.ones(12)}}, path)
    entries = read_zip(path)
    storage = next(name for name in entries if "/data/" in name)
    entries[storage] = entries[storage][:12]
    key = storage.split("/data/")[1]

    expected = f"truncated: storage data/{key} has 12 bytes, expected 48"
    with pytest.raises(ValueError, match=expected):
        load_torch_file(write_zip(tmp_path / "short.pt", entries))


def test_missing_storage_entry(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    save_small_checkpoint(tmp_path / "full.pt")
    entries = {
        name: content
        for name, content in read_zip(tmp_path / "full.pt").items()
        if not name.endswith("/data/0")
    }

    with pytest.raises(ValueError, match="missing storage entry data/0"):
        load_torch_file(write_zip(tmp_path / "missing.pt", entries))


def test_legacy_format_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "legacy.pt"
    torch.save({"model": {"weight": torch.ones(2)}}, path, _use_new_zipfile_serialization=False)

    with pytest.raises(ValueError, match="legacy") as error:
        load_torch_file(path)
    assert "torch.save(torch.load(p, weights_only=False), p2)" in str(error.value)


def test_extract_state_dict_reports_keys() -> None:
    with pytest.raises(ValueError, match=r"top-level keys: \['epoch', 'args'\]"):
        extract_state_dict({"epoch": 3, "args": {}})


