"""Devices of a run: one device, or data parallelism over the local devices.

JAX: `keras.distribution.DataParallel`; TensorFlow: `tf.distribute.MirroredStrategy`;
torch has no Keras distribution API.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import keras

from keras_hbehavemae.errors import invalid
from keras_hbehavemae.training.config import DISTRIBUTIONS


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How a run uses devices: `num_replicas` copies of the model, one batch slice each."""

    kind: str | None
    num_replicas: int
    strategy: Any = None  # the TensorFlow strategy, if any

    def scope(self):
        """The context to create the model and its optimizer variables in."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def _tensorflow_devices() -> list[str]:
    import tensorflow as tf

    accelerators = tf.config.list_logical_devices("GPU")
    return [device.name for device in accelerators or tf.config.list_logical_devices("CPU")]


def setup_distribution(distribute: str | None) -> Distribution:
    """Sets up data parallelism over all local devices (call before building the model).

    JAX: installs `keras.distribution.DataParallel` globally. TensorFlow: a
    `MirroredStrategy` over the GPUs (or, without GPUs, the logical CPUs); build the
    model inside `Distribution.scope()`. The pretrainer seeds each replica's masks
    separately: masks must differ per replica, and one shared seed-generator state would
    give every replica the same masks.

    Raises:
        ValueError: for torch, or an unknown `distribute`.
    """
    if distribute is None:
        return Distribution(None, 1)
    if distribute not in DISTRIBUTIONS:
        raise invalid("distribute", distribute, "must be None or 'data_parallel'")
    backend = keras.config.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return Distribution(distribute, len(devices))
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(_tensorflow_devices())
        return Distribution(distribute, strategy.num_replicas_in_sync, strategy)
    raise ValueError(
        f"distribute: 'data_parallel' is not supported with the {backend} backend; use "
        "KERAS_BACKEND=jax or tensorflow, or train on one device")
