"""A pretraining run's model, data, devices and schedule (`TrainingRun`), built and compiled
with the published optimizer, and restored from a checkpoint of its run folder.

Example (a tiny model on random arrays):

>>> import numpy as np
>>> from keras_hbehavemae import HBehaveMAEConfig
>>> from keras_hbehavemae.data.recipes import PretrainingData
>>> from keras_hbehavemae.training.config import TrainingConfig
>>> from keras_hbehavemae.training.distribution import Distribution
>>> rng = np.random.default_rng(0)
>>> data = PretrainingData("arrays", train=[rng.normal(size=(64, 4, 12))], test=None,
...                        num_frames=32, sliding_window=8)
>>> training = TrainingConfig(batch_size=4, epochs=1, warmup_epochs=0, blr=1.6e-4)
>>> schedule_summary(data, training, Distribution(None, 1))
{'replicas': 1, 'global_batch_size': 4, 'steps_per_epoch': 2, 'peak_learning_rate': 2.5e-06}
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from keras_hbehavemae.data.recipes import PretrainingData
from keras_hbehavemae.errors import invalid
from keras_hbehavemae.loading import load_weights_into
from keras_hbehavemae.models import HBehaveMAE, HBehaveMAEConfig
from keras_hbehavemae.training import run_directory
from keras_hbehavemae.training.callbacks import restore_seed_generator_states
from keras_hbehavemae.training.config import TrainingConfig
from keras_hbehavemae.training.distribution import Distribution, setup_distribution
from keras_hbehavemae.training.initial import seeded_pretrainer
from keras_hbehavemae.training.optimizer import (
    WarmupHalfCosineSchedule,
    published_optimizer,
    scaled_learning_rate,
)


@dataclasses.dataclass
class TrainingRun:
    """A compiled pretrainer with its data, devices and schedule (see `build_training_run`)."""

    model: HBehaveMAE
    model_config: HBehaveMAEConfig
    training: TrainingConfig
    data: PretrainingData
    distribution: Distribution
    global_batch_size: int
    steps_per_epoch: int
    learning_rate: float

    def train_dataset(self, first_step: int = 0):
        """Endless training batches of `global_batch_size` (split across replicas; with
        several processes, this process's block of each, see `Distribution.input`), from
        the batch of step `first_step` on."""
        return self.distribution.input(
            lambda shard: self.data.train_dataset(
                self.global_batch_size, self.training.seed, self.model_config.input_size,
                shard=shard, first_step=first_step),
            self.global_batch_size)

    def test_dataset(self):
        """Held-out batches (None without a held-out split). With several replicas the last
        partial batch is dropped, since JAX cannot split it evenly."""
        if self.data.test is None:
            return None
        return self.distribution.input(
            lambda shard: self.data.test_dataset(
                self.global_batch_size, self.model_config.input_size,
                drop_remainder=self.distribution.num_replicas > 1, shard=shard),
            self.global_batch_size)

    def schedule_summary(self) -> dict[str, Any]:
        return schedule_summary(self.data, self.training, self.distribution)


def schedule_summary(data: PretrainingData, training: TrainingConfig,
                     distribution: Distribution) -> dict[str, Any]:
    """Replicas, global batch, steps per epoch and peak learning rate of a run."""
    global_batch = training.batch_size * distribution.num_replicas
    steps = data.steps_per_epoch(global_batch)
    if training.steps_per_epoch is not None:
        steps = min(steps, training.steps_per_epoch)
    learning_rate = (training.lr if training.lr is not None
                     else scaled_learning_rate(training.blr, global_batch))
    return {"replicas": distribution.num_replicas, "global_batch_size": global_batch,
            "steps_per_epoch": steps, "peak_learning_rate": learning_rate}


def build_training_run(model_config: HBehaveMAEConfig, data: PretrainingData,
                       training: TrainingConfig | None = None, *, preset: str | None = None,
                       distribution: Distribution | None = None,
                       jit_compile: bool | str = "auto", allow_random_weights: bool = False,
                       **training_options) -> TrainingRun:
    """Builds and compiles the pretrainer for `training` (or `TrainingConfig(**options)`).

    The peak learning rate is `lr`, or blr·effective_batch/256 with effective_batch =
    batch_size × replicas; the schedule is `WarmupHalfCosineSchedule` over
    `steps_per_epoch` steps per epoch (one pass over the training windows unless capped),
    the optimizer `published_optimizer`.

    Args:
        model_config: the model.
        data: the training (and held-out) data.
        training: the training settings; or give them as keyword arguments.
        preset: start from these weights (preset folder, `.keras` or `.weights.h5`).
        distribution: from `setup_distribution` (default: set up from `training`).
        jit_compile: "auto" (the fastest measured path, `models.compilation`), True or
            False. Not part of the configuration a resume must match (see the module
            docstring: under TensorFlow, XLA draws other random masks than TensorFlow's
            kernels do).
        allow_random_weights: accept a `preset` whose weights are random (`none`: the
            architecture only; `initial`): training then starts from scratch.
    """
    if jit_compile not in ("auto", True, False):
        raise invalid("jit_compile", jit_compile, "must be 'auto', True or False")
    if training is None:
        training = TrainingConfig(**training_options)
    elif training_options:
        raise ValueError(f"give the training settings as `training` or as keyword arguments, "
                         f"not both (got training and {sorted(training_options)})")
    if model_config.input_size[0] != data.num_frames:
        raise invalid("num_frames", data.num_frames, f"must equal input_size[0] = "
              f"{model_config.input_size[0]}")
    if distribution is None:
        distribution = setup_distribution(training.distribute)
    summary = schedule_summary(data, training, distribution)
    global_batch, steps = summary["global_batch_size"], summary["steps_per_epoch"]
    learning_rate = summary["peak_learning_rate"]
    if training.min_lr > learning_rate:
        raise invalid("min_lr", training.min_lr, f"must not exceed the peak learning rate "
                      f"{learning_rate:g} (blr·effective batch/256, or lr)")
    with distribution.scope():
        model = seeded_pretrainer(model_config, training.seed, training.precision)
        if preset is not None:
            load_weights_into(model, preset, parameter="--preset",
                              allow_random_weights=allow_random_weights)
        schedule = WarmupHalfCosineSchedule(learning_rate, steps, training.epochs,
                                            training.warmup_epochs, training.min_lr)
        model.compile(optimizer=published_optimizer(model, schedule, training.weight_decay,
                                                    training.clip_grad),
                      jit_compile=jit_compile)
        # Creating the optimizer variables now, not inside the first traced step, spares
        # TensorFlow a second trace of the train step (a variable-creating tf.function is
        # traced twice); a checkpoint can then also be loaded straight away.
        model.optimizer.build(model.trainable_variables)
    return TrainingRun(model, model_config, training, data, distribution, global_batch, steps,
                       learning_rate)


def restore_checkpoint(run: TrainingRun, output_dir: str, state: dict) -> None:
    """Loads the checkpoint named in `state` (model + optimizer) and the mask RNG state.

    Raises:
        FileNotFoundError: the checkpoint is missing.
        ValueError: the checkpoint cannot be loaded (damaged, or of another model).
    """
    name = state["checkpoint"]
    path = os.path.join(output_dir, name)
    advice = "restore the file, or start afresh with another --output_dir"
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--output_dir {output_dir!r}: {name}, the checkpoint named in "
            f"{run_directory.STATE_FILE}, is missing; {advice}")
    with run.distribution.scope():
        try:
            run.model.load_weights(path)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"--output_dir {output_dir!r}: cannot resume from {name} ({error}); the file "
                f"is damaged; {advice}") from error
        restore_seed_generator_states(run.model, state["seed_generator_states"])
