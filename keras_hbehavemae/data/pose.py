"""Pose-tracking recordings as model input: `PoseOptions`, `read_pose`, `PoseRecording`.

A recording (one file, or an xarray Dataset in memory in movement's poses layout) is opened
as a `pose_tracks.PoseTracks` (`open_tracks`: DeepLabCut and SLEAP analysis `.h5` and
DeepLabCut-style `.csv` files directly, `pose_hdf5` and `pose_csv`; every other file
through movement, `pose_io`) and becomes the model's `[T, H, W]` in these steps, all
recorded in `PoseOptions` (stored in the run configuration and the preset metadata, so
extraction repeats them):

1. individuals: by name in the given order (`individuals`), or all of the file's in its
   order, their number checked against the model's H (`num_individuals`);
2. keypoints: by name in the given order (`keypoints`; pretraining takes the first file's);
3. a point whose confidence is below `confidence_threshold` becomes NaN (points without a
   confidence score are kept);
4. NaN gaps are filled along time per coordinate (`fill`: "interpolate" linearly, holding
   the edge values, or "hold" the last observed value; `data.filling`);
5. normalisation (`pose_transforms.PoseNormalisation`);
6. `[T, I, K, S]` → `[T, H = I, W = K·S]`, keypoint-major: for each individual
   `k0_x, k0_y(, k0_z), k1_x, …` (the MABe22 order);
7. resampling to `model_fps` by linear interpolation, when the recording's frame rate
   differs (the recording's rate comes from the file, or from `fps`).

Example (`read_pose` builds the recording from a file or an xarray Dataset; here by hand):

>>> poses = np.arange(2 * 1 * 2 * 2, dtype="float32").reshape(2, 1, 2, 2)  # [T, I, K, S]
>>> recording = PoseRecording("demo", "<in-memory Dataset>", poses, np.ones(2, bool), 30.0,
...                           np.arange(2) / 30, ("mouse",), ("nose", "tail"), ("x", "y"))
>>> recording.frames(PoseOptions())[0].tolist()  # [H, W]: nose x, nose y, tail x, tail y
[[0.0, 1.0, 2.0, 3.0]]
>>> recording.model_input(PoseOptions(model_fps=60.0)).shape  # resampled from 30 to 60 fps
(3, 1, 4)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.data.filling import fill_columns
from keras_hbehavemae.data.pose_csv import open_csv_tracks
from keras_hbehavemae.data.pose_hdf5 import open_hdf5_tracks
from keras_hbehavemae.data.pose_io import (
    check_pose_file,
    is_pose_dataset,
    load_pose_dataset,
    source_software_name,
)
from keras_hbehavemae.data.pose_tracks import BlockTracks, DatasetTracks, PoseTracks
from keras_hbehavemae.data.pose_transforms import (
    PoseNormalisation,
    interpolate_rows,
    resample_positions,
)
from keras_hbehavemae.errors import invalid

#: The order of W, in words (recorded with the options).
FEATURE_ORDER = "W = keypoints x space, keypoint-major: k0_x, k0_y(, k0_z), k1_x, ..."
FILLS = ("interpolate", "hold")


def _names(values) -> tuple[str, ...] | None:
    return None if values is None else tuple(str(value) for value in values)


@dataclasses.dataclass(frozen=True)
class PoseOptions:
    """How pose recordings become model input (see the module docstring).

    Args:
        source_software: movement's name of the files' format (`pose_io.SOURCE_SOFTWARE`);
            None for in-memory Datasets only.
        keypoints: keypoint names in model order (None: the file's, in its order).
        individuals: individual names in model order (None: the file's, in its order).
        num_individuals: H, checked when `individuals` is None (None: not checked).
        confidence_threshold: points with a lower confidence become NaN (None: keep all).
        fps: the recordings' frame rate, for files that do not store one.
        model_fps: the model's frame rate; recordings at another rate are resampled
            (None: no resampling).
        normalisation: the `PoseNormalisation`.
        fill: gap filling, "interpolate" or "hold".
    """

    source_software: str | None = None
    keypoints: tuple[str, ...] | None = None
    individuals: tuple[str, ...] | None = None
    num_individuals: int | None = None
    confidence_threshold: float | None = None
    fps: float | None = None
    model_fps: float | None = None
    normalisation: PoseNormalisation = PoseNormalisation()
    fill: str = "interpolate"

    def __post_init__(self):
        setter = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.source_software is not None:
            setter("source_software", source_software_name(self.source_software))
        setter("keypoints", _names(self.keypoints))
        setter("individuals", _names(self.individuals))
        for name in ("keypoints", "individuals"):
            values = getattr(self, name)
            if values is not None and (not values or len(set(values)) != len(values)):
                raise invalid(name, list(values), "give unique names, at least one")
        for name in ("fps", "model_fps"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise invalid(name, value, "the frame rate must be a positive number of "
                              "frames per second")
        threshold = self.confidence_threshold
        if threshold is not None and not np.isfinite(threshold):
            raise invalid("confidence_threshold", threshold, "must be a finite number")
        if self.fill not in FILLS:
            raise invalid("fill", self.fill, f"must be one of {FILLS}")
        if isinstance(self.normalisation, str):
            setter("normalisation", PoseNormalisation.parse(self.normalisation))

    def replace(self, **changes) -> PoseOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (the run configuration's `data.source.preprocessing`)."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values.update(keypoints=None if self.keypoints is None else list(self.keypoints),
                      individuals=None if self.individuals is None else list(self.individuals),
                      normalisation=self.normalisation.to_dict(), feature_order=FEATURE_ORDER)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PoseOptions:
        values = dict(values)
        values.pop("feature_order", None)
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"pose preprocessing: unknown keys {unknown}; known: "
                             f"{sorted(names)}")
        normalisation = values.get("normalisation")
        if isinstance(normalisation, dict):
            values["normalisation"] = PoseNormalisation.from_dict(normalisation)
        return cls(**values)


@dataclasses.dataclass
class PoseRecording:
    """One recording after steps 1–4 (selected, thresholded, gaps filled, not normalised).

    Attributes:
        name: the sequence name.
        source: the file's path, or "<in-memory Dataset>".
        poses: `[T, I, K, S]` float32 in tracking units.
        validity: `[T]` bool, True where every selected point was tracked (before filling).
        fps: the recording's frame rate (None: unknown).
        times: `[T]` time of each frame: seconds when `fps` is known (the file's own time
            coordinate when it has one in seconds), else frame indices.
        individuals, keypoints, space: the names along I, K and S.
    """

    name: str
    source: str
    poses: np.ndarray
    validity: np.ndarray
    fps: float | None
    times: np.ndarray
    individuals: tuple[str, ...]
    keypoints: tuple[str, ...]
    space: tuple[str, ...]

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def time_unit(self) -> str:
        return "seconds" if self.fps is not None else "frames"

    def frames(self, options: PoseOptions) -> np.ndarray:
        """Steps 5–6: normalised `[T, H, W]` float32 at the recording's own frame rate."""
        normalised = options.normalisation.apply(self.poses, self.keypoints)
        frames, individuals, keypoints, space = normalised.shape
        return normalised.reshape(frames, individuals, keypoints * space)  # [T, I, K·S]

    def model_positions(self, options: PoseOptions) -> np.ndarray | None:
        """Fractional frame of the recording at each model frame (None: no resampling)."""
        if options.model_fps is None or self.fps is None or self.fps == options.model_fps:
            return None
        return resample_positions(self.num_frames, self.fps, options.model_fps)

    def model_input(self, options: PoseOptions) -> np.ndarray:
        """Steps 5–7: `[T_model, H, W]` float32, at `options.model_fps` when it is set."""
        if options.model_fps is not None and self.fps is None:
            raise ValueError(f"{self.source}: the model works at {options.model_fps:g} frames "
                             "per second, but this recording's frame rate is unknown; give "
                             "--fps (the recording's frame rate)")
        frames = self.frames(options)
        positions = self.model_positions(options)
        return frames if positions is None else interpolate_rows(frames, positions)


def _indices(present: tuple[str, ...], wanted: Sequence[str] | None, what: str, where: str
             ) -> tuple[list[int], tuple[str, ...]]:
    """Positions (and names) of the `wanted` names in `present` (None: all, in order)."""
    if wanted is None:
        return list(range(len(present))), tuple(present)
    missing = [name for name in wanted if name not in present]
    if missing:
        raise ValueError(f"{where}: missing {what} name{'s' if len(missing) > 1 else ''} "
                         f"{missing}; the file has {list(present)}")
    return [present.index(name) for name in wanted], tuple(wanted)


def _fill_gaps(poses: np.ndarray, fill: str, where: str, individuals, keypoints) -> np.ndarray:
    """Fills NaN along time (`filling.fill_columns`); a never-tracked point is an error."""
    columns = poses.reshape(poses.shape[0], -1)  # [T, I·K·S], a view of the C-ordered array
    tracked = ~np.isnan(columns).all(axis=0)
    if not tracked.all():
        individual, keypoint, _ = np.unravel_index(np.flatnonzero(~tracked)[0], poses.shape[1:])
        raise ValueError(
            f"{where}: keypoint {keypoints[keypoint]!r} of individual "
            f"{individuals[individual]!r} is never tracked (NaN, or below the confidence "
            "threshold, in every frame), so it cannot be filled; leave it out with "
            "--keypoints or lower --confidence_threshold")
    fill_columns(columns, fill)
    return poses


def open_direct_tracks(path: str, software: str, fps: float | None) -> BlockTracks | None:
    """The file's `BlockTracks` when a direct reader takes it (`pose_hdf5`, `pose_csv`; only
    the header is read), else None (movement reads it)."""
    return open_hdf5_tracks(path, software, fps) or open_csv_tracks(path, software, fps)


def open_tracks(source: Any, options: PoseOptions) -> PoseTracks:
    """The `PoseTracks` of a file or an in-memory Dataset: DeepLabCut and SLEAP analysis
    `.h5` files (`pose_hdf5`) and DeepLabCut-style `.csv` files of DeepLabCut and
    LightningPose (`pose_csv`) are read directly, block by block; every other file (SLEAP
    `.slp`, Anipose, NWB, a DeepLabCut store in another pandas layout) through movement."""
    if is_pose_dataset(source):
        where = "<in-memory Dataset>"
        fps = source.attrs.get("fps", options.fps)
        return DatasetTracks.of(source, where, _frame_rate(fps, where))
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"pose source: expected a file path or an xarray Dataset with a "
                         f"'position' variable, got {type(source).__name__}")
    where = os.fspath(source)
    if options.source_software is None:
        raise ValueError(f"{where}: give the source software (--source_software) that wrote "
                         "the file")
    software = check_pose_file(where, options.source_software, options.fps)
    tracks = open_direct_tracks(where, software, options.fps)
    if tracks is not None:
        return tracks
    dataset = load_pose_dataset(where, software, options.fps)
    return DatasetTracks.of(dataset, where, _frame_rate(dataset.attrs.get("fps"), where))


def _frame_rate(fps, where: str) -> float | None:
    if fps is not None and not (np.isfinite(float(fps)) and float(fps) > 0):
        raise ValueError(f"{where}: frame rate {fps!r} is invalid: it must be a positive number "
                         "of frames per second")
    return None if fps is None else float(fps)


def read_pose(source: Any, options: PoseOptions, name: str | None = None) -> PoseRecording:
    """Reads one recording: a pose file (`open_tracks`) or an in-memory Dataset.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file and the problem: unknown source software, unreadable
            file, missing keypoint or individual names, a number of individuals other than
            `options.num_individuals`, no frames, no tracked point, a bad frame rate.
        ImportError: a file that needs the `[pose]` extra (every file but DeepLabCut and
            SLEAP analysis `.h5`), and the extra is not installed.
    """
    tracks = open_tracks(source, options)
    where = tracks.where
    if name is None:
        name = os.path.splitext(os.path.basename(where))[0] if where[0] != "<" else "recording"
    if tracks.num_frames == 0:
        raise ValueError(f"{where}: the recording has no frames")
    keypoint_index, keypoints = _indices(tracks.keypoints, options.keypoints, "keypoint", where)
    individual_index, individuals = _indices(tracks.individuals, options.individuals,
                                             "individual", where)
    if options.individuals is None and options.num_individuals is not None and (
            len(individuals) != options.num_individuals):
        raise ValueError(
            f"{where}: the file holds {len(individuals)} individual"
            f"{'s' if len(individuals) != 1 else ''} {list(individuals)}"
            f"{' (a single-animal file)' if len(individuals) == 1 else ''}, but the model expects "
            f"{options.num_individuals} (its input H); give files with "
            f"{options.num_individuals} individuals, or choose them with --individuals")
    times = tracks.times()
    poses = tracks.gather(individual_index, keypoint_index, options.confidence_threshold)
    fps, space = tracks.fps, tracks.space
    del tracks  # a file's Dataset is freed before the gaps are filled
    if np.isinf(poses).any():
        raise ValueError(f"{where}: positions contain infinite values")
    missing = np.isnan(poses)
    validity = ~missing.any(axis=(1, 2, 3))
    if missing.all():
        below = (f" at or above confidence {options.confidence_threshold:g}"
                 if options.confidence_threshold is not None else "")
        raise ValueError(f"{where}: every position is NaN: no point was tracked{below}")
    del missing
    poses = _fill_gaps(poses, options.fill, where, individuals, keypoints)
    return PoseRecording(str(name), where, poses, validity, fps, times, individuals, keypoints,
                         space)
