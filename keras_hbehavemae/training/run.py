"""Pretraining runs: the published recipe (docs/model.md, "Training recipe") with resumable,
atomic checkpoints.

`run_pretraining(model_config, data, training, output_dir)` trains an `HBehaveMAE` on a
`PretrainingData` and leaves in `output_dir` (see `run_directory` for the file formats):
checkpoints and `state.json`, `run_config.json`, `metrics.jsonl`, TensorBoard logs (in
`log_dir`, default `output_dir/logs`), `final_metrics.json` and the trained model as a
preset folder `output_dir/preset/`.

Rerunning the same call after a crash (even `kill -9`) resumes from the last completed
epoch: model and optimizer variables (moments and the step counter that drives the
learning-rate schedule) come from the checkpoint, the epoch counter and the mask RNG state
from `state.json`. The data pipeline restarts its (seeded) shuffle, so a resumed run sees
a different window order than an uninterrupted one would.

The compiled path (`jit_compile`) is not part of the configuration a resume must match: a
run may resume with or without XLA. Under TensorFlow, XLA (the default, also on a CPU; see
`models.compilation`) draws other random masks from the same seed-generator state than
TensorFlow's own kernels (`--jit_compile false`) do, so switching it on resume, like the
shuffle, changes which masks the rest of the run sees; the model's numbers for a given mask
agree to rounding. JAX draws the same masks compiled or not; torch runs eagerly unless
`--jit_compile true` asks for `torch.compile`, whose random draws differ again.

Building blocks: `TrainingConfig`, `setup_distribution`, `build_pretrainer`,
`build_training_run`, `restore_checkpoint`.

Example (a tiny model on random arrays; the run itself is skipped here):

>>> import tempfile, numpy as np
>>> from keras_hbehavemae import HBehaveMAEConfig
>>> from keras_hbehavemae.data.recipes import PretrainingData
>>> config = HBehaveMAEConfig(input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
...     decoder_embed_dim=16)
>>> rng = np.random.default_rng(0)
>>> data = PretrainingData("arrays", train=[rng.normal(size=(64, 4, 12))], test=None,
...                        num_frames=32, sliding_window=8)
>>> training = TrainingConfig(batch_size=4, epochs=1, warmup_epochs=0, blr=1.6e-4)
>>> schedule_summary(data, training, Distribution(None, 1))
{'replicas': 1, 'global_batch_size': 4, 'steps_per_epoch': 2, 'peak_learning_rate': 2.5e-06}
>>> summary = run_pretraining(config, data, training, tempfile.mkdtemp())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from typing import Any

import keras

from keras_hbehavemae.data.recipes import PretrainingData
from keras_hbehavemae.errors import invalid
from keras_hbehavemae.loading import load_weights_into
from keras_hbehavemae.models import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.training import run_directory
from keras_hbehavemae.training.callbacks import (
    EpochCheckpoint,
    EpochMetricsLog,
    HeldOutLoss,
    NonFiniteLossError,
    NonFiniteLossGuard,
    StepScalars,
    restore_seed_generator_states,
)
from keras_hbehavemae.training.config import PRECISIONS, TrainingConfig
from keras_hbehavemae.training.distribution import Distribution, setup_distribution
from keras_hbehavemae.training.optimizer import (
    WarmupHalfCosineSchedule,
    published_optimizer,
    scaled_learning_rate,
)
from keras_hbehavemae.training.outputs import write_final_outputs


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

    def train_dataset(self):
        """Endless training batches of `global_batch_size` (split across replicas)."""
        return self.data.train_dataset(self.global_batch_size, self.training.seed,
                                       self.model_config.input_size)

    def test_dataset(self):
        """Held-out batches (None without a held-out split). With several replicas the last
        partial batch is dropped, since JAX cannot split it evenly."""
        return self.data.test_dataset(self.global_batch_size, self.model_config.input_size,
                                      drop_remainder=self.distribution.num_replicas > 1)

    def schedule_summary(self) -> dict[str, Any]:
        return schedule_summary(self.data, self.training, self.distribution)


def schedule_summary(data: PretrainingData, training: TrainingConfig,
                     distribution: Distribution) -> dict[str, Any]:
    """Replicas, global batch, steps per epoch and peak learning rate of a run."""
    global_batch = training.batch_size * distribution.num_replicas
    steps = data.steps_per_epoch(global_batch)
    if training.steps_per_epoch:
        steps = min(steps, training.steps_per_epoch)
    learning_rate = (training.lr if training.lr is not None
                     else scaled_learning_rate(training.blr, global_batch))
    return {"replicas": distribution.num_replicas, "global_batch_size": global_batch,
            "steps_per_epoch": steps, "peak_learning_rate": learning_rate}


def build_training_run(model_config: HBehaveMAEConfig, data: PretrainingData,
                       training: TrainingConfig | None = None, *, preset: str | None = None,
                       distribution: Distribution | None = None,
                       jit_compile: bool | str = "auto",
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
        jit_compile: "auto" (the fastest measured path, `models.compilation`: XLA under
            TensorFlow, on a CPU too, and JAX; eager torch), True or False. Not part of
            the configuration a resume must match (see the module docstring: under
            TensorFlow, XLA draws other random masks than TensorFlow's kernels do).
    """
    if jit_compile not in ("auto", True, False):
        raise invalid("jit_compile", jit_compile, "must be 'auto', True or False")
    training = training or TrainingConfig(**training_options)
    if model_config.input_size[0] != data.num_frames:
        raise invalid("num_frames", data.num_frames, f"must equal input_size[0] = "
              f"{model_config.input_size[0]}")
    distribution = distribution or setup_distribution(training.distribute)
    summary = schedule_summary(data, training, distribution)
    global_batch, steps = summary["global_batch_size"], summary["steps_per_epoch"]
    learning_rate = summary["peak_learning_rate"]
    keras.utils.set_random_seed(training.seed)
    with distribution.scope():
        model = build_pretrainer(model_config, training.seed, training.precision)
        if preset is not None:
            load_weights_into(model, preset, parameter="--preset")
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


