"""A polite stop: SIGTERM (or Ctrl-C) ends a run at a consistent point.

`StopRequest` installs handlers for SIGTERM and SIGINT while a run trains (in the main
thread only; elsewhere the default behaviour stays). A signal only records the request,
and puts the previous handlers back, so a second signal acts as it normally would
(SIGTERM kills the process, Ctrl-C raises `KeyboardInterrupt`). The `GracefulStop`
callback acts on the request at the next step boundary:

- the step that is running finishes (a step cannot be cut short);
- if it was not the last step of its epoch, that partial epoch is **abandoned**: nothing
  of it is checkpointed or logged to `metrics.jsonl` or the epoch curves in TensorBoard
  (the per-step TensorBoard scalars of its steps stay; a resumed run writes them again
  at the same steps);
- if it was the last step, the epoch completes as usual (held-out loss excepted, to
  stop quickly), is checkpointed, and training stops after it.

`run_pretraining` then records the stop in `state.json` (when an epoch has completed)
and raises `TrainingInterrupted`, whose `exit_status` is 128 + the signal number (143
for SIGTERM, 130 for SIGINT), the status a shell reports for a process ended by that
signal. A rerun resumes from the last completed epoch, exactly as after `kill -9`.

Example:

>>> stop = StopRequest()
>>> stop.requested is None, stop.epoch_abandoned(0)
(True, False)
>>> TrainingInterrupted(15, "stopped").exit_status
143
"""

from __future__ import annotations

import signal
import threading

import keras

#: The signals that stop a run politely.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal; `exit_status` is 128 + the signal number."""

    def __init__(self, signal_number: int, message: str):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_status = 128 + int(signal_number)


def signal_name(signal_number: int) -> str:
    try:
        return signal.Signals(signal_number).name
    except ValueError:
        return f"signal {signal_number}"


class StopRequest:
    """Records a stop signal while installed (a context manager).

    Attributes:
        requested: the signal number received, or None.
        abandoned: `(epoch, steps_done)` of the partial epoch that was abandoned, or None.
    """

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.requested: int | None = None
        self.abandoned: tuple[int, int] | None = None
        self._previous: dict = {}

    def _handle(self, signal_number, frame) -> None:
        if self.requested is None:
            self.requested = signal_number
        self.uninstall()  # a second signal acts as it normally would

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def uninstall(self) -> None:
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler)

    def epoch_abandoned(self, epoch: int) -> bool:
        """True if `epoch` was cut short by the request (it is then neither logged nor
        checkpointed)."""
        return self.abandoned is not None and self.abandoned[0] == epoch

    def __enter__(self) -> StopRequest:
        return self.install()

    def __exit__(self, *exc_info) -> None:
        self.uninstall()


class GracefulStop(keras.callbacks.Callback):
    """Stops `fit` at the first step boundary after a `StopRequest` (see the module).

    Put it last among the callbacks, so that a completed epoch is checkpointed before
    training stops.
    """

    def __init__(self, stop: StopRequest, steps_per_epoch: int):
        super().__init__()
        self.stop = stop
        self.steps_per_epoch = int(steps_per_epoch)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.stop.requested is None or self.stop.abandoned is not None:
            return
        if batch + 1 < self.steps_per_epoch:
            self.stop.abandoned = (self._epoch, batch + 1)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.stop.requested is not None:
            self.model.stop_training = True
