"""Presets: named, built-in preset folders, and saving/loading any preset folder.

`HBehaveMAEBackbone.from_preset(name_or_directory)` takes a local folder first, then a
built-in name (`list_presets()`); a bogus name raises an error listing the names.

A preset folder follows the keras-hub layout:

- `config.json`: the serialized `HBehaveMAEBackbone` (`keras.saving.serialize_keras_object`);
- `model.weights.h5`: the backbone weights (optional: a preset may be architecture only);
- `task.json` / `task.weights.h5`: the serialized `HBehaveMAE` pretrainer and all its weights
  (optional: present when the decoder was saved);
- `metadata.json`: versions, parameter count, date and free-form notes;
- `README.md`: a short model card.

Example:

>>> import tempfile
>>> from keras_hbehavemae import HBehaveMAEBackbone
>>> backbone = HBehaveMAEBackbone(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)
>>> directory = tempfile.mkdtemp()
>>> _ = save_to_preset(backbone, directory)
>>> load_backbone(directory).count_params()
75748
"""

from __future__ import annotations

import datetime
import importlib.resources
import json
import pathlib

import keras

from keras_hbehavemae.atomic_files import (
    write_atomically,
    write_json_atomically,
    write_text_atomically,
)

BUILTIN_PRESETS_PACKAGE = "keras_hbehavemae.builtin_presets"
# In a source checkout the built-in presets live in the top-level `presets/` folder; an
# installed package carries the same folder as `keras_hbehavemae.builtin_presets`.
_SOURCE_PRESETS = pathlib.Path(__file__).resolve().parents[1] / "presets"

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
TASK_CONFIG_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
METADATA_FILE = "metadata.json"
MODEL_CARD_FILE = "README.md"


def _builtin_root() -> pathlib.Path | None:
    try:
        root = importlib.resources.files(BUILTIN_PRESETS_PACKAGE)
    except ModuleNotFoundError:
        root = None
    if root is not None and root.is_dir():
        return pathlib.Path(str(root))
    return _SOURCE_PRESETS if _SOURCE_PRESETS.is_dir() else None


def list_presets() -> dict[str, str]:
    """Built-in preset names → one-line descriptions (from each `metadata.json`)."""
    root = _builtin_root()
    if root is None:
        return {}
    names = {}
    for folder in sorted(root.iterdir()):
        metadata = folder / METADATA_FILE
        if folder.is_dir() and (folder / CONFIG_FILE).is_file():
            description = ""
            if metadata.is_file():
                description = json.loads(metadata.read_text()).get("description", "")
            names[folder.name] = description
    return names


def resolve_preset(preset) -> pathlib.Path:
    """A local preset folder as given, or the folder of a built-in preset name."""
    path = pathlib.Path(preset)
    if path.is_dir():
        return path
    root = _builtin_root()
    if root is not None and isinstance(preset, str) and (root / preset).is_dir():
        return root / preset
    available = ", ".join(list_presets()) or "none installed"
    raise ValueError(
        f"unknown preset {str(preset)!r}: it is neither a preset folder nor a built-in preset "
        f"name. Available presets: {available}")


def save_to_preset(model, directory, *, include_weights: bool = True,
                   metadata: dict | None = None, model_card: str | None = None) -> pathlib.Path:
    """Saves a backbone, or a pretrainer (backbone + task files), as a preset folder."""
    from keras_hbehavemae import __version__

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    backbone = getattr(model, "backbone", model)
    write_json_atomically(directory / CONFIG_FILE, keras.saving.serialize_keras_object(backbone))
    if include_weights:
        write_atomically(directory / WEIGHTS_FILE, backbone.save_weights)
    if model is not backbone:
        write_json_atomically(directory / TASK_CONFIG_FILE,
                              keras.saving.serialize_keras_object(model))
        if include_weights:
            write_atomically(directory / TASK_WEIGHTS_FILE, model.save_weights)
    content = {
        "keras_hbehavemae_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.config.backend(),
        "parameter_count": int(backbone.count_params()),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "has_weights": include_weights,
        "has_task": model is not backbone,
        **(metadata or {}),
    }
    write_json_atomically(directory / METADATA_FILE, content)
    if model_card is not None:
        write_text_atomically(directory / MODEL_CARD_FILE, model_card)
    return directory


def _read_json(path: pathlib.Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the preset folder")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path}: not valid JSON ({error}); the preset folder is corrupt") from error


def _deserialize(path: pathlib.Path, expected_class):
    content = _read_json(path)
    try:
        model = keras.saving.deserialize_keras_object(content)
    except Exception as error:
        raise ValueError(f"{path}: cannot build a model from this config ({error})") from error
    if not isinstance(model, expected_class):
        raise ValueError(f"{path}: holds a {type(model).__name__}, expected "
                         f"{expected_class.__name__}")
    return model


def _load_weights(model, path: pathlib.Path) -> None:
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"{path}: cannot load these weights into the preset's architecture ({error}); the "
            "file is corrupt or belongs to another configuration") from error


def load_backbone(directory, load_weights: bool = True):
    """The `HBehaveMAEBackbone` of a preset folder (weights loaded when present)."""
    from keras_hbehavemae.backbone import HBehaveMAEBackbone

    directory = resolve_preset(directory)
    backbone = _deserialize(directory / CONFIG_FILE, HBehaveMAEBackbone)
    weights = directory / WEIGHTS_FILE
    if load_weights and weights.exists():
        _load_weights(backbone, weights)
    return backbone


def load_pretrainer(directory, load_weights: bool = True, **overrides):
    """The `HBehaveMAE` pretrainer of a preset folder.

    With `task.json` the saved decoder comes back; otherwise a fresh decoder is built
    around the preset's backbone with `overrides` (decoder and masking arguments).
    """
    from keras_hbehavemae.pretrainer import HBehaveMAE

    directory = resolve_preset(directory)
    task = directory / TASK_CONFIG_FILE
    if not task.exists():
        return HBehaveMAE(load_backbone(directory, load_weights), **overrides)
    content = _read_json(task)
    if overrides:
        content = dict(content, config={**content["config"], **overrides})
    try:
        model = keras.saving.deserialize_keras_object(content)
    except Exception as error:
        raise ValueError(f"{task}: cannot build a model from this config ({error})") from error
    if not isinstance(model, HBehaveMAE):
        raise ValueError(f"{task}: holds a {type(model).__name__}, expected HBehaveMAE")
    weights = directory / TASK_WEIGHTS_FILE
    if load_weights and weights.exists():
        _load_weights(model, weights)
    elif load_weights and (directory / WEIGHTS_FILE).exists():
        _load_weights(model.backbone, directory / WEIGHTS_FILE)
    return model
