"""Presets: named built-in preset folders, and saving and loading any preset folder.

`HBehaveMAEBackbone.from_preset(name_or_folder)` and `HBehaveMAE.from_preset(...)` load
one; `list_presets()` lists the built-in names with what their weights are. See
`folder` for the files of a preset and `registry` for the built-in ones.
"""

from keras_hbehavemae.presets.folder import (
    RANDOM_WEIGHTS,
    WEIGHTS_KINDS,
    read_metadata,
    save_to_preset,
)
from keras_hbehavemae.presets.registry import (
    PUBLISHED_PRESETS,
    PresetInfo,
    list_presets,
    preset_parameters,
    published_parameters,
    resolve_preset,
)

__all__ = [
    "PUBLISHED_PRESETS",
    "RANDOM_WEIGHTS",
    "WEIGHTS_KINDS",
    "PresetInfo",
    "list_presets",
    "preset_parameters",
    "published_parameters",
    "read_metadata",
    "resolve_preset",
    "save_to_preset",
]
