"""Shared test helpers: fixture loading, configurations, small training runs, checkpoint
files, the pretraining script, and backend-agnostic gradients."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import zipfile

import keras
import numpy as np

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.convert.checkpoint import load_torch_state_dict
from keras_hbehavemae.convert.published import config_from_published_arguments
from keras_hbehavemae.models.geometry import compute_geometry

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(__file__).parent / "fixtures"
GOLDEN_NAMES = ("hbehavemae_tiny_multi", "hbehavemae_tiny_single")

TINY = dict(input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
            q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)

# ---------------------------------------------------------------- configurations

# The published Shot7M2 configuration.
SHOT7M2 = dict(
    input_size=(400, 1, 72), patch_kernel=(2, 1, 3), stages=(2, 3, 4),
    q_strides="2,1,4;2,1,6", out_embed_dims=(78, 128, 256), init_embed_dim=96,
    init_num_heads=2, decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=1,
    decoding_strategy="single", norm_loss=False, mask_ratio=0.70,
)

# The tiny golden-fixture configuration, with its decoder and mask ratio.
TINY_CONFIG = dict(TINY, decoder_embed_dim=16, mask_ratio=0.75)

# The training-argument namespace stored in a published Shot7M2 checkpoint (`args`): the
# model fields in their command-line spellings plus many training-only settings.
SHOT7M2_ARGS = {
    "batch_size": 512,
    "epochs": 200,
    "accum_iter": 1,
    "model": "hbehavemae",
    "input_size": [400, 1, 72],
    "stages": [2, 3, 4],
    "q_strides": "2,1,4;2,1,6",
    "mask_unit_attn": ["True", "False", "False"],
    "patch_kernel": [2, 1, 3],
    "init_embed_dim": 96,
    "init_num_heads": 2,
    "out_embed_dims": [78, 128, 256],
    "decoder_embed_dim": 128,
    "decoder_depth": 1,
    "decoder_num_heads": 1,
    "decoding_strategy": "single",
    "norm_loss": False,
    "non_hierarchical": False,
    "mask_ratio": 0.70,
    "num_frames": 400,
    "weight_decay": 0.05,
    "lr": None,
    "blr": 1.6e-4,
    "min_lr": 0.0,
    "warmup_epochs": 40,
    "clip_grad": 0.02,
    "dataset": "shot7m2",
    "path_to_data_dir": "data/Shot7M2/train/train_dictionary_poses.npy",
    "output_dir": "outputs/shot7m2/experiment1",
    "seed": 0,
    "num_workers": 8,
    "pin_mem": True,
    "distributed": True,
    "sliding_window": 17,
    "fill_holes": False,
}
MODEL_ARG_NAMES = (
    "input_size", "stages", "q_strides", "mask_unit_attn", "patch_kernel", "init_embed_dim",
    "init_num_heads", "out_embed_dims", "decoder_embed_dim", "decoder_depth",
    "decoder_num_heads", "decoding_strategy", "norm_loss", "non_hierarchical", "mask_ratio",
)

# The `args` of a published-layout checkpoint of the tiny golden fixture (test_convert).
TINY_CHECKPOINT_ARGS = dict(
    input_size=[32, 4, 12], stages=[1, 2, 1], q_strides="2,1,2;2,2,1",
    mask_unit_attn=["True", "False", "False"], patch_kernel=[2, 1, 3], init_embed_dim=16,
    init_num_heads=2, out_embed_dims=[8, 12, 16], decoder_embed_dim=16, decoder_depth=1,
    decoder_num_heads=1, decoding_strategy="multi", norm_loss=True, non_hierarchical=False,
    mask_ratio=0.75, num_frames=32, batch_size=2, blr=1.6e-4, epochs=200, warmup_epochs=40,
    dataset="mabe_mice", output_dir="/tmp/out")


def make_config(base=SHOT7M2, **changes) -> HBehaveMAEConfig:
    return HBehaveMAEConfig(**{**base, **changes})


def config_geometry(base=SHOT7M2, **changes):
    """What a model constructor does: build the config, then derive the geometry."""
    return compute_geometry(make_config(base, **changes))


def load_golden(name: str):
    """`(config, arrays, metadata)` of one golden fixture."""
    metadata = json.loads((FIXTURES / f"{name}.json").read_text())
    with np.load(FIXTURES / f"{name}.npz") as archive:
        arrays = {key: archive[key] for key in archive.keys()}
    values = dict(metadata["model"], mask_ratio=metadata["run"]["mask_ratio"])
    config = config_from_published_arguments(values, f"{name}.json")
    return config, arrays, metadata


def build_pretrainer(config: HBehaveMAEConfig, seed: int | None = 0) -> HBehaveMAE:
    backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
    return HBehaveMAE(backbone, seed=seed, **config.pretrainer_kwargs())


def golden_pretrainer(name: str):
    config, arrays, metadata = load_golden(name)
    model = build_pretrainer(config)
    state = {key[len("param/"):]: value for key, value in arrays.items()
             if key.startswith("param/")}
    load_torch_state_dict(model, state)
    return model, arrays, metadata


def to_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def compiled(model, function):
    """`function` (which uses `model`'s weights) compiled once under JAX, eager elsewhere.

    JAX's eager mode compiles every operation separately, which makes a first eager
    forward pass take tens of seconds on two cores; one jitted graph takes a few.
    """
    if keras.config.backend() != "jax":
        return function
    import jax

    variables = list(model.variables)

    def stateless(values, *args):
        mapping = list(zip(variables, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = function(*args)
            updated = [scope.get_current_value(v) for v in variables]
        return outputs, updated

    jitted = jax.jit(stateless)

    def run(*args):
        outputs, updated = jitted([v.value for v in variables], *args)
        for variable, value in zip(variables, updated, strict=True):
            if value is not None:  # random-seed state advances, like an eager call
                variable.assign(value)
        return outputs

    return run


def loss_and_gradients(model: HBehaveMAE, keypoints, mask):
    """Loss and the gradient of every float weight (zeros where it has none), by the
    backend's own autodiff. Returns `(loss, {id(variable): gradient})`."""
    backend = keras.config.backend()
    variables = [v for v in model.weights if "float" in str(v.dtype)]
    keypoints = keras.ops.convert_to_tensor(keypoints)
    mask = keras.ops.convert_to_tensor(mask)

    def forward():
        return model.compute_pretraining_loss(keypoints, model(keypoints, unit_mask=mask))

    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch([v.value for v in variables])
            loss = forward()
        gradients = tape.gradient(loss, [v.value for v in variables])
    elif backend == "jax":
        import jax

        others = [v for v in model.variables if all(v is not f for f in variables)]
        other_values = [v.value for v in others]

        def loss_of(values):
            mapping = list(zip(variables, values, strict=True)) + list(
                zip(others, other_values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return forward()

        loss, gradients = jax.jit(jax.value_and_grad(loss_of))([v.value for v in variables])
    else:

        for variable in variables:
            variable.value.requires_grad_(True)
            variable.value.grad = None
        loss = forward()
        loss.backward()
        gradients = [v.value.grad for v in variables]
        loss = loss.detach()
    result = {}
    for variable, gradient in zip(variables, gradients, strict=True):
        result[id(variable)] = (np.zeros(variable.shape, "float32") if gradient is None
                                else to_numpy(gradient))
    return float(to_numpy(loss)), result


# ---------------------------------------------------------------- small training runs

# The smallest useful hierarchy: 2 stages, 12 mask units of which 3 are kept.
SMALL = dict(input_size=(24, 3, 24), patch_kernel=(3, 1, 24), stages=(1, 1), q_strides="2,1,1",
             mask_unit_attn=(True, False), init_embed_dim=8, out_embed_dims=(8, 16),
             decoder_embed_dim=8, mask_ratio=0.75)


def small_data(test: bool = False, frames: int = 60):
    """A `PretrainingData` of one random sequence (and a held-out one) for `SMALL`."""
    from keras_hbehavemae.data.recipes import PretrainingData

    rng = np.random.default_rng(0)
    train = [rng.normal(size=(frames, 3, 24)).astype("float32")]
    held_out = [rng.normal(size=(30, 3, 24)).astype("float32")] if test else None
    return PretrainingData("arrays", train, held_out, num_frames=24, sliding_window=4)


def small_training(**overrides):
    """A `TrainingConfig` of 2 epochs × 2 steps of batch 2."""
    from keras_hbehavemae.training import TrainingConfig

    values = dict(batch_size=2, epochs=2, warmup_epochs=0, lr=1e-3, steps_per_epoch=2)
    return TrainingConfig(**{**values, **overrides})


class StepLosses(keras.callbacks.Callback):
    """Records the logged (running-mean) loss after every training step."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(np.asarray(keras.ops.convert_to_numpy(logs["loss"]))))


# ---------------------------------------------------------------- checkpoint files


def write_zip(path: pathlib.Path, entries: dict[str, bytes]) -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def read_zip(path: pathlib.Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def save_small_checkpoint(path: pathlib.Path) -> dict:
    """A `torch.save` of `{"model": {"weight", "bias"}}` (needs torch); returns the tensors."""
    import torch

    torch.manual_seed(0)
    model = {"weight": torch.randn(3, 4).t(), "bias": torch.randn(3)}
    torch.save({"model": model}, path)
    return model


def save_published_checkpoint(path: pathlib.Path, arrays: dict,
                              args: dict | None = None) -> pathlib.Path:
    """The golden fixture `arrays` as a checkpoint in the published layout (`torch.save` of
    model, AdamW optimizer state, epoch, scaler and `args`, by default
    `TINY_CHECKPOINT_ARGS`; needs torch)."""
    import torch

    state = {key[len("param/"):]: torch.from_numpy(value.copy())
             for key, value in arrays.items() if key.startswith("param/")}
    parameters = [torch.nn.Parameter(value.clone()) for value in state.values()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    for parameter in parameters:
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "epoch": 199,
                "scaler": {}, "args": argparse.Namespace(**(
                    TINY_CHECKPOINT_ARGS if args is None else args))}, path)
    return path


# ---------------------------------------------------------------- the pretrain command


def pretrain_script():
    """The `hbehavemae pretrain` command's module."""
    from keras_hbehavemae.cli import pretrain

    return pretrain


def parse_pretrain_flags(*argv):
    """The script's flags parsed from `argv` (published multi-value forms joined)."""
    from absl import flags

    script = pretrain_script()
    flag_values = flags.FlagValues()
    script.define_flags(flag_values)
    flag_values(["pretrain.py", *script.join_multi_value_flags(list(argv))])
    return flag_values


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


def run_small_pretraining(output_dir, losses: StepLosses | None = None, callbacks=()):
    """`run_pretraining` of `SMALL` on `small_data()`, 4 epochs of 2 steps, seed 0, keeping
    the newest checkpoint, in `output_dir` (a fresh run, or a resumed one). The logged loss
    after every step it runs goes to `losses.losses`; returns that list."""
    from keras_hbehavemae.training import run_pretraining

    losses = losses or StepLosses()
    run_pretraining(HBehaveMAEConfig(**SMALL), small_data(), small_training(epochs=4, keep_last=1),
                    str(output_dir), callbacks=[losses, *callbacks], verbose=0)
    return losses.losses
