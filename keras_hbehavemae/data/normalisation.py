"""Mapping arena pixels to normalised coordinates (MABe22).

The published MABe22 recipe normalises each window *after* augmentation, which
works in pixels: v ← (v − 425) / 425 for every x and y, giving values in about
[−1, 1]. Shot7M2 and hBABEL are not normalised. The same mapping is used for
embedding extraction.
"""

from __future__ import annotations

from typing import TypeVar

ArrayOrTensor = TypeVar("ArrayOrTensor")


class ArenaNormalisation:
    """(v − offset) / scale, published offset = scale = 425 (an 850-pixel arena).

    Works on NumPy arrays and TensorFlow tensors alike and keeps their float dtype.

    Args:
        offset: subtracted first (the arena centre).
        scale: divided by next (half the arena size).

    Example:
        >>> import numpy as np
        >>> ArenaNormalisation()(np.array([0.0, 425.0, 850.0], np.float32))
        array([-1.,  0.,  1.], dtype=float32)
    """

    def __init__(self, offset: float = 425.0, scale: float = 425.0) -> None:
        self.offset = float(offset)
        self.scale = float(scale)

    def __call__(self, values: ArrayOrTensor) -> ArrayOrTensor:
        return (values - self.offset) / self.scale

    def __repr__(self) -> str:
        return f"ArenaNormalisation(offset={self.offset}, scale={self.scale})"
