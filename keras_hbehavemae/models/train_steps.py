"""The pretrainer's `train_step`/`test_step`: one thin implementation per backend.

All three compute the same loss (`HBehaveMAE.compute_pretraining_loss`) and log `loss`,
`grad_norm` (the global L2 norm of the gradients before clipping) and `learning_rate`.
`PretrainingSteps` is chosen once, at import, from `keras.config.backend()`.
"""

from __future__ import annotations

import keras
from keras import ops


def _keypoints_from(data):
    keypoints, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return keypoints


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

        keypoints = _keypoints_from(data)
        with tf.GradientTape() as tape:
            outputs = self(keypoints, training=True)
            loss = self.compute_pretraining_loss(keypoints, outputs)
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gradients, grad_norm = _mean_over_replicas(
                gradients, context, self.optimizer.global_clipnorm)
        else:
            grad_norm = global_norm(gradients)
        learning_rate = _current_learning_rate(self.optimizer)
        self.optimizer.apply(gradients, variables)
        return _across_workers(self.update_pretraining_metrics(loss, grad_norm, learning_rate))

    def test_step(self, data):
        keypoints = _keypoints_from(data)
        loss = self.compute_pretraining_loss(keypoints, self(keypoints, training=False))
        return _across_workers(self.update_pretraining_metrics(loss))


class _TorchSteps:
    def train_step(self, data):
        import torch

        keypoints = _keypoints_from(data)
        self.zero_grad()
        outputs = self(keypoints, training=True)
        loss = self.compute_pretraining_loss(keypoints, outputs)
        loss.backward()
        variables = self.trainable_weights
        gradients = [variable.value.grad for variable in variables]
        learning_rate = _current_learning_rate(self.optimizer)
        with torch.no_grad():
            self.optimizer.apply(gradients, variables)
        return self.update_pretraining_metrics(loss.detach(), global_norm(gradients),
                                               learning_rate)

    def test_step(self, data):
        import torch

        keypoints = _keypoints_from(data)
        with torch.no_grad():
            loss = self.compute_pretraining_loss(keypoints, self(keypoints, training=False))
        return self.update_pretraining_metrics(loss)


class _JaxSteps:
    def _stateless_loss(self, trainable_variables, non_trainable_variables, keypoints,
                        training):
        outputs, non_trainable_variables = self.stateless_call(
            trainable_variables, non_trainable_variables, keypoints, training=training)
        loss = self.compute_pretraining_loss(keypoints, outputs)
        return loss, non_trainable_variables

    def _stateless_metrics(self, metrics_variables, values):
        logs, updated = {}, []
        for metric in self.metrics:
            count = len(metric.variables)
            own, metrics_variables = metrics_variables[:count], metrics_variables[count:]
            value = values.get(metric.name)
            if value is not None:
                own = metric.stateless_update_state(own, value)
                logs[metric.name] = metric.stateless_result(own)
            updated.extend(own)
        return logs, updated

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        keypoints = _keypoints_from(data)
        value_and_grad = jax.value_and_grad(self._stateless_loss, has_aux=True)
        (loss, non_trainable), gradients = value_and_grad(
            trainable, non_trainable, keypoints, True)
        mapping = list(zip(self.optimizer.variables, optimizer_variables, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            learning_rate = _current_learning_rate(self.optimizer)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable)
        logs, metrics_variables = self._stateless_metrics(
            metrics_variables, {"loss": loss, "grad_norm": global_norm(gradients)})
        logs["learning_rate"] = learning_rate
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        keypoints = _keypoints_from(data)
        loss, non_trainable = self._stateless_loss(trainable, non_trainable, keypoints, False)
        logs, metrics_variables = self._stateless_metrics(metrics_variables, {"loss": loss})
        return logs, (trainable, non_trainable, metrics_variables)


PretrainingSteps = {
    "tensorflow": _TensorFlowSteps,
    "torch": _TorchSteps,
    "jax": _JaxSteps,
}[keras.config.backend()]
