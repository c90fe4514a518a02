"""Reference window materialisation for the tests (the package never materialises windows)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_hbehavemae.data.windows import WindowPlan


def edge_pad(sequence: np.ndarray, before: int, after: int) -> np.ndarray:
    """Replicates the first frame `before` times and the last frame `after` times."""
    sequence = np.asarray(sequence)
    widths = [(before, after)] + [(0, 0)] * (sequence.ndim - 1)
    return np.pad(sequence, widths, mode="edge")


def gather_windows(sequences: Sequence[np.ndarray], plan: WindowPlan) -> np.ndarray:
    """Materialises every window of `plan` as `[n_windows, num_frames, ...]` (small data only)."""
    indices = plan.frame_indices()
    return np.stack(
        [sequences[sequence_id][frame_indices]
         for sequence_id, frame_indices in zip(plan.sequence_ids, indices, strict=True)]
    )  # fmt: skip
