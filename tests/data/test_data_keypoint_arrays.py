"""`read_keypoint_arrays` (generic lab data) and the hole-filling rules. Bad files and values:
tests/faults/test_data_faults.py."""

from __future__ import annotations

import numpy as np
import pytest

from keras_hbehavemae.data.filling import fill_mouse_holes, hold_fill, interpolate_fill
from keras_hbehavemae.data.readers import read_keypoint_arrays

pytestmark = pytest.mark.backend_independent

NAN = np.nan


def test_folder_of_npy_npz_csv_with_different_lengths(tmp_path):
    rng = np.random.default_rng(0)
    four_axes = rng.normal(size=(30, 2, 5, 3)).astype(np.float32)  # [T, individuals, kp, dims]
    np.save(tmp_path / "b_session.npy", four_axes)
    np.savez(tmp_path / "a_session.npz", keypoints=rng.normal(size=(12, 2, 15)))
    (tmp_path / "c_session.csv").write_text(
        "x0,y0\n" + "\n".join(f"{i},{2 * i}" for i in range(7)) + "\n"
    )
    (tmp_path / "notes.txt").write_text("ignored")

    sequences = read_keypoint_arrays(tmp_path / "b_session.npy", expected_hw=(2, 15))
    np.testing.assert_array_equal(sequences.keypoints[0], four_axes.reshape(30, 2, 15))

    np.save(tmp_path / "b_session.npy", four_axes.reshape(30, 2, 15))
    (tmp_path / "c_session.csv").unlink()
    sequences = read_keypoint_arrays(tmp_path, expected_hw=(2, 15))
    assert sequences.names == ["a_session", "b_session"]
    assert sequences.lengths == [12, 30]
    assert all(array.dtype == np.float32 for array in sequences.keypoints)


def test_csv_header_optional_and_empty_cells_are_untracked(tmp_path):
    with_header = tmp_path / "with_header.csv"
    with_header.write_text("nose_x,nose_y\n0,10\n,\n2,30\n")
    without_header = tmp_path / "without_header.csv"
    without_header.write_text("0,10\n1,20\n")
    sequences = read_keypoint_arrays(with_header, fill="interpolate")
    np.testing.assert_array_equal(sequences.keypoints[0][:, 0], [[0, 10], [1, 20], [2, 30]])
    np.testing.assert_array_equal(sequences.validity[0], [True, False, True])
    raw = read_keypoint_arrays(with_header, fill=None)
    assert np.isnan(raw.keypoints[0][1]).all()
    assert read_keypoint_arrays(without_header).keypoints[0].shape == (2, 1, 2)


def test_interpolation_values_are_exact_and_edges_are_held():
    track = np.array(
        [[NAN, 5.0], [0.0, NAN], [NAN, NAN], [NAN, 8.0], [3.0, NAN], [NAN, NAN]], np.float32
    )
    sequences = read_keypoint_arrays([track], fill="interpolate")
    expected = [[0, 5], [0, 6], [1, 7], [2, 8], [3, 8], [3, 8]]
    np.testing.assert_array_equal(sequences.keypoints[0][:, 0, :], expected)
    np.testing.assert_array_equal(sequences.validity[0], [False] * 6)
    held = read_keypoint_arrays([track], fill="hold")
    np.testing.assert_array_equal(
        held.keypoints[0][:, 0, :], [[0, 5], [0, 5], [0, 5], [0, 8], [3, 8], [3, 8]]
    )


def test_filling_functions_directly():
    values = np.array([NAN, 2.0, NAN, NAN, NAN, 10.0, NAN])
    np.testing.assert_array_equal(
        interpolate_fill(values, np.isnan(values)), [2, 2, 4, 6, 8, 10, 10]
    )
    np.testing.assert_array_equal(hold_fill(values, np.isnan(values)), [2, 2, 2, 2, 2, 10, 10])
    mice = np.zeros((3, 1, 2, 2))
    mice[1, 0, 0] = [4, 5]
    mice[:, 0, 1] = [[1, 1], [2, 2], [0, 7]]
    filled = fill_mouse_holes(mice)
    np.testing.assert_array_equal(filled[:, 0, 0], [[4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(filled[:, 0, 1], [[1, 1], [2, 2], [2, 2]])


def test_layouts():
    data = np.arange(4 * 3 * 5 * 2, dtype=np.float32).reshape(4, 3, 5, 2)  # [t, d, k, i]
    by_string = read_keypoint_arrays(data, layout="tdki").keypoints[0]
    assert by_string.shape == (4, 2, 15)
    np.testing.assert_array_equal(by_string[1, 1, 3 * 2 + 1], data[1, 1, 2, 1])  # k=2, d=1, i=1
    by_tuple = read_keypoint_arrays(data.reshape(4, 30), layout=(3, 10)).keypoints[0]
    np.testing.assert_array_equal(by_tuple, data.reshape(4, 3, 10))
    single_animal = read_keypoint_arrays(np.zeros((6, 7, 2)), layout="tkd")
    assert single_animal.feature_shape == (1, 14)
    assert read_keypoint_arrays(np.zeros((6, 8))).feature_shape == (1, 8)


def test_in_memory_sources_keep_names_and_order():
    sequences = read_keypoint_arrays({"second": np.zeros((3, 2)), "first": np.ones((5, 2))})
    assert sequences.names == ["second", "first"]
    assert read_keypoint_arrays(np.zeros((3, 2))).names == ["sequence_0"]
    assert read_keypoint_arrays([np.zeros((3, 2)), np.zeros((4, 2))]).lengths == [3, 4]
