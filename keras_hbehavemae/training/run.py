"""Pretraining runs: the published recipe with resumable, atomic checkpoints.

`run_pretraining(model_config, data, training, output_dir)` trains an `HBehaveMAE` on a
`PretrainingData` and leaves in `output_dir` (see `run_directory` for the file formats):
checkpoints and `state.json`, `run_config.json`, `metrics.jsonl`, TensorBoard logs (in
`log_dir`, default `output_dir/logs`), `final_metrics.json` and the trained model as a
preset folder `output_dir/preset/`.

**One writer.** A run holds an exclusive lock on `output_dir` (`files.locking`, the file
`run.lock` with the holder's PID, host and start time) from start to end. A second run on
the same folder stops at once with `FolderInUseError`, naming the folder and the holder.
The kernel drops the lock of a dead process, so a `kill -9` never blocks the rerun. Of the
processes of a multi-worker run, process 0 holds the lock and writes; the others write
nothing.

**Resume.** Rerunning the same call after a crash (even `kill -9`) resumes from the last
completed epoch: model and optimizer variables (moments and the step counter that drives
the learning-rate schedule) come from the checkpoint, the epoch counter and the mask RNG
state from `state.json`, and the (seeded) stream of training windows continues at the
batch the next step would have had, so a resumed run sees the windows, augmentations and
masks an uninterrupted one would.

**SIGTERM and Ctrl-C** stop the run at the next step boundary (`stopping`). The design:
the partial epoch is *abandoned*, not checkpointed. The last completed epoch's checkpoint
and `state.json` stay the run's consistent state (a checkpoint always holds whole epochs,
so `metrics.jsonl`, the schedule and the retention rule never see a fraction of one), and
`state.json` gets a record of the stop in its session list. If the signal arrives in an
epoch's last step, that epoch completes and is checkpointed first. `run_pretraining` then
raises `TrainingInterrupted` (exit status 143 for SIGTERM, 130 for Ctrl-C in the
command), and a rerun resumes from the last completed epoch: at most one epoch's steps
are repeated, as after `kill -9`. A second signal is not caught.

**Failed log writes.** A TensorBoard write that fails (a full disk) raises `LogWriteError`
(an `OSError` naming the log folder); the checkpoints written so far stay consistent.

The compiled path (`jit_compile`) is not part of the configuration a resume must match: a
run may resume with or without XLA. Under TensorFlow, XLA (the default, also on a CPU; see
`models.compilation`) draws other random masks from the same seed-generator state than
TensorFlow's own kernels (`--jit_compile false`) do, so switching it on resume, like the
shuffle, changes which masks the rest of the run sees; the model's numbers for a given mask
agree to rounding. JAX draws the same masks compiled or not; torch runs eagerly unless
`--jit_compile true` asks for `torch.compile`, whose random draws differ again.

Building blocks: `TrainingConfig`, `setup_distribution`, `initial.build_pretrainer`,
`training_run.build_training_run`, `training_run.restore_checkpoint`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time

import keras

from keras_hbehavemae.data.recipes import PretrainingData
from keras_hbehavemae.errors import invalid
from keras_hbehavemae.files.locking import FolderLock
from keras_hbehavemae.loading import check_weights_consent
from keras_hbehavemae.models import HBehaveMAEConfig
from keras_hbehavemae.training import run_directory
from keras_hbehavemae.training.callbacks import (
    EpochCheckpoint,
    EpochMetricsLog,
    EpochScalars,
    HeldOutLoss,
    NonFiniteLossError,
    NonFiniteLossGuard,
    StepScalars,
)
from keras_hbehavemae.training.cluster import ClusterSettings
from keras_hbehavemae.training.config import TrainingConfig
from keras_hbehavemae.training.distribution import (
    Distribution,
    check_same_devices,
    setup_distribution,
)
from keras_hbehavemae.training.initial import (
    INITIAL_PRESET_FOLDER,
    save_initial_preset,
)
from keras_hbehavemae.training.outputs import write_final_outputs
from keras_hbehavemae.training.stopping import (
    GracefulStop,
    StopRequest,
    TrainingInterrupted,
    signal_name,
)
from keras_hbehavemae.training.training_run import (
    TrainingRun,
    build_training_run,
    restore_checkpoint,
    schedule_summary,
)


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
            "processes": distribution.num_processes,
        },
    }


def _callbacks(run: TrainingRun, output_dir: str, log_dir: str, sessions: list, guard,
               stop: StopRequest, extra: list) -> list:
    training = run.training
    callbacks = [guard]
    test = run.test_dataset()
    if test is not None:
        callbacks.append(HeldOutLoss(test, training.test_every, stop))
    if not run.distribution.is_chief:  # only process 0 writes the run folder
        return callbacks + list(extra) + [GracefulStop(stop, run.steps_per_epoch)]
    callbacks += [
        EpochMetricsLog(output_dir, stop),
        StepScalars(log_dir, training.log_every_n_steps),
        EpochScalars(log_dir, stop),
        EpochCheckpoint(output_dir, training.epochs, training.checkpoint_every,
                        training.keep_last, sessions, stop),
    ]
    return callbacks + list(extra) + [GracefulStop(stop, run.steps_per_epoch)]


def _interrupted(stop: StopRequest, output_dir: str, steps_per_epoch: int,
                 sessions: list, trained: bool, write: bool = True) -> TrainingInterrupted:
    """Records the stop in `state.json` (when an epoch has completed and this process
    writes the run folder) and builds the error."""
    name = signal_name(stop.requested)
    if stop.abandoned is not None:
        epoch, steps = stop.abandoned
        where = (f"in epoch {epoch} after {steps} of {steps_per_epoch} steps; that partial "
                 "epoch was abandoned")
    elif not trained:
        where = "before training started"
    else:
        where = "at the end of an epoch"
    state = run_directory.read_state(output_dir)
    if state is None:
        kept = "no epoch had completed, so a rerun starts afresh"
    else:
        ended = dict(sessions[-1], stopped_by=name,
                     stopped=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     abandoned_epoch=None if stop.abandoned is None else stop.abandoned[0])
        if write:
            run_directory.write_state(output_dir,
                                      dict(state, sessions=sessions[:-1] + [ended]))
        kept = (f"{state['completed_epochs']} completed epochs are kept "
                f"({state['checkpoint']})")
    return TrainingInterrupted(stop.requested, (
        f"stopped by {name} {where}; --output_dir {output_dir!r}: {kept}. Rerun the same "
        "command to resume"))


def _say(verbose, message: str) -> None:
    if verbose:
        print(message, flush=True)


def run_pretraining(model_config: HBehaveMAEConfig, data: PretrainingData,
                    training: TrainingConfig, output_dir: str, *, log_dir: str | None = None,
                    preset: str | None = None, callbacks: list | tuple = (),
                    verbose: str | int = "auto", jit_compile: bool | str = "auto",
                    allow_random_weights: bool = False, save_initial: bool = False,
                    cluster: ClusterSettings | None = None) -> dict:
    """Trains (or resumes training) and writes the run directory; returns the final summary.

    Before training: `output_dir` and `log_dir` must be writable and hold room for two
    checkpoints; no other process may be running in `output_dir`; an existing
    `run_config.json` must match this configuration.

    Args:
        model_config: the model.
        data: training and held-out data.
        training: the training settings.
        output_dir: the run directory (created if needed).
        log_dir: TensorBoard folder (default `output_dir/logs`).
        preset: initial weights for a fresh run (ignored when resuming).
        callbacks: extra Keras callbacks, run after the built-in ones.
        verbose: `model.fit`'s verbosity ("auto": progress bar); 0 also silences messages.
        jit_compile: as in `build_training_run` ("auto": the fastest measured path).
        allow_random_weights: accept a `preset` without trained weights (training from
            scratch on its architecture).
        save_initial: also save the initial weights as the preset folder
            `output_dir/initial_preset/` (`save_initial_preset`), unless it exists.
        cluster: with `training.distribute="multi_worker"`, this process's place among the
            processes that train together (default: from the environment; see
            `training.cluster`). Every process makes the same call; process 0 writes the
            run folder (which all processes must see) and the others write nothing.

    Raises:
        ValueError: invalid settings, or `output_dir` holding a run with another
            configuration (the message names the differing keys).
        FolderInUseError: another process is running in `output_dir` (the message names
            it).
        OSError: an unwritable folder or too little disk space; `LogWriteError` when a
            TensorBoard write fails during training.
        NonFiniteLossError: the loss became NaN/inf; every checkpoint is kept.
        TrainingInterrupted: SIGTERM or Ctrl-C (see the module docstring).
        PeerLostError: another process of a multi-worker run stopped.
    """
    start = time.time()
    if save_initial and preset is not None:
        raise invalid("save_initial", True, "cannot be combined with --preset (the run starts "
                      "from the preset's weights, not from an initialisation)")
    if log_dir is None:
        log_dir = os.path.join(output_dir, "logs")
    elif not str(log_dir).strip():
        raise invalid("log_dir", log_dir, "must name a folder, or be None for "
                      "OUTPUT_DIR/logs")
    # Several processes meet first (under JAX before anything else uses JAX).
    distribution = setup_distribution(training.distribute, cluster)
    chief = distribution.is_chief  # the one writer of the run folder
    verbose = verbose if chief else 0
    if chief:
        run_directory.check_writable(output_dir, "--output_dir")
    lock = FolderLock(output_dir, flag="--output_dir") if chief else contextlib.nullcontext()
    with lock, StopRequest() as stop:
        if chief:
            run_directory.check_writable(log_dir, "--log_dir")
            run_directory.remove_partial_files(output_dir)
        if preset is not None and run_directory.read_state(output_dir) is None:
            check_weights_consent(preset, allow_random_weights, "--preset")  # before any file
        run_config = _run_config(model_config, data, training, distribution, preset,
                                 output_dir, log_dir)
        check_same_devices(run_directory.read_run_config(output_dir), distribution)
        run_directory.check_run_config(output_dir, run_config, write=chief)
        state = run_directory.read_state(output_dir)
        completed = 0 if state is None else state["completed_epochs"]
        with distribution.collective_failures():
            distribution.agree("the epochs completed in --output_dir", [completed],
                               "every process must see the same --output_dir (a folder on a "
                               "file system that all of them share)")
        initial = os.path.join(output_dir, INITIAL_PRESET_FOLDER)
        if save_initial and chief and not os.path.isdir(initial):
            save_initial_preset(model_config, training.seed, initial)
            _say(verbose, f"Saved the initial weights to {initial}.")
        run = build_training_run(model_config, data, training, distribution=distribution,
                                 preset=preset if state is None else None,
                                 jit_compile=jit_compile,
                                 allow_random_weights=allow_random_weights)
        if chief:
            run_directory.check_free_space(output_dir, 2 * run_directory.checkpoint_bytes(
                run.model.count_params()), "--output_dir")

        if state is not None:
            restore_checkpoint(run, output_dir, state)
            _say(verbose, f"Resuming {output_dir} from {state['checkpoint']}: {completed} of "
                          f"{training.epochs} epochs done.")
        if chief:
            run_directory.truncate_metrics(output_dir, completed)
        sessions = (state or {}).get("sessions", []) + [{
            "start_epoch": completed,
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "backend": keras.config.backend(),
            "replicas": distribution.num_replicas,
            "processes": distribution.num_processes,
        }]
        if completed < training.epochs:
            guard = NonFiniteLossGuard()
            trained = stop.requested is None
            if trained:
                with distribution.collective_failures():
                    run.model.fit(run.train_dataset(completed * run.steps_per_epoch),
                                  epochs=training.epochs, initial_epoch=completed,
                                  steps_per_epoch=run.steps_per_epoch, shuffle=False,
                                  verbose=verbose,
                                  callbacks=_callbacks(run, output_dir, log_dir, sessions,
                                                       guard, stop, list(callbacks)))
                    if stop.requested is None:
                        distribution.barrier()  # process 0 has written the last checkpoint
            stop.uninstall()  # the final outputs are written with the default handlers
            if guard.error is not None:
                last = run_directory.read_state(output_dir)
                kept = (f"the last good checkpoint is {last['checkpoint']} (epoch "
                        f"{last['completed_epochs'] - 1})" if last else "no epoch had completed")
                raise NonFiniteLossError(
                    f"{guard.error}. Every checkpoint in {output_dir} was kept; {kept}. Lower "
                    "the learning rate (--blr/--lr) or check the data for NaN/inf values.")
            state = run_directory.read_state(output_dir)
            if stop.requested is not None and (state is None
                                               or state["completed_epochs"] < training.epochs):
                raise _interrupted(stop, output_dir, run.steps_per_epoch, sessions,
                                   trained, write=chief)
        else:
            _say(verbose, f"{output_dir}: all {training.epochs} epochs were already done.")
        state = run_directory.read_state(output_dir)
        with distribution.collective_failures():
            summary = write_final_outputs(run, output_dir, state, time.time() - start,
                                          write=chief)
            distribution.barrier()  # every process returns once process 0 has written
    _say(verbose, f"Done: {output_dir} (train loss {summary['train_loss']:.4f}"
         + (f", test loss {summary['test_loss']:.4f}" if summary["test_loss"] is not None
            else "") + ").")
    return summary
