"""When a geometry does not divide: the nearest valid windows and patches.

On every axis (T, H, W) the input must be a multiple of the patch times the mask unit
(the product of all query-pooling strides on that axis). `divisibility_suggestions` names
each axis where that fails, with the nearest valid window T (a multiple of the two) and the
nearest valid patch sizes (those whose product with the mask unit divides the input).

Example:

>>> print(divisibility_suggestions((310, 3, 24), (3, 1, 24), "5,1,1;1,3,1")[0])
T: 310 frames is not a multiple of patch 3 x mask unit 5 = 15; nearest valid windows: 300 or 315; valid time patches for 310 frames: 1, 2
"""  # noqa: E501

from __future__ import annotations

import math
from typing import Any

from keras_hbehavemae.models.config import parse_q_strides, parse_triple
from keras_hbehavemae.models.sizes import nearest_multiples

_AXES = ("T", "H", "W")
_WHAT = ("frames", "individuals", "features")


def _valid_patches(size: int, unit: int, patch: int, limit: int = 2) -> list[int]:
    """Patch sizes p with size % (p·unit) == 0, nearest to `patch` first (at most `limit`)."""
    valid = [p for p in range(1, size + 1) if size % (p * unit) == 0]
    return sorted(sorted(valid, key=lambda p: (abs(p - patch), p))[:limit])


def divisibility_suggestions(input_size: Any, patch_kernel: Any, q_strides: Any) -> list[str]:
    """One line per axis whose sizes do not divide (empty when all do, or unparsable)."""
    try:
        sizes = parse_triple(input_size, "input_size")
        patches = parse_triple(patch_kernel, "patch_kernel")
        strides = parse_q_strides(q_strides) if q_strides else ()
    except ValueError:
        return []
    units = tuple(math.prod(stride[axis] for stride in strides) for axis in range(3))
    lines = []
    for axis in range(3):
        size, patch, unit = sizes[axis], patches[axis], units[axis]
        if size % (patch * unit) == 0:
            continue
        patch_text = ", ".join(str(p) for p in _valid_patches(size, unit, patch)) or "none"
        line = (f"{_AXES[axis]}: {size} {_WHAT[axis]} is not a multiple of patch {patch} x "
                f"mask unit {unit} = {patch * unit}; ")
        if axis == 0:
            windows = " or ".join(str(v) for v in nearest_multiples(size, patch * unit))
            line += (f"nearest valid windows: {windows}; valid time patches for {size} "
                     f"frames: {patch_text}")
        else:
            line += f"valid patch sizes on this axis: {patch_text}"
        lines.append(line)
    return lines
