"""Faults during training (`keras_hbehavemae.training.run`, `callbacks`, `run_directory`,
`hbehavemae pretrain`): a run killed with SIGKILL and rerun, unwritable folders and full disks
(known before training, or hit while writing), crashes in the middle of checkpoint and state
writes, a resume under another configuration, damaged run files, non-finite losses and NaN
data. Nothing good on disk is ever replaced by something half-written, and a rerun resumes
with at most the interrupted epoch lost.
"""

import contextlib
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    REPOSITORY,
    SMALL,
    parse_pretrain_flags,
    pretrain_script,
    run_small_pretraining,
    small_data,
)
from helpers import small_training as training

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.data import write_synthetic_dataset
from keras_hbehavemae.data.recipes import PretrainingData
from keras_hbehavemae.files.locking import read_holder
from keras_hbehavemae.models.losses import masked_reconstruction_loss
from keras_hbehavemae.training import build_pretrainer, run_directory, run_pretraining
from keras_hbehavemae.training.callbacks import (
    EpochCheckpoint,
    NonFiniteLossError,
    NonFiniteLossGuard,
)
from keras_hbehavemae.training.optimizer import published_optimizer

CONFIG = HBehaveMAEConfig(**SMALL)


@pytest.fixture(scope="module")
def small_model():
    """A compiled `SMALL` pretrainer with its optimizer variables built."""
    model = build_pretrainer(CONFIG)
    model.compile(optimizer=published_optimizer(model, 1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


# ---------------------------------------------------------------- folders and disks (before)

def test_output_dir_below_a_file_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="--output_dir"):
        run_pretraining(CONFIG, small_data(), training(), str(blocker / "run"), verbose=0)


def test_log_dir_below_a_file_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="--log_dir"):
        run_pretraining(CONFIG, small_data(), training(), str(tmp_path / "run"),
                        log_dir=str(blocker / "logs"), verbose=0)
    assert not os.path.exists(tmp_path / "run" / "run_config.json")


