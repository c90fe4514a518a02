"""The synthetic hierarchical behaviour dataset."""

from __future__ import annotations

import numpy as np
import pytest

from keras_hbehavemae.data.readers import read_mabe_mouse_triplets
from keras_hbehavemae.data.synthetic import (
    ACTION_SUCCESSORS,
    ACTIONS,
    ACTIVITIES,
    MOVEMES,
    generate_synthetic_behaviour,
    write_synthetic_dataset,
)

pytestmark = pytest.mark.backend_independent

TIMESCALE_RANGES = {"moveme": (5, 20), "action": (30, 120), "activity": (300, 900)}


@pytest.fixture(scope="module")
def dataset() -> dict:
    return generate_synthetic_behaviour(16, num_frames_per_sequence=1800, seed=11)


def _runs(labels: np.ndarray) -> np.ndarray:
    boundaries = np.flatnonzero(np.diff(labels) != 0) + 1
    return np.diff(np.concatenate([[0], boundaries, [len(labels)]]))


def test_same_seed_same_arrays_and_different_seed_different_arrays():
    first = generate_synthetic_behaviour(3, num_frames_per_sequence=400, seed=5)
    again = generate_synthetic_behaviour(3, num_frames_per_sequence=400, seed=5)
    other = generate_synthetic_behaviour(3, num_frames_per_sequence=400, seed=6)
    for name, entry in first["sequences"].items():
        np.testing.assert_array_equal(entry["keypoints"], again["sequences"][name]["keypoints"])
        for label, values in entry["labels"].items():
            np.testing.assert_array_equal(values, again["sequences"][name]["labels"][label])
        assert not np.allclose(entry["keypoints"], other["sequences"][name]["keypoints"])


def test_layout_and_arena(dataset):
    assert len(dataset["sequences"]) == 16
    for entry in dataset["sequences"].values():
        keypoints = entry["keypoints"]
        assert keypoints.shape == (1800, 3, 12, 2) and keypoints.dtype == np.float32
        assert keypoints.min() >= 1.0 and keypoints.max() <= 849.0  # x == 0 would mean missing
        for values in entry["labels"].values():
            assert values.shape == (1800,) and values.dtype == np.float32


def test_three_timescales_with_segment_lengths_in_the_stated_ranges(dataset):
    class_counts = {"moveme": len(MOVEMES), "action": len(ACTIONS), "activity": len(ACTIVITIES)}
    for label, (shortest, longest) in TIMESCALE_RANGES.items():
        interior_runs, all_runs = [], []
        for entry in dataset["sequences"].values():
            values = entry["labels"][label]
            assert set(np.unique(values)) <= set(range(class_counts[label]))
            runs = _runs(values)
            all_runs.extend(runs)
            interior_runs.extend(runs[1:-1])  # the first and last are cut by the sequence
        assert shortest <= min(interior_runs) and max(interior_runs) <= longest, label
        assert shortest <= np.mean(interior_runs) <= longest, label
        assert shortest <= np.mean(all_runs) <= longest, label
    cohesion = np.concatenate([e["labels"]["cohesion"] for e in dataset["sequences"].values()])
    assert 0.0 <= cohesion.min() and cohesion.max() <= 1.0 and cohesion.std() > 0.05


def test_activities_set_the_order_of_actions_not_their_frequency(dataset):
    transitions = np.zeros((len(ACTIVITIES), len(ACTIONS), len(ACTIONS)))
    frames_per_action = np.zeros((len(ACTIVITIES), len(ACTIONS)))
    for entry in dataset["sequences"].values():
        activity = entry["labels"]["activity"].astype(int)
        action = entry["labels"]["action"].astype(int)
        np.add.at(frames_per_action, (activity, action), 1)
        starts = np.flatnonzero(np.diff(action) != 0) + 1
        np.add.at(transitions, (activity[starts], action[starts - 1], action[starts]), 1)
    frequencies = frames_per_action / frames_per_action.sum(axis=1, keepdims=True)
    assert np.abs(frequencies - 1 / len(ACTIONS)).max() < 0.1  # uniform in every activity
    np.testing.assert_array_equal(transitions.argmax(axis=2), ACTION_SUCCESSORS)


def test_read_through_the_mabe_reader_with_label_metadata(tmp_path):
    paths = write_synthetic_dataset(tmp_path, 3, 2, num_frames_per_sequence=300, seed=2)
    train = read_mabe_mouse_triplets(paths["train"], expected_hw=(3, 24))
    test = read_mabe_mouse_triplets(paths["test"])
    assert len(train) == 3 and len(test) == 2
    assert train.names[0] == "train_00000" and test.names[0] == "test_00000"
    assert not np.allclose(train.keypoints[0], test.keypoints[0])
    assert train.label_names == ["action", "activity", "cohesion", "moveme"]
    info = train.label_info
    assert {info[name].timescale for name in ("moveme", "action", "activity")} == set(
        TIMESCALE_RANGES
    )
    assert info["cohesion"].task_type == "continuous"
    assert info["activity"].task_type == "discrete"
    assert info["activity"].class_names == ACTIVITIES
    assert train.validity[0].all()


def test_argument_checks():
    with pytest.raises(ValueError, match="num_mice must be at least 2"):
        generate_synthetic_behaviour(1, num_mice=1)
    with pytest.raises(ValueError, match="must be positive"):
        generate_synthetic_behaviour(0)
