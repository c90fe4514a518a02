"""Pretraining runs (`keras_hbehavemae.training`): checkpoints, resume state, fingerprints,
non-finite losses, up-front checks and data parallelism, on the current backend."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_hbehavemae import HBehaveMAEConfig, run_directory
from keras_hbehavemae.callbacks import EpochCheckpoint, NonFiniteLossError
from keras_hbehavemae.data.recipes import PretrainingData
from keras_hbehavemae.optimizer import published_optimizer
from keras_hbehavemae.training import (
    TrainingConfig,
    build_pretrainer,
    run_pretraining,
    setup_distribution,
)

BACKEND = keras.config.backend()
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The smallest useful hierarchy: 2 stages, 12 mask units of which 3 are kept.
SMALL = dict(input_size=(24, 3, 24), patch_kernel=(3, 1, 24), stages=(1, 1), q_strides="2,1,1",
             mask_unit_attn=(True, False), init_embed_dim=8, out_embed_dims=(8, 16),
             decoder_embed_dim=8, mask_ratio=0.75)
CONFIG = HBehaveMAEConfig(**SMALL)


def small_data(test: bool = False, frames: int = 60) -> PretrainingData:
    rng = np.random.default_rng(0)
    train = [rng.normal(size=(frames, 3, 24)).astype("float32")]
    held_out = [rng.normal(size=(30, 3, 24)).astype("float32")] if test else None
    return PretrainingData("arrays", train, held_out, num_frames=24, sliding_window=4)


def training(**overrides) -> TrainingConfig:
    values = dict(batch_size=2, epochs=2, warmup_epochs=0, lr=1e-3, steps_per_epoch=2)
    return TrainingConfig(**{**values, **overrides})


def compiled_model():
    model = build_pretrainer(CONFIG)
    model.compile(optimizer=published_optimizer(model, 1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


# ---------------------------------------------------------------- configuration


def test_training_config_validates():
    with pytest.raises(ValueError, match="warmup_epochs"):
        training(warmup_epochs=2)
    with pytest.raises(ValueError, match="precision"):
        training(precision="float16")
    with pytest.raises(ValueError, match="distribute"):
        training(distribute="model_parallel")
    with pytest.raises(ValueError, match="batch_size"):
        training(batch_size=0)


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


# ---------------------------------------------------------------- run directory pieces


def test_retention_keeps_milestones_and_the_newest():
    delete = run_directory.checkpoints_to_delete
    assert delete(range(25), epochs=200, every=20, keep_last=2) == [
        e for e in range(1, 23) if e != 20]
    assert delete([0, 1, 2], epochs=3, every=20, keep_last=1) == [1]  # 0 and the last stay


def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path):
    path = str(tmp_path / "state.json")
    run_directory.write_json_atomically(path, {"completed_epochs": 1})
    with pytest.raises(TypeError):
        run_directory.write_json_atomically(path, {"completed_epochs": object()})
    assert run_directory.read_json(path) == {"completed_epochs": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_crash_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = compiled_model()
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


def test_resuming_with_another_configuration_names_the_keys(tmp_path):
    base = {"model": CONFIG.to_dict(), "training": training().to_dict(), "schedule": {},
            "data": {"dataset": "arrays"}, "preset": None, "environment": {"backend": "x"}}
    run_directory.check_run_config(str(tmp_path), base)
    run_directory.check_run_config(str(tmp_path), {**base, "environment": {"backend": "y"}})
    changed = {**base, "model": CONFIG.replace(mask_ratio=0.5).to_dict(),
               "training": training(epochs=3).to_dict()}
    with pytest.raises(ValueError, match=r"model\.mask_ratio.*training\.epochs.*--output_dir"):
        run_directory.check_run_config(str(tmp_path), changed)


def test_unwritable_output_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="--output_dir"):
        run_pretraining(CONFIG, small_data(), training(), str(blocker / "run"), verbose=0)
    with pytest.raises(OSError, match="--log_dir"):
        run_pretraining(CONFIG, small_data(), training(), str(tmp_path / "run"),
                        log_dir=str(blocker / "logs"), verbose=0)
    assert not os.path.exists(tmp_path / "run" / "run_config.json")


def test_too_little_disk_space_fails_before_training(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(OSError, match="two checkpoints"):
        run_pretraining(CONFIG, small_data(), training(), str(tmp_path / "run"), verbose=0)
    assert run_directory.read_state(str(tmp_path / "run")) is None


@pytest.mark.skipif(BACKEND != "torch", reason="torch has no data-parallel path")
def test_data_parallel_is_refused_under_torch():
    with pytest.raises(ValueError, match="torch"):
        setup_distribution("data_parallel")


# ---------------------------------------------------------------- non-finite loss


class PoisonWeights(keras.callbacks.Callback):
    """Sets one weight to NaN when `epoch` begins (so that epoch's loss is NaN)."""

    def __init__(self, epoch, output_dir):
        super().__init__()
        self.epoch, self.output_dir, self.files_before = epoch, output_dir, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.files_before = sorted(os.listdir(self.output_dir))
            weight = self.model.decoder.weights[-1]
            weight.assign(np.full(weight.shape, np.nan, "float32"))


def test_non_finite_loss_stops_with_an_error_and_keeps_every_checkpoint(tmp_path):
    output = str(tmp_path / "run")
    poison = PoisonWeights(2, output)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2.*kept.*checkpoint-epoch0001"):
        run_pretraining(CONFIG, small_data(), training(epochs=4, keep_last=1), output,
                        callbacks=[poison], verbose=0)
    assert sorted(os.listdir(output)) == poison.files_before
    assert run_directory.checkpoint_epochs(output) == [0, 1]
    state = run_directory.read_state(output)
    assert state["completed_epochs"] == 2 and state["optimizer_iterations"] == 4
    assert [line["epoch"] for line in run_directory.read_metrics(output)][:2] == [0, 1]
    assert not os.path.exists(os.path.join(output, "final_metrics.json"))


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

    class ReplicaMasks(keras.callbacks.Callback):
        # After training: draw masks on every replica for one identical input each.
        masks = None
        def on_train_end(self, logs=None):
            if keras.config.backend() != "tensorflow":
                return
            import tensorflow as tf
            strategy = self.model.distribute_strategy
            same = np.zeros((2 * strategy.num_replicas_in_sync, 24, 3, 24), "float32")
            batch = next(iter(strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensor_slices(same).batch(len(same)))))
            masks = strategy.run(lambda x: self.model(x)["mask"], args=(batch,))
            ReplicaMasks.masks = [np.asarray(m).astype(int).tolist()
                                  for m in strategy.experimental_local_results(masks)]

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
                                "masks": ReplicaMasks.masks}))
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


@pytest.mark.skipif(BACKEND != "tensorflow", reason="MirroredStrategy: TensorFlow leg only")
def test_mirrored_strategy_on_two_cpus_trains_with_different_masks_per_replica(tmp_path):
    result = run_distributed(tmp_path)
    assert result["replicas"] == 2 and result["steps"] == 3
    assert np.isfinite(result["train_loss"])
    first, second = (np.array(masks) for masks in result["masks"])
    assert first.shape == second.shape == (2, 12) and (first.sum(1) == 3).all()
    assert not np.array_equal(first, second), "replicas must draw their own masks"


@pytest.mark.skipif(BACKEND != "jax", reason="DataParallel on two host devices: JAX leg only")
def test_jax_data_parallel_on_two_host_devices_trains(tmp_path):
    # Unoptimised XLA code compiles much faster (a test-speed measure only).
    result = run_distributed(tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2 "
                                                 "--xla_backend_optimization_level=0")
    assert result["replicas"] == 2 and result["steps"] == 3
    assert np.isfinite(result["train_loss"])