def test_too_little_disk_space_fails_before_training(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(OSError, match="two checkpoints"):
        run_pretraining(CONFIG, small_data(), training(), str(tmp_path / "run"), verbose=0)
    assert run_directory.read_state(str(tmp_path / "run")) is None


def simulate_os_error(monkeypatch, code, message):
    """Makes the write probe of `run_directory.check_writable` fail with `OSError(code)`."""
    def fail(*args, **kwargs):
        raise OSError(code, message)

    monkeypatch.setattr(tempfile, "mkstemp", fail)


def test_read_only_output_dir_fails_before_training(tmp_path, monkeypatch):
    simulate_os_error(monkeypatch, errno.EACCES, "Permission denied")  # root ignores chmod
    with pytest.raises(OSError, match=r"--output_dir '.*run' is not a writable folder "
                                      r"\(Permission denied\); choose another --output_dir"):
        run_pretraining(CONFIG, small_data(), training(), str(tmp_path / "run"), verbose=0)
    assert not os.path.exists(tmp_path / "run" / "run_config.json")


def test_full_disk_fails_before_training(tmp_path, monkeypatch):
    simulate_os_error(monkeypatch, errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match=r"--output_dir '.*run' is not a writable folder "
                                      r"\(No space left on device\)"):
        run_pretraining(CONFIG, small_data(), training(), str(tmp_path / "run"), verbose=0)
    assert not os.path.exists(tmp_path / "run" / "run_config.json")


# ---------------------------------------------------------------- crashes while writing

def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path):
    path = str(tmp_path / "state.json")
    run_directory.write_json_atomically(path, {"completed_epochs": 1})
    with pytest.raises(TypeError, match="not JSON serializable"):
        run_directory.write_json_atomically(path, {"completed_epochs": object()})
    assert run_directory.read_json(path) == {"completed_epochs": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_crash_during_checkpoint_write_keeps_the_previous_checkpoint(small_model, tmp_path,
                                                                    monkeypatch):
    model = small_model
    callback = EpochCheckpoint(str(tmp_path), epochs=5)
    callback.set_model(model)
    callback.on_epoch_end(0, {"loss": 1.0})
    first = tmp_path / "checkpoint-epoch0000.weights.h5"
    good_bytes, good_state = first.read_bytes(), run_directory.read_state(str(tmp_path))

    def crash_midway(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:
            file.write(good_bytes[: len(good_bytes) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(type(model), "save_weights", crash_midway)
    with pytest.raises(OSError, match="simulated"):
        callback.on_epoch_end(1, {"loss": 1.0})
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-epoch0000.weights.h5", "state.json"]
    assert first.read_bytes() == good_bytes
    assert run_directory.read_state(str(tmp_path)) == good_state
    model.load_weights(str(first))  # the previous checkpoint is complete and still loads


def test_full_disk_while_writing_state_keeps_the_previous_state(small_model, tmp_path,
                                                                monkeypatch):
    """The checkpoint of epoch 1 is complete, then state.json cannot be written: the old
    state still names the epoch-0 checkpoint, which is intact, and nothing is deleted."""
    callback = EpochCheckpoint(str(tmp_path), epochs=5, keep_last=1)
    callback.set_model(small_model)
    callback.on_epoch_end(0, {"loss": 1.0})
    first = tmp_path / "checkpoint-epoch0000.weights.h5"
    good_bytes, good_state = first.read_bytes(), run_directory.read_state(str(tmp_path))

    def full_disk(temporary):
        with open(temporary, "w") as file:
            file.write('{"completed_epochs": 2, "checkpoint": "checkpo')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_directory, "write_json_atomically",
                        lambda path, content: run_directory.write_atomically(path, full_disk))
    with pytest.raises(OSError, match="No space left on device") as error:
        callback.on_epoch_end(1, {"loss": 1.0})
    monkeypatch.undo()
    assert error.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint-epoch0000.weights.h5", "checkpoint-epoch0001.weights.h5", "state.json"]
    assert run_directory.read_state(str(tmp_path)) == good_state
    assert first.read_bytes() == good_bytes
    small_model.load_weights(str(first))


def test_partial_files_of_a_killed_write_are_removed_on_resume(finished_run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(finished_run[0], output)
    partial = output / f"{run_directory.TEMPORARY_PREFIX}x1y2-checkpoint-epoch0004.weights.h5"
    partial.write_bytes(b"half a checkpoint")
    assert run_small_pretraining(output) == []  # every epoch was done: nothing reruns
    assert not partial.exists()


def test_metrics_line_cut_short_does_not_block_the_resume(finished_run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(finished_run[0], output)
    with open(output / "metrics.jsonl", "a") as file:
        file.write('{"epoch": 4, "train_lo')  # an append a full disk cut short
    assert run_small_pretraining(output) == []  # every epoch was done: nothing reruns
    lines = (output / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2, 3]  # torn line gone


def test_damaged_metrics_line_before_the_last_is_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{not json\n{"epoch": 1}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2 is not valid JSON"):
        run_directory.read_metrics(str(tmp_path))


# ---------------------------------------------------------------- resuming

def test_resuming_with_another_configuration_names_the_keys(tmp_path):
    base = {"model": CONFIG.to_dict(), "training": training().to_dict(), "schedule": {},
            "data": {"dataset": "arrays"}, "preset": None, "environment": {"backend": "x"}}
    run_directory.check_run_config(str(tmp_path), base)
    run_directory.check_run_config(str(tmp_path), {**base, "environment": {"backend": "y"}})
    changed = {**base, "model": CONFIG.replace(mask_ratio=0.5).to_dict(),
               "training": training(epochs=3).to_dict()}
    with pytest.raises(ValueError, match=r"model\.mask_ratio.*training\.epochs.*--output_dir"):
        run_directory.check_run_config(str(tmp_path), changed)


# ---------------------------------------------------------------- non-finite loss


def test_non_finite_loss_stops_with_an_error_and_keeps_every_checkpoint(poisoned_run,
                                                                      small_model):
    output = poisoned_run.output_dir  # NaN weights from epoch 2 on (see conftest.py)
    assert isinstance(poisoned_run.error, NonFiniteLossError)
    assert re.search(r"non-finite loss or gradient norm at epoch 2, step 0: the update was "
                     r"skipped and training stopped.*kept.*checkpoint-epoch0001",
                     str(poisoned_run.error))
    assert sorted(os.listdir(output)) == poisoned_run.files_before
    assert run_directory.checkpoint_epochs(output) == [0, 1]
    state = run_directory.read_state(output)
    assert state["completed_epochs"] == 2 and state["optimizer_iterations"] == 4
    assert [line["epoch"] for line in run_directory.read_metrics(output)][:2] == [0, 1]
    assert not os.path.exists(os.path.join(output, "final_metrics.json"))
    small_model.load_weights(os.path.join(output, state["checkpoint"]))  # complete, loadable


@pytest.mark.slow
def test_nan_in_the_training_data_stops_the_first_epoch(tmp_path):
    """NaN keypoints in a `tf.data` batch cannot be rejected ahead: the step is skipped and
    the guard stops at the first skipped step."""
    sequence = np.random.default_rng(0).normal(size=(60, 3, 24)).astype("float32")
    sequence[::7, 1, 5] = np.nan  # a few untracked values spread over every window
    data = PretrainingData("arrays", [sequence], None, num_frames=24, sliding_window=4)
    output = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss or gradient norm at epoch 0, "
                                                 r"step 0: the update was skipped and training "
                                                 r"stopped.*no epoch had completed.*"
                                                 r"check the data for NaN/inf values"):
        run_pretraining(CONFIG, data, training(), str(output), verbose=0)
    assert run_directory.read_state(str(output)) is None
    assert run_directory.checkpoint_epochs(str(output)) == []


# ---------------------------------------------------------------- a plain fit on NaN data


def windows_with_nan(bad_batches):
    """Four `SMALL` windows in batches of two; each batch in `bad_batches` holds one NaN."""
    windows = np.random.default_rng(1).normal(size=(4, 24, 3, 24)).astype("float32")
    for batch in bad_batches:
        windows[2 * batch + 1, 13, 2, 7] = np.nan
    return tf.data.Dataset.from_tensor_slices(windows).batch(2)


def weight_values(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


def optimizer_values(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]


def test_a_plain_fit_skips_a_step_on_nan_keypoints_and_counts_it():
    model = build_pretrainer(CONFIG)
    model.compile(optimizer=published_optimizer(model, 1e-3))
    model.optimizer.build(model.trainable_variables)
    weights, optimizer = weight_values(model), optimizer_values(model)
    every_batch_bad = model.fit(windows_with_nan([0, 1]), epochs=1, verbose=0).history
    assert every_batch_bad["skipped_steps"] == [2.0]
    assert np.isnan(every_batch_bad["loss"][0]), "no step was applied: no loss to report"
    for before, after in zip(weights, weight_values(model), strict=True):
        np.testing.assert_array_equal(after, before)  # skipped: the weights are untouched
    for before, after in zip(optimizer, optimizer_values(model), strict=True):
        np.testing.assert_array_equal(after, before)  # ... and so is the optimizer state
    one_batch_bad = model.fit(windows_with_nan([1]), epochs=1, verbose=0).history
    assert one_batch_bad["skipped_steps"] == [1.0]
    assert np.isfinite(one_batch_bad["loss"][0]) and np.isfinite(one_batch_bad["grad_norm"][0])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 1
    assert all(np.isfinite(value).all() for value in weight_values(model))
    assert any(not np.array_equal(before, after)
               for before, after in zip(weights, weight_values(model), strict=True))


def test_the_guard_stops_at_a_skipped_step_even_with_a_finite_mean_loss():
    guard = NonFiniteLossGuard()
    guard.set_model(keras.Sequential())
    guard.on_epoch_begin(3)
    guard.on_train_batch_end(0, {"loss": 0.5, "skipped_steps": 0.0})
    assert guard.error is None
    guard.on_train_batch_end(1, {"loss": 0.5, "skipped_steps": 1.0})
    assert guard.model.stop_training
    assert str(guard.error) == ("non-finite loss or gradient norm at epoch 3, step 1: the update "
                                "was skipped and training stopped")


def test_an_epoch_with_a_skipped_step_is_not_checkpointed(small_model, tmp_path):
    callback = EpochCheckpoint(str(tmp_path), epochs=5)
    callback.set_model(small_model)
    callback.on_epoch_end(0, {"loss": 0.5, "skipped_steps": 1.0})
    callback.on_epoch_end(1, {"loss": float("nan"), "skipped_steps": 0.0})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- hbehavemae pretrain

EPOCHS = 4
# A tiny hierarchical model, in the published space-separated flag forms.
TINY_FLAGS = ["--input_size", "24", "3", "24", "--patch_kernel=3,1,24", "--stages", "1", "1",
              "--q_strides=2,1,1", "--mask_unit_attn", "True", "False", "--init_embed_dim=8",
              "--out_embed_dims=8,16", "--decoder_embed_dim=8", "--norm_loss", "True",
              "--batch_size=4", "--steps_per_epoch=5", f"--epochs={EPOCHS}",
              "--warmup_epochs=1", "--lr=1e-3"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(directory, 4, 1, num_frames_per_sequence=300, seed=3)
    return str(directory)


def command(data_dir, output_dir):
    return [sys.executable, "-m", "keras_hbehavemae.cli.pretrain", "--dataset", "synthetic",
            f"--path_to_data_dir={data_dir}", f"--output_dir={output_dir}", *TINY_FLAGS]


def subprocess_environment(cache_dir):
    """The child's environment. Under JAX, unoptimised XLA code and a compilation cache shared
    by the two runs cut compile times (a test-speed measure only)."""
    return {**os.environ, "KERAS_BACKEND": keras.config.backend(),
            "XLA_FLAGS": "--xla_backend_optimization_level=0",
            "JAX_COMPILATION_CACHE_DIR": str(cache_dir),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2"}


def rerun(arguments, environment):
    """Runs the script again to the end: under JAX as a subprocess (which reuses the first
    run's compiled programs), elsewhere in this process (sparing an interpreter start)."""
    if keras.config.backend() == "jax":
        completed = subprocess.run(arguments, cwd=str(REPOSITORY), env=environment,
                                   capture_output=True, text=True, timeout=300)
        return completed.returncode, completed.stdout + completed.stderr
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = pretrain_script().run(parse_pretrain_flags(*arguments[2:]))
    return status, output.getvalue()


@pytest.fixture(scope="module")
def resumed_run(data_dir, tmp_path_factory):
    """Starts the script, SIGKILLs it once an epoch is checkpointed, reruns the same command."""
    output_dir = str(tmp_path_factory.mktemp("run") / "out")
    environment = subprocess_environment(tmp_path_factory.mktemp("jax_cache"))
    arguments = command(data_dir, output_dir)
    first = subprocess.Popen(arguments, cwd=str(REPOSITORY), env=environment,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    state = None
    while time.time() < deadline and first.poll() is None:
        state = run_directory.read_state(output_dir) if os.path.isdir(output_dir) else None
        if state is not None:
            break
        time.sleep(0.02)
    alive_at_kill = first.poll() is None
    os.kill(first.pid, signal.SIGKILL)
    _, first_errors = first.communicate(timeout=60)
    assert state is not None, f"no checkpoint before the kill:\n{first_errors[-3000:]}"
    stale_holder = read_holder(output_dir)  # the killed run's lock record stays behind
    status, output = rerun(arguments, environment)
    assert status == 0, output[-3000:]
    return {"output_dir": output_dir, "state_at_kill": state, "alive_at_kill": alive_at_kill,
            "second_output": output, "stale_holder": stale_holder, "first_pid": first.pid}


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_completed_epoch(resumed_run):
    output_dir, at_kill = resumed_run["output_dir"], resumed_run["state_at_kill"]
    assert resumed_run["alive_at_kill"], "the run finished before it could be killed"
    assert at_kill["completed_epochs"] >= 1
    assert "Resuming" in resumed_run["second_output"]
    # The killed run's lock record did not block the rerun (the kernel dropped its flock).
    assert resumed_run["stale_holder"]["pid"] == resumed_run["first_pid"]
    assert read_holder(output_dir) is None
    state = run_directory.read_state(output_dir)
    assert state["completed_epochs"] == EPOCHS
    sessions = state["sessions"]
    assert len(sessions) == 2 and sessions[0]["start_epoch"] == 0
    assert sessions[1]["start_epoch"] >= at_kill["completed_epochs"], "more than one epoch lost"
    # The step counter (and with it the learning-rate schedule) came back from the checkpoint.
    steps_per_epoch = json.load(open(os.path.join(output_dir, "run_config.json")))[
        "schedule"]["steps_per_epoch"]
    assert state["optimizer_iterations"] == EPOCHS * steps_per_epoch
    epochs = [line["epoch"] for line in run_directory.read_metrics(output_dir)]
    assert epochs == list(range(EPOCHS)), "each epoch is logged exactly once"


@pytest.mark.slow
def test_run_writes_checkpoints_logs_metrics_and_a_loadable_preset(resumed_run):
    # The killed and resumed run leaves what an uninterrupted run would.
    output_dir = resumed_run["output_dir"]
    # Retention: milestones 0 and the last epoch, plus the newest two.
    assert run_directory.checkpoint_epochs(output_dir) == [0, EPOCHS - 2, EPOCHS - 1]
    logs = os.path.join(output_dir, "logs")
    for folder in ("steps", "train"):
        assert any(name.startswith("events.out.tfevents")
                   for name in os.listdir(os.path.join(logs, folder))), folder
    lines = run_directory.read_metrics(output_dir)
    assert all(np.isfinite(line["train_loss"]) for line in lines)
    assert {"train_loss", "train_grad_norm", "train_learning_rate", "test_loss"} <= set(lines[0])
    final = json.load(open(os.path.join(output_dir, "final_metrics.json")))
    assert final["completed_epochs"] == EPOCHS
    assert np.isfinite(final["train_loss"]) and np.isfinite(final["test_loss"])
    preset = os.path.join(output_dir, "preset")
    assert {"config.json", "model.weights.h5", "metadata.json", "README.md", "task.json",
            "task.weights.h5"} <= set(os.listdir(preset))
    metadata = json.load(open(os.path.join(preset, "metadata.json")))
    assert metadata["backend"] == keras.config.backend()
    assert metadata["training"]["completed_epochs"] == EPOCHS
    # The preset holds the weights of the last checkpoint (and no optimizer state).
    with h5py.File(os.path.join(preset, "task.weights.h5")) as task, h5py.File(
            run_directory.checkpoint_path(output_dir, EPOCHS - 1)) as checkpoint:
        arrays = {}
        task.visititems(lambda name, item: arrays.setdefault(name, item[()])
                        if isinstance(item, h5py.Dataset) else None)
        assert arrays and not any(name.startswith("optimizer") for name in arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(value, checkpoint[name][()], err_msg=name)
    model = HBehaveMAE.from_preset(preset)
    assert model.config_object.input_size == (24, 3, 24)
    assert HBehaveMAEBackbone.from_preset(preset).count_params() < model.count_params()


@pytest.mark.slow
def test_resuming_with_other_flags_is_refused(resumed_run, data_dir, capsys):
    flag_values = parse_pretrain_flags(
        "--dataset=synthetic", f"--path_to_data_dir={data_dir}",
        f"--output_dir={resumed_run['output_dir']}", *TINY_FLAGS, "--mask_ratio=0.5")
    assert pretrain_script().run(flag_values) == 1
    message = capsys.readouterr().err
    assert "model.mask_ratio: saved 0.75, now 0.5" in message and "--output_dir" in message


# ---------------------------------------------------------------- flags, in process


@pytest.mark.parametrize("argv, message", [
    (["--num_frames=10"], "num_frames: 10 is invalid: it must equal input_size[0] = 24"),
    (["--patch_kernel=5,1,24"], "patch_kernel"),
    (["--mask_ratio=0.99"], "mask_ratio"),
    (["--synthetic_sequences=0,8"], "synthetic_sequences: ['0', '8'] is invalid"),
    (["--synthetic_sequences=32"], "give two positive counts, training and test"),
    (["--synthetic_sequences=a,b"], "synthetic_sequences: ['a', 'b'] is invalid"),
])
def test_invalid_settings_print_the_error_and_fail(tmp_path, data_dir, capsys, argv, message):
    flag_values = parse_pretrain_flags("--dataset=synthetic", f"--path_to_data_dir={data_dir}",
                                       f"--output_dir={tmp_path / 'out'}", *TINY_FLAGS, *argv)
    assert pretrain_script().run(flag_values) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and "Traceback" not in error
    assert not os.path.exists(tmp_path / "out" / "run_config.json")


def test_keypoints_dataset_needs_the_architecture(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    flag_values = parse_pretrain_flags("--dataset=keypoints",
                                       f"--path_to_data_dir={tmp_path / 'data'}",
                                       f"--output_dir={tmp_path / 'out'}")
    assert pretrain_script().run(flag_values) == 1
    assert "--input_size" in capsys.readouterr().err


def test_an_output_dir_inside_the_data_folder_is_refused(tmp_path, capsys):
    flag_values = parse_pretrain_flags("--dataset=keypoints", f"--path_to_data_dir={tmp_path}",
                                       f"--output_dir={tmp_path / 'out'}")
    assert pretrain_script().run(flag_values) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: --output_dir '{tmp_path / 'out'}': overlaps the input "
                            f"--path_to_data_dir '{tmp_path}'; input folders and files are "
                            "only read")
    assert not (tmp_path / "out").exists()
# ---------------------------------------------------------------- no `value or default`


def test_clip_grad_zero_is_no_clipping_and_said_so():
    # The flag's documented 0 becomes None explicitly; TrainingConfig refuses a disguised 0.
    script = pretrain_script()
    assert script.training_config(parse_pretrain_flags("--clip_grad=0")).clip_grad is None
    assert script.training_config(parse_pretrain_flags("--clip_grad=0.5")).clip_grad == 0.5
    with pytest.raises(ValueError, match=r"^clip_grad: -1.0 is invalid"):
        script.training_config(parse_pretrain_flags("--clip_grad=-1"))


def test_an_empty_data_folder_flag_is_refused_not_replaced(tmp_path, capsys):
    # `--path_to_data_dir=` used to fall back to OUTPUT_DIR/data (`path or default`).
    flag_values = parse_pretrain_flags("--dataset=synthetic", "--path_to_data_dir=",
                                       f"--output_dir={tmp_path / 'out'}", *TINY_FLAGS)
    assert pretrain_script().run(flag_values) == 1
    assert "--path_to_data_dir: '' is invalid: must name a file or folder" in (
        capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "out")


def test_an_empty_log_dir_is_refused_not_replaced(tmp_path):
    with pytest.raises(ValueError, match=r"^log_dir: '' is invalid: must name a folder"):
        run_pretraining(CONFIG, small_data(), training(), str(tmp_path / "run"), log_dir="",
                        verbose=0)
    assert not os.path.exists(tmp_path / "run" / "run_config.json")


@pytest.mark.parametrize("stride", [0, -17])
def test_a_sliding_window_of_zero_is_refused_not_replaced(stride):
    # `sliding_window=0` used to become the published 17.
    data = PretrainingData("arrays", small_data().train, None, num_frames=24,
                           sliding_window=stride)
    with pytest.raises(ValueError, match=rf"^sliding_window must be a positive integer, got "
                                         rf"{stride}"):
        data.steps_per_epoch(2)


def test_a_nan_in_a_discarded_untargeted_frame_still_skips_the_step():
    """The masked pass embeds only the kept units, so a NaN in a masked unit's frame that
    the loss does not target reaches neither the loss nor the gradients; the train step
    tests the keypoints themselves and skips that batch all the same."""
    model = build_pretrainer(CONFIG)
    model.compile(optimizer=published_optimizer(model, 1e-3))
    model.optimizer.build(model.trainable_variables)
    geometry = model.geometry
    windows = np.random.default_rng(1).normal(size=(2, 24, 3, 24)).astype("float32")
    mask = np.zeros((2, geometry.num_mask_units), bool)
    mask[:, :geometry.num_kept_units] = True
    # A frame whose NaN leaves the bare reconstruction loss finite under this mask.
    for frame in range(windows.shape[1]):
        poisoned = windows.copy()
        poisoned[1, frame] = np.nan
        outputs = model.checked_forward(poisoned, mask, training=False)
        bare_loss = masked_reconstruction_loss(outputs["pred"], model.targets(poisoned),
                                               outputs["mask"])
        if np.isfinite(float(keras.ops.convert_to_numpy(bare_loss))):
            break
    else:
        pytest.fail("every frame's NaN reaches the loss under this mask")
    weights = weight_values(model)
    batch = tf.data.Dataset.from_tensor_slices({"keypoints": poisoned, "mask": mask}).batch(2)
    history = model.fit(batch, epochs=1, verbose=0).history
    assert history["skipped_steps"] == [1.0]
    for before, after in zip(weights, weight_values(model), strict=True):
        np.testing.assert_array_equal(after, before)
    # ... and evaluating that batch reports a NaN loss, not a normal one.
    assert np.isnan(model.evaluate(batch, verbose=0, return_dict=True)["loss"])
