"""The preset folder: its files, how it is written (whole or not at all) and read.

A preset folder follows the keras-hub layout:

- `config.json`: the serialized `HBehaveMAEBackbone` (`keras.saving.serialize_keras_object`);
- `model.weights.h5`: the backbone weights (absent when the preset holds none);
- `task.json` / `task.weights.h5`: the serialized `HBehaveMAE` pretrainer and all its
  weights (present when the decoder was saved);
- `metadata.json`: versions, parameter count, date, `weights` (what the weights are, see
  `WEIGHTS_KINDS`) and free-form provenance (data, metrics, source);
- `README.md`: a short model card.

This module knows nothing of the model classes: it deserializes through Keras's registry
and checks the class the caller expects, so the models can load presets without an
import cycle.

Example:

>>> import tempfile
>>> from keras_hbehavemae import HBehaveMAEBackbone
>>> backbone = HBehaveMAEBackbone(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)
>>> directory = tempfile.mkdtemp()
>>> _ = save_to_preset(backbone, directory, weights="initial")
>>> read_metadata(directory)["weights"]
'initial'
>>> HBehaveMAEBackbone.from_preset(directory, allow_random_weights=True).count_params()
75748
"""

from __future__ import annotations

import datetime
import json
import pathlib

import keras

from keras_hbehavemae.files.atomic import write_folder_atomically
from keras_hbehavemae.presets.registry import resolve_preset, serialized_config
from keras_hbehavemae.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
TASK_CONFIG_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
METADATA_FILE = "metadata.json"
MODEL_CARD_FILE = "README.md"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, TASK_CONFIG_FILE, TASK_WEIGHTS_FILE, METADATA_FILE,
                MODEL_CARD_FILE)

#: What a preset's weights are. "trained": pretrained by this package; "converted": from a
#: published checkpoint; "initial": the seeded random initialisation, saved on purpose (an
#: untrained control); "none": architecture only.
WEIGHTS_KINDS = ("trained", "converted", "initial", "none")
#: Weights that are random: using them for inference needs the caller's consent.
RANDOM_WEIGHTS = ("initial", "none")


def is_preset_folder(directory: pathlib.Path) -> bool:
    """True if `directory` holds a preset and nothing else (it may then be replaced whole)."""
    names = {entry.name for entry in directory.iterdir()}
    return CONFIG_FILE in names and names <= set(PRESET_FILES)


def save_to_preset(model, directory, *, weights: str | None = None,
                   metadata: dict | None = None, model_card: str | None = None,
                   overwrite: bool = False, flag: str = "directory") -> pathlib.Path:
    """Saves a backbone, or a pretrainer (backbone + task files), as a preset folder.

    The folder is written in a temporary sibling and renamed into place, so it is
    complete or absent. An existing preset folder is replaced as a whole; any other
    non-empty folder is refused unless `overwrite=True`.

    Args:
        model: an `HBehaveMAEBackbone` or `HBehaveMAE`.
        directory: the preset folder.
        weights: one of `WEIGHTS_KINDS`; "none" writes no weights. Default "trained".
        metadata: extra provenance for `metadata.json` (data, metrics, source, ...).
        model_card: the `README.md` text.
        overwrite: replace a non-empty folder that does not hold a preset.
        flag: the parameter or flag that named `directory`, for messages.

    Raises:
        ValueError: an unknown `weights` kind.
        FileExistsError: `directory` holds something else and `overwrite` is False.
    """
    weights = "trained" if weights is None else weights
    if weights not in WEIGHTS_KINDS:
        raise ValueError(f"weights: {weights!r} is invalid: must be one of {WEIGHTS_KINDS}")
    extra = {} if metadata is None else dict(metadata)
    if "weights" in extra:
        raise ValueError("metadata: give the weights kind as save_to_preset(weights=...), not "
                         "as a metadata key")
    backbone = getattr(model, "backbone", model)
    has_task = model is not backbone
    content = {
        "keras_hbehavemae_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.config.backend(),
        "parameter_count": int(backbone.count_params()),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "weights": weights,
        "has_task": has_task,
        **extra,
    }

    def write(folder: pathlib.Path) -> None:
        _write_json(folder / CONFIG_FILE, keras.saving.serialize_keras_object(backbone))
        if weights != "none":
            backbone.save_weights(folder / WEIGHTS_FILE)
        if has_task:
            _write_json(folder / TASK_CONFIG_FILE, keras.saving.serialize_keras_object(model))
            if weights != "none":
                model.save_weights(folder / TASK_WEIGHTS_FILE)
        _write_json(folder / METADATA_FILE, content)
        if model_card is not None:
            (folder / MODEL_CARD_FILE).write_text(model_card)

    return write_folder_atomically(directory, write, is_same_kind=is_preset_folder,
                                   kind="preset folder", overwrite=overwrite, flag=flag)


