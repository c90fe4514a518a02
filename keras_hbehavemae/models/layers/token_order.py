"""Unroll, reroll and undo_windowing: permutations of the token axis.

The orders are defined in docs/model.md ("Unroll, reroll and mask units").

The permutations themselves are computed by `keras_hbehavemae.models.geometry`; this module only
applies them to tensors.

Example:

>>> import keras, numpy as np
>>> layer = TokenPermute(split_shape=(2, 3), order=(1, 0), output_shape=(6,))
>>> tokens = layer(np.arange(6, dtype="float32").reshape(1, 6, 1))
>>> keras.ops.convert_to_numpy(tokens)[0, :, 0].tolist()
[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


def permute_tokens(tokens, split_shape: Sequence[int], order: Sequence[int],
                   output_shape: Sequence[int]):
    """Reshape → transpose → reshape of the token axis, batch and channel axes aside.

    Axes of size 1 are dropped before the transpose, which keeps the rank small.

    Args:
        tokens: `[B, ...tokens..., C]` whose token axes hold `prod(split_shape)` entries.
        split_shape: the token axis split into these sizes (row-major).
        order: the permutation of the split axes.
        output_shape: token axes of the result.

    Returns:
        `[B, *output_shape, C]`.
    """
    channels = tokens.shape[-1]
    kept_axes = [axis for axis, size in enumerate(split_shape) if size != 1]
    kept_order = [kept_axes.index(axis) for axis in order if axis in kept_axes]
    if kept_order == sorted(kept_order):  # no data movement needed
        return ops.reshape(tokens, (-1, *output_shape, channels))
    sizes = [split_shape[axis] for axis in kept_axes]
    tokens = ops.reshape(tokens, (-1, *sizes, channels))  # [B, *split sizes, C]
    tokens = ops.transpose(  # [B, *permuted split sizes, C]
        tokens, (0, *[axis + 1 for axis in kept_order], len(sizes) + 1)
    )
    return ops.reshape(tokens, (-1, *output_shape, channels))  # [B, *output_shape, C]


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class TokenPermute(keras.layers.Layer):
    """A layer form of `permute_tokens` (used for unroll, reroll and undo_windowing).

    Args:
        split_shape: the token axis split into these sizes.
        order: the permutation of the split axes.
        output_shape: token axes of the result.
    """

    def __init__(self, split_shape, order, output_shape, **kwargs):
        super().__init__(**kwargs)
        self.split_shape = tuple(int(v) for v in split_shape)
        self.order = tuple(int(v) for v in order)
        self.output_token_shape = tuple(int(v) for v in output_shape)

    def call(self, tokens):
        return permute_tokens(tokens, self.split_shape, self.order, self.output_token_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_token_shape, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(split_shape=list(self.split_shape), order=list(self.order),
                      output_shape=list(self.output_token_shape))
        return config
