"""Arena augmentations of 2-D keypoints in pixels (MABe22), as TensorFlow ops.

Every op is stateless: it takes a `seed` tensor of shape `[2]` (int32 or int64)
and draws all its random numbers from it, so a `tf.data` pipeline that derives
one seed per element is deterministic. The ops work inside `Dataset.map`.

The published order, each step with its own probability p (published 0.5):

1. `rotate_in_arena`: with probability p, rotate all points by one angle
   θ ~ U(−π, π) about the arena centre. If the rotated points fit (both extents
   strictly below the arena size), move them back inside the arena and add a
   random shift that keeps them inside; otherwise return the input unrotated.
2. `add_gaussian_noise`: with probability p, add N(0, σ²) to every coordinate
   (σ = 2 pixels).
3. `random_reflection`: with probability p, mirror x ← size − x or, with a second
   fair draw, y ← size − y.

A step is applied when its uniform draw u ∈ [0, 1) satisfies u < p, so p = 0
never applies it and p = 1 always does. (The reference skips when u > 0.5; the
two rules differ only on the single value u = 0.5.)

Augmentation works in pixels; normalise afterwards (`normalisation.ArenaNormalisation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

#: The published arena: 850 × 850 pixels, centred at (425, 425).
ARENA_SIZE = 850.0
ARENA_CENTRE = (425.0, 425.0)


def _split(seed: tf.Tensor, count: int) -> tf.Tensor:
    return tf.random.experimental.stateless_split(seed, num=count)


def rotate_in_arena(
    points: tf.Tensor,
    seed: tf.Tensor,
    probability: float = 0.5,
    arena_size: float = ARENA_SIZE,
    arena_centre: Sequence[float] = ARENA_CENTRE,
) -> tf.Tensor:
    """Randomly rotates `[..., 2]` points about the arena centre, keeping them inside.

    One angle is used for all points. Computed in float64; the result is clipped
    to `[0, arena_size]` to absorb rounding, and has the dtype of `points`.

    Args:
        points: `[..., 2]` pixel coordinates (x, y). Fill NaNs beforehand.
        seed: `[2]` int seed.
        probability: chance of attempting the rotation.
        arena_size: arena width and height in pixels.
        arena_centre: the rotation centre (x, y).

    Returns:
        The rotated and shifted points, or the input unchanged when the rotation
        is skipped or the rotated points would not fit.

    Example:
        >>> points = tf.constant([[400.0, 400.0], [450.0, 420.0]])
        >>> rotated = rotate_in_arena(points, tf.constant([1, 2]), probability=1.0)
        >>> bool(tf.reduce_all((rotated >= 0) & (rotated <= 850)))
        True
    """
    points = tf.convert_to_tensor(points)
    seeds = _split(seed, 3)
    apply = tf.random.stateless_uniform([], seeds[0]) < probability
    angle = tf.random.stateless_uniform([], seeds[1], -math.pi, math.pi, dtype=tf.float64)
    original = tf.cast(points, tf.float64)
    centre = tf.constant(arena_centre, tf.float64)
    size = tf.constant(arena_size, tf.float64)
    relative = original - centre
    cosine, sine = tf.cos(angle), tf.sin(angle)
    rotated = centre + tf.stack(
        [
            cosine * relative[..., 0] - sine * relative[..., 1],
            sine * relative[..., 0] + cosine * relative[..., 1],
        ],
        axis=-1,
    )
    flat = tf.reshape(rotated, [-1, 2])
    lowest, highest = tf.reduce_min(flat, axis=0), tf.reduce_max(flat, axis=0)
    fits = tf.reduce_all(highest - lowest < size)
    # Per axis: move the points back inside the arena...
    correction = tf.where(
        highest > size, highest - size, tf.where(lowest < 0.0, lowest, tf.zeros_like(lowest))
    )
    lowest, highest = lowest - correction, highest - correction
    # ...then shift them by U(−min, size − max), which keeps every point inside.
    fraction = tf.random.stateless_uniform([2], seeds[2], dtype=tf.float64)
    shift = -lowest + fraction * ((size - highest) + lowest)
    moved = tf.clip_by_value(rotated - correction + shift, 0.0, size)
    return tf.cast(tf.where(apply & fits, moved, original), points.dtype)


def add_gaussian_noise(
    values: tf.Tensor, seed: tf.Tensor, probability: float = 0.5, stddev: float = 2.0
) -> tf.Tensor:
    """With probability `probability`, adds i.i.d. N(0, stddev²) noise to every value.

    Works on any shape (e.g. also an optional noise on Shot7M2).

    Example:
        >>> values = tf.zeros([3, 2])
        >>> bool(tf.reduce_all(add_gaussian_noise(values, tf.constant([0, 1]), 0.0) == 0))
        True
    """
    values = tf.convert_to_tensor(values)
    seeds = _split(seed, 2)
    apply = tf.random.stateless_uniform([], seeds[0]) < probability
    noise = tf.random.stateless_normal(
        tf.shape(values), seeds[1], stddev=stddev, dtype=values.dtype
    )
    return tf.where(apply, values + noise, values)


def reflect_coordinates(points: tf.Tensor, axis: int, arena_size: float = ARENA_SIZE) -> tf.Tensor:
    """Mirrors `[..., 2]` points: axis 0 gives x ← size − x, axis 1 gives y ← size − y.

    Example:
        >>> reflect_coordinates(tf.constant([[100.0, 200.0]]), axis=0).numpy()
        array([[750., 200.]], dtype=float32)
    """
    points = tf.convert_to_tensor(points)
    mirror = tf.equal(tf.range(2), tf.cast(axis, tf.int32))
    return tf.where(mirror, tf.cast(arena_size, points.dtype) - points, points)


def random_reflection(
    points: tf.Tensor, seed: tf.Tensor, probability: float = 0.5, arena_size: float = ARENA_SIZE
) -> tf.Tensor:
    """With probability `probability`, mirrors x or (second draw > 0.5) y.

    Example:
        >>> points = tf.constant([[100.0, 200.0]])
        >>> random_reflection(points, tf.constant([3, 4]), probability=0.0).numpy()
        array([[100., 200.]], dtype=float32)
    """
    points = tf.convert_to_tensor(points)
    seeds = _split(seed, 2)
    apply = tf.random.stateless_uniform([], seeds[0]) < probability
    mirror_y = tf.random.stateless_uniform([], seeds[1]) > 0.5
    reflected = reflect_coordinates(points, tf.where(mirror_y, 1, 0), arena_size)
    return tf.where(apply, reflected, points)


class ArenaAugmentation:
    """The published MABe22 augmentation: rotation, noise, reflection (in pixels).

    Called on a model window `[num_frames, H, W]` whose features are (x, y)
    pairs, e.g. `[900, 3, 24]` = 3 mice × 12 keypoints × 2; the pipeline calls it
    as `augment(window, seed)` before normalising.

    Args:
        rotation_probability: chance of the rotation step.
        noise_probability: chance of the noise step.
        reflection_probability: chance of the reflection step.
        noise_stddev: noise standard deviation in pixels.
        arena_size: arena width and height in pixels.
        arena_centre: rotation centre; defaults to the arena's middle.

    Example:
        >>> augment = ArenaAugmentation()
        >>> window = tf.fill([4, 3, 24], 425.0)
        >>> augment(window, tf.constant([0, 7])).shape
        TensorShape([4, 3, 24])
    """

    def __init__(
        self,
        rotation_probability: float = 0.5,
        noise_probability: float = 0.5,
        reflection_probability: float = 0.5,
        noise_stddev: float = 2.0,
        arena_size: float = ARENA_SIZE,
        arena_centre: Sequence[float] | None = None,
    ) -> None:
        self.rotation_probability = float(rotation_probability)
        self.noise_probability = float(noise_probability)
        self.reflection_probability = float(reflection_probability)
        self.noise_stddev = float(noise_stddev)
        self.arena_size = float(arena_size)
        self.arena_centre = (
            (self.arena_size / 2, self.arena_size / 2)
            if arena_centre is None
            else tuple(float(value) for value in arena_centre)
        )

    def augment_points(self, points: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Applies the three steps to `[..., 2]` points."""
        seeds = _split(seed, 3)
        points = rotate_in_arena(
            points, seeds[0], self.rotation_probability, self.arena_size, self.arena_centre
        )
        points = add_gaussian_noise(points, seeds[1], self.noise_probability, self.noise_stddev)
        return random_reflection(points, seeds[2], self.reflection_probability, self.arena_size)

    def __call__(self, window: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Augments a `[T, H, W]` window whose W features are (x, y) pairs."""
        window = tf.convert_to_tensor(window)
        shape = tf.shape(window)
        points = tf.reshape(window, tf.concat([shape[:-1], [-1, 2]], axis=0))
        return tf.reshape(self.augment_points(points, seed), shape)

