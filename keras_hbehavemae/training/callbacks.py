"""Keras callbacks of a pretraining run (`keras_hbehavemae.training.run_pretraining`).

| callback | when | what |
|---|---|---|
| `NonFiniteLossGuard` | every step | stops training on a NaN/inf loss and keeps the error to raise |
| `HeldOutLoss` | epochs with epoch % every == 0 | `model.evaluate` on the held-out split, logged as `test_loss` |
| `EpochMetricsLog` | every epoch | one JSON line: `epoch`, `train_<metric>`, `test_loss` |
| `StepScalars` | every n steps | TensorBoard scalars `loss`, `grad_norm`, `learning_rate` at the optimizer step |
| `EpochScalars` | every epoch | TensorBoard scalars `epoch_<metric>` (and `epoch_test_loss`) at the epoch |
| `EpochCheckpoint` | every epoch with a finite loss | checkpoint + `state.json`, then retention |

They run in this order, so that `test_loss` reaches the log, TensorBoard and the progress bar,
and an epoch is logged before it is checkpointed (a resumed run drops log lines of epochs
that were not checkpointed).

The writing callbacks read only host copies of the logs and variables, and
`EpochCheckpoint` saves with any JAX distribution switched off: with several processes only
process 0 runs them, and on JAX an operation on a variable spread over every process's
devices would be a collective operation that the other processes never join.
"""  # noqa: E501

from __future__ import annotations

import datetime
import math
import os
import time

import keras
import numpy as np

