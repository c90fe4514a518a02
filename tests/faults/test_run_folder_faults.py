"""Faults around a run folder: two writers, a polite stop, a full disk under TensorBoard,
and synthetic data aimed at a folder of the user's own files.

- One writer: `files.locking.FolderLock` refuses a second holder and names the first; a
  stale record (the holder died, e.g. `kill -9`) does not block.
- SIGTERM: in process (a callback sends the signal at a chosen step) and through a real
  `hbehavemae pretrain` subprocess, which also meets a second, concurrent run on its folder.
- A TensorBoard write that fails with "No space left on device" (a monkeypatched writer).
- `--path_to_data_dir` holding the user's own files: refused, nothing written.
"""

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import (
    REPOSITORY,
    SMALL,
    parse_pretrain_flags,
    pretrain_script,
    run_small_pretraining,
    small_data,
)
from helpers import small_training as training

from keras_hbehavemae import HBehaveMAEConfig
from keras_hbehavemae.data import write_synthetic_dataset
from keras_hbehavemae.data.recipes import ensure_synthetic_dataset
from keras_hbehavemae.files.atomic import TEMPORARY_PREFIX
from keras_hbehavemae.files.locking import LOCK_FILE, FolderInUseError, FolderLock, read_holder
from keras_hbehavemae.training import (
    LogWriteError,
    TrainingInterrupted,
    run_directory,
    run_pretraining,
)
from keras_hbehavemae.training.stopping import GracefulStop, StopRequest

CONFIG = HBehaveMAEConfig(**SMALL)


def tree_digest(folder) -> dict[str, str]:
    """Relative path -> sha256 of every file below `folder` (folders as `<dir>`)."""
    folder = pathlib.Path(folder)
    digest = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        digest[key] = ("<dir>" if path.is_dir() else
                       hashlib.sha256(path.read_bytes()).hexdigest())
    return digest


# ---------------------------------------------------------------- one writer: the lock


@pytest.fixture
def foreign_holder(tmp_path):
    """`tmp_path/run` locked through another open file, as another process would hold it,
    with that process's record."""
    folder = tmp_path / "run"
    folder.mkdir()
    record = {"pid": 4242, "host": "node-7", "started": "2026-01-02T03:04:05+00:00",
              "command": "hbehavemae pretrain --output_dir run"}
    (folder / LOCK_FILE).write_text(json.dumps(record))
    with open(folder / LOCK_FILE) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield folder
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)


def test_a_second_holder_is_refused_with_the_folder_and_the_holder(foreign_holder):
    with pytest.raises(FolderInUseError, match=(
            r"--output_dir '.*run': this run folder is in use by process 4242 on host "
            r"'node-7' \(started 2026-01-02T03:04:05\+00:00; command: hbehavemae pretrain "
            r"--output_dir run\); one run writes to a folder at a time")):
        FolderLock(foreign_holder).acquire()
    assert read_holder(foreign_holder)["pid"] == 4242  # the holder's record is untouched


def test_run_pretraining_on_a_held_folder_stops_before_writing(foreign_holder):
    before = tree_digest(foreign_holder)
    with pytest.raises(FolderInUseError, match="process 4242"):
        run_pretraining(CONFIG, small_data(), training(), str(foreign_holder), verbose=0)
    assert tree_digest(foreign_holder) == before


def test_a_stale_record_does_not_block_and_is_overwritten(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 4242, "host": "gone"}))  # no flock
    with FolderLock(tmp_path) as lock:
        assert read_holder(tmp_path)["pid"] == os.getpid()
        with FolderLock(tmp_path):  # re-entrant in one process
            pass
        assert read_holder(tmp_path)["pid"] == os.getpid(), "the inner release kept the lock"
        lock.release()
    assert read_holder(tmp_path) is None  # released: the record is emptied


def test_a_lock_below_a_file_names_the_flag(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError, match=r"--output_dir '.*a_file/run' is not a writable folder"):
        FolderLock(tmp_path / "a_file" / "run").acquire()


# ---------------------------------------------------------------- SIGTERM, in process


class SendSignal(keras.callbacks.Callback):
    """Sends `signal_number` to this process when step `batch` of `epoch` begins."""

    def __init__(self, epoch, batch, signal_number=signal.SIGTERM):
        super().__init__()
        self.at, self.signal_number, self._epoch = (epoch, batch), signal_number, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self._epoch, batch) == self.at:
            os.kill(os.getpid(), self.signal_number)


