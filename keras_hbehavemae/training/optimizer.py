"""Optimizer and learning-rate schedule of the published hBehaveMAE training recipe.

The recipe (inherited from MAE) is AdamW with ``betas=(0.9, 0.95)``, weight decay 0.05 on
every parameter of rank >= 2, a per-step linear warmup followed by a half-cosine decay, and a
learning rate scaled linearly with the effective batch size.

See ``PublishedAdamW``, ``WarmupHalfCosineSchedule`` and ``scaled_learning_rate`` for examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops

from keras_hbehavemae.errors import invalid

_PACKAGE = "keras_hbehavemae"


def _require(
    name: str, value: Any, ok: Callable[[Any], bool], rule: str, kind: type = int | float
) -> None:
    """Raises ``ValueError`` naming the argument unless ``value`` is a finite number with ``ok``."""
    valid = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not (valid and ok(value)):
        raise invalid(name, value, f"must be {rule}")


def _is_schedule(learning_rate: Any) -> bool:
    return isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(learning_rate))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PublishedAdamW(keras.optimizers.AdamW):
    """AdamW with PyTorch's epsilon placement and the published hBehaveMAE defaults.

    At step ``t`` (1-based) each variable is updated as ``torch.optim.AdamW`` does::

        theta <- theta * (1 - lr_t * weight_decay)      # Keras' decoupled-decay step
        m <- beta_1 * m + (1 - beta_1) * g;  v <- beta_2 * v + (1 - beta_2) * g**2
        theta <- theta - lr_t * (m / (1 - beta_1**t)) / (sqrt(v / (1 - beta_2**t)) + epsilon)

    ``keras.optimizers.AdamW`` instead adds ``epsilon`` to the *uncorrected* ``sqrt(v)``, which
    equals PyTorch's update with ``epsilon * sqrt(1 - beta_2**t)``; the two differ noticeably
    when ``sqrt(v)`` is comparable to ``epsilon``. Gradients are clipped to a global L2 norm
    of ``global_clipnorm`` by Keras before the update. AMSGrad is not supported.

    Args:
        learning_rate: A float or a ``LearningRateSchedule`` (e.g.
            ``WarmupHalfCosineSchedule``) evaluated on the optimizer's iteration counter.
        weight_decay: Decoupled weight-decay coefficient.
        beta_1: Exponential decay rate of the first-moment estimate.
        beta_2: Exponential decay rate of the second-moment estimate.
        epsilon: Added to the bias-corrected ``sqrt(v)``.
        global_clipnorm: Maximum global L2 norm of the gradients (``None`` disables).
        amsgrad: Must be ``False``; accepted only so that Keras configs round-trip.
        **kwargs: Other ``keras.optimizers.Optimizer`` arguments (``name``, ``use_ema``, ...).

    Example:
        >>> import keras
        >>> optimizer = PublishedAdamW(learning_rate=1e-3)
        >>> variable = keras.Variable([[1.0, -1.0]])
        >>> optimizer.apply([keras.ops.ones((1, 2))], [variable])
        >>> [round(float(x), 6) for x in keras.ops.convert_to_numpy(variable)[0]]
        [0.99895, -1.00095]
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
        weight_decay: float = 0.05,
        beta_1: float = 0.9,
        beta_2: float = 0.95,
        epsilon: float = 1e-8,
        global_clipnorm: float | None = 0.02,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        if amsgrad:
            raise invalid("amsgrad", amsgrad, "PublishedAdamW has no AMSGrad")
        if not _is_schedule(learning_rate):
            _require("learning_rate", learning_rate, lambda v: v > 0, "> 0 (or a schedule)")
        _require("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
        _require("beta_1", beta_1, lambda v: 0 <= v < 1, "in [0, 1)")
        _require("beta_2", beta_2, lambda v: 0 <= v < 1, "in [0, 1)")
        _require("epsilon", epsilon, lambda v: v > 0, "> 0")
        if global_clipnorm is not None:
            _require("global_clipnorm", global_clipnorm, lambda v: v > 0,
                     "> 0, or None for no clipping")
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, amsgrad=False, global_clipnorm=global_clipnorm, **kwargs,
        )  # fmt: skip

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Applies the Adam moment update with epsilon added after bias correction."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        bias_correction_1 = 1.0 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_correction_2 = 1.0 - ops.power(ops.cast(self.beta_2, dtype), step)

        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1.0 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1.0 - self.beta_2))

        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction_2)), self.epsilon)
        step_size = ops.divide(lr, bias_correction_1)
        self.assign_sub(variable, ops.divide(ops.multiply(m, step_size), denominator))

    def get_config(self) -> dict[str, Any]:
        """Returns every constructor argument (inherited Adam/AdamW config is complete)."""
        return super().get_config()


