"""The kinematics of the synthetic mice: moveme profiles, steering and the body template.

`trajectories` turns per-frame moveme and action labels into each mouse's centre and
heading; `body_keypoints` places the 12 MABe body parts around them. See `synthetic` for
the behaviour hierarchy that drives them.
"""

from __future__ import annotations

import numpy as np

#: Group cohesion each activity drives towards: below 0.3 the mice spread out, above it
#: they are drawn together.
ACTIVITY_COHESION = np.array([0.5, 0.1, 0.9])
COHESION_TIMESCALE = 150.0

#: +1 steers towards the nearest other mouse, −1 away from it.
ACTION_STEERING = np.array([0.0, 0.0, 0.0, 0.0, 1.0, -1.0])

# Moveme profiles, in `MOVEMES` order: gains of shape functions of the phase u.
_SPEED = np.array([0.0, 5.0, 14.0, 1.5, 1.5, 0.0, 0.0, 0.0, 0.5])  # px/frame × sin²(πu)
_TURN = np.array([0.0, 0.0, 0.0, 0.9, -0.9, 0.0, 0.0, 0.0, 0.0])  # total rad per moveme
_HEAD_SCAN = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.0, 0.0, 0.0])  # rad × sin(2πu)
_SNIFF = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.15])  # rad × sin(6πu)
_HEAD_TURN = np.array([0.0, 0.0, 0.0, 0.3, -0.3, 0.0, 0.0, 0.0, 0.0])  # rad × sin²(πu)
_GROOM = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])  # × sin²(3πu)
_STRETCH = np.array([0.0, 0.05, 0.15, 0.0, 0.0, 0.0, -0.1, -0.35, 0.0])  # × sin²(πu)
_BEND = np.array([0.0, 0.0, 0.0, 0.5, -0.5, 0.0, 0.0, 0.0, 0.0])  # × sin²(πu)

#: Body template (x forward, y left) in pixels, in MABe body-part order.
BODY_TEMPLATE = np.array(
    [[30, 0], [20, 6], [20, -6], [15, 0], [10, 10], [10, -10],
     [0, 0], [-15, 10], [-15, -10], [-30, 0], [-50, 0], [-70, 0]],
    dtype=np.float32,
)  # fmt: skip
_WALL_MARGIN = 110.0
_KEYPOINT_NOISE = 0.7
CHUNK = 32


def trajectories(
    rng: np.random.Generator, hierarchy: dict[str, np.ndarray], arena_size: float
) -> dict[str, np.ndarray]:
    """Integrates positions and headings frame by frame, with steering.

    Each mouse steers towards (approach) or away from (avoid) its nearest
    neighbour, towards the others when the group cohesion is high (away from them
    when it is low), and away from walls.
    Returns `x`, `y`, `heading`, `speed` `[N, M, T]` and `cohesion` `[N, T]`.
    """
    moveme, phase, amplitude = hierarchy["moveme"], hierarchy["phase"], hierarchy["amplitude"]
    num_sequences, num_mice, num_frames = moveme.shape
    bump = np.sin(np.pi * phase) ** 2
    speed = _SPEED[moveme] * bump * amplitude
    turn = _TURN[moveme] * amplitude * bump * 2.0 / hierarchy["moveme_length"]
    turn += rng.normal(0.0, 0.02, turn.shape)  # heading jitter
    # Frame-major copies, so that the loop reads contiguous [N, M] slices.
    speed_by_frame = np.ascontiguousarray(np.moveaxis(speed, -1, 0))
    turn_by_frame = np.ascontiguousarray(np.moveaxis(turn, -1, 0))
    steering_by_frame = np.ascontiguousarray(
        np.moveaxis(ACTION_STEERING[hierarchy["action"]], -1, 0)
    )
    cohesion_target = np.ascontiguousarray(ACTIVITY_COHESION[hierarchy["activity"]].T)

    low, high = _WALL_MARGIN * 0.8, arena_size - _WALL_MARGIN * 0.8
    x, y = rng.uniform(_WALL_MARGIN, arena_size - _WALL_MARGIN, (2, num_sequences, num_mice))
    heading = rng.uniform(-np.pi, np.pi, (num_sequences, num_mice))
    cohesion = cohesion_target[0].copy()
    xs, ys, headings = (np.empty((num_frames, num_sequences, num_mice)) for _ in range(3))
    cohesions = np.empty((num_frames, num_sequences))
    self_penalty = np.eye(num_mice) * 1e12
    centre = arena_size / 2
    for frame in range(num_frames):
        cohesion += (cohesion_target[frame] - cohesion) / COHESION_TIMESCALE
        offset_x = x[:, None, :] - x[:, :, None]  # [N, self, other]
        offset_y = y[:, None, :] - y[:, :, None]
        squared = offset_x * offset_x + offset_y * offset_y + self_penalty
        nearest = squared == squared.min(axis=-1, keepdims=True)
        near_x, near_y = (offset_x * nearest).sum(-1), (offset_y * nearest).sum(-1)
        near_norm = np.sqrt(near_x * near_x + near_y * near_y) + 1e-6
        group_x, group_y = offset_x.sum(-1), offset_y.sum(-1)  # self offsets are 0
        group_norm = np.sqrt(group_x * group_x + group_y * group_y) + 1e-6
        wall_distance = np.minimum(np.minimum(x, arena_size - x), np.minimum(y, arena_size - y))
        wall_weight = np.clip((_WALL_MARGIN - wall_distance) / _WALL_MARGIN, 0.0, 1.0)
        centre_x, centre_y = centre - x, centre - y
        centre_norm = np.sqrt(centre_x * centre_x + centre_y * centre_y) + 1e-6
        toward_near = steering_by_frame[frame] / near_norm
        toward_group = 2.0 * (cohesion[:, None] - 0.3) / group_norm  # low cohesion disperses
        toward_centre = 3.0 * wall_weight / centre_norm
        desired_x = toward_near * near_x + toward_group * group_x + toward_centre * centre_x
        desired_y = toward_near * near_y + toward_group * group_y + toward_centre * centre_y
        error = (np.arctan2(desired_y, desired_x) - heading + np.pi) % (2 * np.pi) - np.pi
        strength = np.minimum(np.sqrt(desired_x * desired_x + desired_y * desired_y), 1.0)
        heading = heading + turn_by_frame[frame] + 0.12 * strength * error
        x = np.clip(x + speed_by_frame[frame] * np.cos(heading), low, high)
        y = np.clip(y + speed_by_frame[frame] * np.sin(heading), low, high)
        xs[frame], ys[frame], headings[frame], cohesions[frame] = x, y, heading, cohesion
    return {
        "x": np.moveaxis(xs, 0, -1),
        "y": np.moveaxis(ys, 0, -1),
        "heading": np.moveaxis(headings, 0, -1),
        "speed": speed,
        "cohesion": cohesions.T,
    }