from keras_hbehavemae.training import run_directory
from keras_hbehavemae.training.distribution import without_distribution


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def _to_float(value) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first step whose (running) loss is NaN or infinite.

    Unlike `keras.callbacks.TerminateOnNaN` it records a `NonFiniteLossError` in `error`
    for the caller to raise once `fit` has returned. The epoch's logged loss is then
    non-finite too, so `EpochCheckpoint` writes nothing and deletes nothing.

    The models do not reject NaN or inf keypoints: values in hidden mask units never reach
    the encoder, so predictions stay finite (`reconstruction.impute` hides untracked frames
    this way), but any of them makes the training loss non-finite. This guard is what
    stops training on them. `run_pretraining` always installs it; with a plain
    `model.fit`, pass `NonFiniteLossGuard()` (or `keras.callbacks.TerminateOnNaN()`).
    """

    def __init__(self):
        super().__init__()
        self.error: NonFiniteLossError | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or self.error is not None:
            return
        value = _to_float(loss)
        if not math.isfinite(value):
            self.error = NonFiniteLossError(
                f"non-finite loss ({value}) at epoch {self._epoch}, step {batch}; training "
                "stopped")
            self.model.stop_training = True


class HeldOutLoss(keras.callbacks.Callback):
    """Adds `test_loss` (masked loss over the whole held-out split) to the epoch logs.

    Runs at epochs with `epoch % every == 0` (0-based), with random masks and no
    augmentation (SPEC §8), and not after a stopped (non-finite) epoch. The masks'
    random state is put back afterwards: training draws the same masks whether or not,
    and on how many batches, the held-out loss was evaluated (with several devices the
    last partial held-out batch is left out).
    """

    def __init__(self, dataset, every: int = 5):
        super().__init__()
        self.dataset = dataset
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or epoch % self.every or self.model.stop_training:
            return
        states = seed_generator_states(self.model)
        result = self.model.evaluate(self.dataset, verbose=0, return_dict=True)
        restore_seed_generator_states(self.model, states)
        logs["test_loss"] = _to_float(result["loss"])


class EpochMetricsLog(keras.callbacks.Callback):
    """Appends one JSON line per epoch to `output_dir/metrics.jsonl`.

    Keys: `epoch` (0-based), `train_<name>` for every training log (`train_loss`,
    `train_grad_norm`, `train_learning_rate`), `test_loss` when evaluated, `epoch_seconds`.
    """

    def __init__(self, output_dir: str):
        super().__init__()
        self.output_dir = output_dir
        self._start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        line = {"epoch": int(epoch), "epoch_seconds": round(time.time() - self._start, 3)}
        for name, value in (logs or {}).items():
            key = name if name.startswith("test_") else f"train_{name}"
            line[key] = _to_float(value)
        run_directory.append_metrics(self.output_dir, line)


class StepScalars(keras.callbacks.Callback):
    """Per-step TensorBoard scalars under `log_dir/steps`, against the optimizer step.

    The step is absolute (read from `optimizer.iterations` when training starts), so a
    resumed run continues the curves instead of restarting them at 0. `loss` and
    `grad_norm` are the epoch's running means as Keras reports them; `learning_rate` is
    the step's own.
    """

    NAMES = ("loss", "grad_norm", "learning_rate")

    def __init__(self, log_dir: str, every_n_steps: int = 1):
        super().__init__()
        self.log_dir = os.path.join(log_dir, "steps")
        self.every_n_steps = every_n_steps
        self._writer = None
        self._step = 0

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._step = int(_to_float(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        import tensorflow as tf

        self._step += 1
        if self._step % self.every_n_steps or not logs:
            return
        with self._writer.as_default(step=self._step):
            for name in self.NAMES:
                if name in logs:
                    tf.summary.scalar(name, _to_float(logs[name]))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


class EpochScalars(keras.callbacks.Callback):
    """Per-epoch TensorBoard scalars under `log_dir/train`: `epoch_<name>` for every epoch
    log (`epoch_loss`, `epoch_grad_norm`, `epoch_learning_rate`, `epoch_test_loss`), at the
    0-based epoch, the tags `keras.callbacks.TensorBoard(update_freq="epoch")` writes."""

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = os.path.join(log_dir, "train")
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        with self._writer.as_default(step=int(epoch)):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"epoch_{name}", _to_float(value))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


def seed_generator_states(model) -> list[list[int]]:
    """The states of the model's random seed generators (mask noise), in variable order.

    `save_weights` does not store them, so `state.json` does: a resumed run continues the
    mask sequence instead of repeating it from the start.
    """
    return [np.asarray(keras.ops.convert_to_numpy(variable.value)).astype(np.int64).tolist()
            for variable in model.variables if variable.path.endswith("seed_generator_state")]


def restore_seed_generator_states(model, states: list[list[int]]) -> None:
    variables = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    if len(variables) != len(states):
        raise ValueError(f"the checkpoint holds {len(states)} seed-generator states, the "
                         f"model has {len(variables)}")
    for variable, state in zip(variables, states, strict=True):
        variable.assign(np.asarray(state).astype(variable.dtype))


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch with a finite loss: checkpoint, then `state.json`, then retention.

    1. `checkpoint-epoch{E:04d}.weights.h5` (model + optimizer variables, incl. the
       iteration counter that drives the learning-rate schedule), written atomically;
    2. `state.json` (atomically): `completed_epochs`, the checkpoint's file name, the
       seed-generator states and the list of training sessions;
    3. retention: checkpoints that are neither among the newest `keep_last` nor on the
       published schedule (epoch % `every` == 0, the last epoch) are deleted.

    A crash in 1 or 2 leaves the previous checkpoint and state untouched; deletion only
    follows a complete write. An epoch with a non-finite loss is never checkpointed.
    """

    def __init__(self, output_dir: str, epochs: int, every: int = 20, keep_last: int = 2,
                 sessions: list | None = None):
        super().__init__()
        self.output_dir = output_dir
        self.epochs = epochs
        self.every = every
        self.keep_last = keep_last
        self.sessions = list(sessions or [])

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or not math.isfinite(_to_float(loss)):
            return
        path = run_directory.checkpoint_path(self.output_dir, epoch)
        with without_distribution():
            run_directory.save_weights_atomically(self.model, path)
        run_directory.write_state(self.output_dir, {
            "completed_epochs": int(epoch) + 1,
            "epochs": self.epochs,
            "checkpoint": os.path.basename(path),
            "optimizer_iterations": int(_to_float(self.model.optimizer.iterations)),
            "seed_generator_states": seed_generator_states(self.model),
            "sessions": self.sessions,
            "saved": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        })
        present = run_directory.checkpoint_epochs(self.output_dir)
        for old in run_directory.checkpoints_to_delete(present, self.epochs, self.every,
                                                       self.keep_last):
            os.remove(run_directory.checkpoint_path(self.output_dir, old))
