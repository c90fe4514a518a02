"""Tests for keras_hbehavemae.training.optimizer against a NumPy port of torch.optim.AdamW.

Run once per backend, e.g. ``KERAS_BACKEND=jax python -m pytest -q tests/test_optimizer.py``.
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import pytest

from keras_hbehavemae.training.optimizer import (
    PublishedAdamW,
    WarmupHalfCosineSchedule,
    exclude_one_dimensional_from_decay,
    scaled_learning_rate,
)

BACKEND = keras.backend.backend()
NUM_STEPS = 5
WEIGHT_DECAY = 0.05
BETA_1, BETA_2, EPSILON = 0.9, 0.95, 1e-8
SCHEDULE_ARGS = dict(peak_learning_rate=1e-2, steps_per_epoch=2, epochs=5, warmup_epochs=1)


def reference_schedule(step, peak, steps_per_epoch, epochs, warmup, low=0.0):
    """Python-math port of the published (MAE) ``adjust_learning_rate``."""
    epoch = step / steps_per_epoch
    if epoch < warmup:
        return peak * epoch / warmup
    return low + (peak - low) * 0.5 * (
        1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup))
    )


def reference_adamw(initial, gradients, learning_rates, decayed, clipnorm):
    """float64 NumPy port of ``clip_grad_norm_`` + ``torch.optim.AdamW`` (no amsgrad)."""
    theta = [x.astype(np.float64) for x in initial]
    m = [np.zeros_like(x) for x in theta]
    v = [np.zeros_like(x) for x in theta]
    for t, (grads, lr) in enumerate(zip(gradients, learning_rates, strict=True), start=1):
        grads = [g.astype(np.float64) for g in grads]
        if clipnorm is not None:
            norm = math.sqrt(sum(float(np.sum(g**2)) for g in grads))
            coef = min(1.0, clipnorm / (norm + 1e-6))  # torch.nn.utils.clip_grad_norm_
            grads = [g * coef for g in grads]
        for i, g in enumerate(grads):
            if decayed[i]:
                theta[i] = theta[i] * (1.0 - lr * WEIGHT_DECAY)
            m[i] = BETA_1 * m[i] + (1.0 - BETA_1) * g
            v[i] = BETA_2 * v[i] + (1.0 - BETA_2) * g**2
            denominator = np.sqrt(v[i]) / math.sqrt(1.0 - BETA_2**t) + EPSILON
            theta[i] = theta[i] - lr / (1.0 - BETA_1**t) * m[i] / denominator
    return theta


def make_problem():
    """A 2-D kernel and 1-D bias with ~0.1 gradients, and a 3-D embedding with 1e-10..1e-8 ones."""
    rng = np.random.default_rng(0)

    def away_from_zero(shape):  # |x| in [0.5, 1] keeps rtol meaningful for every element
        return (rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.0, shape)).astype("float32")

    initial = [away_from_zero((3, 4)), away_from_zero((4,)), away_from_zero((1, 4, 3))]
    gradients = [
        [
            (0.1 * rng.standard_normal((3, 4))).astype("float32"),
            (0.1 * rng.standard_normal((4,))).astype("float32"),
            (rng.choice([-1.0, 1.0], (1, 4, 3)) * 10.0 ** rng.uniform(-10, -8, (1, 4, 3))).astype(
                "float32"
            ),
        ]
        for _ in range(NUM_STEPS)
    ]
    return initial, gradients


def run_keras(optimizer, initial, gradients, exclude=True):
    variables = [keras.Variable(x) for x in initial]
    if exclude:
        exclude_one_dimensional_from_decay(optimizer, variables)
    for grads in gradients:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
    return [keras.ops.convert_to_numpy(v) for v in variables]


def learning_rates(use_schedule):
    if use_schedule:
        return [reference_schedule(s, 1e-2, 2, 5, 1) for s in range(NUM_STEPS)]
    return [1e-2] * NUM_STEPS


@pytest.mark.parametrize("use_schedule", [False, True], ids=["constant_lr", "schedule"])
@pytest.mark.parametrize("clipnorm", [None, 0.02, 1e3], ids=["no_clip", "clip_active", "clip_idle"])
def test_matches_torch_adamw_reference(clipnorm, use_schedule):
    initial, gradients = make_problem()
    lr = WarmupHalfCosineSchedule(**SCHEDULE_ARGS) if use_schedule else 1e-2
    optimizer = PublishedAdamW(learning_rate=lr, global_clipnorm=clipnorm)
    result = run_keras(optimizer, initial, gradients)
    expected = reference_adamw(
        initial, gradients, learning_rates(use_schedule), [True, False, True], clipnorm
    )
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == NUM_STEPS
    for name, got, want in zip(["kernel", "bias", "embedding"], result, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=0, err_msg=name)
    # The schedule's first step has lr == 0, so it must leave every variable untouched.
    if use_schedule:
        first = run_keras(PublishedAdamW(learning_rate=lr), initial, gradients[:1])
        for got, want in zip(first, initial, strict=True):
            np.testing.assert_array_equal(got, want)


def test_bias_exclusion_matters():
    initial, gradients = make_problem()
    result = run_keras(PublishedAdamW(1e-2, global_clipnorm=None), initial, gradients, False)
    expected = reference_adamw(initial, gradients, learning_rates(False), [True, False, True], None)
    assert not np.allclose(result[1], expected[1], rtol=1e-5, atol=0)


def test_plain_keras_adamw_differs_only_where_epsilon_matters():
    initial, gradients = make_problem()
    optimizer = keras.optimizers.AdamW(
        learning_rate=1e-2,
        weight_decay=WEIGHT_DECAY,
        beta_1=BETA_1,
        beta_2=BETA_2,
        epsilon=EPSILON,
        global_clipnorm=None,
    )
    kernel, bias, embedding = run_keras(optimizer, initial, gradients)
    expected = reference_adamw(initial, gradients, learning_rates(False), [True, False, True], None)
    # Ordinary gradients: Keras' epsilon placement is immaterial, so the reference agrees ...
    np.testing.assert_allclose(kernel, expected[0], rtol=1e-5)
    np.testing.assert_allclose(bias, expected[1], rtol=1e-5)
    # ... but with ~1e-9 gradients it is not, which is what PublishedAdamW fixes.
    assert not np.allclose(embedding, expected[2], rtol=1e-5, atol=0)


@pytest.mark.skipif(BACKEND == "torch", reason="no graph compilation path to check on torch")
def test_compiled_update_matches_reference():
    initial, gradients = make_problem()
    optimizer = PublishedAdamW(learning_rate=WarmupHalfCosineSchedule(**SCHEDULE_ARGS))
    variables = [keras.Variable(x) for x in initial]
    exclude_one_dimensional_from_decay(optimizer, variables)
    optimizer.build(variables)
    if BACKEND == "jax":
        import jax

        step = jax.jit(optimizer.stateless_apply)
        train_values = [v.value for v in variables]
        opt_values = [v.value for v in optimizer.variables]
        for grads in gradients:
            train_values, opt_values = step(opt_values, grads, train_values)
        result = [np.asarray(x) for x in train_values]
    else:
        import tensorflow as tf

        step = tf.function(lambda grads: optimizer.apply(grads, variables))
        for grads in gradients:
            step([tf.constant(g) for g in grads])
        result = [keras.ops.convert_to_numpy(v) for v in variables]
    expected = reference_adamw(initial, gradients, learning_rates(True), [True, False, True], 0.02)
    for got, want in zip(result, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)


def test_fit_smoke():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = PublishedAdamW(learning_rate=WarmupHalfCosineSchedule(1e-2, 2, 2, 1))
    exclude_one_dimensional_from_decay(optimizer, model.trainable_variables)
    model.compile(optimizer=optimizer, loss="mse")
    before = keras.ops.convert_to_numpy(model.layers[0].kernel)
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    after = keras.ops.convert_to_numpy(model.layers[0].kernel)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 4
    assert np.all(np.isfinite(after)) and not np.allclose(before, after)


def test_optimizer_validation():
    with pytest.raises(ValueError, match="^amsgrad: True is invalid"):
        PublishedAdamW(1e-3, amsgrad=True)
    optimizer = PublishedAdamW(1e-3)
    variable = keras.Variable(np.ones((2, 2), "float32"))
    optimizer.build([variable])
    with pytest.raises(ValueError, match="before the optimizer is built"):
        exclude_one_dimensional_from_decay(optimizer, [variable])


def test_published_defaults():
    optimizer = PublishedAdamW(1e-3)
    assert (optimizer.weight_decay, optimizer.beta_1, optimizer.beta_2) == (0.05, 0.9, 0.95)
    assert (optimizer.epsilon, optimizer.global_clipnorm, optimizer.amsgrad) == (1e-8, 0.02, False)


@pytest.mark.parametrize("low", [0.0, 1e-5])
def test_schedule_matches_reference(low):
    peak, spe, epochs, warmup = 1e-3, 10, 6, 2
    schedule = WarmupHalfCosineSchedule(peak, spe, epochs, warmup, min_learning_rate=low)
    assert float(schedule(0)) == 0.0
    assert float(schedule(keras.ops.convert_to_tensor(0))) == 0.0
    checkpoints = {10: peak / 2, 20: peak, 40: low + (peak - low) / 2, 59: None, 7: None, 33: None}
    for step, closed_form in checkpoints.items():
        want = reference_schedule(step, peak, spe, epochs, warmup, low)
        if closed_form is not None:
            assert want == pytest.approx(closed_form, rel=1e-12)
        for arg in (
            step,
            keras.ops.convert_to_tensor(step),
            keras.Variable(step, dtype="int32", trainable=False),
        ):
            got = schedule(arg)
            assert keras.ops.convert_to_numpy(got).dtype == np.float32
            np.testing.assert_allclose(float(keras.ops.convert_to_numpy(got)), want, rtol=1e-6)
    # Past the end the schedule holds min_learning_rate instead of climbing back up.
    np.testing.assert_allclose(float(schedule(60)), low, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(float(schedule(95)), low, rtol=1e-6, atol=1e-12)


def test_schedule_without_warmup():
    schedule = WarmupHalfCosineSchedule(1e-3, steps_per_epoch=4, epochs=3, warmup_epochs=0)
    for step in (0, 5, 11):
        want = reference_schedule(step, 1e-3, 4, 3, 0)
        np.testing.assert_allclose(float(schedule(step)), want, rtol=1e-6, atol=1e-12)
    assert float(schedule(0)) == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(steps_per_epoch=0), "steps_per_epoch"),
        (dict(steps_per_epoch=2.5), "steps_per_epoch"),
        (dict(epochs=0), "epochs"),
        (dict(epochs=-3), "epochs"),
        (dict(warmup_epochs=-1), "warmup_epochs"),
        (dict(warmup_epochs=10), "warmup_epochs"),
        (dict(warmup_epochs=12), "warmup_epochs"),
        (dict(peak_learning_rate=-1e-3), "peak_learning_rate"),
        (dict(min_learning_rate=-1e-6), "min_learning_rate"),
        (dict(min_learning_rate=1.0), "min_learning_rate"),
    ],
)
def test_schedule_rejects_invalid_arguments(overrides, name):
    args = dict(peak_learning_rate=1e-3, steps_per_epoch=5, epochs=10, warmup_epochs=2)
    args.update(overrides)
    with pytest.raises(ValueError, match=rf"^{name}: {re.escape(repr(overrides[name]))} is "
                                         r"invalid: must be"):
        WarmupHalfCosineSchedule(**args)


def test_scaled_learning_rate():
    assert scaled_learning_rate(1.6e-4, 512) == pytest.approx(3.2e-4, rel=1e-12)
    assert scaled_learning_rate(1.6e-4, 256) == pytest.approx(1.6e-4, rel=1e-12)
    with pytest.raises(ValueError, match="effective_batch_size"):
        scaled_learning_rate(1.6e-4, 0)
    with pytest.raises(ValueError, match="base_learning_rate"):
        scaled_learning_rate(-1.0, 256)


def test_serialization_round_trip():
    schedule = WarmupHalfCosineSchedule(3.2e-4, 100, 200, 40, min_learning_rate=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, WarmupHalfCosineSchedule)
    assert restored.get_config() == schedule.get_config()
    assert float(restored(1234)) == float(schedule(1234))

    optimizer = PublishedAdamW(learning_rate=schedule, weight_decay=0.1, global_clipnorm=None)
    serialized = keras.saving.serialize_keras_object(optimizer)
    assert serialized["registered_name"] == "keras_hbehavemae>PublishedAdamW"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, PublishedAdamW)
    config, restored_config = optimizer.get_config(), restored.get_config()
    assert restored_config == config
    lr_config = restored_config["learning_rate"]
    assert lr_config["registered_name"] == "keras_hbehavemae>WarmupHalfCosineSchedule"
    assert lr_config["config"] == schedule.get_config()
    assert (restored.weight_decay, restored.global_clipnorm, restored.beta_2) == (0.1, None, 0.95)

    plain = PublishedAdamW(learning_rate=2e-4)
    again = PublishedAdamW.from_config(plain.get_config())
    assert again.get_config() == plain.get_config()
