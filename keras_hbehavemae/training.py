"""Pretraining runs: the published recipe (SPEC §8) with resumable, atomic checkpoints.

`run_pretraining(model_config, data, training, output_dir)` trains an `HBehaveMAE` on a
`PretrainingData` and leaves in `output_dir` (see `run_directory` for the file formats):
checkpoints and `state.json`, `run_config.json`, `metrics.jsonl`, TensorBoard logs (in
`log_dir`, default `output_dir/logs`), `final_metrics.json` and the trained model as a
preset folder `output_dir/preset/`.

Rerunning the same call after a crash (even `kill -9`) resumes from the last completed
epoch: model and optimizer variables (moments and the step counter that drives the
learning-rate schedule) come from the checkpoint, the epoch counter and the mask RNG state
from `state.json`. The data pipeline restarts its (seeded) shuffle, so a resumed run sees
a different window order than an uninterrupted one would.

Building blocks: `TrainingConfig`, `setup_distribution`, `build_pretrainer`,
`build_training_run`, `restore_checkpoint`.

Example (a tiny model on random arrays; the run itself is skipped here):

>>> import tempfile, numpy as np
>>> from keras_hbehavemae import HBehaveMAEConfig
>>> from keras_hbehavemae.data.recipes import PretrainingData
>>> config = HBehaveMAEConfig(input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
...     decoder_embed_dim=16)
>>> rng = np.random.default_rng(0)
>>> data = PretrainingData("arrays", train=[rng.normal(size=(64, 4, 12))], test=None,
...                        num_frames=32, sliding_window=8)
>>> training = TrainingConfig(batch_size=4, epochs=1, warmup_epochs=0, blr=1.6e-4)
>>> schedule_summary(data, training, Distribution(None, 1))
{'replicas': 1, 'global_batch_size': 4, 'steps_per_epoch': 2, 'peak_learning_rate': 2.5e-06}
>>> summary = run_pretraining(config, data, training, tempfile.mkdtemp())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import time
import zipfile
from typing import Any

import keras

from keras_hbehavemae import run_directory
from keras_hbehavemae.backbone import HBehaveMAEBackbone
from keras_hbehavemae.callbacks import (
    EpochCheckpoint,
    EpochMetricsLog,
    HeldOutLoss,
    NonFiniteLossError,
    NonFiniteLossGuard,
    StepScalars,
    restore_seed_generator_states,
)
from keras_hbehavemae.config import HBehaveMAEConfig
from keras_hbehavemae.data.recipes import PretrainingData
from keras_hbehavemae.optimizer import (
    WarmupHalfCosineSchedule,
    published_optimizer,
    scaled_learning_rate,
)
from keras_hbehavemae.pretrainer import HBehaveMAE

__all__ = [
    "NonFiniteLossError",
    "TrainingConfig",
    "TrainingRun",
    "build_pretrainer",
    "build_training_run",
    "read_preset_config",
    "restore_checkpoint",
    "run_pretraining",
    "schedule_summary",
    "setup_distribution",
]

PRECISIONS = ("float32", "mixed_bfloat16")
DISTRIBUTIONS = (None, "data_parallel")


def _fail(name: str, value: Any, rule: str) -> None:
    raise ValueError(f"{name}: {value!r} is invalid: {rule}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """The training settings of a run (SPEC §8; published values as defaults).

    Args:
        batch_size: windows per device and step.
        epochs: training epochs.
        warmup_epochs: linear learning-rate warmup, in (fractional) epochs, < `epochs`.
        blr: base learning rate; the peak is blr·effective_batch/256 unless `lr` is given.
        lr: absolute peak learning rate (overrides `blr`).
        min_lr: final learning rate of the half-cosine.
        weight_decay: AdamW decoupled weight decay (1-D variables excluded).
        clip_grad: global gradient-norm clip (None: no clipping).
        seed: weight initialisation, data shuffling, augmentation and mask seed.
        precision: "float32" (published) or "mixed_bfloat16".
        distribute: None (one device) or "data_parallel" (JAX `DataParallel`, TensorFlow
            `MirroredStrategy`; not torch). `batch_size` stays per device.
        steps_per_epoch: optional cap on the steps per epoch (smoke runs); by default one
            epoch is one pass over the training windows.
        checkpoint_every: milestone checkpoints kept for good (epoch % n == 0 and the
            last epoch; published 20).
        keep_last: newest checkpoints kept besides the milestones (at least 1).
        test_every: held-out `test_loss` at epoch % n == 0 (published 5).
        log_every_n_steps: per-step TensorBoard scalars every n steps.
    """

    batch_size: int
    epochs: int
    warmup_epochs: float
    blr: float = 1.6e-4
    lr: float | None = None
    min_lr: float = 0.0
    weight_decay: float = 0.05
    clip_grad: float | None = 0.02
    seed: int = 0
    precision: str = "float32"
    distribute: str | None = None
    steps_per_epoch: int | None = None
    checkpoint_every: int = 20
    keep_last: int = 2
    test_every: int = 5
    log_every_n_steps: int = 1

    def __post_init__(self):
        positive_ints = ("batch_size", "epochs", "checkpoint_every", "keep_last", "test_every",
                         "log_every_n_steps")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(name, value, "must be a positive integer")
        if self.steps_per_epoch is not None and (
                not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            _fail("steps_per_epoch", self.steps_per_epoch, "must be a positive integer or None")
        if not 0 <= self.warmup_epochs < self.epochs:
            _fail("warmup_epochs", self.warmup_epochs, f"must lie in [0, epochs={self.epochs})")
        for name in ("blr", "lr", "min_lr", "weight_decay", "clip_grad"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                _fail(name, value, "must be a finite number >= 0")
        if self.blr <= 0 or (self.lr is not None and self.lr <= 0):
            _fail("lr" if self.lr is not None else "blr", self.lr or self.blr, "must be > 0")
        if self.precision not in PRECISIONS:
            _fail("precision", self.precision, f"must be one of {PRECISIONS}")
        if self.distribute not in DISTRIBUTIONS:
            _fail("distribute", self.distribute, "must be None or 'data_parallel'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- devices and model


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How a run uses devices: `num_replicas` copies of the model, one batch slice each."""

    kind: str | None
    num_replicas: int
    strategy: Any = None  # the TensorFlow strategy, if any

    def scope(self):
        """The context to create the model and its optimizer variables in."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def _tensorflow_devices() -> list[str]:
    import tensorflow as tf

    accelerators = tf.config.list_logical_devices("GPU")
    return [device.name for device in accelerators or tf.config.list_logical_devices("CPU")]


def setup_distribution(distribute: str | None) -> Distribution:
    """Sets up data parallelism over all local devices (call before building the model).

    JAX: installs `keras.distribution.DataParallel` globally. TensorFlow: a
    `MirroredStrategy` over the GPUs (or, without GPUs, the logical CPUs); build the
    model inside `Distribution.scope()`. The pretrainer seeds each replica's masks
    separately (SPEC trap 18).

    Raises:
        ValueError: for torch, or an unknown `distribute`.
    """
    if distribute is None:
        return Distribution(None, 1)
    if distribute not in DISTRIBUTIONS:
        _fail("distribute", distribute, "must be None or 'data_parallel'")
    backend = keras.config.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return Distribution(distribute, len(devices))
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(_tensorflow_devices())
        return Distribution(distribute, strategy.num_replicas_in_sync, strategy)
    raise ValueError(
        f"distribute: 'data_parallel' is not supported with the {backend} backend; use "
        "KERAS_BACKEND=jax or tensorflow, or train on one device")


def build_pretrainer(model_config: HBehaveMAEConfig, seed: int = 0,
                     precision: str = "float32") -> HBehaveMAE:
    """A fresh `HBehaveMAE` (backbone + decoder) in `precision`, masks seeded by `seed`.

    With "mixed_bfloat16" the global dtype policy is set while the layers are created
    (and restored afterwards); the prediction head and the loss stay float32.
    """
    if precision not in PRECISIONS:
        _fail("precision", precision, f"must be one of {PRECISIONS}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        backbone = HBehaveMAEBackbone(**model_config.encoder_kwargs())
        return HBehaveMAE(backbone, seed=seed, **model_config.pretrainer_kwargs())
    finally:
        keras.config.set_dtype_policy(previous)


# ---------------------------------------------------------------- starting from a preset


def _config_from_serialized(serialized: dict) -> tuple[HBehaveMAEConfig, bool]:
    config = serialized.get("config", serialized)
    if "backbone" in config:  # a serialized HBehaveMAE: backbone + decoder fields
        values = {**config["backbone"]["config"], **config}
        values.pop("backbone")
        return HBehaveMAEConfig.from_dict(values, strict=False), True
    return HBehaveMAEConfig.from_dict(config, strict=False), False


def read_preset_config(preset: str) -> tuple[HBehaveMAEConfig | None, bool]:
    """`(config, has_decoder)` of a preset folder, `.keras` file or `.weights.h5` file.

    A `.weights.h5` file holds no architecture: `(None, False)`; the caller supplies it.
    Without a decoder (`has_decoder=False`) the decoder and masking fields are defaults
    for the caller to replace.
    """
    from keras_hbehavemae import presets

    if os.path.isdir(preset):
        task = os.path.join(preset, presets.TASK_CONFIG_FILE)
        path = task if os.path.exists(task) else os.path.join(preset, presets.CONFIG_FILE)
        return _config_from_serialized(run_directory.read_json(path))
    if preset.endswith(".keras") and os.path.isfile(preset):
        try:
            with zipfile.ZipFile(preset) as archive:
                serialized = json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"--preset {preset!r}: not a readable .keras file ({error!r}); the file is "
                "damaged or was not written by keras.Model.save") from None
        return _config_from_serialized(serialized)
    if preset.endswith(".weights.h5") and os.path.isfile(preset):
        return None, False
    raise FileNotFoundError(
        f"--preset {preset!r}: not a preset folder, .keras file or .weights.h5 file")


def _copy_weights(target, source, where: str) -> None:
    if [tuple(w.shape) for w in target.weights] != [tuple(w.shape) for w in source.weights]:
        raise ValueError(f"{where}: its weights do not fit the configured model")
    for variable, value in zip(target.weights, source.get_weights(), strict=True):
        variable.assign(value)


def load_initial_weights(model: HBehaveMAE, preset: str) -> None:
    """Loads a preset's weights: the pretrainer's if saved, else the backbone's.

    Raises:
        ValueError: naming the preset, if its weights cannot be loaded (a damaged file, or
            weights of another configuration).
    """
    try:
        _load_preset_weights(model, preset)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--preset {preset!r}: cannot load its weights into the configured model "
            f"({error}); the file is damaged or belongs to another configuration") from error


def _load_preset_weights(model: HBehaveMAE, preset: str) -> None:
    from keras_hbehavemae import presets

    if os.path.isdir(preset):
        task_weights = os.path.join(preset, presets.TASK_WEIGHTS_FILE)
        if os.path.exists(task_weights):
            model.load_weights(task_weights)
        else:
            model.backbone.load_weights(os.path.join(preset, presets.WEIGHTS_FILE))
    elif preset.endswith(".keras"):
        loaded = keras.saving.load_model(preset, compile=False)
        target = model if isinstance(loaded, HBehaveMAE) else model.backbone
        _copy_weights(target, loaded, preset)
    else:
        try:
            model.load_weights(preset)
        except ValueError:
            model.backbone.load_weights(preset)


# ---------------------------------------------------------------- the run


@dataclasses.dataclass
class TrainingRun:
    """A compiled pretrainer with its data, devices and schedule (see `build_training_run`)."""

    model: HBehaveMAE
    model_config: HBehaveMAEConfig
    training: TrainingConfig
    data: PretrainingData
    distribution: Distribution
    global_batch_size: int
    steps_per_epoch: int
    learning_rate: float

    def train_dataset(self):
        """Endless training batches of `global_batch_size` (split across replicas)."""
        return self.data.train_dataset(self.global_batch_size, self.training.seed,
                                       self.model_config.input_size)

    def test_dataset(self):
        """Held-out batches (None without a held-out split). With several replicas the last
        partial batch is dropped, since JAX cannot split it evenly."""
        return self.data.test_dataset(self.global_batch_size, self.model_config.input_size,
                                      drop_remainder=self.distribution.num_replicas > 1)

    def schedule_summary(self) -> dict[str, Any]:
        return schedule_summary(self.data, self.training, self.distribution)


def schedule_summary(data: PretrainingData, training: TrainingConfig,
                     distribution: Distribution) -> dict[str, Any]:
    """Replicas, global batch, steps per epoch and peak learning rate of a run."""
    global_batch = training.batch_size * distribution.num_replicas
    steps = data.steps_per_epoch(global_batch)
    if training.steps_per_epoch:
        steps = min(steps, training.steps_per_epoch)
    learning_rate = (training.lr if training.lr is not None
                     else scaled_learning_rate(training.blr, global_batch))
    return {"replicas": distribution.num_replicas, "global_batch_size": global_batch,
            "steps_per_epoch": steps, "peak_learning_rate": learning_rate}


def build_training_run(model_config: HBehaveMAEConfig, data: PretrainingData,
                       training: TrainingConfig | None = None, *, preset: str | None = None,
                       distribution: Distribution | None = None,
                       jit_compile: bool | str = "auto",
                       **training_options) -> TrainingRun:
    """Builds and compiles the pretrainer for `training` (or `TrainingConfig(**options)`).

    The peak learning rate is `lr`, or blr·effective_batch/256 with effective_batch =
    batch_size × replicas; the schedule is `WarmupHalfCosineSchedule` over
    `steps_per_epoch` steps per epoch (one pass over the training windows unless capped),
    the optimizer `published_optimizer`.

    Args:
        model_config: the model.
        data: the training (and held-out) data.
        training: the training settings; or give them as keyword arguments.
        preset: start from these weights (preset folder, `.keras` or `.weights.h5`).
        distribution: from `setup_distribution` (default: set up from `training`).
        jit_compile: `keras.Model.compile`'s: "auto" (Keras: XLA under JAX, and under
            TensorFlow only with a GPU), True or False. Not part of the configuration a
            resume must match: the model's numbers agree to rounding, but under TensorFlow
            XLA draws other random masks than the default kernels do.
    """
    if jit_compile not in ("auto", True, False):
        _fail("jit_compile", jit_compile, "must be 'auto', True or False")
    training = training or TrainingConfig(**training_options)
    if model_config.input_size[0] != data.num_frames:
        _fail("num_frames", data.num_frames, f"must equal input_size[0] = "
              f"{model_config.input_size[0]}")
    distribution = distribution or setup_distribution(training.distribute)
    summary = schedule_summary(data, training, distribution)
    global_batch, steps = summary["global_batch_size"], summary["steps_per_epoch"]
    learning_rate = summary["peak_learning_rate"]
    keras.utils.set_random_seed(training.seed)
    with distribution.scope():
        model = build_pretrainer(model_config, training.seed, training.precision)
        if preset is not None:
            load_initial_weights(model, preset)
        schedule = WarmupHalfCosineSchedule(learning_rate, steps, training.epochs,
                                            training.warmup_epochs, training.min_lr)
        model.compile(optimizer=published_optimizer(model, schedule, training.weight_decay,
                                                    training.clip_grad),
                      jit_compile=jit_compile)
        # Creating the optimizer variables now, not inside the first traced step, spares
        # TensorFlow a second trace of the train step (a variable-creating tf.function is
        # traced twice); a checkpoint can then also be loaded straight away.
        model.optimizer.build(model.trainable_variables)
    return TrainingRun(model, model_config, training, data, distribution, global_batch, steps,
                       learning_rate)


def restore_checkpoint(run: TrainingRun, output_dir: str, state: dict) -> None:
    """Loads the checkpoint named in `state` (model + optimizer) and the mask RNG state.

    Raises:
        FileNotFoundError: the checkpoint is missing.
        ValueError: the checkpoint cannot be loaded (damaged, or of another model).
    """
    name = state["checkpoint"]
    path = os.path.join(output_dir, name)
    advice = "restore the file, or start afresh with another --output_dir"
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--output_dir {output_dir!r}: {name}, the checkpoint named in "
            f"{run_directory.STATE_FILE}, is missing; {advice}")
    with run.distribution.scope():
        try:
            run.model.load_weights(path)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"--output_dir {output_dir!r}: cannot resume from {name} ({error}); the file "
                f"is damaged; {advice}") from error
        restore_seed_generator_states(run.model, state["seed_generator_states"])


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
        },
    }


def _callbacks(run: TrainingRun, output_dir: str, log_dir: str, sessions: list, guard,
               extra: list) -> list:
    training = run.training
    callbacks = [guard]
    test = run.test_dataset()
    if test is not None:
        callbacks.append(HeldOutLoss(test, training.test_every))
    callbacks += [
        EpochMetricsLog(output_dir),
        StepScalars(log_dir, training.log_every_n_steps),
        keras.callbacks.TensorBoard(log_dir, update_freq="epoch", write_graph=False,
                                    profile_batch=0),
        EpochCheckpoint(output_dir, training.epochs, training.checkpoint_every,
                        training.keep_last, sessions),
    ]
    return callbacks + list(extra)


def _float32_copy(model: HBehaveMAE) -> HBehaveMAE:
    """An uncompiled float32 copy (for the preset: no optimizer state, no mixed policy)."""
    config = model.config_object
    backbone = HBehaveMAEBackbone(**config.encoder_kwargs(), dtype="float32")
    copy = HBehaveMAE(backbone, seed=model.seed, dtype="float32", **config.pretrainer_kwargs())
    _copy_weights(copy, model, "the trained model")
    return copy


def _model_card(run: TrainingRun, summary: dict) -> str:
    config = run.model_config
    return "\n".join([
        "# hBehaveMAE pretrained with keras_hbehavemae",
        "",
        f"- data: `{run.data.name}` ({summary['data']['train_windows']} training windows of "
        f"{config.input_size})",
        f"- model: stages {list(config.stages)}, q_strides {[list(s) for s in config.q_strides]}"
        f", widths from {config.init_embed_dim}, out_embed_dims {list(config.out_embed_dims)}, "
        f"decoding `{config.decoding_strategy}`, mask_ratio {config.mask_ratio}",
        f"- training: {summary['completed_epochs']} epochs, {summary['optimizer_steps']} steps, "
        f"global batch {run.global_batch_size}, peak lr {run.learning_rate:.3g}",
        f"- final train loss {summary['train_loss']:.4f}"
        + (f", held-out loss {summary['test_loss']:.4f}" if summary.get("test_loss") is not None
           else ""),
        "",
        "Load the encoder with `HBehaveMAEBackbone.from_preset(path)`, the whole pretrainer "
        "with `HBehaveMAE.from_preset(path)`.",
        "",
    ])


def _final_summary(run: TrainingRun, output_dir: str, state: dict, wall_seconds: float) -> dict:
    metrics = run_directory.read_metrics(output_dir)
    tested = [line for line in metrics if "test_loss" in line]
    summary = {
        "epochs": run.training.epochs,
        "completed_epochs": state["completed_epochs"],
        "optimizer_steps": state["optimizer_iterations"],
        "first_train_loss": metrics[0]["train_loss"] if metrics else None,
        "train_loss": metrics[-1]["train_loss"] if metrics else None,
        "test_loss": None,
        "test_loss_epoch": None,
        "session_wall_seconds": round(wall_seconds, 1),
        "sessions": state.get("sessions", []),
        **run.schedule_summary(),
        "data": run.data.describe(),
    }
    last_epoch = state["completed_epochs"] - 1
    if tested and tested[-1]["epoch"] == last_epoch:
        summary["test_loss"], summary["test_loss_epoch"] = tested[-1]["test_loss"], last_epoch
    elif run.data.test is not None:
        result = run.model.evaluate(run.test_dataset(), verbose=0, return_dict=True)
        summary["test_loss"], summary["test_loss_epoch"] = float(result["loss"]), last_epoch
    return summary


def write_final_outputs(run: TrainingRun, output_dir: str, state: dict,
                        wall_seconds: float) -> dict:
    """`final_metrics.json` and the preset folder `output_dir/preset/`; returns the summary."""
    from keras_hbehavemae import presets

    summary = _final_summary(run, output_dir, state, wall_seconds)
    run_directory.write_json_atomically(
        os.path.join(output_dir, run_directory.FINAL_METRICS_FILE), summary)
    metadata = {"training": {key: value for key, value in summary.items() if key != "data"},
                "data": summary["data"], "model_config": run.model_config.to_dict()}
    presets.save_to_preset(_float32_copy(run.model),
                           os.path.join(output_dir, run_directory.PRESET_FOLDER),
                           metadata=metadata, model_card=_model_card(run, summary))
    return summary


def _say(verbose, message: str) -> None:
    if verbose:
        print(message, flush=True)


def run_pretraining(model_config: HBehaveMAEConfig, data: PretrainingData,
                    training: TrainingConfig, output_dir: str, *, log_dir: str | None = None,
                    preset: str | None = None, callbacks: list | tuple = (),
                    verbose: str | int = "auto", jit_compile: bool | str = "auto") -> dict:
    """Trains (or resumes training) and writes the run directory; returns the final summary.

    Before training: `output_dir` and `log_dir` must be writable and hold room for two
    checkpoints; an existing `run_config.json` must match this configuration.

    Args:
        model_config: the model.
        data: training and held-out data.
        training: the training settings.
        output_dir: the run directory (created if needed).
        log_dir: TensorBoard folder (default `output_dir/logs`).
        preset: initial weights for a fresh run (ignored when resuming).
        callbacks: extra Keras callbacks, run after the built-in ones.
        verbose: `model.fit`'s verbosity ("auto": progress bar); 0 also silences messages.
        jit_compile: as in `build_training_run` (XLA for TensorFlow on CPU: True).

    Raises:
        ValueError: invalid settings, or `output_dir` holding a run with another
            configuration (the message names the differing keys).
        OSError: an unwritable folder or too little disk space.
        NonFiniteLossError: the loss became NaN/inf; every checkpoint is kept.
    """
    start = time.time()
    log_dir = log_dir or os.path.join(output_dir, "logs")
    run_directory.check_writable(output_dir, "--output_dir")
    run_directory.check_writable(log_dir, "--log_dir")
    run_directory.remove_partial_files(output_dir)
    distribution = setup_distribution(training.distribute)
    run_directory.check_run_config(output_dir, _run_config(
        model_config, data, training, distribution, preset, output_dir, log_dir))
    state = run_directory.read_state(output_dir)
    run = build_training_run(model_config, data, training, distribution=distribution,
                             preset=preset if state is None else None, jit_compile=jit_compile)
    run_directory.check_free_space(
        output_dir, 2 * run_directory.checkpoint_bytes(run.model.count_params()), "--output_dir")

    completed = 0
    if state is not None:
        restore_checkpoint(run, output_dir, state)
        completed = state["completed_epochs"]
        _say(verbose, f"Resuming {output_dir} from {state['checkpoint']}: {completed} of "
                      f"{training.epochs} epochs done.")
    run_directory.truncate_metrics(output_dir, completed)
    sessions = (state or {}).get("sessions", []) + [{
        "start_epoch": completed,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "backend": keras.config.backend(),
        "replicas": distribution.num_replicas,
    }]
    if completed < training.epochs:
        guard = NonFiniteLossGuard()
        run.model.fit(run.train_dataset(), epochs=training.epochs, initial_epoch=completed,
                      steps_per_epoch=run.steps_per_epoch, shuffle=False, verbose=verbose,
                      callbacks=_callbacks(run, output_dir, log_dir, sessions, guard,
                                           list(callbacks)))
        if guard.error is not None:
            last = run_directory.read_state(output_dir)
            kept = (f"the last good checkpoint is {last['checkpoint']} (epoch "
                    f"{last['completed_epochs'] - 1})" if last else "no epoch had completed")
            raise NonFiniteLossError(
                f"{guard.error}. Every checkpoint in {output_dir} was kept; {kept}. Lower the "
                "learning rate (--blr/--lr) or check the data for NaN/inf values.")
    else:
        _say(verbose, f"{output_dir}: all {training.epochs} epochs were already done.")
    state = run_directory.read_state(output_dir)
    summary = write_final_outputs(run, output_dir, state, time.time() - start)
    _say(verbose, f"Done: {output_dir} (train loss {summary['train_loss']:.4f}"
         + (f", test loss {summary['test_loss']:.4f}" if summary["test_loss"] is not None
            else "") + ").")
    return summary


def load_trained_pretrainer(output_dir: str) -> HBehaveMAE:
    """The pretrainer saved in a finished run's preset folder."""
    from keras_hbehavemae.presets import load_pretrainer

    return load_pretrainer(os.path.join(output_dir, run_directory.PRESET_FOLDER))

