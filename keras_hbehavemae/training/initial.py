"""The model a pretraining run starts from: built in its precision, seeded, and saved as
the run's untrained control (`initial_preset`).

Example:

>>> from keras_hbehavemae.models import HBehaveMAEConfig
>>> config = HBehaveMAEConfig(
...     input_size=(24, 3, 24), patch_kernel=(3, 1, 24), stages=(1, 1), q_strides="2,1,1",
...     mask_unit_attn=(True, False), init_embed_dim=8, init_num_heads=1,
...     out_embed_dims=(8, 16), decoder_embed_dim=8)
>>> model = seeded_pretrainer(config, seed=3)
>>> type(model).__name__
'HBehaveMAE'
"""

from __future__ import annotations

import json
import os

import keras

from keras_hbehavemae.errors import invalid
from keras_hbehavemae.models import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.presets import save_to_preset
from keras_hbehavemae.training import run_directory
from keras_hbehavemae.training.config import PRECISIONS


def build_pretrainer(model_config: HBehaveMAEConfig, seed: int = 0,
                     precision: str = "float32") -> HBehaveMAE:
    """A fresh `HBehaveMAE` (backbone + decoder) in `precision`, masks seeded by `seed`.

    With "mixed_bfloat16" the global dtype policy is set while the layers are created
    (and restored afterwards); the prediction head and the loss stay float32.
    """
    if precision not in PRECISIONS:
        raise invalid("precision", precision, f"must be one of {PRECISIONS}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        backbone = HBehaveMAEBackbone(**model_config.encoder_kwargs())
        return HBehaveMAE(backbone, seed=seed, **model_config.pretrainer_kwargs())
    finally:
        keras.config.set_dtype_policy(previous)


#: The folder of a run's initial weights (`run_pretraining(save_initial=True)`).
INITIAL_PRESET_FOLDER = "initial_preset"


def seeded_pretrainer(model_config: HBehaveMAEConfig, seed: int,
                      precision: str = "float32") -> HBehaveMAE:
    """The pretrainer a run with `seed` starts from: Keras' seeds set, then built."""
    keras.utils.set_random_seed(seed)
    return build_pretrainer(model_config, seed, precision)


def save_initial_preset(model_config: HBehaveMAEConfig, seed: int, directory: str):
    """Saves the initial weights of a run with `seed` as a preset (`weights="initial"`).

    They are the weights `build_training_run` starts from (before any `--preset` weights),
    so the preset is the run's untrained control. Loading it for inference needs
    `allow_random_weights=True`. Returns the preset folder.
    """
    model = seeded_pretrainer(model_config, seed)
    card = "\n".join([
        "# hBehaveMAE: initial weights (untrained control)", "",
        f"The seeded random initialisation (seed {seed}) of this architecture: the weights a "
        "pretraining run with that seed starts from. Use it as the untrained control of the "
        "trained model (`hbehavemae embed --control`).", ""])
    metadata = {"seed": seed, "model_config": model_config.to_dict(),
                "description": f"initial weights of a pretraining run (seed {seed})"}
    return save_to_preset(model, directory, weights="initial", metadata=metadata,
                          model_card=card)


def save_initial_only(model_config: HBehaveMAEConfig, seed: int, output_dir: str) -> str:
    """Saves only the initial weights of a run as `output_dir/initial_preset` (`hbehavemae
    pretrain --epochs 0`) and returns that folder; nothing is trained.

    Raises:
        ValueError: `output_dir` holds a run of another model.
    """
    existing = os.path.join(output_dir, run_directory.RUN_CONFIG_FILE)
    if os.path.isfile(existing):
        model = run_directory.read_json(existing).get("model")
        if model != json.loads(json.dumps(model_config.to_dict())):
            raise ValueError(f"--output_dir {output_dir!r} holds a run of another model "
                             f"({existing}); give its model flags or another --output_dir")
    directory = os.path.join(output_dir, INITIAL_PRESET_FOLDER)
    save_initial_preset(model_config, seed, directory)
    return directory
