"""Arena augmentations: invariants, determinism and probability 0."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_hbehavemae.data.augment import (  # noqa: E402
    ArenaAugmentation,
    add_gaussian_noise,
    random_reflection,
    reflect_coordinates,
    rotate_in_arena,
)
from keras_hbehavemae.data.normalisation import ArenaNormalisation  # noqa: E402

pytestmark = pytest.mark.backend_independent

SEEDS = [tf.constant([seed, 17], tf.int64) for seed in range(20)]


def _mice(seed: int, low: float = 300.0, high: float = 550.0) -> np.ndarray:
    """`[frames, mice, keypoints, 2]` pixels in a box that fits the arena at any angle."""
    return np.random.default_rng(seed).uniform(low, high, (16, 3, 12, 2)).astype(np.float32)


def _pairwise_distances(points: np.ndarray) -> np.ndarray:
    flat = points.reshape(-1, 2).astype(np.float64)
    return np.linalg.norm(flat[:, None] - flat[None], axis=-1)


def test_applied_rotation_keeps_points_in_arena_and_is_rigid():
    points = _mice(0, 20.0, 400.0)  # near a corner, so the shift back inside matters
    rotate = tf.function(lambda seed: rotate_in_arena(points, seed, probability=1.0))
    for seed in SEEDS:
        rotated = rotate(seed).numpy()
        assert rotated.dtype == np.float32
        assert rotated.min() >= 0.0 and rotated.max() <= 850.0
        assert not np.allclose(rotated, points)
        np.testing.assert_allclose(
            _pairwise_distances(rotated), _pairwise_distances(points), atol=1e-3
        )


def test_rotation_returns_input_unrotated_when_extents_reach_the_arena():
    corners = np.array([[0.0, 0.0], [850.0, 850.0], [0.0, 850.0], [850.0, 0.0]], np.float32)
    for seed in SEEDS:
        np.testing.assert_array_equal(rotate_in_arena(corners, seed, 1.0).numpy(), corners)


def test_reflection_twice_is_identity():
    integral = np.round(_mice(1))
    for axis in (0, 1):
        once = reflect_coordinates(integral, axis)
        np.testing.assert_array_equal(reflect_coordinates(once, axis).numpy(), integral)
    np.testing.assert_array_equal(
        reflect_coordinates(integral, 0).numpy()[..., 0], 850.0 - integral[..., 0]
    )
    points = _mice(2)
    for seed in SEEDS:
        twice = random_reflection(random_reflection(points, seed, 1.0), seed, 1.0).numpy()
        np.testing.assert_allclose(twice, points, atol=1e-4)


def test_probability_zero_changes_nothing():
    window = _mice(3).reshape(16, 3, 24)
    augment = ArenaAugmentation(0.0, 0.0, 0.0)
    for seed in SEEDS:
        np.testing.assert_array_equal(augment(window, seed).numpy(), window)
        np.testing.assert_array_equal(add_gaussian_noise(window, seed, 0.0).numpy(), window)


def test_augmentation_is_deterministic_given_a_seed_and_varies_across_seeds():
    window = _mice(4).reshape(16, 3, 24)
    augment = ArenaAugmentation(1.0, 1.0, 1.0)
    first = augment(window, SEEDS[0]).numpy()
    np.testing.assert_array_equal(first, augment(window, SEEDS[0]).numpy())
    assert not np.allclose(first, augment(window, SEEDS[1]).numpy())
    assert first.shape == (16, 3, 24) and first.dtype == np.float32


def test_noise_has_the_published_standard_deviation():
    values = np.zeros((200, 3, 24), np.float32)
    noisy = add_gaussian_noise(values, SEEDS[0], probability=1.0, stddev=2.0).numpy()
    assert abs(noisy.std() - 2.0) < 0.05 and abs(noisy.mean()) < 0.05


def test_probabilities_are_respected_on_average():
    window = _mice(5).reshape(16, 3, 24)
    augment = tf.function(lambda seed: ArenaAugmentation(0.5, 0.0, 0.0)(window, seed))
    changed = [
        not np.array_equal(augment(tf.constant([seed, 3])).numpy(), window)
        for seed in range(100)
    ]
    assert 0.3 < np.mean(changed) < 0.7


def test_normalisation_maps_arena_to_unit_range():
    normalise = ArenaNormalisation()
    np.testing.assert_array_equal(
        normalise(tf.constant([0.0, 425.0, 850.0])).numpy(), [-1.0, 0.0, 1.0]
    )
    np.testing.assert_array_equal(normalise(np.array([212.5], np.float32)), [-0.5])
