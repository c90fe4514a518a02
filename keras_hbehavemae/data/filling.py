"""Filling untracked keypoints along time.

Two strategies, both per coordinate and along the time axis (axis 0):

- `hold_fill`: every missing value takes the last observed value before it;
  missing values before the first observation take that first observation.
  This is the published MABe "fill holes" rule when "missing" means x == 0.
- `interpolate_fill`: missing values between two observations lie on the
  straight line between them; missing values before the first or after the
  last observation hold that observation (edge hold).

Coordinates that are never observed are returned unchanged; callers decide
whether that is an error.

`fill_columns` applies either strategy in place, one column of a `[T, N]` array at a time,
touching only the columns with gaps: long recordings (a 1-hour pose file) are filled
without `[T, N]` temporaries. Its interpolation is `np.interp`, equal to
`interpolate_fill` up to floating-point rounding.
"""

from __future__ import annotations

import numpy as np


def _previous_and_next_observed(missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the last observed frame at or before, and the first at or after, each frame.

    `missing` is `[T, N]`. Where no such frame exists the index is -1 (previous) or
    T (next).
    """
    num_frames = missing.shape[0]
    frame_index = np.arange(num_frames)[:, None]
    previous = np.where(missing, -1, frame_index)
    np.maximum.accumulate(previous, axis=0, out=previous)
    following = np.where(missing, num_frames, frame_index)
    following = np.minimum.accumulate(following[::-1], axis=0)[::-1]
    return previous, following


def _as_columns(values: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if values.shape != missing.shape:
        raise ValueError(f"values {values.shape} and missing {missing.shape} differ in shape")
    num_frames = values.shape[0]
    return values.reshape(num_frames, -1), missing.reshape(num_frames, -1)


def hold_fill(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Replaces missing values by the previous observed one (or the first, at the start).

    Args:
        values: `[T, ...]` array.
        missing: bool array of the same shape, True where a value is missing.

    Returns:
        A filled copy with the dtype of `values`.

    Example:
        >>> values = np.array([np.nan, 1.0, np.nan, 4.0, np.nan])
        >>> hold_fill(values, np.isnan(values))
        array([1., 1., 1., 4., 4.])
    """
    columns, missing_columns = _as_columns(np.asarray(values), np.asarray(missing, dtype=bool))
    previous, following = _previous_and_next_observed(missing_columns)
    source = np.where(previous >= 0, previous, following)
    source = np.where(source < columns.shape[0], source, np.arange(columns.shape[0])[:, None])
    filled = np.take_along_axis(columns, source, axis=0)
    return filled.reshape(np.shape(values))


def interpolate_fill(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Linearly interpolates missing values in time, holding the edge values at the ends.

    Args:
        values: `[T, ...]` float array.
        missing: bool array of the same shape, True where a value is missing.

    Returns:
        A filled copy with the dtype of `values` (computed in float64).

    Example:
        >>> values = np.array([np.nan, 0.0, np.nan, np.nan, 3.0, np.nan])
        >>> interpolate_fill(values, np.isnan(values))
        array([0., 0., 1., 2., 3., 3.])
    """
    values = np.asarray(values)
    columns, missing_columns = _as_columns(values, np.asarray(missing, dtype=bool))
    num_frames = columns.shape[0]
    previous, following = _previous_and_next_observed(missing_columns)
    has_previous = previous >= 0
    has_following = following < num_frames
    frame_index = np.arange(num_frames)[:, None]
    fallback = np.where(has_following, following, frame_index)
    safe_previous = np.where(has_previous, previous, fallback)
    safe_following = np.where(has_following, following, safe_previous)
    previous_values = np.take_along_axis(columns, safe_previous, axis=0).astype(np.float64)
    following_values = np.take_along_axis(columns, safe_following, axis=0).astype(np.float64)
    gap = np.maximum(safe_following - safe_previous, 1)
    # Multiply before dividing so that integer-spaced values interpolate exactly.
    interpolated = (
        previous_values + (following_values - previous_values) * (frame_index - safe_previous) / gap
    )
    filled = np.where(missing_columns, interpolated, columns)
    return filled.astype(values.dtype, copy=False).reshape(values.shape)


def fill_mouse_holes(keypoints: np.ndarray) -> np.ndarray:
    """The MABe `fill_holes` rule on `[T, n_mice, n_keypoints, 2]` pixel coordinates.

    A keypoint whose x equals 0 is missing. At frame 0 it takes the first later
    frame where its x is not 0; at later frames it takes the previous frame's
    (already filled) value. Both x and y are copied. A keypoint that is missing
    in every frame stays at its original values.

    Example:
        >>> keypoints = np.array([[0.0, 0.0], [5.0, 6.0], [0.0, 0.0]]).reshape(3, 1, 1, 2)
        >>> fill_mouse_holes(keypoints).reshape(3, 2)
        array([[5., 6.],
               [5., 6.],
               [5., 6.]])
    """
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 4 or keypoints.shape[-1] != 2:
        raise ValueError(
            f"fill_mouse_holes expects [T, n_mice, n_keypoints, 2], got {keypoints.shape}"
        )
    missing = np.broadcast_to(keypoints[..., :1] == 0, keypoints.shape)
    return hold_fill(keypoints, missing)


def fill_columns(columns: np.ndarray, method: str = "interpolate") -> np.ndarray:
    """Fills the NaN of a `[T, N]` float array in place, column by column; returns it.

    Args:
        columns: `[T, N]`, NaN marking a missing value; changed in place.
        method: "interpolate" (as `interpolate_fill`) or "hold" (as `hold_fill`).

    Example:
        >>> columns = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, 5.0]])
        >>> fill_columns(columns)
        array([[2., 1.],
               [2., 3.],
               [2., 5.]])
    """
    if method not in ("interpolate", "hold"):
        raise ValueError(f"method must be 'interpolate' or 'hold', got {method!r}")
    if columns.ndim != 2:
        raise ValueError(f"fill_columns expects [T, N], got shape {columns.shape}")
    frames = np.arange(columns.shape[0])
    for column in np.flatnonzero(np.isnan(columns).any(axis=0)):
        values = columns[:, column].copy()  # contiguous: much faster to index than the view
        missing = np.isnan(values)
        if missing.all():
            continue
        if method == "interpolate":
            observed = ~missing
            values[missing] = np.interp(frames[missing], frames[observed], values[observed])
        else:
            values = hold_fill(values, missing)
        columns[:, column] = values
    return columns
