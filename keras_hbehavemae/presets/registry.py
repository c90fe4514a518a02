"""The built-in presets: their names, what each holds, and the published configurations.

The built-in preset folders ship inside the package (`keras_hbehavemae/presets/builtin/`).
Three of them are the published architectures (`PUBLISHED_PRESETS`), without weights: they
are the one definition of the published configurations, which the data-flow report, the
command-line defaults and the tests read through `preset_parameters`.

Example:

>>> sorted(list_presets())[:2]
['hbehavemae_hbabel', 'hbehavemae_mabe22_mice']
>>> list_presets()["hbehavemae_shot7m2"].weights
'none'
>>> preset_parameters("hbehavemae_shot7m2")["q_strides"]
[[2, 1, 4], [2, 1, 6]]
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from keras_hbehavemae.errors import check_known_keys, invalid

BUILTIN_ROOT = pathlib.Path(__file__).resolve().parent / "builtin"

#: The published configurations by short name → their built-in preset.
PUBLISHED_PRESETS = {
    "shot7m2": "hbehavemae_shot7m2",
    "mabe22": "hbehavemae_mabe22_mice",
    "hbabel": "hbehavemae_hbabel",
}

#: Keys of a serialized model's `config` that are not model parameters: Keras bookkeeping
#: (name, trainable, dtype), the pretrainer's nested backbone and its random seed.
SERIALIZATION_KEYS = ("name", "trainable", "dtype", "backbone", "seed")
#: The top-level keys of a Keras-serialized object (`keras.saving.serialize_keras_object`).
SERIALIZED_OBJECT_KEYS = ("module", "class_name", "config", "registered_name", "build_config",
                          "compile_config")
#: The files of a preset folder that hold model parameters, in reading order.
PARAMETER_FILES = ("config.json", "task.json")


@dataclasses.dataclass(frozen=True)
class PresetInfo:
    """One built-in preset: its description and what its weights are."""

    name: str
    description: str
    weights: str

    def __str__(self) -> str:
        return f"{self.name} [weights: {self.weights}]: {self.description}"


def _builtin_folders() -> list[pathlib.Path]:
    if not BUILTIN_ROOT.is_dir():
        return []
    return [folder for folder in sorted(BUILTIN_ROOT.iterdir())
            if folder.is_dir() and (folder / "config.json").is_file()]


def list_presets() -> dict[str, PresetInfo]:
    """Built-in preset names → `PresetInfo` (description and weights kind).

    `print(*list_presets().values(), sep="\\n")` prints one line per preset.
    """
    presets = {}
    for folder in _builtin_folders():
        metadata = json.loads((folder / "metadata.json").read_text())
        presets[folder.name] = PresetInfo(folder.name, metadata.get("description", ""),
                                          metadata["weights"])
    return presets


def resolve_preset(preset) -> pathlib.Path:
    """A local preset folder as given, or the folder of a built-in preset name.

    Raises:
        ValueError: neither a folder nor a built-in name (the message lists the names).
    """
    if not isinstance(preset, str | pathlib.PurePath):
        raise ValueError(f"preset: {preset!r} is invalid: give a preset folder or a built-in "
                         f"preset name ({', '.join(list_presets()) or 'none installed'})")
    path = pathlib.Path(preset)
    if path.is_dir():
        return path
    if isinstance(preset, str) and (BUILTIN_ROOT / preset / "config.json").is_file():
        return BUILTIN_ROOT / preset
    available = ", ".join(list_presets()) or "none installed"
    raise ValueError(
        f"unknown preset {str(preset)!r}: it is neither a preset folder nor a built-in preset "
        f"name. Available presets: {available}")


def serialized_config(content, where: str) -> dict:
    """The `config` of a Keras-serialized object, its top-level keys checked.

    Raises:
        ValueError: a top-level key Keras does not write (naming it and the closest valid
            one), or no `config` mapping.
    """
    if not isinstance(content, dict):
        raise invalid(where, type(content).__name__, "expected a serialized Keras object "
                      "(a JSON object with 'class_name' and 'config')")
    check_known_keys(where, content, SERIALIZED_OBJECT_KEYS)
    config = content.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{where}: 'config' must be a JSON object of the model's parameters")
    return config


def preset_parameter_files(preset) -> list[tuple[pathlib.Path, dict]]:
    """`(file, parameters)` for each of a preset's `config.json` and `task.json` (if any).

    The parameters are the file's `config` without `SERIALIZATION_KEYS`; nothing else is
    left out, so a caller that knows the parameters can name any unknown key and its file.
    """
    directory = resolve_preset(preset)
    result = []
    for name in PARAMETER_FILES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error}); the preset folder is "
                             "corrupt") from error
        config = serialized_config(content, str(path))
        result.append((path, {key: value for key, value in config.items()
                              if key not in SERIALIZATION_KEYS}))
    return result


def preset_parameters(preset) -> dict:
    """The model parameters of a preset (name or folder) as a plain dict.

    The encoder parameters come from `config.json`, the decoder and masking parameters from
    `task.json` when present. Keras bookkeeping (name, dtype, ...) is left out; any other
    key is kept (`HBehaveMAEConfig.from_preset` names unknown ones with their file).
    """
    parameters = {}
    for _, values in preset_parameter_files(preset):
        parameters.update(values)
    return parameters


def published_parameters(name: str) -> dict:
    """The parameters of a published configuration: "shot7m2", "mabe22" or "hbabel"."""
    if name not in PUBLISHED_PRESETS:
        raise ValueError(f"published configuration: {name!r} is not one of "
                         f"{sorted(PUBLISHED_PRESETS)}")
    return preset_parameters(PUBLISHED_PRESETS[name])
