"""Checks shared by the readers, with error messages that name the file and the problem.

Every check takes a `where` string such as `"data/train.npy, sequence 'abc'"` and
puts it at the start of its message, so a bad file is easy to find.

Short sequences: the published training pipeline edge-pads every sequence,
so a sequence shorter than the model's window is padded, not
rejected. Only a sequence without frames is always an error. A caller that wants
full windows only passes `num_frames` with `pad_short_sequences=False`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def numeric_array(values: Any, where: str) -> np.ndarray:
    """Returns `values` as a float32 array, refusing non-numeric content.

    Raises:
        ValueError: if the values are strings, objects or booleans, or contain
            infinities.

    Example:
        >>> numeric_array([1, 2], "example").dtype
        dtype('float32')
    """
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise ValueError(
            f"{where}: expected numeric keypoints, got non-numeric values of dtype {array.dtype}"
        )
    array = array.astype(np.float32, copy=False)
    if np.isinf(array).any():
        raise ValueError(f"{where}: keypoints contain infinite values")
    return array


def require_keys(mapping: Any, expected: str | tuple[str, ...], where: str) -> None:
    """Raises a ValueError naming the expected key(s) and the keys that were found.

    Example:
        >>> require_keys({"sequences": {}}, "sequences", "example")
    """
    if not isinstance(mapping, Mapping):
        raise ValueError(
            f"{where}: expected a dict with key {expected!r}, found {type(mapping).__name__}"
        )
    for key in (expected,) if isinstance(expected, str) else expected:
        if key not in mapping:
            found = sorted(str(found_key) for found_key in mapping)
            shown = found if len(found) <= 10 else found[:10] + ["..."]
            raise ValueError(f"{where}: expected key {key!r}, found keys {shown}")


def check_sequence(
    keypoints: np.ndarray,
    where: str,
    expected_hw: tuple[int, int] | None = None,
    num_frames: int | None = None,
    pad_short_sequences: bool = True,
) -> None:
    """Checks one `[T, H, W]` sequence for the problems every reader reports.

    Args:
        keypoints: the float array `[T, H, W]`.
        where: the file and sequence, for the message.
        expected_hw: the model's `(H, W)`, if known.
        num_frames: the model's window length T, if known.
        pad_short_sequences: if False, sequences shorter than `num_frames` are
            errors; if True (the published behaviour) they will be edge-padded.

    Raises:
        ValueError: for an empty or all-NaN sequence, a per-frame shape that
            differs from `expected_hw`, or a too-short sequence when padding is off.

    Example:
        >>> check_sequence(np.zeros((4, 1, 2)), "example", expected_hw=(1, 2))
    """
    if keypoints.ndim != 3:
        raise ValueError(f"{where}: expected keypoints [T, H, W], got shape {keypoints.shape}")
    length = keypoints.shape[0]
    if length < 1:
        raise ValueError(f"{where}: the sequence has no frames")
    if expected_hw is not None and tuple(keypoints.shape[1:]) != tuple(expected_hw):
        raise ValueError(
            f"{where}: keypoints have per-frame shape (H, W) = {tuple(keypoints.shape[1:])}, "
            f"but the model expects (H, W) = {tuple(expected_hw)}"
        )
    if np.isnan(keypoints).all():
        raise ValueError(f"{where}: every value is NaN (nothing was tracked)")
    if num_frames is not None and not pad_short_sequences and length < num_frames:
        raise ValueError(
            f"{where}: the sequence has {length} frames, fewer than num_frames={num_frames}, "
            "and pad_short_sequences=False"
        )
