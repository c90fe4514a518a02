"""Dense layers on token tensors: one `[rows, channels]` product, the bias fused into it.

Example:

>>> import numpy as np
>>> dense = FusedBiasDense(4)
>>> tuple(dense_on_rows(dense, np.zeros((2, 3, 5, 8), "float32")).shape)
(2, 3, 5, 4)
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class FusedBiasDense(keras.layers.Dense):
    """`keras.layers.Dense` with its bias added inside the matrix product where the backend
    can; the same weights, configuration and result (up to rounding).

    - torch: `torch.nn.functional.linear` (one `addmm`). Dense's product followed by an
      out-of-place bias add allocates and writes a second output-sized tensor: on a
      `[38400, 96] · [96, 288]` product that add cost 64 % of the product's time (thread
      CPU time, one thread); in the Shot7M2 encoder the bias adds were 16 % of the torch
      forward pass.
    - TensorFlow: `tf.nn.bias_add` after the product, which TensorFlow's graph optimiser
      fuses into one kernel (Dense's plain `add` is not fused); XLA fuses either form.
    - JAX: as Dense (XLA fuses the add).

    Quantized and LoRA layers take Dense's own path.

    Example:
        >>> import numpy as np
        >>> layer = FusedBiasDense(3, kernel_initializer="ones", bias_initializer="ones")
        >>> keras.ops.convert_to_numpy(layer(np.ones((1, 2), "float32"))).tolist()
        [[3.0, 3.0, 3.0]]
    """

    def is_plain_affine(self) -> bool:
        """True when the layer is `inputs · kernel + bias` and nothing else (a bias, no
        activation, not quantized, no LoRA): then its weights may be used directly."""
        return not (self.bias is None or self.activation is not keras.activations.linear
                    or self.quantization_mode or self.lora_enabled)

    def call(self, inputs, training=None):
        if not self.is_plain_affine():
            return super().call(inputs, training=training)
        backend = keras.config.backend()
        if backend == "torch":
            import torch

            kernel = ops.cast(self.kernel, inputs.dtype)  # [C, D]
            bias = ops.cast(self.bias, inputs.dtype)
            return torch.nn.functional.linear(inputs, kernel.T, bias)  # kernel.T: [D, C]
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.nn.bias_add(ops.matmul(inputs, self.kernel), ops.cast(
                self.bias, inputs.dtype))
        return super().call(inputs, training=training)


def dense_on_rows(layer, tokens):
    """`layer(tokens)` for `tokens` `[B, *S, C]`, computed on the flattened `[B·∏S, C]`.

    Same weights, same result: every row is multiplied by the same kernel. The flat form is
    what XLA lowers well. For a Dense layer on `[32, 1440, 96]`, JAX's compiled input and
    weight gradients took 2.4× longer on the 3-D tensor than on the flat one, because XLA
    transposed the whole output gradient before the weight gradient. PyTorch and
    TensorFlow without XLA flatten internally either way.

    Args:
        layer: a layer acting on the last axis (a `FusedBiasDense` or `keras.layers.Dense`).
        tokens: `[B, *S, C]` with static `S`.

    Returns:
        `[B, *S, D]`.
    """
    inner_shape = tuple(tokens.shape[1:-1])
    rows = ops.reshape(tokens, (-1, tokens.shape[-1]))  # [B·∏S, C]
    output = layer(rows)  # [B·∏S, D]
    return ops.reshape(output, (-1, *inner_shape, output.shape[-1]))  # [B, *S, D]