def _write_json(path: pathlib.Path, content) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def read_json(path: pathlib.Path):
    """A JSON file of a preset folder; a missing or damaged file raises an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the preset folder")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path}: not valid JSON ({error}); the preset folder is corrupt") from error


def read_metadata(preset) -> dict:
    """`metadata.json` of a preset (name or folder), with its `weights` kind checked."""
    directory = resolve_preset(preset)
    path = directory / METADATA_FILE
    metadata = read_json(path) if path.is_file() else {}
    kind = metadata.get("weights")
    if kind is None:  # written before the kinds existed: tell by the files
        kind = "none" if not (directory / WEIGHTS_FILE).is_file() else "trained"
        metadata = dict(metadata, weights=kind)
    if kind not in WEIGHTS_KINDS:
        raise ValueError(f"{path}: weights {kind!r} is not one of {WEIGHTS_KINDS}")
    return metadata


def _random_weights_refused(directory: pathlib.Path, kind: str) -> ValueError:
    what = ("holds no weights (architecture only)" if kind == "none" else
            "holds the random initial weights of an untrained model")
    return ValueError(
        f"preset {str(directory)!r} {what}. Using it would give random outputs: pass "
        "allow_random_weights=True (--allow_random_weights) if that is what you want (an "
        "untrained control, or training from scratch), or load a preset with trained or "
        "converted weights (see its README.md)")


def check_weights_allowed(preset, allow_random_weights: bool) -> dict:
    """The preset's metadata; raises unless its weights are real or the caller consents."""
    metadata = read_metadata(preset)
    if metadata["weights"] in RANDOM_WEIGHTS and not allow_random_weights:
        raise _random_weights_refused(resolve_preset(preset), metadata["weights"])
    return metadata


def deserialize(path: pathlib.Path, expected_class, overrides: dict | None = None):
    """Builds the model serialized in `path`, checking that it is an `expected_class`."""
    content = read_json(path)
    config = serialized_config(content, str(path))
    if overrides:
        content = dict(content, config={**config, **overrides})
    try:
        model = keras.saving.deserialize_keras_object(content)
    except Exception as error:
        # Keras wraps the model's own error in its own; the innermost one names the problem.
        cause = error
        while (cause.__cause__ or cause.__context__) is not None:
            cause = cause.__cause__ or cause.__context__
        raise ValueError(f"{path}: cannot build a model from this config ({cause})") from error
    if not isinstance(model, expected_class):
        raise ValueError(f"{path}: holds a {type(model).__name__}, expected "
                         f"{expected_class.__name__}")
    return model


def load_weights_file(model, path: pathlib.Path) -> None:
    """`model.load_weights(path)`, with an error naming the file."""
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"{path}: cannot load these weights into the preset's architecture ({error}); the "
            "file is corrupt or belongs to another configuration") from error


def load_backbone(preset, backbone_class, *, load_weights: bool = True,
                  allow_random_weights: bool = False):
    """The backbone of a preset (name or folder), with its weights.

    Raises:
        ValueError: a weightless preset (or one of initial weights) with `load_weights`
            and without `allow_random_weights`; a damaged preset.
    """
    directory = resolve_preset(preset)
    if load_weights:
        check_weights_allowed(directory, allow_random_weights)
    backbone = deserialize(directory / CONFIG_FILE, backbone_class)
    if load_weights and (directory / WEIGHTS_FILE).is_file():
        load_weights_file(backbone, directory / WEIGHTS_FILE)
    return backbone


def load_pretrainer(preset, pretrainer_class, *, load_weights: bool = True,
                    allow_random_weights: bool = False, **overrides):
    """The pretrainer of a preset (name or folder).

    With `task.json` the saved decoder comes back; otherwise a fresh decoder is built around
    the preset's backbone from `overrides` (decoder and masking arguments).
    """
    directory = resolve_preset(preset)
    if load_weights:
        check_weights_allowed(directory, allow_random_weights)
    task = directory / TASK_CONFIG_FILE
    if not task.is_file():
        backbone_class = _backbone_class(directory)
        backbone = load_backbone(directory, backbone_class, load_weights=load_weights,
                                 allow_random_weights=True)
        return pretrainer_class(backbone, **overrides)
    model = deserialize(task, pretrainer_class, overrides)
    if load_weights and (directory / TASK_WEIGHTS_FILE).is_file():
        load_weights_file(model, directory / TASK_WEIGHTS_FILE)
    elif load_weights and (directory / WEIGHTS_FILE).is_file():
        load_weights_file(model.backbone, directory / WEIGHTS_FILE)
    return model


def _backbone_class(directory: pathlib.Path):
    registered = read_json(directory / CONFIG_FILE).get("registered_name")
    backbone_class = keras.saving.get_registered_object(registered)
    if backbone_class is None:
        raise ValueError(f"{directory / CONFIG_FILE}: unknown model class {registered!r}")
    return backbone_class
