"""Model loading, one place for every source.

`load_model`, `read_model_config` and `load_weights_into` take the same sources.

A *source* is any of:

- a built-in preset name or a preset folder (`keras_hbehavemae.presets`);
- a `.keras` file (`keras.Model.save`);
- a `.weights.h5` file (weights only: the architecture comes from the caller's config);
- a published PyTorch checkpoint `.pth` (or `.pth.tar`, `.npz` with PyTorch key names),
  read without torch and without executing pickle code.

Training, export, embeddings, reconstruction and every command load models through here.
Random weights are never used without consent: a preset whose weights are `none` or
`initial` loads only with `allow_random_weights=True`.

Example:

>>> model = load_model("hbehavemae_shot7m2", allow_random_weights=True)
>>> type(model).__name__, model.geometry.num_mask_units
('HBehaveMAE', 50)
>>> load_model("hbehavemae_shot7m2")
Traceback (most recent call last):
...
ValueError: preset '...hbehavemae_shot7m2' holds no weights (architecture only). ...
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile

import keras

from keras_hbehavemae.convert import checkpoint as torch_checkpoint
from keras_hbehavemae.models import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.presets import folder as preset_folder
from keras_hbehavemae.presets import registry

KINDS = ("any", "pretrainer", "backbone")
CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt", ".npz")


def _suffix_is(path: str, suffixes) -> bool:
    return path.lower().endswith(tuple(suffixes))


def _named(parameter: str, path) -> str:
    return f"{parameter} {os.fspath(path)!r}"


def describe_source(source, parameter: str = "source") -> str:
    """What kind of source `source` is: "preset", "keras", "weights", "checkpoint" or "model".

    Raises:
        ValueError / FileNotFoundError: nothing loadable by that name (the message names
            `parameter` and lists the built-in presets).
    """
    if isinstance(source, keras.Model):
        return "model"
    if not isinstance(source, str | os.PathLike):
        raise ValueError(f"{parameter}: {source!r} is invalid: give a preset name or folder, "
                         "a .keras, .weights.h5 or .pth file, or a model")
    path = os.fspath(source)
    if os.path.isdir(path):
        return "preset"
    if os.path.isfile(path):
        if _suffix_is(path, (".keras",)):
            return "keras"
        if _suffix_is(path, (".weights.h5",)):
            return "weights"
        if _suffix_is(path, CHECKPOINT_SUFFIXES):
            return "checkpoint"
        raise ValueError(f"{_named(parameter, path)}: not a model file; expected a preset "
                         f"folder, a .keras, .weights.h5 or {'/'.join(CHECKPOINT_SUFFIXES)} file")
    if os.sep in path or _suffix_is(path, (".keras", ".h5") + CHECKPOINT_SUFFIXES):
        raise FileNotFoundError(f"{_named(parameter, path)}: no such preset folder or model "
                                "file")
    registry.resolve_preset(path)  # a built-in name, or an error listing them
    return "preset"


def _config_from_serialized(serialized: dict, where: str) -> tuple[HBehaveMAEConfig, bool]:
    """`(config, has_decoder)` of a serialized backbone or pretrainer; every key is checked
    (an unknown one raises, naming it and the closest valid name)."""
    try:
        config = registry.serialized_config(serialized, where)
        if "backbone" in config:  # a serialized HBehaveMAE: backbone + decoder fields
            backbone = registry.serialized_config(config["backbone"], f"{where}: backbone")
            values = {**_model_parameters(backbone), **_model_parameters(config)}
            return HBehaveMAEConfig.from_dict(values, where=where), True
        return HBehaveMAEConfig.from_dict(_model_parameters(config), where=where), False
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: not a valid hBehaveMAE model configuration ({error})"
                         ) from None


def _model_parameters(values: dict) -> dict:
    return {key: value for key, value in values.items()
            if key not in registry.SERIALIZATION_KEYS}


def read_model_config(source, parameter: str = "source") -> tuple[HBehaveMAEConfig | None, bool]:
    """`(config, has_decoder)` of a source, without building the model.

    A `.weights.h5` file holds no architecture: `(None, False)`. Without a decoder
    (`has_decoder=False`) the decoder and masking fields are defaults for the caller to
    replace.
    """
    kind = describe_source(source, parameter)
    if kind == "model":
        return source.config_object, isinstance(source, HBehaveMAE)
    path = os.fspath(source)
    if kind == "preset":
        directory = registry.resolve_preset(path)
        task = directory / preset_folder.TASK_CONFIG_FILE
        serialized_path = task if task.is_file() else directory / preset_folder.CONFIG_FILE
        return _config_from_serialized(preset_folder.read_json(serialized_path),
                                       str(serialized_path))
    if kind == "keras":
        try:
            with zipfile.ZipFile(path) as archive:
                serialized = json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{_named(parameter, path)}: not a readable .keras file ({error!r}); "
                             "the file is damaged or was not written by keras.Model.save"
                             ) from None
        return _config_from_serialized(serialized, path)
    if kind == "checkpoint":
        config, _ = torch_checkpoint.from_torch_checkpoint(path)
        return config, True
    return None, False


def _copy_weights(target, source, where: str) -> None:
    if [tuple(w.shape) for w in target.weights] != [tuple(w.shape) for w in source.weights]:
        raise ValueError(f"{where}: its weights do not fit the configured model")
    for variable, value in zip(target.weights, source.get_weights(), strict=True):
        variable.assign(value)


def load_weights_into(model, source, *, allow_random_weights: bool = False,
                      parameter: str = "source") -> None:
    """Loads a source's weights into an existing pretrainer or backbone.

    A pretrainer takes the source's pretrainer weights when it has them, else its backbone
    weights (the decoder keeps its initial weights).

    Raises:
        ValueError: naming the source, if the weights do not fit or are damaged, or if the
            preset holds random weights and `allow_random_weights` is False.
    """
    kind = describe_source(source, parameter)
    path = None if kind == "model" else os.fspath(source)
    try:
        if kind == "preset":
            directory = registry.resolve_preset(path)
            preset_folder.check_weights_allowed(directory, allow_random_weights)
            task_weights = directory / preset_folder.TASK_WEIGHTS_FILE
            if isinstance(model, HBehaveMAE) and task_weights.is_file():
                model.load_weights(task_weights)
            elif (directory / preset_folder.WEIGHTS_FILE).is_file():
                _backbone_of(model).load_weights(directory / preset_folder.WEIGHTS_FILE)
        elif kind in ("keras", "model"):
            loaded = source if kind == "model" else keras.saving.load_model(path, compile=False)
            same_kind = isinstance(loaded, HBehaveMAE) == isinstance(model, HBehaveMAE)
            target, origin = (model, loaded) if same_kind else (
                _backbone_of(model), _backbone_of(loaded))
            _copy_weights(target, origin, path or "model")
        elif kind == "checkpoint":
            config, state = torch_checkpoint.from_torch_checkpoint(path, model.config_object
                                                                   if isinstance(model, HBehaveMAE)
                                                                   else None)
            torch_checkpoint.load_torch_state_dict(model, state)
        else:
            try:
                model.load_weights(path)
            except ValueError:
                _backbone_of(model).load_weights(path)
    except (OSError, ValueError) as error:
        if "allow_random_weights" in str(error):
            raise
        where = _named(parameter, path) if path else parameter
        raise ValueError(
            f"{where}: cannot load its weights into the configured model ({error}); the file is "
            "damaged or belongs to another configuration") from error


def check_weights_consent(source, allow_random_weights: bool = False,
                          parameter: str = "source") -> None:
    """Raises, before anything is built, if `source` is a preset of random weights (`none`,
    `initial`) and `allow_random_weights` is False; other sources pass.

    Raises:
        ValueError: naming the preset and `allow_random_weights` (`--allow_random_weights`).
    """
    if describe_source(source, parameter) == "preset":
        preset_folder.check_weights_allowed(registry.resolve_preset(os.fspath(source)),
                                            allow_random_weights)


def _backbone_of(model):
    return model.backbone if isinstance(model, HBehaveMAE) else model


def load_model(source, *, kind: str = "any", config: HBehaveMAEConfig | None = None,
               load_weights: bool = True, allow_random_weights: bool = False,
               parameter: str = "source"):
    """An `HBehaveMAE` or `HBehaveMAEBackbone` from any source (see the module docstring).

    Args:
        source: a preset name or folder, a `.keras`, `.weights.h5` or checkpoint file, or a
            model (returned as it is, after the `kind` check).
        kind: "any" (a pretrainer when the source has a decoder, else a backbone),
            "pretrainer" (a decoder is required) or "backbone" (the encoder alone).
        config: the architecture for a `.weights.h5` file (or a checkpoint without `args`).
        load_weights: False builds the architecture with random initial weights (presets
            and configs only).
        allow_random_weights: accept a preset without trained weights.
        parameter: the argument or flag that named `source`, for messages.

    Raises:
        ValueError: an invalid `kind`, a source without the part `kind` asks for, or random
            weights without consent.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is invalid: must be one of {KINDS}")
    source_kind = describe_source(source, parameter)
    if source_kind == "model":
        model = source
    elif source_kind == "preset":
        directory = registry.resolve_preset(os.fspath(source))
        has_task = (directory / preset_folder.TASK_CONFIG_FILE).is_file()
        if kind == "backbone" or (kind == "any" and not has_task):
            model = HBehaveMAEBackbone.from_preset(directory, load_weights, allow_random_weights)
        elif has_task:
            model = HBehaveMAE.from_preset(directory, load_weights, allow_random_weights)
        else:
            raise ValueError(f"{directory}: the preset holds only a backbone (no "
                             f"{preset_folder.TASK_CONFIG_FILE}); this needs the decoder too "
                             "(a preset saved from an HBehaveMAE pretrainer)")
    elif source_kind == "keras":
        model = keras.saving.load_model(os.fspath(source), compile=False)
    elif source_kind == "checkpoint":
        model = torch_checkpoint.build_from_torch_checkpoint(
            os.fspath(source), config, backbone_only=kind == "backbone")
    else:
        if config is None:
            raise ValueError(f"{os.fspath(source)}: a .weights.h5 file holds no architecture; "
                             "give config=HBehaveMAEConfig(...) (or load a preset folder)")
        backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
        model = backbone if kind == "backbone" else HBehaveMAE(backbone,
                                                               **config.pretrainer_kwargs())
        if load_weights:
            load_weights_into(model, source, parameter=parameter)
    return _checked_kind(model, kind, source)


def _checked_kind(model, kind: str, source):
    if not isinstance(model, HBehaveMAE | HBehaveMAEBackbone):
        raise ValueError(f"{source}: holds a {type(model).__name__}, not an hBehaveMAE model")
    if kind == "backbone":
        return _backbone_of(model)
    if kind == "pretrainer" and not isinstance(model, HBehaveMAE):
        raise ValueError(f"{source}: holds only a backbone; this needs the decoder too (a "
                         "pretrainer saved with HBehaveMAE.save_to_preset)")
    return model


def preset_path(source) -> pathlib.Path | None:
    """The folder of a preset source, or None for other sources."""
    if describe_source(source) != "preset":
        return None
    return registry.resolve_preset(os.fspath(source))
