"""keras_hbehavemae: hBehaveMAE, the hierarchical masked autoencoder for behaviour, in Keras 3.

Example:

>>> import numpy as np
>>> from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone
>>> backbone = HBehaveMAEBackbone(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)
>>> [tuple(level.shape) for level in backbone(np.zeros((1, 32, 4, 12), "float32"))]
[(1, 16, 4, 4, 8), (1, 8, 4, 2, 12), (1, 4, 2, 2, 16)]
"""

import os as _os

# TensorFlow's C++ INFO lines (CPU features, plugin registration) are noise to a user of
# this package: show warnings and errors only, unless TF_CPP_MIN_LOG_LEVEL is set (JAX's
# own `__init__` does the same). Read once, when TensorFlow loads, so before Keras.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from keras_hbehavemae import _tensorflow_devices  # noqa: E402, F401  (before TensorFlow is used)
from keras_hbehavemae.loading import load_model  # noqa: E402
from keras_hbehavemae.models import (  # noqa: E402
    Geometry,
    HBehaveMAE,
    HBehaveMAEBackbone,
    HBehaveMAEConfig,
    compute_geometry,
)
from keras_hbehavemae.presets import list_presets  # noqa: E402
from keras_hbehavemae.version import __version__  # noqa: E402

__all__ = [
    "Geometry",
    "HBehaveMAE",
    "HBehaveMAEBackbone",
    "HBehaveMAEConfig",
    "__version__",
    "compute_geometry",
    "list_presets",
    "load_model",
]