def body_keypoints(
    rng: np.random.Generator,
    hierarchy: dict[str, np.ndarray],
    motion: dict[str, np.ndarray],
    arena_size: float,
) -> np.ndarray:
    """Poses the body template per frame: `[N, T, M, 12, 2]` float32 pixels."""
    moveme = hierarchy["moveme"]
    phase = hierarchy["phase"].astype(np.float32)
    num_frames = moveme.shape[-1]

    def column(values: np.ndarray) -> np.ndarray:  # [N, M, T] -> [N, M, T, 1] float32
        return values.astype(np.float32)[..., None]

    bump = np.sin(np.float32(np.pi) * phase) ** 2
    head_yaw = column(
        _HEAD_SCAN[moveme] * np.sin(2 * np.pi * phase)
        + _SNIFF[moveme] * np.sin(6 * np.pi * phase)
        + _HEAD_TURN[moveme] * bump
    )
    groom = column(_GROOM[moveme] * np.sin(3 * np.pi * phase) ** 2)
    gait = np.cumsum(motion["speed"], axis=-1) / 6.0
    swing = column(3.0 * np.sin(gait))
    tail = 0.2 * np.arange(num_frames) + 0.5 * gait

    template_x, template_y = BODY_TEMPLATE[:, 0], BODY_TEMPLATE[:, 1]
    # Body coordinates [N, M, T, 12]: stretch and C-shaped bend of the whole body,
    # then diagonal gait swing of the paws, grooming (forepaws up to the nose and
    # together) and a tail wiggle on the points concerned.
    body_x = template_x * (1 + column(_STRETCH[moveme] * bump))
    body_y = column(_BEND[moveme] * bump) * (template_x**2 / 80.0)
    body_y += template_y
    body_x[..., 4:9] += swing * np.array([1, -1, 0, -1, 1], np.float32)
    body_x[..., 4:6] += 14.0 * groom
    body_y[..., 4:6] *= 1 - 0.7 * groom
    body_y[..., 10] += 4.0 * np.sin(tail).astype(np.float32)
    body_y[..., 11] += 8.0 * np.sin(tail - 0.8).astype(np.float32)
    # Head yaw: nose and ears rotate about the neck.
    yaw_cosine, yaw_sine = np.cos(head_yaw), np.sin(head_yaw)
    head_x = body_x[..., :3] - body_x[..., 3:4]
    head_y = body_y[..., :3] - body_y[..., 3:4]
    body_x[..., :3] = body_x[..., 3:4] + yaw_cosine * head_x - yaw_sine * head_y
    body_y[..., :3] = body_y[..., 3:4] + yaw_sine * head_x + yaw_cosine * head_y
    # Tracking noise: uniform with standard deviation _KEYPOINT_NOISE (cheaper than normal).
    num_sequences, num_mice = moveme.shape[:2]
    keypoints = rng.random((num_sequences, num_frames, num_mice, 12, 2), dtype=np.float32)
    keypoints -= 0.5
    keypoints *= np.float32(2 * np.sqrt(3.0) * _KEYPOINT_NOISE)
    # Place the body in the arena, writing through an [N, M, T, 12, 2] view.
    cosine, sine = np.cos(column(motion["heading"])), np.sin(column(motion["heading"]))
    by_mouse = np.swapaxes(keypoints, 1, 2)
    by_mouse[..., 0] += column(motion["x"]) + cosine * body_x - sine * body_y
    by_mouse[..., 1] += column(motion["y"]) + sine * body_x + cosine * body_y
    return np.clip(keypoints, 1.0, arena_size - 1.0, out=keypoints)
