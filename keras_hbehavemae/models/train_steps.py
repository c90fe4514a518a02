"""The pretrainer's `train_step`/`test_step`: one thin implementation per backend.

All three compute the same loss (`HBehaveMAE.pretraining_loss`) and log `loss`, `grad_norm`
(the global L2 norm of the gradients before clipping), `skipped_steps` and
`learning_rate`. `PretrainingSteps` is chosen once, at import, from `keras.config.backend()`.

A step whose loss or gradient norm is not finite (NaN or inf keypoints in the batch, which
make `pretraining_loss` NaN, or an overflow) is skipped: the weights and the optimizer
state, its step counter included, stay as they were, and `skipped_steps` counts it; `loss`
and `grad_norm` average the applied steps of the epoch only (NaN when none was applied).
The pretraining command stops at the first skipped step
(`training.callbacks.NonFiniteLossGuard`); see `keras_hbehavemae.models.inputs` for the
policy on non-finite keypoints.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class StepMean(keras.metrics.Mean):
    """`keras.metrics.Mean` whose result is NaN while nothing was counted, not 0.

    The pretrainer's `loss` and `grad_norm` weight each step by whether it was applied; an
    epoch without an applied step then reports NaN (nothing trained), never a loss of 0.
    """

    def result(self):
        return ops.where(self.count > 0, ops.divide_no_nan(self.total, self.count),
                         float("nan"))


def is_finite_step(loss, grad_norm):
    """True (a scalar bool tensor) when both the loss and the gradient norm are finite."""
    return ops.logical_and(ops.all(ops.isfinite(loss)), ops.all(ops.isfinite(grad_norm)))


def global_norm(gradients):
    """sqrt(sum of squares) over all gradients, float32 (None entries are skipped)."""
    squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in gradients if g is not None]
    return ops.sqrt(ops.sum(ops.stack(squares))) if squares else ops.zeros(())


def _current_learning_rate(optimizer):
    return ops.cast(optimizer.learning_rate, "float32")


def _mean_over_replicas(gradients, context, clip_norm):
    """Data-parallel gradients under a TensorFlow strategy with several replicas.

    Returns `(gradients, grad_norm)`: the replicas' mean gradient clipped to the global
    norm `clip_norm` (as one device with the whole batch, or PyTorch DDP, would clip it)
    and divided by the replica count, plus the global norm of the unclipped mean.

    Keras' TensorFlow optimizer clips each replica's gradient by itself and then *sums*
    the replicas' gradients. Handing it mean/n makes its sum the (clipped) mean, and its
    own clip a no-op, because the norm is then at most clip_norm/n.
    """
    import tensorflow as tf

    replicas = context.num_replicas_in_sync
    present = [index for index, gradient in enumerate(gradients) if gradient is not None]
    mean = context.all_reduce(tf.distribute.ReduceOp.MEAN, [gradients[i] for i in present])
    norm = global_norm(mean)
    scale = 1.0 / replicas
    if clip_norm:
        scale = scale * ops.minimum(1.0, clip_norm / ops.maximum(norm, 1e-12))
    result = list(gradients)
    for index, gradient in zip(present, mean, strict=True):
        result[index] = gradient * ops.cast(scale, gradient.dtype)
    return result, norm


def _apply_if_finite(optimizer, gradients, variables, finite):
    """TensorFlow: `optimizer.apply` only when `finite`, in a replica or on one device.

    A `tf.cond` in a replica context must not hold a synchronisation point (the optimizer's
    `merge_call` under `MirroredStrategy`), so there the condition is taken in the
    cross-replica context, as `keras.optimizers.LossScaleOptimizer` does.
    """
    import tensorflow as tf

    if not optimizer.built:
        optimizer.build(variables)
    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        ops.cond(finite, lambda: optimizer.apply(gradients, variables), lambda: None)
        return

    def cross_replica(distribution, gradients, variables, finite):
        finite = distribution.experimental_local_results(finite)[0]  # equal on every replica

        def apply():
            distribution.extended.call_for_each_replica(optimizer.apply,
                                                        args=(gradients, variables))

        ops.cond(finite, apply, lambda: None)

    tf.distribute.get_replica_context().merge_call(cross_replica,
                                                   args=(gradients, variables, finite))


def _across_workers(logs):
    """The step's logs in the form Keras reduces over several worker processes.

    With `MultiWorkerMirroredStrategy` over several workers, Keras 3 averages each log over
    all replicas with `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar
    (keras-team/keras#20585). Shape `[1]` makes that the mean over the replicas, a scalar.
    Elsewhere (one worker) the logs are returned unchanged.
    """
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or (
            strategy.num_replicas_in_sync <= len(strategy.extended.worker_devices)):
        return logs
    return {name: ops.reshape(value, (1,)) for name, value in logs.items()}


class _TensorFlowSteps:
    def train_step(self, data):
        import tensorflow as tf

        keypoints, mask = self.batch_inputs(data)
        with tf.GradientTape() as tape:
            outputs = self.checked_forward(keypoints, mask, training=True)
            loss = self.pretraining_loss(keypoints, outputs)
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        context = tf.distribute.get_replica_context()
        replicated = context is not None and context.num_replicas_in_sync > 1
        if replicated:
            gradients, grad_norm = _mean_over_replicas(
                gradients, context, self.optimizer.global_clipnorm)
            # A NaN on one replica reaches every replica through the summed indicator.
            loss_finite = ops.cast(context.all_reduce(
                tf.distribute.ReduceOp.SUM, ops.cast(~ops.all(ops.isfinite(loss)), "float32")
            ) == 0, "bool")
            finite = ops.logical_and(loss_finite, ops.all(ops.isfinite(grad_norm)))
        else:
            grad_norm = global_norm(gradients)
            finite = is_finite_step(loss, grad_norm)
        learning_rate = _current_learning_rate(self.optimizer)
        _apply_if_finite(self.optimizer, gradients, variables, finite)
        return _across_workers(self.update_pretraining_metrics(loss, grad_norm, learning_rate,
                                                               applied=finite))

    def test_step(self, data):
        keypoints, mask = self.batch_inputs(data)
        outputs = self.checked_forward(keypoints, mask, training=False)
        return _across_workers(
            self.update_pretraining_metrics(self.pretraining_loss(keypoints, outputs)))


class _TorchSteps:
    def train_step(self, data):
        import torch

        keypoints, mask = self.batch_inputs(data)
        self.zero_grad()
        outputs = self.checked_forward(keypoints, mask, training=True)
        loss = self.pretraining_loss(keypoints, outputs)
        loss.backward()
        variables = self.trainable_weights
        gradients = [variable.value.grad for variable in variables]
        grad_norm = global_norm(gradients)
        finite = is_finite_step(loss.detach(), grad_norm)
        learning_rate = _current_learning_rate(self.optimizer)
        if bool(finite):
            with torch.no_grad():
                self.optimizer.apply(gradients, variables)
        return self.update_pretraining_metrics(loss.detach(), grad_norm, learning_rate,
                                               applied=finite)

    def test_step(self, data):
        import torch

        keypoints, mask = self.batch_inputs(data)
        with torch.no_grad():
            outputs = self.checked_forward(keypoints, mask, training=False)
            loss = self.pretraining_loss(keypoints, outputs)
        return self.update_pretraining_metrics(loss)


class _JaxSteps:
    def _stateless_loss(self, trainable_variables, non_trainable_variables, keypoints, mask,
                        training):
        outputs, non_trainable_variables = self.stateless_call(
            trainable_variables, non_trainable_variables, keypoints, mask, training=training)
        loss = self.pretraining_loss(keypoints, outputs)
        return loss, non_trainable_variables

    def _stateless_metrics(self, metrics_variables, *args, **kwargs):
        """`update_pretraining_metrics(*args, **kwargs)` on the given metric values."""
        mapping = list(zip(self.metrics_variables, metrics_variables, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self.update_pretraining_metrics(*args, **kwargs)
        updated = [scope.get_current_value(variable) for variable in self.metrics_variables]
        return logs, [old if new is None else new
                      for old, new in zip(metrics_variables, updated, strict=True)]

    def train_step(self, state, data):
        import jax
        import jax.numpy as jnp

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        keypoints, mask = self.batch_inputs(data)
        value_and_grad = jax.value_and_grad(self._stateless_loss, has_aux=True)
        (loss, non_trainable), gradients = value_and_grad(
            trainable, non_trainable, keypoints, mask, True)
        mapping = list(zip(self.optimizer.variables, optimizer_variables, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            learning_rate = _current_learning_rate(self.optimizer)
        grad_norm = global_norm(gradients)
        finite = is_finite_step(loss, grad_norm)
        new_trainable, new_optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable)
        # A skipped step keeps the weights and the optimizer state (its counter included).
        trainable = [jnp.where(finite, new, old)
                     for new, old in zip(new_trainable, trainable, strict=True)]
        optimizer_variables = [jnp.where(finite, new, old) for new, old in zip(
            new_optimizer_variables, optimizer_variables, strict=True)]
        logs, metrics_variables = self._stateless_metrics(
            metrics_variables, loss, grad_norm, learning_rate, applied=finite)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        keypoints, mask = self.batch_inputs(data)
        loss, non_trainable = self._stateless_loss(trainable, non_trainable, keypoints, mask,
                                                   False)
        logs, metrics_variables = self._stateless_metrics(metrics_variables, loss)
        return logs, (trainable, non_trainable, metrics_variables)


PretrainingSteps = {
    "tensorflow": _TensorFlowSteps,
    "torch": _TorchSteps,
    "jax": _JaxSteps,
}[keras.config.backend()]
