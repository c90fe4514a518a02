"""The `KeypointSequences` container."""

from __future__ import annotations

import numpy as np
import pytest

from keras_hbehavemae.data.sequences import KeypointSequences, LabelInfo

pytestmark = pytest.mark.backend_independent


def test_order_lengths_and_frame_map():
    sequences = KeypointSequences(
        ["b", "a", "c"], [np.zeros((4, 2, 3)), np.zeros((1, 2, 3)), np.zeros((6, 2, 3))]
    )
    assert [name for name, _ in sequences] == ["b", "a", "c"]
    assert sequences.lengths == [4, 1, 6] and sequences.total_frames == 11
    assert sequences.frame_number_map() == {"b": (0, 4), "a": (4, 5), "c": (5, 11)}
    assert sequences["c"].dtype == np.float32
    with pytest.raises(KeyError):
        sequences["missing"]


def test_labels_validity_and_inferred_task_types():
    labels = [
        {"kind": np.array([0, 1, np.nan]), "speed": np.array([0.5, 1.5, 2.0])},
        {"kind": np.array([2.0]), "speed": np.array([np.nan])},
    ]
    sequences = KeypointSequences(
        ["x", "y"],
        [np.zeros((3, 1, 2)), np.zeros((1, 1, 2))],
        labels=labels,
        label_info={"kind": LabelInfo("discrete", "action", ("a", "b", "c"))},
        validity=[np.array([True, False, True]), np.array([True])],
    )
    assert sequences.label_names == ["kind", "speed"]
    assert sequences.label_info["kind"].timescale == "action"
    assert sequences.label_info["speed"].task_type == "continuous"
    np.testing.assert_array_equal(sequences.label_array("kind"), [0, 1, np.nan, 2])
    moved = sequences.with_keypoints([np.ones((3, 1, 2)), np.ones((1, 1, 2))])
    assert moved.validity[0].tolist() == [True, False, True] and moved.label_names


def test_inconsistent_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"all sequences must share \(H, W\)"):
        KeypointSequences(["a", "b"], [np.zeros((2, 1, 3)), np.zeros((2, 1, 4))])
    with pytest.raises(ValueError, match="names must be unique"):
        KeypointSequences(["a", "a"], [np.zeros((2, 1, 3))] * 2)
    with pytest.raises(ValueError, match=r"keypoints must be \[T, H, W\]"):
        KeypointSequences(["a"], [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"label 'k': expected shape \(2,\)"):
        KeypointSequences(["a"], [np.zeros((2, 1, 3))], labels=[{"k": np.zeros(3)}])
    with pytest.raises(ValueError, match=r"validity must have shape \(2,\)"):
        KeypointSequences(["a"], [np.zeros((2, 1, 3))], validity=[np.ones(5, bool)])
    with pytest.raises(ValueError, match="task_type must be"):
        LabelInfo("ordinal")
