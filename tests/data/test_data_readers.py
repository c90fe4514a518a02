"""Readers of the published formats (MABe22, Shot7M2, hBABEL). Their error messages:
tests/faults/test_data_faults.py."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from keras_hbehavemae.data.readers import (
    HBABEL_JOINT_ORDER,
    SHOT7M2_JOINT_SELECTION,
    read_hbabel,
    read_mabe_mouse_triplets,
    read_shot7m2,
)

pytestmark = pytest.mark.backend_independent


def _mouse_keypoints(num_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(10, 840, (num_frames, 3, 12, 2)).astype(np.float32)


def _save(path, obj) -> str:
    np.save(path, np.array(obj, dtype=object) if not isinstance(obj, np.ndarray) else obj)
    return str(path)


# ---------------------------------------------------------------------- MABe22
def test_mabe_reader_flattens_mouse_keypoint_xy_and_keeps_order(tmp_path):
    first, second = _mouse_keypoints(30, 0), _mouse_keypoints(17, 1)
    path = _save(
        tmp_path / "mice.npy",
        {"sequences": {"zeta": {"keypoints": first}, "alpha": {"keypoints": second}}},
    )
    sequences = read_mabe_mouse_triplets(path, expected_hw=(3, 24))
    assert sequences.names == ["zeta", "alpha"]
    assert sequences.lengths == [30, 17]
    assert sequences.frame_number_map() == {"zeta": (0, 30), "alpha": (30, 47)}
    array = sequences["zeta"]
    assert array.dtype == np.float32 and array.shape == (30, 3, 24)
    # (mouse, keypoint, xy) order; the reader keeps pixels (no normalisation).
    np.testing.assert_array_equal(array[5, 2, 2 * 7 + 1], first[5, 2, 7, 1])
    np.testing.assert_array_equal(array, first.reshape(30, 3, 24))
    assert sequences.validity[0].all()


def test_mabe_fill_holes_and_validity():
    keypoints = np.full((4, 3, 12, 2), 100.0, np.float32)
    keypoints[:, 0, 0] = [[0, 0], [5, 6], [0, 9], [7, 8]]  # x == 0 means missing
    data = {"sequences": {"s": {"keypoints": keypoints}}}
    filled = read_mabe_mouse_triplets(data, fill_holes=True)
    # Frame 0 copies the first later frame with x != 0; later frames copy the previous one.
    np.testing.assert_array_equal(filled["s"][:, 0, :2], [[5, 6], [5, 6], [5, 6], [7, 8]])
    np.testing.assert_array_equal(filled.validity[0], [False, True, False, True])
    unfilled = read_mabe_mouse_triplets(data)
    np.testing.assert_array_equal(unfilled["s"][:, 0, :2], keypoints[:, 0, 0])


def test_mabe_center_align_puts_centre_at_origin_and_neck_on_positive_x():
    data = {"sequences": {"s": {"keypoints": _mouse_keypoints(6, 3)}}}
    aligned = read_mabe_mouse_triplets(data, center_align=True)["s"].reshape(6, 3, 12, 2)
    np.testing.assert_allclose(aligned[:, :, 6], 0.0, atol=1e-4)
    np.testing.assert_allclose(aligned[:, :, 3, 1], 0.0, atol=1e-3)
    assert (aligned[:, :, 3, 0] > 0).all()


def test_mabe_labels_from_labels_dict_and_from_annotations():
    keypoints = _mouse_keypoints(5, 4)
    with_labels = {
        "sequences": {"s": {"keypoints": keypoints, "labels": {"action": np.arange(5.0)}}},
        "label_info": {"action": {"task_type": "discrete", "timescale": "action"}},
    }
    sequences = read_mabe_mouse_triplets(with_labels)
    assert sequences.label_names == ["action"]
    assert sequences.label_info["action"].timescale == "action"
    np.testing.assert_array_equal(sequences.labels[0]["action"], np.arange(5.0))

    annotations = np.stack([np.full(5, np.nan), np.linspace(0, 1, 5)]).astype(np.float32)
    with_annotations = {
        "vocabulary": ["chasing", "speed"],
        "task_type": ["Discrete", "Continuous"],
        "sequences": {"s": {"keypoints": keypoints, "annotations": annotations}},
    }
    sequences = read_mabe_mouse_triplets(with_annotations)
    assert sequences.label_info["chasing"].task_type == "discrete"
    assert sequences.label_info["speed"].task_type == "continuous"
    assert np.isnan(sequences.label_array("chasing")).all()


# --------------------------------------------------------------------- Shot7M2
def test_shot7m2_reader_selects_and_orders_joints(tmp_path):
    joint_ids = np.arange(26, dtype=np.float32)[None, None, :, None] * np.ones((40, 1, 26, 3))
    poses = joint_ids + np.array([0.0, 0.1, 0.2], np.float32)  # xyz distinguishable
    path = _save(
        tmp_path / "train_dictionary_poses.npy",
        {"sequences": {"keypoints": {"ep2": poses, "ep1": poses[:25]}}},
    )
    sequences = read_shot7m2(path, expected_hw=(1, 72))
    assert sequences.names == ["ep2", "ep1"] and sequences.lengths == [40, 25]
    array = sequences["ep2"]
    assert array.shape == (40, 1, 72)
    np.testing.assert_allclose(array[0, 0, 0::3], SHOT7M2_JOINT_SELECTION)
    np.testing.assert_allclose(array[0, 0, 1:6], [0.1, 0.2, 1.0, 1.1, 1.2], rtol=1e-6)


# ---------------------------------------------------------------------- hBABEL
def _babel_item(length: int, extra: int = 0, babel_id: str | None = None) -> dict:
    joints = np.broadcast_to(
        np.arange(25, dtype=np.float32)[None, :, None], (length + extra, 25, 3)
    ).copy()
    item = {"poses": np.zeros((length, 156)), "joint_positions_processed": joints}
    if babel_id is not None:
        item["babel_id"] = babel_id
    return item


@pytest.mark.parametrize("suffix", [".npy", ".pkl"])
def test_hbabel_reader_takes_length_from_poses_and_groups_joints(tmp_path, suffix):
    items = [_babel_item(42, extra=3, babel_id="b7"), _babel_item(500, babel_id="b1")]
    path = tmp_path / f"val{suffix}"
    if suffix == ".npy":
        array = np.empty(len(items), dtype=object)
        array[:] = items
        np.save(path, array)
    else:
        path.write_bytes(pickle.dumps(items))
    sequences = read_hbabel(path, expected_hw=(1, 75))
    assert sequences.names == ["b7", "b1"]
    assert sequences.lengths == [42, 500]
    np.testing.assert_array_equal(sequences["b7"][0, 0, 0::3], HBABEL_JOINT_ORDER)


# ------------------------------------------------------------------ short sequences
# (Bad files and data, and too-short sequences with padding off: tests/faults/test_data_faults.py.)
def test_short_sequences_are_padded():
    data = {"sequences": {"s": {"keypoints": _mouse_keypoints(5, 0)}}}
    assert read_mabe_mouse_triplets(data, num_frames=900).lengths == [5]
