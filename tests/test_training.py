"""Pretraining runs (`keras_hbehavemae.training`): the learning-rate scaling, checkpoint
retention and data parallelism, on the current backend. Crashes, full disks, resumes and
non-finite losses: tests/faults/test_training_faults.py."""

import json
import os
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest
from helpers import SMALL, small_data
from helpers import small_training as training

from keras_hbehavemae.training import run_directory

BACKEND = keras.config.backend()
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- configuration


def test_learning_rate_scales_with_the_effective_batch():
    from keras_hbehavemae.training import Distribution, schedule_summary

    data = small_data(frames=400)
    config = training(lr=None, blr=1.6e-4, batch_size=4, steps_per_epoch=None)
    one = schedule_summary(data, config, Distribution(None, 1))
    two = schedule_summary(data, config, Distribution("data_parallel", 2))
    assert one["peak_learning_rate"] == pytest.approx(1.6e-4 * 4 / 256)
    assert two["peak_learning_rate"] == pytest.approx(2 * one["peak_learning_rate"])
    assert one["steps_per_epoch"] == data.num_train_windows // 4
    assert two["steps_per_epoch"] == data.num_train_windows // 8


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="XLA on a CPU: the TensorFlow choice (JAX always compiles)")
def test_xla_compiled_training_runs_and_matches_the_eager_loss():
    import tensorflow as tf

    from keras_hbehavemae import HBehaveMAEConfig
    from keras_hbehavemae.training import build_training_run

    data, config = small_data(), HBehaveMAEConfig(**SMALL)
    run = build_training_run(config, data, training(), jit_compile=True)
    model = run.model
    assert model.jit_compile is True
    windows = next(iter(data.train_dataset(2, seed=0)))
    logs = model.train_on_batch(windows, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    # XLA draws other random masks than TensorFlow's kernels, so compare with a fixed mask.
    mask = np.zeros((2, model.geometry.num_mask_units), bool)
    mask[:, :model.geometry.num_kept_units] = True

    def loss():
        return model.compute_pretraining_loss(windows, model(windows, unit_mask=mask))

    eager = float(loss())
    assert float(tf.function(loss, jit_compile=True)()) == pytest.approx(eager, rel=1e-5)
    with pytest.raises(ValueError, match="jit_compile: 'yes' is invalid"):
        build_training_run(config, data, training(), jit_compile="yes")


# ---------------------------------------------------------------- run directory pieces


def test_retention_keeps_milestones_and_the_newest():
    delete = run_directory.checkpoints_to_delete
    assert delete(range(25), epochs=200, every=20, keep_last=2) == [
        e for e in range(1, 23) if e != 20]
    assert delete([0, 1, 2], epochs=3, every=20, keep_last=1) == [1]  # 0 and the last stay


# ---------------------------------------------------------------- several devices

DISTRIBUTED_RUN = textwrap.dedent("""
    import json, os, sys
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from keras_hbehavemae import HBehaveMAEConfig
    from keras_hbehavemae.data.recipes import PretrainingData
    from keras_hbehavemae.training import TrainingConfig, run_pretraining

    from keras_hbehavemae.models.masking import random_unit_mask
    from keras_hbehavemae.training.callbacks import (
        restore_seed_generator_states, seed_generator_states)

    class ReplicaMasks(keras.callbacks.Callback):
        # After training: draw masks on every replica for one identical input each, then
        # the masks one device draws for the whole batch from the same random state.
        masks = single = None
        def on_train_end(self, logs=None):
            if keras.config.backend() != "tensorflow":
                return
            import tensorflow as tf
            model, strategy = self.model, self.model.distribute_strategy
            same = np.zeros((2 * strategy.num_replicas_in_sync, 24, 3, 24), "float32")
            batch = next(iter(strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensor_slices(same).batch(len(same)))))
            states = seed_generator_states(model)
            masks = strategy.run(lambda x: model(x)["mask"], args=(batch,))
            ReplicaMasks.masks = [np.asarray(m).astype(int).tolist()
                                  for m in strategy.experimental_local_results(masks)]
            restore_seed_generator_states(model, states)
            units, kept = model.geometry.num_mask_units, model.geometry.num_kept_units
            ReplicaMasks.single = np.asarray(random_unit_mask(
                len(same), units, kept, model.seed_generator)).astype(int).tolist()

    config = HBehaveMAEConfig(**json.loads(sys.argv[1]))
    rng = np.random.default_rng(0)
    data = PretrainingData("arrays", [rng.normal(size=(80, 3, 24))], None, num_frames=24,
                           sliding_window=4)
    training = TrainingConfig(batch_size=2, epochs=1, warmup_epochs=0, lr=1e-3,
                              steps_per_epoch=3, distribute="data_parallel")
    summary = run_pretraining(config, data, training, sys.argv[2], verbose=0,
                              callbacks=[ReplicaMasks()])
    print("RESULT", json.dumps({"replicas": summary["replicas"],
                                "train_loss": summary["train_loss"],
                                "steps": summary["optimizer_steps"],
                                "masks": ReplicaMasks.masks, "single": ReplicaMasks.single}))
""")


def run_distributed(tmp_path, **environment):
    config = json.dumps({**SMALL, "mask_unit_attn": [True, False]})
    completed = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_RUN, config, str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=REPOSITORY,
        env={**os.environ, "KERAS_BACKEND": BACKEND, **environment})
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="MirroredStrategy: TensorFlow leg only")
def test_mirrored_strategy_on_two_cpus_trains_with_the_masks_of_one_device(tmp_path):
    result = run_distributed(tmp_path)
    assert result["replicas"] == 2 and result["steps"] == 3
    assert np.isfinite(result["train_loss"])
    first, second = (np.array(masks) for masks in result["masks"])
    assert first.shape == second.shape == (2, 12) and (first.sum(1) == 3).all()
    assert not np.array_equal(first, second), "replicas must draw their own masks"
    # Each replica's rows of the global batch get the masks one device would draw for them.
    np.testing.assert_array_equal(np.concatenate([first, second]), result["single"])


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="DataParallel on two host devices: JAX leg only")
def test_jax_data_parallel_on_two_host_devices_trains(tmp_path):
    # Unoptimised XLA code compiles much faster (a test-speed measure only).
    result = run_distributed(tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2 "
                                                 "--xla_backend_optimization_level=0")
    assert result["replicas"] == 2 and result["steps"] == 3
    assert np.isfinite(result["train_loss"])


