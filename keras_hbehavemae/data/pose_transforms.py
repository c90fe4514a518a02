"""Normalisation and frame-rate resampling of pose arrays `[T, individuals, keypoints, space]`.

`PoseNormalisation` is one of four methods; its numbers are fitted once on the training
recordings and stored in the run configuration, so that embedding extraction applies
exactly the same mapping:

| method | mapping of each coordinate v on spatial axis a | fitted |
|---|---|---|
| `none` | v (tracking units, e.g. pixels) | nothing |
| `arena` | (v − size_a / 2) / (max(size) / 2): an arena [0, size] maps into [−1, 1] | nothing |
| `bounds` | (v − centre_a) / scale, centre = mid-range per axis, scale = largest half-range | centre, scale |
| `egocentric` | each individual's chosen keypoint moved to the origin in every frame (and, with a heading keypoint, rotated so that keypoint → heading points along +x; 2-D only), then divided by scale | scale: 99th percentile of the absolute centred coordinates |

`arena` and `bounds` use one scale for every axis, so shapes and angles are kept.

`interpolate_rows` resamples along time by linear interpolation; `resample_positions`
gives the fractional source frame of every target frame.

Example:

>>> import numpy as np
>>> poses = np.array([[[[0.0, 0.0], [850.0, 425.0]]]], np.float32)  # [T=1, I=1, K=2, S=2]
>>> PoseNormalisation.parse("arena:850").apply(poses, ("nose", "tail"))[0, 0]
array([[-1., -1.],
       [ 1.,  0.]], dtype=float32)
>>> interpolate_rows(np.array([0.0, 10.0, 20.0]), resample_positions(3, 30, 60))
array([ 0.,  5., 10., 15., 20.])
"""  # noqa: E501

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.errors import invalid

METHODS = ("none", "arena", "bounds", "egocentric")
#: Values sampled (at most) from the training recordings to fit the egocentric scale.
_MAX_FIT_VALUES = 2_000_000


