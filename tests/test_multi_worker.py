"""Several processes training one model (`--distribute multi_worker`, `training.cluster`,
`training.distribution`).

The slow tests start two local `hbehavemae pretrain` processes on the CPU, on 127.0.0.1 only:
under JAX with two virtual CPU devices each and the coordinator on a free port, under
TensorFlow as two workers of a local `TF_CONFIG`. They check that

- the two processes train exactly what one process trains on the same global batch (the
  losses and every weight within 1e-5: same windows, same masks), and write one copy of
  each file;
- killing one process stops the other within 60 s with a clear error, and a rerun resumes.

Every subprocess runs under a timeout and is SIGKILLed at the end (a TensorFlow worker
ignores SIGTERM). The quick tests check settings and messages without subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
from helpers import REPOSITORY, parse_pretrain_flags, pretrain_script

from keras_hbehavemae.data import write_synthetic_dataset
from keras_hbehavemae.training import ClusterSettings, Distribution, run_directory
from keras_hbehavemae.training.cluster import peer_failure, tensorflow_cluster
from keras_hbehavemae.training.distribution import check_same_devices, setup_distribution

BACKEND = keras.config.backend()
multi_worker_backends = pytest.mark.skipif(
    BACKEND not in ("jax", "tensorflow"), reason="torch has no Keras distribution API")

# ---------------------------------------------------------------- settings and messages


@pytest.mark.backend_independent
@pytest.mark.parametrize("settings, message", [
    (dict(num_processes=0), r"^num_processes: 0 is invalid: must be a positive integer"),
    (dict(num_processes=2, process_id=2), r"^process_id: 2 is invalid: must lie in \[0, "),
    (dict(process_id=-1), r"^process_id: -1 is invalid"),
    (dict(coordinator_address="12345"), r"^coordinator_address: '12345' is invalid: must be "
                                         r"HOST:PORT"),
    (dict(startup_timeout=0), r"^startup_timeout: 0 is invalid"),
])
def test_cluster_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        ClusterSettings(**settings)


@pytest.mark.backend_independent
@pytest.mark.parametrize("tf_config, message", [
    (None, r"needs TF_CONFIG, the description of the workers"),
    ("{not json", r"^TF_CONFIG is invalid \(JSONDecodeError"),
    ('{"cluster": {"worker": ["a:1"]}}', r"^TF_CONFIG is invalid \(KeyError: 'task'\)"),
    ('{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", '
     '"index": 0}}', r"only a cluster of 'worker' tasks is supported"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     r"task index 2 is invalid: it must lie in \[0, 2\)"),
])
def test_tf_config_is_checked(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        tensorflow_cluster()


@pytest.mark.backend_independent
def test_tf_config_names_the_workers(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 1}}))
    assert tensorflow_cluster() == (["127.0.0.1:1", "127.0.0.1:2"], 1)


@pytest.mark.backend_independent
def test_cluster_flags_need_multi_worker():
    with pytest.raises(ValueError, match=r"--num_processes applies to --distribute "
                                         r"multi_worker only"):
        pretrain_script().cluster_settings(parse_pretrain_flags("--num_processes=2"))
    flag_values = parse_pretrain_flags("--distribute=multi_worker", "--num_processes=2",
                                       "--process_id=1", "--coordinator_address=h:5")
    assert pretrain_script().cluster_settings(flag_values) == ClusterSettings(
        coordinator_address="h:5", num_processes=2, process_id=1)
    with pytest.raises(ValueError, match=r"apply to --distribute multi_worker only"):
        setup_distribution("data_parallel", ClusterSettings())


@pytest.mark.skipif(BACKEND != "torch", reason="the torch refusal")
def test_multi_worker_is_refused_under_torch_naming_the_backends_that_have_it():
    with pytest.raises(ValueError, match=r"'multi_worker' is not supported with the torch "
                                         r"backend.*KERAS_BACKEND=jax or tensorflow"):
        setup_distribution("multi_worker", ClusterSettings(num_processes=2, process_id=0))


@pytest.mark.backend_independent
def test_a_run_resumes_on_the_same_number_of_devices_only():
    saved = {"schedule": {"replicas": 4}, "environment": {"processes": 2}}
    check_same_devices(saved, Distribution("multi_worker", 4, num_processes=4))  # any split
    check_same_devices(None, Distribution(None, 1))
    with pytest.raises(ValueError, match=r"trained on 4 devices in all \(2 process\(es\)\), but "
                                         r"this start has 2 over 1 process\(es\).*resumes on 4 "
                                         r"devices in all"):
        check_same_devices(saved, Distribution("data_parallel", 2))


@pytest.mark.backend_independent
def test_lost_peers_are_recognised():
    assert peer_failure(ValueError("UNKNOWN: Gloo all-reduce failed: Connection closed by peer"))
    assert not peer_failure(ValueError("mask: shape (2, 3) is invalid"))


def test_one_process_needs_no_collectives():
    one = Distribution(None, 1)
    assert one.is_chief and one.gather([3, 4]).tolist() == [[3, 4]]
    one.agree("anything", [1], "no advice needed")
    one.barrier()
    with pytest.raises(KeyError):
        with one.collective_failures():  # nothing is converted with one process
            raise KeyError("x")


# ---------------------------------------------------------------- two local processes

EPOCHS = 3
STEPS = 3
GLOBAL_BATCH = 4
TINY_FLAGS = ["--dataset", "synthetic", "--input_size", "24", "3", "24",
              "--patch_kernel=3,1,24", "--stages", "1", "1", "--q_strides=2,1,1",
              "--mask_unit_attn", "True", "False", "--init_embed_dim=8", "--init_num_heads=1",
              "--out_embed_dims=8,16", "--decoder_embed_dim=8", "--norm_loss", "True",
              "--sliding_window=4", "--warmup_epochs=0", "--lr=1e-3"]
JAX_DEVICES_PER_PROCESS = 2
TIMEOUT = 600  # seconds, for any one process


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


class Processes:
    """Starts `hbehavemae pretrain` processes; every one is SIGKILLed at the end of the test."""

    def __init__(self, log_dir, cache_dir):
        self.log_dir, self.cache_dir, self.started = log_dir, cache_dir, []

    def start(self, name: str, flags: list[str], environment: dict) -> subprocess.Popen:
        log = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "keras_hbehavemae.cli.pretrain", *TINY_FLAGS, *flags],
            cwd=str(REPOSITORY), stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "2",
                 # Unoptimised XLA code and a shared compilation cache: test speed only.
                 "XLA_FLAGS": "--xla_backend_optimization_level=0",
                 "JAX_COMPILATION_CACHE_DIR": str(self.cache_dir),
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2", **environment})
        process.log_path = log.name
        self.started.append(process)
        return process

    def start_workers(self, name: str, flags: list[str], count: int = 2,
                      devices_per_process: int = JAX_DEVICES_PER_PROCESS):
        """`count` processes of one multi-worker run (JAX: `devices_per_process` each)."""
        ports = free_ports(count)
        workers = []
        for index in range(count):
            if BACKEND == "jax":
                extra = [f"--coordinator_address=127.0.0.1:{ports[0]}",
                         f"--num_processes={count}", f"--process_id={index}"]
                environment = {"XLA_FLAGS": "--xla_backend_optimization_level=0 "
                               f"--xla_force_host_platform_device_count={devices_per_process}"}
            else:
                extra, environment = [], {"TF_CONFIG": json.dumps({
                    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                    "task": {"type": "worker", "index": index}})}
            workers.append(self.start(f"{name}-{index}", [
                "--distribute=multi_worker", "--startup_timeout=240", *flags, *extra],
                environment))
        return workers

    @staticmethod
    def output(process) -> str:
        with open(process.log_path) as log:
            return log.read()

    def wait(self, *processes, timeout: float = TIMEOUT) -> list[int]:
        deadline = time.time() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
                pytest.fail(f"{process.log_path} ran past {timeout} s:\n"
                            + self.output(process)[-3000:])
        return [process.returncode for process in processes]

    def kill_all(self):
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture
def processes(tmp_path_factory, jax_cache):
    launcher = Processes(str(tmp_path_factory.mktemp("logs")), jax_cache)
    yield launcher
    launcher.kill_all()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(directory, 2, 1, num_frames_per_sequence=400, seed=5)
    return str(directory)


def checkpoint_arrays(path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path) as file:
        file.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                        if isinstance(item, h5py.Dataset) else None)
    return arrays


def files_below(folder) -> list[str]:
    """Every file below `folder`; TensorBoard event files (named after host, time and
    process) as `<folder>/events`."""
    names = []
    for root, _, files in os.walk(folder):
        for name in files:
            relative = os.path.relpath(os.path.join(root, name), folder)
            if name.startswith("events.out.tfevents"):
                relative = os.path.join(os.path.dirname(relative), "events")
            names.append(relative)
    return sorted(names)


def assert_ok(processes, *started):
    statuses = processes.wait(*started)
    for process, status in zip(started, statuses, strict=True):
        assert status == 0, f"{process.log_path}:\n" + processes.output(process)[-4000:]


@pytest.mark.slow
@multi_worker_backends
def test_two_processes_train_what_one_does_and_write_one_copy(processes, data_dir, tmp_path):
    common = [f"--path_to_data_dir={data_dir}", f"--epochs={EPOCHS}",
              f"--steps_per_epoch={STEPS}"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    per_device = GLOBAL_BATCH // (2 * (JAX_DEVICES_PER_PROCESS if BACKEND == "jax" else 1))
    single = processes.start("one", [*common, f"--output_dir={one}",
                                     f"--batch_size={GLOBAL_BATCH}"], {})
    workers = processes.start_workers("two", [*common, f"--output_dir={two}",
                                              f"--batch_size={per_device}"])
    assert_ok(processes, single, *workers)

    # The same schedule and global batch, the same losses, the same weights.
    schedule = [json.load(open(os.path.join(folder, "run_config.json")))["schedule"]
                for folder in (one, two)]
    assert schedule[0]["global_batch_size"] == schedule[1]["global_batch_size"] == GLOBAL_BATCH
    assert schedule[0]["peak_learning_rate"] == schedule[1]["peak_learning_rate"]
    losses = [[line["train_loss"] for line in run_directory.read_metrics(folder)]
              for folder in (one, two)]
    assert len(losses[1]) == EPOCHS, "one metrics line per epoch (not one per process)"
    np.testing.assert_allclose(losses[1], losses[0], rtol=0, atol=1e-5)
    states = [run_directory.read_state(folder) for folder in (one, two)]
    assert states[0]["seed_generator_states"] == states[1]["seed_generator_states"]
    assert states[0]["optimizer_iterations"] == states[1]["optimizer_iterations"] == (
        EPOCHS * STEPS)
    last = run_directory.checkpoint_path(two, EPOCHS - 1)
    expected, trained = (checkpoint_arrays(run_directory.checkpoint_path(one, EPOCHS - 1)),
                         checkpoint_arrays(last))
    assert sorted(trained) == sorted(expected)
    differences = {name: float(np.max(np.abs(trained[name].astype(np.float64)
                                              - expected[name].astype(np.float64)), initial=0))
                   for name in expected}
    print(f"{BACKEND}: largest difference to one process: weights "
          f"{max(differences.values()):.2e}, epoch losses "
          f"{np.max(np.abs(np.subtract(losses[1], losses[0]))):.2e}")
    assert max(differences.values()) <= 1e-5, sorted(differences.items(), key=lambda i: -i[1])[:3]

    # One copy of everything: the two-process run folder holds what a single run writes
    # (one events file per TensorBoard folder, each checkpoint once), and nothing else.
    assert files_below(two) == files_below(one)
    checkpoints = [name for name in files_below(str(tmp_path))
                   if os.path.basename(name).startswith("checkpoint-") and name.startswith("two")]
    assert checkpoints == [f"two/checkpoint-epoch{epoch:04d}.weights.h5" for epoch in
                           range(EPOCHS)], checkpoints
    sessions = states[1]["sessions"]
    assert [session["processes"] for session in sessions] == [2]
    assert "Done:" in processes.output(workers[0])
    assert "Done:" not in processes.output(workers[1]), "only process 0 reports"


@pytest.mark.slow
@multi_worker_backends
def test_killing_one_process_stops_the_other_and_a_rerun_resumes(processes, data_dir,
                                                                tmp_path):
    output_dir = str(tmp_path / "run")
    flags = [f"--path_to_data_dir={data_dir}", f"--output_dir={output_dir}", "--epochs=6",
             "--steps_per_epoch=25", "--batch_size=2"]
    devices = 1  # JAX: one device per process, so that one process with two resumes it
    first = processes.start_workers("first", flags, devices_per_process=devices)
    deadline = time.time() + TIMEOUT
    state = None
    while state is None and time.time() < deadline and all(
            worker.poll() is None for worker in first):
        state = run_directory.read_state(output_dir) if os.path.isdir(output_dir) else None
        time.sleep(0.05)
    assert state is not None, processes.output(first[0])[-4000:]
    os.kill(first[1].pid, signal.SIGKILL)
    killed = time.time()
    processes.wait(first[1], timeout=60)
    status = processes.wait(first[0], timeout=90)[0]
    stopped_after = time.time() - killed
    print(f"{BACKEND}: the other process stopped {stopped_after:.1f} s after the kill")
    output = processes.output(first[0])
    assert stopped_after <= 60, output[-3000:]
    assert status != 0
    assert "training stopped because another process of this run stopped or cannot be " \
           "reached" in output, output[-3000:]
    assert "start all processes again with the same command to resume" in output
    at_kill = run_directory.read_state(output_dir)
    assert at_kill["completed_epochs"] < 6, "the run ended before the kill"

    if BACKEND == "jax":  # the same two devices, now in one process
        rerun = processes.start_workers("rerun", flags, count=1, devices_per_process=2)
    else:
        rerun = processes.start_workers("rerun", flags)
    assert_ok(processes, *rerun)
    assert "Resuming" in processes.output(rerun[0])
    state = run_directory.read_state(output_dir)
    assert state["completed_epochs"] == 6 and state["optimizer_iterations"] == 6 * 25
    sessions = state["sessions"]
    assert len(sessions) == 2 and sessions[1]["start_epoch"] == at_kill["completed_epochs"]
    assert [session["replicas"] for session in sessions] == [2, 2]
    assert [line["epoch"] for line in run_directory.read_metrics(output_dir)] == list(range(6))
    assert os.path.isdir(os.path.join(output_dir, "preset"))
