"""What the published PyTorch code records besides the model parameters.

A published checkpoint's `args` is the namespace of the published pretraining script. It
holds the model parameters (`HBehaveMAEConfig`) in their command-line spellings, plus many
settings that only concern training. `PUBLISHED_TRAINING_ARGS` lists those settings. A
checkpoint's `args` key that is neither a model parameter nor one of them raises an error
naming the closest valid name, so a misspelled or foreign key is never dropped silently.

The published model's constructor also takes arguments that this package fixes:
`FIXED_ARGUMENTS` (one input channel, patch stride equal to the patch kernel, no padding). A
record of them, such as the golden fixtures' metadata, must hold exactly those values.

Example:

>>> "clip_grad" in PUBLISHED_TRAINING_ARGS, "init_num_heads" in PUBLISHED_TRAINING_ARGS
(True, False)
>>> config_from_published_arguments({
...     "input_size": [32, 4, 12], "patch_kernel": [2, 1, 3], "stages": [1, 2, 1],
...     "q_strides": [[2, 1, 2], [2, 2, 1]], "out_embed_dims": [8, 12, 16],
...     "init_embed_dim": 16, "in_chans": 1, "patch_stride": [2, 1, 3],
...     "patch_padding": [0, 0, 0]}, "fixture").patch_kernel
(2, 1, 3)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from keras_hbehavemae.errors import invalid
from keras_hbehavemae.models.config import HBehaveMAEConfig

#: The training-only settings of the published pretraining script's `args` (its command-line
#: flags and what its distributed setup adds): the model parameters are not among them.
PUBLISHED_TRAINING_ARGS = frozenset({
    # data
    "dataset", "path_to_data_dir", "num_frames", "sliding_window", "sampling_rate",
    "fill_holes", "data_augment", "centeralign", "include_test_data", "joints3d_procrustes",
    # model choice and masking recipe
    "model", "masking_strategy", "no_qkv_bias", "trunc_init",
    # optimisation
    "batch_size", "epochs", "accum_iter", "weight_decay", "lr", "blr", "min_lr",
    "warmup_epochs", "clip_grad", "bias_wd", "beta", "fp32",
    # run bookkeeping
    "output_dir", "log_dir", "device", "seed", "resume", "start_epoch", "num_workers",
    "pin_mem", "checkpoint_period", "num_checkpoint_del",
    # distributed training
    "distributed", "world_size", "local_rank", "dist_on_itp", "no_env", "dist_url", "rank",
    "gpu", "dist_backend",
})

#: Published constructor arguments fixed in this package → the one value each may hold
#: (`patch_stride` must equal `patch_kernel`).
FIXED_ARGUMENTS = {"in_chans": 1, "patch_stride": "patch_kernel", "patch_padding": (0, 0, 0)}


def config_from_checkpoint_args(args: Mapping[str, Any], where: str,
                                extra_training_args: Collection[str] = ()) -> HBehaveMAEConfig:
    """The configuration in a published checkpoint's `args`.

    Args:
        args: the checkpoint's `args` as a dict.
        where: the checkpoint, for messages.
        extra_training_args: names to accept besides `PUBLISHED_TRAINING_ARGS` (the training
            settings of a modified pretraining script); they are not used.

    Raises:
        ValueError: a key that is neither a model parameter nor a known training setting
            (naming it and the closest valid name), or an invalid configuration.
    """
    return HBehaveMAEConfig.from_dict(
        args, known_extra_keys=PUBLISHED_TRAINING_ARGS | frozenset(extra_training_args),
        where=f"{where}: args")


def config_from_published_arguments(values: Mapping[str, Any], where: str) -> HBehaveMAEConfig:
    """The configuration of published model-constructor arguments (e.g. a fixture's record).

    Raises:
        ValueError: a fixed argument with another value than this package supports, or an
            unknown key.
    """
    values = dict(values)
    for name, expected in FIXED_ARGUMENTS.items():
        if name not in values:
            continue
        value = values.pop(name)
        if expected == "patch_kernel":
            expected = values.get("patch_kernel")
        if _plain(value) != _plain(expected):
            raise invalid(f"{where}: {name}", value, f"this package supports only {expected!r}")
    return HBehaveMAEConfig.from_dict(values, where=where)


def _plain(value):
    return tuple(value) if isinstance(value, list | tuple) else value
