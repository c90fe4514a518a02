"""Baselines without a model: raw keypoints, and raw keypoints with their motion.

A probe on raw single-frame keypoints sees no context, so an encoder with a window of
hundreds of frames beats it even untrained. `motion_features` is the context baseline:
the keypoints plus, for a few window lengths L, each coordinate's displacement over the
L frames centred on the frame, and its absolute value (how much the coordinate moves,
whatever the direction; a linear probe cannot compute that from the signed displacement).

Example:

>>> import numpy as np
>>> x = np.arange(6.0)[:, None]  # one coordinate moving 1 per frame, one sequence
>>> motion_features(x, np.zeros(6), windows=(2,))[:, 1].tolist()  # displacement over 2
[1.0, 2.0, 2.0, 2.0, 2.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_hbehavemae.errors import invalid
from keras_hbehavemae.evaluation.splits import FrameNumberMap, frame_sequence_index

#: Window lengths (frames) of the motion baseline, from a moveme's length (5–20 frames in
#: the synthetic data) to an action's (30–120).
DEFAULT_MOTION_WINDOWS = (4, 16, 64)


def motion_features(
    keypoints: np.ndarray,
    sequence_ids: FrameNumberMap | np.ndarray,
    windows: Sequence[int] = DEFAULT_MOTION_WINDOWS,
) -> np.ndarray:
    """Keypoints with their displacement over each window length, per sequence.

    Args:
        keypoints: `[N_frames, F]` (or `[N_frames, ...]`, flattened), frames of each
            sequence in time order.
        sequence_ids: a frame number map (name → `(start, end)`) or per-frame ids `[N]`.
        windows: window lengths L ≥ 2; the displacement at frame t is
            `x[t + L // 2] − x[t − (L − L // 2)]`, indices clamped to the frame's sequence.

    Returns:
        float32 `[N_frames, F · (1 + 2 · len(windows))]`: the keypoints, then per window
        the displacement and its absolute value. Frames outside every sequence get zeros.
    """
    keypoints = np.asarray(keypoints)
    keypoints = keypoints.reshape(keypoints.shape[0], -1).astype(np.float32)
    windows = [int(window) for window in windows]
    if not windows or min(windows) < 2:
        raise invalid("motion windows", windows, "must be one or more lengths >= 2 frames")
    index, names = frame_sequence_index(sequence_ids, keypoints.shape[0])
    parts = [keypoints]
    for window in windows:
        ahead, behind = window // 2, window - window // 2
        displacement = np.zeros_like(keypoints)
        for position in range(len(names)):
            rows = np.flatnonzero(index == position)
            steps = np.arange(len(rows))
            later = rows[np.minimum(steps + ahead, len(rows) - 1)]
            earlier = rows[np.maximum(steps - behind, 0)]
            displacement[rows] = keypoints[later] - keypoints[earlier]
        parts += [displacement, np.abs(displacement)]
    return np.concatenate(parts, axis=1)
