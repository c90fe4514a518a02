"""`scripts/pretrain.py`: a tiny run killed with SIGKILL and resumed, its outputs, and flag
handling (in process), on the current backend."""

import contextlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
from absl import flags

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, run_directory
from keras_hbehavemae.data import write_synthetic_dataset

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPOSITORY, "scripts", "pretrain.py")
EPOCHS = 4
# A tiny hierarchical model, in the published space-separated flag forms.
TINY_FLAGS = ["--input_size", "24", "3", "24", "--patch_kernel=3,1,24", "--stages", "1", "1",
              "--q_strides=2,1,1", "--mask_unit_attn", "True", "False", "--init_embed_dim=8",
              "--out_embed_dims=8,16", "--decoder_embed_dim=8", "--norm_loss", "True",
              "--batch_size=4", "--steps_per_epoch=5", f"--epochs={EPOCHS}",
              "--warmup_epochs=1", "--lr=1e-3"]


def load_script():
    spec = importlib.util.spec_from_file_location("pretrain_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULE = load_script()


def parse(*argv):
    flag_values = flags.FlagValues()
    SCRIPT_MODULE.define_flags(flag_values)
    flag_values(["pretrain.py", *SCRIPT_MODULE.join_multi_value_flags(list(argv))])
    return flag_values


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(directory, 4, 1, num_frames_per_sequence=300, seed=3)
    return str(directory)


def command(data_dir, output_dir):
    return [sys.executable, SCRIPT, "--dataset", "synthetic", f"--path_to_data_dir={data_dir}",
            f"--output_dir={output_dir}", *TINY_FLAGS]


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
        completed = subprocess.run(arguments, cwd=REPOSITORY, env=environment,
                                   capture_output=True, text=True, timeout=300)
        return completed.returncode, completed.stdout + completed.stderr
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = SCRIPT_MODULE.run(parse(*arguments[2:]))
    return status, output.getvalue()


@pytest.fixture(scope="module")
def resumed_run(data_dir, tmp_path_factory):
    """Starts the script, SIGKILLs it once an epoch is checkpointed, reruns the same command."""
    output_dir = str(tmp_path_factory.mktemp("run") / "out")
    environment = subprocess_environment(tmp_path_factory.mktemp("jax_cache"))
    arguments = command(data_dir, output_dir)
    first = subprocess.Popen(arguments, cwd=REPOSITORY, env=environment,
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
    status, output = rerun(arguments, environment)
    assert status == 0, output[-3000:]
    return {"output_dir": output_dir, "state_at_kill": state, "alive_at_kill": alive_at_kill,
            "second_output": output}


def test_killed_run_resumes_from_the_last_completed_epoch(resumed_run):
    output_dir, at_kill = resumed_run["output_dir"], resumed_run["state_at_kill"]
    assert resumed_run["alive_at_kill"], "the run finished before it could be killed"
    assert at_kill["completed_epochs"] >= 1
    assert "Resuming" in resumed_run["second_output"]
    state = run_directory.read_state(output_dir)
    assert state["completed_epochs"] == EPOCHS
    sessions = state["sessions"]
    assert len(sessions) == 2 and sessions[0]["start_epoch"] == 0
    assert sessions[1]["start_epoch"] >= 1
    # The step counter (and with it the learning-rate schedule) came back from the checkpoint.
    steps_per_epoch = json.load(open(os.path.join(output_dir, "run_config.json")))[
        "schedule"]["steps_per_epoch"]
    assert state["optimizer_iterations"] == EPOCHS * steps_per_epoch
    epochs = [line["epoch"] for line in run_directory.read_metrics(output_dir)]
    assert epochs == list(range(EPOCHS)), "each epoch is logged exactly once"


def test_run_writes_checkpoints_logs_metrics_and_a_loadable_preset(resumed_run):
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


def test_resuming_with_other_flags_is_refused(resumed_run, data_dir, capsys):
    flag_values = parse("--dataset=synthetic", f"--path_to_data_dir={data_dir}",
                        f"--output_dir={resumed_run['output_dir']}", *TINY_FLAGS,
                        "--mask_ratio=0.5")
    assert SCRIPT_MODULE.run(flag_values) == 1
    message = capsys.readouterr().err
    assert "model.mask_ratio: saved 0.75, now 0.5" in message and "--output_dir" in message


# ---------------------------------------------------------------- flags, in process


def test_published_multi_value_forms_are_joined():
    join = SCRIPT_MODULE.join_multi_value_flags
    assert join(["--input_size", "400", "1", "72", "--stages=2,3,4"]) == [
        "--input_size=400 1 72", "--stages=2,3,4"]
    assert join(["--mask_unit_attn", "True", "False", "False", "--norm_loss", "--seed", "1"]) \
        == ["--mask_unit_attn=True False False", "--norm_loss", "--seed", "1"]
    assert join(["--fill_holes", "False", "--data_augment", "True"]) == [
        "--fill_holes=False", "--data_augment=True"]


def test_default_flags_describe_a_valid_small_synthetic_run():
    flag_values = parse()
    config = SCRIPT_MODULE.model_config(flag_values)
    training = SCRIPT_MODULE.training_config(flag_values)
    assert config.input_size == (300, 3, 24) and not config.non_hierarchical
    assert training.epochs >= 5 and training.batch_size == 32


def test_published_dataset_defaults_and_the_baseline():
    shot = SCRIPT_MODULE.model_config(parse("--dataset=shot7m2"))
    assert shot.q_strides == ((2, 1, 4), (2, 1, 6)) and shot.decoding_strategy == "single"
    assert shot.mask_ratio == 0.70
    mice = SCRIPT_MODULE.training_config(parse("--dataset=mabe_mice"))
    assert (mice.batch_size, mice.epochs, mice.warmup_epochs) == (768, 200, 40)
    baseline = SCRIPT_MODULE.model_config(parse("--dataset=hbabel", "--model=behavemae"))
    assert baseline.non_hierarchical and set(baseline.out_embed_dims) == {64}


@pytest.mark.parametrize("argv, message", [
    (["--num_frames=10"], "num_frames: 10 is invalid: it must equal input_size[0] = 24"),
    (["--patch_kernel=5,1,24"], "patch_kernel"),
    (["--mask_ratio=0.99"], "mask_ratio"),
])
def test_invalid_settings_print_the_error_and_fail(tmp_path, data_dir, capsys, argv, message):
    flag_values = parse("--dataset=synthetic", f"--path_to_data_dir={data_dir}",
                        f"--output_dir={tmp_path / 'out'}", *TINY_FLAGS, *argv)
    assert SCRIPT_MODULE.run(flag_values) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and "Traceback" not in error
    assert not os.path.exists(tmp_path / "out" / "run_config.json")


def test_keypoints_dataset_needs_the_architecture(tmp_path, capsys):
    flag_values = parse("--dataset=keypoints", f"--path_to_data_dir={tmp_path}",
                        f"--output_dir={tmp_path / 'out'}")
    assert SCRIPT_MODULE.run(flag_values) == 1
    assert "--input_size" in capsys.readouterr().err