def _run_config(model_config: HBehaveMAEConfig, data: PretrainingData,
                training: TrainingConfig, distribution: Distribution, preset: str | None,
                output_dir: str, log_dir: str) -> dict:
    from keras_hbehavemae import __version__

    return {
        "model": model_config.to_dict(),
        "training": training.to_dict(),
        "schedule": schedule_summary(data, training, distribution),
        "data": data.describe(),
        "preset": preset,
        "environment": {  # informational; not compared when resuming
            "backend": keras.config.backend(),
            "keras_version": keras.__version__,
            "keras_hbehavemae_version": __version__,
            "output_dir": os.path.abspath(output_dir),
            "log_dir": os.path.abspath(log_dir),
        },
    }


def _callbacks(run: TrainingRun, output_dir: str, log_dir: str, sessions: list, guard,
               extra: list) -> list:
    training = run.training
    callbacks = [guard]
    test = run.test_dataset()
    if test is not None:
        callbacks.append(HeldOutLoss(test, training.test_every))
    callbacks += [
        EpochMetricsLog(output_dir),
        StepScalars(log_dir, training.log_every_n_steps),
        keras.callbacks.TensorBoard(log_dir, update_freq="epoch", write_graph=False,
                                    profile_batch=0),
        EpochCheckpoint(output_dir, training.epochs, training.checkpoint_every,
                        training.keep_last, sessions),
    ]
    return callbacks + list(extra)


def _say(verbose, message: str) -> None:
    if verbose:
        print(message, flush=True)


def run_pretraining(model_config: HBehaveMAEConfig, data: PretrainingData,
                    training: TrainingConfig, output_dir: str, *, log_dir: str | None = None,
                    preset: str | None = None, callbacks: list | tuple = (),
                    verbose: str | int = "auto", jit_compile: bool | str = "auto") -> dict:
    """Trains (or resumes training) and writes the run directory; returns the final summary.

    Before training: `output_dir` and `log_dir` must be writable and hold room for two
    checkpoints; an existing `run_config.json` must match this configuration.

    Args:
        model_config: the model.
        data: training and held-out data.
        training: the training settings.
        output_dir: the run directory (created if needed).
        log_dir: TensorBoard folder (default `output_dir/logs`).
        preset: initial weights for a fresh run (ignored when resuming).
        callbacks: extra Keras callbacks, run after the built-in ones.
        verbose: `model.fit`'s verbosity ("auto": progress bar); 0 also silences messages.
        jit_compile: as in `build_training_run` ("auto": XLA under TensorFlow and JAX).

    Raises:
        ValueError: invalid settings, or `output_dir` holding a run with another
            configuration (the message names the differing keys).
        OSError: an unwritable folder or too little disk space.
        NonFiniteLossError: the loss became NaN/inf; every checkpoint is kept.
    """
    start = time.time()
    log_dir = log_dir or os.path.join(output_dir, "logs")
    run_directory.check_writable(output_dir, "--output_dir")
    run_directory.check_writable(log_dir, "--log_dir")
    run_directory.remove_partial_files(output_dir)
    distribution = setup_distribution(training.distribute)
    run_directory.check_run_config(output_dir, _run_config(
        model_config, data, training, distribution, preset, output_dir, log_dir))
    state = run_directory.read_state(output_dir)
    run = build_training_run(model_config, data, training, distribution=distribution,
                             preset=preset if state is None else None, jit_compile=jit_compile)
    run_directory.check_free_space(
        output_dir, 2 * run_directory.checkpoint_bytes(run.model.count_params()), "--output_dir")

    completed = 0
    if state is not None:
        restore_checkpoint(run, output_dir, state)
        completed = state["completed_epochs"]
        _say(verbose, f"Resuming {output_dir} from {state['checkpoint']}: {completed} of "
                      f"{training.epochs} epochs done.")
    run_directory.truncate_metrics(output_dir, completed)
    sessions = (state or {}).get("sessions", []) + [{
        "start_epoch": completed,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "backend": keras.config.backend(),
        "replicas": distribution.num_replicas,
    }]
    if completed < training.epochs:
        guard = NonFiniteLossGuard()
        run.model.fit(run.train_dataset(), epochs=training.epochs, initial_epoch=completed,
                      steps_per_epoch=run.steps_per_epoch, shuffle=False, verbose=verbose,
                      callbacks=_callbacks(run, output_dir, log_dir, sessions, guard,
                                           list(callbacks)))
        if guard.error is not None:
            last = run_directory.read_state(output_dir)
            kept = (f"the last good checkpoint is {last['checkpoint']} (epoch "
                    f"{last['completed_epochs'] - 1})" if last else "no epoch had completed")
            raise NonFiniteLossError(
                f"{guard.error}. Every checkpoint in {output_dir} was kept; {kept}. Lower the "
                "learning rate (--blr/--lr) or check the data for NaN/inf values.")
    else:
        _say(verbose, f"{output_dir}: all {training.epochs} epochs were already done.")
    state = run_directory.read_state(output_dir)
    summary = write_final_outputs(run, output_dir, state, time.time() - start)
    _say(verbose, f"Done: {output_dir} (train loss {summary['train_loss']:.4f}"
         + (f", test loss {summary['test_loss']:.4f}" if summary["test_loss"] is not None
            else "") + ").")
    return summary
