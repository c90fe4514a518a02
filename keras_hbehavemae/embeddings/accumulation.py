"""Window embeddings → per-frame rows, one sequence at a time, whatever the batching.

`FrameAccumulator` receives the level maps of consecutive windows of one sequence (in any
number of pieces, in order) and returns one row per frame and level when its last window
has arrived. `extraction` streams the windows of all sequences through the backbone in
full batches and hands each sequence's piece of a batch to that sequence's accumulator,
so a batch may hold the end of one sequence and the start of the next.

- exact and strided mode: per-frame running sums kept as a float64 difference array over
  the padded frame axis (`modes` explains it). The windows of a plan start `step` padded
  frames apart (1 in exact mode, k in strided mode), so the frames that time token t of
  the b windows of a piece starts are one strided slice, and adding a token's row at its
  range start and subtracting it after the range end is one update per token boundary:
  `rows[:, t] − rows[:, t − 1]` at the start of token t.
- fast mode: each window's centre token, repeated `stride` times, is written to its
  frames directly.

Example:

>>> import numpy as np
>>> from keras_hbehavemae.embeddings.modes import window_plan
>>> plan = window_plan(3, num_frames=2, mode="exact")  # 4 windows of 2 frames
>>> accumulator = FrameAccumulator(plan, "exact", taus=[1], dims=[1])
>>> maps = np.arange(8, dtype=np.float32).reshape(4, 2, 1, 1, 1)  # [windows, T_k, H, W, C]
>>> accumulator.add(0, [maps[:3]]); accumulator.add(3, [maps[3:]]); accumulator.done
True
>>> accumulator.result()[0][:, 0].tolist()  # frame f: mean of window f's token 1, f+1's 0
[1.5, 3.5, 5.5]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_hbehavemae.data.windows import WindowPlan
from keras_hbehavemae.embeddings.modes import fast_mode_stride_and_padding


def level_rows(level_map: np.ndarray, embedsum: bool = False) -> np.ndarray:
    """`[B, T_k, H_k, W_k, C]` → `[B, T_k, D]`: flatten (h, w, c), or mean over H_k·W_k tokens.

    Example:
        >>> level = np.arange(2 * 3 * 2 * 1 * 4, dtype=np.float32).reshape(2, 3, 2, 1, 4)
        >>> level_rows(level).shape, level_rows(level, embedsum=True).shape
        ((2, 3, 8), (2, 3, 4))
    """
    batch, frames, height, width, channels = level_map.shape
    if embedsum:
        return level_map.reshape(batch, frames, height * width, channels).mean(axis=2)
    return level_map.reshape(batch, frames, height * width * channels)


class FrameAccumulator:
    """Per-frame embeddings of one sequence from the level maps of its windows.

    Args:
        plan: the sequence's `WindowPlan` in `mode` (`modes.window_plan`).
        mode: "exact", "fast" or "strided".
        taus: frames per time token of each requested level.
        dims: embedding width D_k of each requested level.
        embedsum: mean over the H_k·W_k tokens instead of flattening them.
    """

    def __init__(self, plan: WindowPlan, mode: str, taus: Sequence[int],
                 dims: Sequence[int], embedsum: bool = False):
        self.plan, self.mode, self.embedsum = plan, mode, embedsum
        self.taus = [int(tau) for tau in taus]
        self.length = int(plan.sequence_lengths[0])
        self.received = 0
        if mode == "fast":
            self.stride = fast_mode_stride_and_padding(plan.num_frames)[0]
            self.kept_tokens = [plan.pad_before // tau for tau in self.taus]
            self.outputs = [np.empty((len(plan) * self.stride, dim), np.float32)
                            for dim in dims]
        else:
            starts = plan.starts
            self.step = int(starts[1] - starts[0]) if len(starts) > 1 else 1
            padded_length = self.length + 2 * (plan.num_frames - 1)
            self.differences = [np.zeros((padded_length + 1, dim), np.float64)
                                for dim in dims]

    @property
    def done(self) -> bool:
        """Whether every window of the plan has been added."""
        return self.received == len(self.plan)

    def add(self, first: int, maps: Sequence[np.ndarray]) -> None:
        """Adds the level maps `[b, T_k, H_k, W_k, C_k]` of windows `first … first + b − 1`.

        Pieces must arrive in window order.
        """
        count = int(maps[0].shape[0])
        if first != self.received or first + count > len(self.plan):
            raise ValueError(f"windows {first}…{first + count - 1} arrive out of order "
                             f"({self.received} of {len(self.plan)} received)")
        if self.mode == "fast":
            for output, level_map, token in zip(self.outputs, maps, self.kept_tokens,
                                                strict=True):
                rows = level_rows(level_map[:, token:token + 1], self.embedsum)[:, 0]
                output[first * self.stride:(first + count) * self.stride] = np.repeat(
                    rows, self.stride, axis=0)
        else:
            start, step = int(self.plan.starts[first]), self.step
            for difference, level_map, tau in zip(self.differences, maps, self.taus,
                                                  strict=True):
                rows = level_rows(level_map, self.embedsum)  # [b, T_k, D] float32
                tokens = rows.shape[1]
                for token in range(tokens + 1):
                    # Windows first … first + b − 1 start token `token` at padded frames
                    # start + token·τ + i·step; that is where token − 1 ends.
                    begin = start + token * tau
                    where = slice(begin, begin + step * (count - 1) + 1, step)
                    if token < tokens:
                        difference[where] += rows[:, token]
                    if token > 0:
                        difference[where] -= rows[:, token - 1]
        self.received += count

    def result(self) -> list[np.ndarray]:
        """One float32 `[L, D_k]` per level (call once every window was added)."""
        if not self.done:
            raise ValueError(f"only {self.received} of {len(self.plan)} windows were added")
        if self.mode == "fast":
            return [output[:self.length] for output in self.outputs]
        frames, length = self.plan.num_frames, self.length
        # Windows covering each padded frame: T for every original frame in exact mode.
        coverage = np.zeros(length + 2 * (frames - 1) + 1, np.int64)
        np.add.at(coverage, self.plan.starts, 1)
        np.add.at(coverage, self.plan.starts + frames, -1)
        counts = np.cumsum(coverage)[frames - 1:frames - 1 + length, None]
        return [(np.cumsum(difference, axis=0)[frames - 1:frames - 1 + length] / counts)
                .astype(np.float32) for difference in self.differences]
