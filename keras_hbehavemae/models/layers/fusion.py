"""Multi-scale fusion head (docs/model.md, "Multi-scale fusion").

Example:

>>> import numpy as np
>>> head = MultiScaleFusionHead(output_dim=16)
>>> tuple(head(np.zeros((2, 4, 4, 2, 2, 8), "float32")).shape)
(2, 4, 16)
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_hbehavemae.models.layers.dense_rows import FusedBiasDense


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class MultiScaleFusionHead(keras.layers.Layer):
    """Maps each kept unit's window of a level to one vector of the last level's width.

    Equals the published Conv3D with kernel = stride = the window (m_t, m_h, m_w): a Dense
    over the window flattened in (t, h, w, channel) order. PyTorch's default conv init:
    kernel and bias U(±1/sqrt(fan_in)), fan_in = |m|·C_in.

    Args:
        output_dim: width of the last level's projection.
    """

    def __init__(self, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.dense = None

    def build(self, input_shape):
        fan_in = math.prod(input_shape[2:])
        bound = 1.0 / math.sqrt(fan_in)
        self.dense = FusedBiasDense(
            self.output_dim,
            kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            dtype=self.dtype_policy, trainable=self.trainable, name="conv")
        self.dense.build((input_shape[0], input_shape[1], fan_in))

    def call(self, windows):
        units, flat = windows.shape[1], math.prod(windows.shape[2:])
        windows = ops.reshape(windows, (-1, units, flat))  # [B, K, m_t·m_h·m_w·C]
        return self.dense(windows)  # [B, K, output_dim]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(output_dim=self.output_dim)
        return config