# ---------------------------------------------------------------- resuming

class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


@pytest.mark.slow
def test_a_resumed_run_trains_what_an_uninterrupted_one_does(tmp_path):
    # The window stream continues at the next step's batch and the masks' random state
    # comes back from state.json, so stopping after an epoch and resuming changes nothing.
    from keras_hbehavemae import HBehaveMAEConfig
    from keras_hbehavemae.training import run_pretraining

    config, data = HBehaveMAEConfig(**SMALL), small_data(test=True)
    settings = training(epochs=2, steps_per_epoch=3, test_every=1)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    run_pretraining(config, data, settings, straight, verbose=0)
    run_pretraining(config, data, settings, resumed, verbose=0,
                    callbacks=[StopAfterFirstEpoch()])
    assert run_directory.read_state(resumed)["completed_epochs"] == 1
    run_pretraining(config, data, settings, resumed, verbose=0)
    losses = [[line["train_loss"] for line in run_directory.read_metrics(folder)]
              for folder in (straight, resumed)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=0, atol=1e-6)
    with h5py.File(run_directory.checkpoint_path(straight, 1)) as one, h5py.File(
            run_directory.checkpoint_path(resumed, 1)) as other:
        names = []
        one.visititems(lambda name, item: names.append(name)
                       if isinstance(item, h5py.Dataset) else None)
        for name in names:
            np.testing.assert_allclose(other[name][()], one[name][()], rtol=0, atol=1e-6,
                                       err_msg=name)