@dataclasses.dataclass(frozen=True)
class PoseNormalisation:
    """How pose coordinates are normalised (see the module table).

    Args:
        method: one of `METHODS`.
        arena_size: `arena`: the arena's size, one value for every axis or one per axis.
        keypoint: `egocentric`: the keypoint moved to the origin.
        heading_keypoint: `egocentric`, optional: the keypoint turned onto +x (2-D only).
        centre: `bounds`: the fitted centre per axis.
        scale: `bounds`, `egocentric`: the fitted (or given) scale.
    """

    method: str = "none"
    arena_size: tuple[float, ...] | None = None
    keypoint: str | None = None
    heading_keypoint: str | None = None
    centre: tuple[float, ...] | None = None
    scale: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise invalid("normalise", self.method, f"the method must be one of {METHODS}")
        if self.method == "arena":
            sizes = tuple(float(size) for size in self.arena_size or ())
            if not sizes or not all(np.isfinite(sizes)) or min(sizes) <= 0:
                raise invalid("normalise", self.arena_size,
                              "arena needs positive sizes, e.g. arena:850 or arena:850,600")
            object.__setattr__(self, "arena_size", sizes)
        if self.method == "egocentric" and not self.keypoint:
            raise invalid("normalise", self.method, "egocentric needs a keypoint, e.g. "
                          "egocentric:centre or egocentric:centre,nose (with heading)")
        if self.scale is not None and not (np.isfinite(self.scale) and self.scale > 0):
            raise invalid("normalise", self.scale, "the scale must be a positive number")

    @classmethod
    def parse(cls, text: str) -> PoseNormalisation:
        """`none`, `arena:850`, `arena:850,600`, `bounds`, `egocentric:KEYPOINT[,HEADING]`.

        Example:
            >>> PoseNormalisation.parse("egocentric:centre,nose").heading_keypoint
            'nose'
        """
        method, _, argument = str(text).strip().partition(":")
        method = method.strip().lower()
        values = [value.strip() for value in argument.split(",") if value.strip()]
        if method == "arena":
            try:
                sizes = tuple(float(value) for value in values)
            except ValueError:
                raise invalid("normalise", text, "arena sizes must be numbers, e.g. "
                              "arena:850,600") from None
            return cls("arena", arena_size=sizes)
        if method == "egocentric":
            if not 1 <= len(values) <= 2:
                raise invalid("normalise", text, "give egocentric:KEYPOINT or "
                              "egocentric:KEYPOINT,HEADING_KEYPOINT")
            return cls("egocentric", keypoint=values[0],
                       heading_keypoint=values[1] if len(values) == 2 else None)
        if method in ("none", "bounds") and not values:
            return cls(method)
        raise invalid("normalise", text, "must be none, arena:SIZE[,SIZE...], bounds or "
                      "egocentric:KEYPOINT[,HEADING_KEYPOINT]")

    @property
    def needs_fitting(self) -> bool:
        return (self.method == "bounds" and (self.centre is None or self.scale is None)) or (
            self.method == "egocentric" and self.scale is None)

    def to_dict(self) -> dict[str, Any]:
        return {field.name: (list(value) if isinstance(value, tuple) else value)
                for field in dataclasses.fields(self)
                for value in [getattr(self, field.name)]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PoseNormalisation:
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"normalisation: unknown keys {unknown}; known: {sorted(names)}")
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in values.items()}
        return cls(**values)

    def _centred(self, poses: np.ndarray, keypoint_names: Sequence[str]) -> np.ndarray:
        """Egocentric coordinates before scaling, `[T, I, K, S]` float32."""
        names = list(keypoint_names)
        for name in (self.keypoint, self.heading_keypoint):
            if name is not None and name not in names:
                raise ValueError(f"normalise: egocentric keypoint {name!r} is not among the "
                                 f"keypoints {names}")
        anchor = names.index(self.keypoint)
        centred = poses - poses[:, :, anchor:anchor + 1, :]
        if self.heading_keypoint is None:
            return centred.astype(np.float32, copy=False)
        if poses.shape[-1] != 2:
            raise ValueError(f"normalise: a heading keypoint needs 2-D positions, these have "
                             f"{poses.shape[-1]} spatial axes")
        heading = centred[:, :, names.index(self.heading_keypoint), :]  # [T, I, 2]
        angle = np.arctan2(heading[..., 1], heading[..., 0])[..., None]  # [T, I, 1]
        cosine, sine = np.cos(angle), np.sin(angle)
        x, y = centred[..., 0], centred[..., 1]
        # rotate by −angle: the heading then points along +x; [T, I, K, 2]
        return np.stack([cosine * x + sine * y, cosine * y - sine * x], axis=-1).astype(
            np.float32)

    def fitted(self, recordings: Sequence[np.ndarray],
               keypoint_names: Sequence[str]) -> PoseNormalisation:
        """This normalisation with its numbers fitted on `recordings` (`[T, I, K, S]` each).

        Raises:
            ValueError: no finite value to fit on, or all values equal (zero scale).
        """
        if not self.needs_fitting:
            return self
        if self.method == "bounds":
            low = np.min([np.nanmin(poses, axis=(0, 1, 2)) for poses in recordings], axis=0)
            high = np.max([np.nanmax(poses, axis=(0, 1, 2)) for poses in recordings], axis=0)
            scale = float(np.max(high - low) / 2)
            if not scale > 0:
                raise ValueError("normalise: bounds: every position is the same point, so "
                                 "there is no range to scale by")
            return dataclasses.replace(self, centre=tuple(float(v) for v in (low + high) / 2),
                                       scale=scale)
        total = sum(poses.size for poses in recordings)
        step = max(1, -(-total // _MAX_FIT_VALUES))
        samples = np.concatenate([
            np.abs(self._centred(poses[::step], keypoint_names)).ravel()
            for poses in recordings])
        scale = float(np.percentile(samples, 99)) if samples.size else 0.0
        if not scale > 0:
            raise ValueError(f"normalise: egocentric: every keypoint sits on {self.keypoint!r}"
                             ", so there is no spread to scale by")
        return dataclasses.replace(self, scale=scale)

    def apply(self, poses: np.ndarray, keypoint_names: Sequence[str]) -> np.ndarray:
        """Normalised `[T, I, K, S]` float32 (fit first where the method needs it)."""
        poses = np.asarray(poses, np.float32)
        if self.method == "none":
            return poses
        if self.needs_fitting:
            raise ValueError(f"normalise: {self.method} must be fitted on the training "
                             "recordings first (PoseNormalisation.fitted)")
        if self.method == "egocentric":
            return self._centred(poses, keypoint_names) / np.float32(self.scale)
        space = poses.shape[-1]
        if self.method == "arena":
            sizes = np.broadcast_to(np.asarray(self.arena_size, np.float32), (space,)) if len(
                self.arena_size) == 1 else np.asarray(self.arena_size, np.float32)
            if sizes.shape != (space,):
                raise ValueError(f"normalise: arena has {len(self.arena_size)} sizes, the "
                                 f"positions have {space} spatial axes")
            centre, scale = sizes / 2, np.float32(sizes.max() / 2)
        else:
            centre, scale = np.asarray(self.centre, np.float32), np.float32(self.scale)
            if centre.shape != (space,):
                raise ValueError(f"normalise: bounds were fitted on {centre.size} spatial axes, "
                                 f"the positions have {space}")
        return (poses - centre) / scale


def resample_positions(num_frames: int, source_fps: float, target_fps: float) -> np.ndarray:
    """Fractional source frame of every target frame covering the same time span.

    Target frame j is at time j / target_fps, i.e. source frame j · source_fps / target_fps;
    the last target frame is the last one not after the last source frame.

    Example:
        >>> resample_positions(5, 30, 15)
        array([0., 2., 4.])
    """
    for name, value in (("fps", source_fps), ("target_fps", target_fps)):
        if not (np.isfinite(value) and value > 0):
            raise invalid(name, value, "the frame rate must be a positive number")
    ratio = float(source_fps) / float(target_fps)
    count = int(np.floor((num_frames - 1) / ratio + 1e-9)) + 1
    return np.arange(count, dtype=np.float64) * ratio


def interpolate_rows(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Rows of `values` (`[N, ...]`) at fractional `positions`, linearly interpolated.

    Positions are clipped to [0, N − 1]; the dtype of `values` is kept.
    """
    values = np.asarray(values)
    positions = np.clip(np.asarray(positions, np.float64), 0, values.shape[0] - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, values.shape[0] - 1)
    weight = (positions - lower).astype(values.dtype if values.dtype.kind == "f" else np.float64)
    weight = weight.reshape((-1,) + (1,) * (values.ndim - 1))
    result = values[lower] * (1 - weight)
    result += values[upper] * weight
    return result.astype(values.dtype, copy=False)
