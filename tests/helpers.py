"""Shared test helpers: fixture loading, tiny configurations and backend-agnostic gradients."""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.convert.checkpoint import load_torch_state_dict

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
GOLDEN_NAMES = ("hbehavemae_tiny_multi", "hbehavemae_tiny_single")

TINY = dict(input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
            q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)


def load_golden(name: str):
    """`(config, arrays, metadata)` of one golden fixture."""
    metadata = json.loads((FIXTURES / f"{name}.json").read_text())
    with np.load(FIXTURES / f"{name}.npz") as archive:
        arrays = {key: archive[key] for key in archive.keys()}
    values = dict(metadata["model"], mask_ratio=metadata["run"]["mask_ratio"])
    config = HBehaveMAEConfig.from_dict(values, strict=False)
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
