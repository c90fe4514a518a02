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

BUILTIN_ROOT = pathlib.Path(__file__).resolve().parent / "builtin"

#: The published configurations by short name → their built-in preset.
PUBLISHED_PRESETS = {
    "shot7m2": "hbehavemae_shot7m2",
    "mabe22": "hbehavemae_mabe22_mice",
    "hbabel": "hbehavemae_hbabel",
}

# Keys of a serialized model's config that are Keras bookkeeping, not model parameters.
_KERAS_KEYS = ("name", "trainable", "dtype", "backbone", "seed")


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


def preset_parameters(preset) -> dict:
    """The model parameters of a preset (name or folder) as a plain dict.

    The encoder parameters come from `config.json`, the decoder and masking parameters from
    `task.json` when present. Keras bookkeeping (name, dtype, ...) is left out.
    """
    directory = resolve_preset(preset)
    parameters = {}
    for name in ("config.json", "task.json"):
        path = directory / name
        if path.is_file():
            try:
                parameters.update(json.loads(path.read_text(encoding="utf-8"))["config"])
            except (ValueError, KeyError, TypeError) as error:  # JSON, encoding, layout
                raise ValueError(f"{path}: not the JSON of a Keras model config ({error!r}); "
                                 "the preset folder is corrupt") from None
    return {key: value for key, value in parameters.items() if key not in _KERAS_KEYS}


def published_parameters(name: str) -> dict:
    """The parameters of a published configuration: "shot7m2", "mabe22" or "hbabel"."""
    if name not in PUBLISHED_PRESETS:
        raise ValueError(f"published configuration: {name!r} is not one of "
                         f"{sorted(PUBLISHED_PRESETS)}")
    return preset_parameters(PUBLISHED_PRESETS[name])
