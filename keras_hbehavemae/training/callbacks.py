"""Keras callbacks of a pretraining run (`keras_hbehavemae.training.run_pretraining`).

| callback | when | what |
|---|---|---|
| `NonFiniteLossGuard` | every step | stops training at a skipped (non-finite) step and keeps the error to raise |
| `HeldOutLoss` | epochs with epoch % every == 0 | `model.evaluate` on the held-out split, logged as `test_loss` |
| `EpochMetricsLog` | every epoch | one JSON line: `epoch`, `train_<metric>`, `test_loss` |
| `StepScalars` | every n steps | TensorBoard scalars `loss`, `grad_norm`, `learning_rate` at the optimizer step |
| `EpochScalars` | every epoch | TensorBoard scalars `epoch_<metric>` (and `epoch_test_loss`) at the epoch |
| `EpochCheckpoint` | every complete epoch without a skipped step | checkpoint + `state.json`, then retention |
| `stopping.GracefulStop` | every step | stops at the next step boundary after SIGTERM / Ctrl-C |

They run in this order, so that `test_loss` reaches the log, TensorBoard and the progress bar,
and an epoch is logged before it is checkpointed (a resumed run drops log lines of epochs
that were not checkpointed). An epoch that a stop signal cut short (`StopRequest`) is
neither logged nor checkpointed.

A TensorBoard write that fails (a full disk, a folder removed under the run) stops
training with `LogWriteError`, an `OSError` whose one-line message names the log folder;
the epochs checkpointed before stay as they are.

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
from keras_hbehavemae.training.stopping import StopRequest


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class LogWriteError(OSError):
    """Writing the TensorBoard logs failed (a full disk, a removed folder, ...)."""


def _failure_reason(error: BaseException) -> str:
    """The cause of a failed write in a few words (the first line, without TF's op prefix)."""
    text = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
    if "No space left on device" in text:
        return "No space left on device"
    line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    if line.startswith("{{") and "}}" in line:
        line = line.split("}}", 1)[1].strip()
    return line[:200]


def _write_failed(log_dir: str, error: BaseException) -> LogWriteError:
    return LogWriteError(
        f"--log_dir {log_dir!r}: cannot write the TensorBoard logs "
        f"({_failure_reason(error)}); training stopped, and the checkpoints already written "
        "are intact. Free some space (or choose another --log_dir) and rerun the same command "
        "to resume")


def _writer_errors():
    """The exception types a failed summary write raises."""
    import tensorflow as tf

    return (OSError, tf.errors.OpError)


def _to_float(value) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


def skipped_an_update(logs) -> bool:
    """True when the epoch's logs show a step whose update was skipped (`skipped_steps`
    above 0: its loss or gradient norm was not finite) or a non-finite loss."""
    logs = logs or {}
    skipped = logs.get("skipped_steps")
    if skipped is not None and _to_float(skipped) > 0:
        return True
    loss = logs.get("loss")
    return loss is not None and not math.isfinite(_to_float(loss))


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first step whose update was skipped for a non-finite loss or
    gradient norm (the pretrainer's `skipped_steps`), or whose logged loss is not finite.

    The pretrainer's `train_step` leaves the weights untouched on such a step (see
    `keras_hbehavemae.models.train_steps`); this guard turns the first one into an error
    instead of training on. Unlike `keras.callbacks.TerminateOnNaN` it records a
    `NonFiniteLossError` in `error` for the caller to raise once `fit` has returned, and
    `EpochCheckpoint` does not checkpoint the stopped epoch (nor delete anything).

    NaN or inf keypoints in a `tf.data` batch cannot be rejected before the compiled step
    runs; they make the step non-finite, and this guard stops on them. `run_pretraining`
    always installs it; a plain `model.fit` skips such steps and counts them instead.
    """

    def __init__(self):
        super().__init__()
        self.error: NonFiniteLossError | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.error is not None or not skipped_an_update(logs):
            return
        self.error = NonFiniteLossError(
            f"non-finite loss or gradient norm at epoch {self._epoch}, step {batch}: the update "
            "was skipped and training stopped")
        self.model.stop_training = True


class HeldOutLoss(keras.callbacks.Callback):
    """Adds `test_loss` (masked loss over the whole held-out split) to the epoch logs.

    Runs at epochs with `epoch % every == 0` (0-based), with random masks and no
    augmentation, and neither after a stopped (non-finite) epoch nor once a stop signal
    arrived (`stop`). The masks' random state is put back afterwards: training draws the
    same masks whether or not, and on how many batches, the held-out loss was evaluated
    (with several devices the last partial held-out batch is left out).
    """

    def __init__(self, dataset, every: int = 5, stop: StopRequest | None = None):
        super().__init__()
        self.dataset = dataset
        self.every = every
        self.stop = stop if stop is not None else StopRequest()

    def on_epoch_end(self, epoch, logs=None):
        if (logs is None or epoch % self.every or self.model.stop_training
                or self.stop.requested is not None):
            return
        states = seed_generator_states(self.model)
        result = self.model.evaluate(self.dataset, verbose=0, return_dict=True)
        restore_seed_generator_states(self.model, states)
        logs["test_loss"] = _to_float(result["loss"])


class EpochMetricsLog(keras.callbacks.Callback):
    """Appends one JSON line per epoch to `output_dir/metrics.jsonl`.

    Keys: `epoch` (0-based), `train_<name>` for every training log (`train_loss`,
    `train_grad_norm`, `train_learning_rate`), `test_loss` when evaluated, `epoch_seconds`.
    An epoch abandoned on a stop signal (`stop`) is not logged.
    """

    def __init__(self, output_dir: str, stop: StopRequest | None = None):
        super().__init__()
        self.output_dir = output_dir
        self.stop = stop if stop is not None else StopRequest()
        self._start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if self.stop.epoch_abandoned(epoch):
            return
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
    the step's own. A failed write raises `LogWriteError` naming `log_dir`.
    """

    NAMES = ("loss", "grad_norm", "learning_rate")

    def __init__(self, log_dir: str, every_n_steps: int = 1):
        super().__init__()
        self.root = log_dir
        self.log_dir = os.path.join(log_dir, "steps")
        self.every_n_steps = every_n_steps
        self._writer = None
        self._step = 0

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        try:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        except _writer_errors() as error:
            raise _write_failed(self.root, error) from None
        self._step = int(_to_float(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        import tensorflow as tf

        self._step += 1
        if self._step % self.every_n_steps or not logs:
            return
        values = {name: _to_float(logs[name]) for name in self.NAMES if name in logs}
        try:
            with self._writer.as_default(step=self._step):
                for name, value in values.items():
                    tf.summary.scalar(name, value)
        except _writer_errors() as error:
            self._abandon_writer()
            raise _write_failed(self.root, error) from None

    def _abandon_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except _writer_errors():
                pass  # the write already failed; the error says so

    def on_train_end(self, logs=None):
        if self._writer is None:
            return
        try:
            self._writer.flush()
            self._writer.close()
        except _writer_errors() as error:
            self._writer = None
            raise _write_failed(self.root, error) from None
        self._writer = None


class EpochScalars(keras.callbacks.Callback):
    """Per-epoch TensorBoard scalars under `log_dir/train`: `epoch_<name>` for every epoch
    log (`epoch_loss`, `epoch_grad_norm`, `epoch_learning_rate`, `epoch_test_loss`), at the
    0-based epoch, the tags `keras.callbacks.TensorBoard(update_freq="epoch")` writes.

    It reads only the host copies of the logs (Keras's own callback reads the model's
    variables, a collective operation under a multi-process JAX distribution). An epoch
    abandoned on a stop signal (`stop`) is not logged; a failed write raises
    `LogWriteError` naming `log_dir`.
    """

    def __init__(self, log_dir: str, stop: StopRequest | None = None):
        super().__init__()
        self.root = log_dir
        self.log_dir = os.path.join(log_dir, "train")
        self.stop = stop if stop is not None else StopRequest()
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        try:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        except _writer_errors() as error:
            raise _write_failed(self.root, error) from None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self.stop.epoch_abandoned(epoch):
            return
        values = {name: _to_float(value) for name, value in (logs or {}).items()}
        try:
            with self._writer.as_default(step=int(epoch)):
                for name, value in values.items():
                    tf.summary.scalar(f"epoch_{name}", value)
            self._writer.flush()
        except _writer_errors() as error:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except _writer_errors():
                pass  # the write already failed; the error says so
            raise _write_failed(self.root, error) from None

    def on_train_end(self, logs=None):
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except _writer_errors() as error:
                raise _write_failed(self.root, error) from None


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
    """After each epoch without a skipped step (and with a finite loss): checkpoint, then
    `state.json`, then retention.

    1. `checkpoint-epoch{E:04d}.weights.h5` (model + optimizer variables, incl. the
       iteration counter that drives the learning-rate schedule), written atomically;
    2. `state.json` (atomically): `completed_epochs`, the checkpoint's file name, the
       seed-generator states and the list of training sessions;
    3. retention: checkpoints that are neither among the newest `keep_last` nor on the
       published schedule (epoch % `every` == 0, the last epoch) are deleted.

    A crash in 1 or 2 leaves the previous checkpoint and state untouched; deletion only
    follows a complete write. An epoch with a skipped step or a non-finite loss, or one
    that a stop signal cut short (`stop`), is never checkpointed.
    """

    def __init__(self, output_dir: str, epochs: int, every: int = 20, keep_last: int = 2,
                 sessions: list | None = None, stop: StopRequest | None = None):
        super().__init__()
        self.output_dir = output_dir
        self.epochs = epochs
        self.every = every
        self.keep_last = keep_last
        self.sessions = list(sessions or [])
        self.stop = stop if stop is not None else StopRequest()

    def on_epoch_end(self, epoch, logs=None):
        if ((logs or {}).get("loss") is None or skipped_an_update(logs)
                or self.stop.epoch_abandoned(epoch)):
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