def assert_consistent(output_dir, completed):
    """state.json names an existing, loadable checkpoint of `completed` epochs; the metrics
    hold exactly those epochs; nothing half-written is left; the lock is released."""
    state = run_directory.read_state(output_dir)
    assert state["completed_epochs"] == completed
    assert state["checkpoint"] == f"checkpoint-epoch{completed - 1:04d}.weights.h5"
    assert os.path.isfile(os.path.join(output_dir, state["checkpoint"]))
    assert [line["epoch"] for line in run_directory.read_metrics(output_dir)] == list(
        range(completed))
    assert not [name for name in os.listdir(output_dir) if name.startswith(TEMPORARY_PREFIX)]
    assert read_holder(output_dir) is None
    return state


@pytest.mark.slow
def test_sigterm_abandons_the_partial_epoch_and_the_run_resumes(tmp_path):
    output_dir = str(tmp_path / "run")
    previous = signal.getsignal(signal.SIGTERM)
    # Epoch 1 of 2-step epochs: the signal arrives in its first step.
    with pytest.raises(TrainingInterrupted) as stopped:
        run_small_pretraining(output_dir, callbacks=[SendSignal(1, 0)])
    assert stopped.value.exit_status == 143
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("stopped by SIGTERM in epoch 1 after 1 of 2 steps; that partial "
                              "epoch was abandoned; --output_dir")
    assert "1 completed epochs are kept (checkpoint-epoch0000.weights.h5). Rerun" in message
    state = assert_consistent(output_dir, 1)
    assert state["sessions"][-1]["stopped_by"] == "SIGTERM"
    assert state["sessions"][-1]["abandoned_epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) is previous, "the handler was not put back"
    assert not os.path.exists(os.path.join(output_dir, "final_metrics.json"))

    run_small_pretraining(output_dir)  # the same call again: resumes to the end
    state = run_directory.read_state(output_dir)
    assert state["completed_epochs"] == 4 and state["optimizer_iterations"] == 4 * 2
    assert [session["start_epoch"] for session in state["sessions"]] == [0, 1]
    assert [line["epoch"] for line in run_directory.read_metrics(output_dir)] == [0, 1, 2, 3]
    assert os.path.isdir(os.path.join(output_dir, "preset"))


class FakeModel:
    stop_training = False


@pytest.mark.parametrize("step, abandoned", [(0, (3, 1)), (1, None)])
def test_a_signal_in_the_last_step_lets_the_epoch_finish(step, abandoned):
    """With 2 steps per epoch: a signal in step 0 abandons epoch 3 after 1 step; one in
    step 1 (the last) lets the epoch end and be checkpointed, and stops after it."""
    stop = StopRequest()
    callback = GracefulStop(stop, steps_per_epoch=2)
    callback.set_model(FakeModel())
    callback.on_epoch_begin(3)
    stop.requested = signal.SIGTERM
    callback.on_train_batch_end(step)
    assert stop.abandoned == abandoned and stop.epoch_abandoned(3) == (step == 0)
    assert callback.model.stop_training == (step == 0)
    callback.on_epoch_end(3)
    assert callback.model.stop_training


def test_the_stop_handler_records_the_signal_and_steps_aside():
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is previous  # a second SIGTERM is not caught
    assert signal.getsignal(signal.SIGTERM) is previous


# ---------------------------------------------------------------- a full disk under TensorBoard


EPOCHS = 3
TINY_FLAGS = ["--input_size", "24", "3", "24", "--patch_kernel=3,1,24", "--stages", "1", "1",
              "--q_strides=2,1,1", "--mask_unit_attn", "True", "False", "--init_embed_dim=8",
              "--out_embed_dims=8,16", "--decoder_embed_dim=8", "--norm_loss", "True",
              "--batch_size=4", "--warmup_epochs=1", "--lr=1e-3"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(directory, 4, 1, num_frames_per_sequence=300, seed=3)
    return str(directory)


@pytest.mark.slow
def test_full_disk_while_writing_tensorboard_logs_is_one_line(tmp_path, data_dir, monkeypatch,
                                                             capsys):
    import tensorflow as tf

    output_dir = tmp_path / "run"
    real_scalar = tf.summary.scalar

    def scalar_until_the_disk_is_full(name, data, *args, **kwargs):
        if run_directory.read_state(str(output_dir)) is not None:  # full after epoch 0
            raise tf.errors.ResourceExhaustedError(
                None, None, "{{function_node __wrapped__WriteScalarSummary}} "
                f"{output_dir}/logs/steps/events.out.tfevents; No space left on device\n"
                "\tFailed to flush 1 events")
        return real_scalar(name, data, *args, **kwargs)

    monkeypatch.setattr(tf.summary, "scalar", scalar_until_the_disk_is_full)
    flag_values = parse_pretrain_flags(
        "--dataset=synthetic", f"--path_to_data_dir={data_dir}", f"--output_dir={output_dir}",
        *TINY_FLAGS, "--steps_per_epoch=2", "--epochs=3")
    with contextlib.redirect_stdout(io.StringIO()):
        assert pretrain_script().run(flag_values) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error
    assert error.startswith(f"error: --log_dir '{output_dir / 'logs'}': cannot write the "
                            "TensorBoard logs (No space left on device); training stopped")
    assert_consistent(str(output_dir), 1)  # epoch 0 was checkpointed before the failure

    monkeypatch.setattr(tf.summary, "scalar", real_scalar)  # space freed: the rerun resumes
    with contextlib.redirect_stdout(io.StringIO()):
        assert pretrain_script().run(flag_values) == 0
    assert run_directory.read_state(str(output_dir))["completed_epochs"] == 3


def test_log_write_error_is_an_os_error():
    assert issubclass(LogWriteError, OSError)


# ---------------------------------------------------------------- SIGTERM and a second run, CLI


def pretrain_command(data_dir, output_dir, *extra):
    return [sys.executable, "-m", "keras_hbehavemae.cli.pretrain", "--dataset", "synthetic",
            f"--path_to_data_dir={data_dir}", f"--output_dir={output_dir}", *TINY_FLAGS,
            *extra]


def rerun(arguments, environment) -> int:
    """The same command again: under JAX as a subprocess (an in-process JAX compile is
    slower than a fresh interpreter), elsewhere in this process."""
    if keras.config.backend() == "jax":
        return subprocess.run(arguments, cwd=str(REPOSITORY), env=environment,
                              capture_output=True, timeout=300).returncode
    with contextlib.redirect_stdout(io.StringIO()):
        return pretrain_script().run(parse_pretrain_flags(*arguments[3:]))


def wait_for(condition, process, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def stopped_run(data_dir, tmp_path_factory):
    """A real `hbehavemae pretrain`: a second run on its folder while it runs, then SIGTERM
    once an epoch is checkpointed, then the same command again."""
    output_dir = str(tmp_path_factory.mktemp("stopped") / "out")
    environment = {**os.environ, "KERAS_BACKEND": keras.config.backend(),
                   "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    arguments = pretrain_command(data_dir, output_dir, "--steps_per_epoch=40",
                                 "--sliding_window=2", f"--epochs={EPOCHS}")
    first = subprocess.Popen(arguments, cwd=str(REPOSITORY), env=environment,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        holds = wait_for(lambda: (read_holder(output_dir) or {}).get("pid") == first.pid, first)
        assert holds, f"the first run never took the lock:\n{first.stderr.read()[-3000:]}"
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock while the second run tries
        before = tree_digest(output_dir)
        second = subprocess.run(arguments, cwd=str(REPOSITORY), env=environment,
                                capture_output=True, text=True, timeout=300)
        after = tree_digest(output_dir)
        os.kill(first.pid, signal.SIGCONT)
        state_seen = wait_for(lambda: run_directory.read_state(output_dir) is not None, first)
        alive = first.poll() is None
        first.send_signal(signal.SIGTERM)
        _, first_errors = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert state_seen, first_errors[-3000:]
    stopped_state = run_directory.read_state(output_dir)
    files_when_stopped = sorted(os.listdir(output_dir))
    status = rerun(arguments, environment)
    return dict(output_dir=output_dir, first_pid=first.pid, second=second, alive=alive,
                unchanged_by_second=before == after, first_status=first.returncode,
                first_errors=first_errors, stopped_state=stopped_state,
                files_when_stopped=files_when_stopped, rerun_status=status)


@pytest.mark.slow
def test_a_second_run_on_the_folder_exits_naming_the_holder(stopped_run):
    second = stopped_run["second"]
    assert second.returncode == 1, second.stderr[-3000:]
    error = second.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: --output_dir '{stopped_run['output_dir']}': this run "
                            f"folder is in use by process {stopped_run['first_pid']} on host")
    assert "Traceback" not in second.stderr
    assert stopped_run["unchanged_by_second"], "the refused run changed the folder"


@pytest.mark.slow
def test_sigterm_stops_the_command_cleanly_and_it_resumes(stopped_run):
    assert stopped_run["alive"], "the run finished before SIGTERM could be sent"
    assert stopped_run["first_status"] == 143, stopped_run["first_errors"][-3000:]
    last_line = stopped_run["first_errors"].strip().splitlines()[-1]
    assert last_line.startswith("stopped by SIGTERM "), stopped_run["first_errors"][-3000:]
    assert "Rerun the same command to resume" in last_line
    assert "Traceback" not in stopped_run["first_errors"]
    state = stopped_run["stopped_state"]
    completed = state["completed_epochs"]
    assert 1 <= completed < EPOCHS
    assert f"{completed} completed epochs are kept ({state['checkpoint']})" in last_line
    assert state["checkpoint"] in stopped_run["files_when_stopped"]
    assert state["sessions"][-1]["stopped_by"] == "SIGTERM"
    assert not [name for name in stopped_run["files_when_stopped"]
                if name.startswith(TEMPORARY_PREFIX)]
    assert "final_metrics.json" not in stopped_run["files_when_stopped"]
    # The rerun resumed from the kept epoch and finished.
    assert stopped_run["rerun_status"] == 0
    output_dir = stopped_run["output_dir"]
    final = run_directory.read_state(output_dir)
    assert final["completed_epochs"] == EPOCHS
    assert final["sessions"][1]["start_epoch"] == completed
    assert [line["epoch"] for line in run_directory.read_metrics(output_dir)] == list(
        range(EPOCHS))
    assert os.path.isfile(os.path.join(output_dir, "final_metrics.json"))


# ---------------------------------------------------------------- the user's data folder


def test_synthetic_data_is_not_written_into_a_folder_of_the_users_files(tmp_path, capsys):
    folder = tmp_path / "my_data"
    folder.mkdir()
    mine = np.arange(12, dtype="float32").reshape(2, 3, 2)
    np.save(folder / "train.npy", mine)  # the user's own train.npy, no test.npy
    before = tree_digest(folder)
    flag_values = parse_pretrain_flags("--dataset=synthetic", f"--path_to_data_dir={folder}",
                                       f"--output_dir={tmp_path / 'out'}", *TINY_FLAGS)
    assert pretrain_script().run(flag_values) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: --path_to_data_dir '{folder}': the folder holds train.npy "
                            "but not both train.npy and test.npy of the synthetic dataset; "
                            "synthetic data is generated only into a new or empty folder, and "
                            "nothing was written")
    assert tree_digest(folder) == before


def test_synthetic_data_goes_into_a_new_or_empty_folder_only(tmp_path):
    paths = ensure_synthetic_dataset(str(tmp_path / "new"), num_train_sequences=1,
                                     num_test_sequences=1, num_frames_per_sequence=60)
    assert sorted(os.listdir(tmp_path / "new")) == ["test.npy", "train.npy"]
    before = tree_digest(tmp_path / "new")
    assert ensure_synthetic_dataset(str(tmp_path / "new")) == paths  # used as it is
    assert tree_digest(tmp_path / "new") == before
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / f"{TEMPORARY_PREFIX}left-by-a-kill").write_text("")
    ensure_synthetic_dataset(str(tmp_path / "empty"), num_train_sequences=1,
                             num_test_sequences=1, num_frames_per_sequence=60)
    assert {"train.npy", "test.npy"} <= set(os.listdir(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"'.*notes.txt': is a file, not a folder"):
        ensure_synthetic_dataset(str(tmp_path / "notes.txt"))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_write_synthetic_dataset_never_replaces_a_file(tmp_path):
    np.save(tmp_path / "test.npy", np.zeros(3))
    before = tree_digest(tmp_path)
    with pytest.raises(FileExistsError, match=r"test.npy: already exists; synthetic data is "
                                              "never written over a file"):
        write_synthetic_dataset(tmp_path, 1, 1, num_frames_per_sequence=60)
    assert tree_digest(tmp_path) == before  # train.npy was not written either


def test_a_name_taken_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    from keras_hbehavemae.files import atomic

    real_link = os.link

    def link_racing_another_writer(source, target):
        if target.endswith("test.npy"):
            pathlib.Path(target).write_text("another writer was faster")
        return real_link(source, target)

    monkeypatch.setattr(atomic.os, "link", link_racing_another_writer)
    with pytest.raises(FileExistsError, match="test.npy: already exists"):
        write_synthetic_dataset(tmp_path, 1, 1, num_frames_per_sequence=60)
    assert sorted(os.listdir(tmp_path)) == ["test.npy"]  # train.npy withdrawn, no temporaries
    assert (tmp_path / "test.npy").read_text() == "another writer was faster"
