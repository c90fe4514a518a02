"""Data for hBehaveMAE: readers, window sampling, augmentation, synthetic data, tf.data pipelines.

| module | concept |
|---|---|
| `sequences` | `KeypointSequences`, the container every reader returns |
| `readers` | MABe22, Shot7M2, hBABEL and generic keypoint arrays |
| `windows` | which frames form each window (training, hBABEL, extraction) |
| `augment` | MABe22 arena augmentations as stateless TensorFlow ops |
| `normalisation` | (v − 425) / 425, applied after augmentation |
| `synthetic` | the built-in synthetic hierarchical behaviour dataset |
| `pipeline` | `tf.data` datasets of model windows |
| `pose_tracks` | what a pose source holds, and the gather of chosen points (xarray, or blocks) |
| `pose_hdf5`, `pose_csv`, `pose_dlc` | `.h5` of DeepLabCut and SLEAP, DeepLabCut-style `.csv` |
| `pose_io` | the other pose-tracking files, through movement (the `[pose]` extra) |
| `pose`, `pose_transforms` | a recording as model input: selection, gaps, scale, frame rate |
| `pose_files`, `pose_dataset` | many files (folder, glob, manifest), seeded split, training |

The NumPy-only names are imported eagerly; the TensorFlow-based ones
(`ArenaAugmentation`, the dataset constructors) load TensorFlow on first use.

Example:
    >>> from keras_hbehavemae.data import generate_synthetic_behaviour, read_mabe_mouse_triplets
    >>> data = generate_synthetic_behaviour(2, num_frames_per_sequence=200)
    >>> read_mabe_mouse_triplets(data).feature_shape
    (3, 24)
"""

from __future__ import annotations

import importlib
from typing import Any

from keras_hbehavemae.data.normalisation import ArenaNormalisation
from keras_hbehavemae.data.readers import (
    read_hbabel,
    read_keypoint_arrays,
    read_mabe_mouse_triplets,
    read_shot7m2,
)
from keras_hbehavemae.data.sequences import KeypointSequences, LabelInfo
from keras_hbehavemae.data.synthetic import generate_synthetic_behaviour, write_synthetic_dataset
from keras_hbehavemae.data.windows import (
    WindowPlan,
    end_padded_windows,
    extraction_windows,
    training_padding,
    training_windows,
)

_TENSORFLOW_NAMES = {
    "ArenaAugmentation": "keras_hbehavemae.data.augment",
    "make_evaluation_dataset": "keras_hbehavemae.data.pipeline",
    "make_pretraining_dataset": "keras_hbehavemae.data.pipeline",
    "window_dataset": "keras_hbehavemae.data.pipeline",
}

__all__ = [
    "ArenaAugmentation",
    "ArenaNormalisation",
    "KeypointSequences",
    "LabelInfo",
    "WindowPlan",
    "end_padded_windows",
    "extraction_windows",
    "generate_synthetic_behaviour",
    "make_evaluation_dataset",
    "make_pretraining_dataset",
    "read_hbabel",
    "read_keypoint_arrays",
    "read_mabe_mouse_triplets",
    "read_shot7m2",
    "training_padding",
    "training_windows",
    "window_dataset",
    "write_synthetic_dataset",
]


def __getattr__(name: str) -> Any:
    """Imports the TensorFlow-based names lazily."""
    if name in _TENSORFLOW_NAMES:
        return getattr(importlib.import_module(_TENSORFLOW_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