def exclude_one_dimensional_from_decay(
    optimizer: keras.optimizers.Optimizer, variables: Sequence[Any]
) -> None:
    """Excludes every variable of rank <= 1 (biases, norm scales/offsets) from weight decay.

    Selection is by shape because Keras variable names are short (``"bias"``, ``"gamma"``).
    Everything of rank >= 2 is decayed, including ``[1, N, C]`` position embeddings and
    ``[1, 1, C]`` mask tokens. This replaces any exclusion set earlier on ``optimizer``.

    Args:
        optimizer: An optimizer that has not been built yet.
        variables: The variables it will train (e.g. ``model.trainable_variables``).

    Raises:
        ValueError: If ``optimizer`` is already built. Keras' own guard checks an attribute
            that is never set, and an already traced train step would ignore the change.

    Example:
        >>> import keras
        >>> optimizer = PublishedAdamW(learning_rate=1e-3)
        >>> exclude_one_dimensional_from_decay(optimizer, [keras.Variable([0.0])])
    """
    if optimizer.built:
        raise ValueError(
            "exclude_one_dimensional_from_decay() must be called before the optimizer is "
            f"built; optimizer {optimizer.name!r} is already built."
        )
    optimizer.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) <= 1])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WarmupHalfCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Per-step linear warmup then half-cosine decay, as in the published recipe.

    With the fractional epoch ``e = step / steps_per_epoch`` (``step`` is the 0-based optimizer
    iteration, so the very first update uses a learning rate of exactly 0)::

        e <  warmup: lr = peak * e / warmup
        e >= warmup: lr = min + (peak - min) * (1 + cos(pi * (e - warmup) / (epochs - warmup))) / 2

    ``warmup_epochs`` must be strictly smaller than ``epochs`` (with ``warmup == epochs`` the
    peak would never be used and the decay would divide by zero); 0 disables warmup. Steps past
    ``epochs * steps_per_epoch`` hold ``min_learning_rate`` instead of climbing the cosine back.

    Args:
        peak_learning_rate: Learning rate at the end of warmup (``>= 0``).
        steps_per_epoch: Optimizer steps per epoch (positive integer).
        epochs: Total training epochs (positive).
        warmup_epochs: Linear-warmup length in (fractional) epochs, ``0 <= warmup < epochs``.
        min_learning_rate: Final learning rate, ``0 <= min <= peak``.

    Example:
        >>> schedule = WarmupHalfCosineSchedule(1e-3, steps_per_epoch=10, epochs=4,
        ...                                     warmup_epochs=1)
        >>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 25, 40)]
        [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """

    def __init__(
        self,
        peak_learning_rate: float,
        steps_per_epoch: int,
        epochs: float,
        warmup_epochs: float,
        min_learning_rate: float = 0.0,
    ) -> None:
        peak = peak_learning_rate
        _require("steps_per_epoch", steps_per_epoch, lambda v: v > 0, "a positive integer", int)
        _require("epochs", epochs, lambda v: v > 0, "> 0")
        _require("warmup_epochs", warmup_epochs, lambda v: 0 <= v < epochs, f"in [0, {epochs})")
        _require("peak_learning_rate", peak, lambda v: v >= 0, ">= 0")
        _require(
            "min_learning_rate", min_learning_rate, lambda v: 0 <= v <= peak, f"in [0, {peak}]"
        )
        self.peak_learning_rate = peak_learning_rate
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.min_learning_rate = min_learning_rate

    def __call__(self, step: Any) -> Any:
        """Returns the float32 learning rate for a 0-based (possibly symbolic) ``step``."""
        peak, low = float(self.peak_learning_rate), float(self.min_learning_rate)
        end = float(self.epochs) * self.steps_per_epoch
        warmup = float(self.warmup_epochs) * self.steps_per_epoch
        step = ops.minimum(ops.cast(step, "float32"), end)
        # 0.5 * (1 + cos(pi * p)) == sin(pi / 2 * (1 - p)) ** 2 with 1 - p = (end - step) /
        # (end - warmup): exact in float32 near the end, where 1 + cos(pi * p) cancels.
        remaining = ops.divide(ops.subtract(end, step), end - warmup)
        cosine = low + (peak - low) * ops.square(ops.sin((0.5 * math.pi) * remaining))
        if warmup == 0.0:
            return ops.cast(cosine, "float32")
        linear = ops.multiply(step, peak / warmup)
        return ops.cast(ops.where(step < warmup, linear, cosine), "float32")

    def get_config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "warmup_epochs": self.warmup_epochs,
            "min_learning_rate": self.min_learning_rate,
        }


def scaled_learning_rate(base_learning_rate: float, effective_batch_size: int) -> float:
    """Linear scaling rule: ``base_learning_rate * effective_batch_size / 256``.

    Args:
        base_learning_rate: The per-256-samples learning rate (published: 1.6e-4).
        effective_batch_size: Batch size x gradient-accumulation steps x replicas.

    Returns:
        The absolute (peak) learning rate.

    Example:
        >>> scaled_learning_rate(1.6e-4, 512)
        0.00032
    """
    _require("base_learning_rate", base_learning_rate, lambda v: v > 0, "> 0")
    _require(
        "effective_batch_size", effective_batch_size, lambda v: v > 0, "a positive integer", int
    )
    return base_learning_rate * effective_batch_size / 256


def published_optimizer(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    weight_decay: float = 0.05,
    clip_grad: float | None = 0.02,
) -> PublishedAdamW:
    """The published optimizer for `model`: `PublishedAdamW` with 1-D variables undecayed.

    Args:
        model: the model to train (its trainable variables decide the decay exclusions).
        learning_rate: a float > 0 or a schedule such as `WarmupHalfCosineSchedule`.
        weight_decay: decoupled weight decay (>= 0) of every variable of rank >= 2.
        clip_grad: global gradient-norm clip (> 0), or None for no clipping.

    Raises:
        ValueError: naming the argument, for a learning rate, weight decay or clip that is
            negative, zero (learning rate, clip), NaN or infinite.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> published_optimizer(model, 1e-3).weight_decay
        0.05
    """
    if not _is_schedule(learning_rate):
        _require("learning_rate", learning_rate, lambda v: v > 0, "> 0 (or a schedule)")
    _require("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
    if clip_grad is not None:
        _require("clip_grad", clip_grad, lambda v: v > 0, "> 0, or None for no clipping")
    optimizer = PublishedAdamW(
        learning_rate=learning_rate, weight_decay=weight_decay, global_clipnorm=clip_grad
    )
    exclude_one_dimensional_from_decay(optimizer, model.trainable_variables)
    return optimizer
