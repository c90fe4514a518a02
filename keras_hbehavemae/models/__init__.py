"""The hBehaveMAE model: configuration, geometry, layers, the encoder and the pretrainer.

| module | concept |
|---|---|
| `config` | `HBehaveMAEConfig`: every published parameter and its validation |
| `geometry` | every derived size (pure Python) |
| `sizes` | `--size small|base`: a configuration derived from the input geometry |
| `layers/` | patch and position embedding, token order, mask-unit attention, Hiera block, fusion head, decoder |
| `inputs` | the one keypoint check per entry point; the policy on NaN, inf and huge keypoints |
| `backbone` | `HBehaveMAEBackbone`, the deterministic encoder |
| `decoding` | the decoding strategies ("multi", "single") as behaviour |
| `masking`, `losses` | mask-unit masking; time-strided targets and the reconstruction loss |
| `pretrainer`, `train_steps` | `HBehaveMAE` and its per-backend train and test steps (a non-finite step is skipped) |

This package imports nothing of the applications around it (training runs, embeddings,
evaluation, serving); it reads and writes presets through `keras_hbehavemae.presets`.
"""  # noqa: E501

from keras_hbehavemae.models.backbone import HBehaveMAEBackbone
from keras_hbehavemae.models.config import HBehaveMAEConfig
from keras_hbehavemae.models.geometry import Geometry, compute_geometry
from keras_hbehavemae.models.pretrainer import HBehaveMAE

__all__ = ["Geometry", "HBehaveMAE", "HBehaveMAEBackbone", "HBehaveMAEConfig", "compute_geometry"]
