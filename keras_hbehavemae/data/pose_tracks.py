"""What a pose source holds, before any choice: `PoseTracks`, and `DatasetTracks` for xarray.

`read_pose` works on a `PoseTracks`: the source's names along individuals, keypoints and
space, its frame count, rate and times, and `gather`, which copies the chosen points into
the float32 `[T, I, K, S]` with low-confidence points as NaN. Two kinds exist:

- `DatasetTracks`: an xarray Dataset in movement's poses layout (`position` `(time, space,
  keypoints, individuals)`, optional `confidence` `(time, keypoints, individuals)`), read
  by movement from a file or given in memory;
- `BlockTracks`: a file read a block of frames at a time, straight into the result:
  DeepLabCut and SLEAP analysis `.h5` (`pose_hdf5`), DeepLabCut-style `.csv` (`pose_csv`).

Example (xarray comes with the `[pose]` extra):

>>> import xarray as xr
>>> position = np.arange(8.0).reshape(2, 2, 2, 1)  # [T, S, K, I]
>>> dataset = xr.Dataset(
...     {"position": (("time", "space", "keypoints", "individuals"), position)},
...     coords={"space": ["x", "y"], "keypoints": ["nose", "tail"], "individuals": ["mouse"]})
>>> tracks = DatasetTracks.of(dataset, "<in-memory Dataset>", fps=30.0)
>>> tracks.keypoints, tracks.times().tolist()
(('nose', 'tail'), [0.0, 0.03333333333333333])
>>> tracks.gather([0], [1], None)[1]  # frame 1, [I, K, S]: the tail's x and y
array([[[5., 7.]]], dtype=float32)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

DIMENSIONS = ("time", "space", "keypoints", "individuals")


@dataclasses.dataclass(frozen=True)
class PoseTracks:
    """A pose source's names, frames and points (subclasses read them).

    Attributes:
        where: the file's path, or "<in-memory Dataset>" (every error starts with it).
        fps: the recording's frame rate (None: unknown).
        num_frames: T.
        individuals, keypoints, space: the names along I, K and S, in the source's order.
    """

    where: str
    fps: float | None
    num_frames: int
    individuals: tuple[str, ...]
    keypoints: tuple[str, ...]
    space: tuple[str, ...]

    def times(self) -> np.ndarray:
        """`[T]` time of each frame: frame index / fps when `fps` is known, else the index."""
        times = np.arange(self.num_frames, dtype=np.float64)
        return times if self.fps is None else times / self.fps

    def gather(self, individuals: list[int], keypoints: list[int],
               threshold: float | None) -> np.ndarray:
        """`[T, I', K', S]` float32 (C order) of the chosen points, in the given orders.

        A point whose confidence is below `threshold` becomes NaN; points without a score
        (or with a NaN score) are kept. The source is never changed.
        """
        raise NotImplementedError


def _names(dataset, dimension: str) -> tuple[str, ...]:
    return tuple(str(value) for value in dataset[dimension].values)


@dataclasses.dataclass(frozen=True)
class DatasetTracks(PoseTracks):
    """An xarray Dataset in movement's poses layout (see the module docstring)."""

    dataset: Any

    @classmethod
    def of(cls, dataset, where: str, fps: float | None) -> DatasetTracks:
        """Checks the Dataset's dimensions. Raises ValueError naming `where`."""
        position = dataset["position"]
        if set(position.dims) != set(DIMENSIONS):
            raise ValueError(f"{where}: position has dimensions {position.dims}, expected "
                             f"{DIMENSIONS}")
        return cls(where, fps, int(dataset.sizes["time"]), _names(dataset, "individuals"),
                   _names(dataset, "keypoints"), _names(dataset, "space"), dataset)

    def times(self) -> np.ndarray:
        """The Dataset's own time coordinate when it is in seconds (NWB timestamps may start
        after 0), else frame index / fps, else frame indices."""
        if self.dataset.attrs.get("time_unit") == "seconds" and "time" in self.dataset.coords:
            return np.asarray(self.dataset["time"].values, np.float64)
        return super().times()

    def gather(self, individuals: list[int], keypoints: list[int],
               threshold: float | None) -> np.ndarray:
        """Copied one point at a time, so nothing of the Dataset's size is allocated besides
        the result."""
        dataset = self.dataset
        position = dataset["position"].transpose("time", "individuals", "keypoints",
                                                 "space").values
        confidence = None
        if threshold is not None and "confidence" in dataset.data_vars:
            confidence = dataset["confidence"].transpose("time", "individuals",
                                                         "keypoints").values
        poses = np.empty((position.shape[0], len(individuals), len(keypoints),
                          position.shape[3]), np.float32)
        for row, individual in enumerate(individuals):
            for column, keypoint in enumerate(keypoints):
                poses[:, row, column] = position[:, individual, keypoint]
                if confidence is not None:  # NaN scores compare False: such points are kept
                    poses[confidence[:, individual, keypoint] < threshold, row, column] = np.nan
        return poses


#: Successive blocks of frames: (values `[n, columns]`, scores `[n, columns]` or None).
Blocks = Iterator[tuple[np.ndarray, "np.ndarray | None"]]


@dataclasses.dataclass(frozen=True)
class BlockTracks(PoseTracks):
    """A file read a block of frames at a time (`pose_hdf5`, `pose_csv`).

    `position_columns` `[I, K, S]` and `score_columns` `[I, K]` (None: no scores) index the
    last axis of the values and scores that `read_blocks()` yields, in frame order. Scores
    are compared with the threshold in `score_dtype` (movement's dtype for that format).
    """

    position_columns: np.ndarray
    score_columns: np.ndarray | None
    read_blocks: Callable[[], Blocks]
    score_dtype: type = np.float64

    def gather(self, individuals: list[int], keypoints: list[int],
               threshold: float | None) -> np.ndarray:
        """Reads the file once, block by block, so that besides the result only one block
        of the file is in memory."""
        selected = np.ix_(individuals, keypoints)
        positions = self.position_columns[selected]  # [I', K', S]
        scores = None
        if threshold is not None and self.score_columns is not None:
            scores = self.score_columns[selected]  # [I', K']
        poses = np.empty((self.num_frames, *positions.shape), np.float32)
        start = 0
        for values, score_values in self.read_blocks():
            block = poses[start:start + len(values)]
            if len(block) != len(values):
                start += len(values)
                break
            block[...] = values[:, positions]  # [n, I', K', S]
            if scores is not None:  # NaN scores compare False: such points are kept
                low = score_values[:, scores].astype(self.score_dtype) < threshold  # [n, I', K']
                block[low] = np.nan
            start += len(values)
        if start != self.num_frames:
            raise ValueError(f"{self.where}: the file changed while it was read ({start} "
                             f"frames read of {self.num_frames})")
        return poses
