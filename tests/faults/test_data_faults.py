"""Bad data files and data: missing, empty, truncated or corrupt files, wrong layouts, sequences
that are empty, too short (when padding is off), all-NaN, infinite or non-numeric, frames that
do not fit the model, and pickles that try to run code. Each raises an error that names the
file (and sequence) and the problem; nothing in a pickle is executed.
"""

from __future__ import annotations

import datetime
import pathlib
import pickle

import numpy as np
import pytest

from keras_hbehavemae.data.readers import (
    read_hbabel,
    read_keypoint_arrays,
    read_mabe_mouse_triplets,
    read_shot7m2,
)
from keras_hbehavemae.files.pickle_files import load_pickled_file

pytestmark = pytest.mark.backend_independent

NAN = np.nan
MICE = np.full((5, 3, 12, 2), 100.0, np.float32)  # 5 frames of 3 mice × 12 keypoints × (x, y)


def save_object(path, obj) -> str:
    """`obj` pickled into a `.npy` file, as the published dataset files are."""
    np.save(path, np.array(obj, dtype=object))
    return str(path)


# ---------------------------------------------------------------- missing, empty, corrupt files

def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "absent.npy"
    with pytest.raises(FileNotFoundError, match="absent.npy"):
        read_mabe_mouse_triplets(missing)


def test_missing_generic_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_keypoint_arrays(tmp_path / "nowhere")


def test_folder_without_data_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="the folder has no .npy, .npz or .csv files"):
        read_keypoint_arrays(empty)


def test_corrupt_npy_file_is_named(tmp_path):
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt.npy: not a NumPy .npy file"):
        read_mabe_mouse_triplets(corrupt)


def test_empty_npy_file_is_named(tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.npy: the file is empty"):
        read_mabe_mouse_triplets(empty)


def _first_half(full, cut):
    """Writes the first half of the file `full` to `cut` (a write that stopped midway)."""
    content = full.read_bytes()
    cut.write_bytes(content[: len(content) // 2])
    return cut


def test_truncated_dataset_pickle_is_named(tmp_path):
    path = save_object(tmp_path / "full.npy", {"sequences": {"s": {"keypoints": MICE}}})
    _first_half(pathlib.Path(path), tmp_path / "cut.npy")
    with pytest.raises(ValueError, match=r"cut\.npy: truncated or corrupt pickle \(pickle data "
                                         r"was truncated\)"):
        read_mabe_mouse_triplets(tmp_path / "cut.npy")


def test_truncated_numeric_npy_is_named(tmp_path):
    np.save(tmp_path / "full.npy", np.zeros((40, 2, 6), np.float32))
    _first_half(tmp_path / "full.npy", tmp_path / "cut.npy")
    with pytest.raises(ValueError, match=r"cut\.npy: truncated: its header promises an array of "
                                         r"shape \(40, 2, 6\) and dtype float32 \(1920 bytes\), "
                                         r"but only \d+ bytes of data follow it"):
        read_keypoint_arrays(tmp_path / "cut.npy")


def test_truncated_npz_is_named(tmp_path):
    np.savez(tmp_path / "full.npz", keypoints=np.zeros((40, 2, 6)))
    _first_half(tmp_path / "full.npz", tmp_path / "cut.npz")
    with pytest.raises(ValueError, match=r"cut\.npz: not a readable \.npz archive"):
        read_keypoint_arrays(tmp_path / "cut.npz")


def test_file_that_is_no_pickle_is_named(tmp_path):
    torch_file = tmp_path / "val.pth.tar"
    torch_file.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"val\.pth\.tar: not a \.npy file, a pickle \(protocol 2 "
                                         r"or later\) or a joblib file"):
        read_hbabel(torch_file)


# ---------------------------------------------------------------- pickles that try to run code

def test_npy_with_an_unknown_global_is_refused(tmp_path):
    path = save_object(tmp_path / "odd.npy", {"sequences": {}, "date": datetime.date(2020, 1, 1)})
    with pytest.raises(ValueError, match=r"odd\.npy: refused global 'datetime\.date'"):
        load_pickled_file(path)


def test_pkl_with_an_unknown_global_is_refused(tmp_path):
    pickled = tmp_path / "odd.pkl"
    pickled.write_bytes(pickle.dumps([datetime.date(2020, 1, 1)]))
    with pytest.raises(ValueError, match=r"odd\.pkl: refused global 'datetime\.date'"):
        load_pickled_file(pickled)


# (Pickles that would run code, fed to every loader: test_pickle_faults.py.)


# ---------------------------------------------------------------- wrong layouts

def test_wrong_top_level_layout_names_expected_and_found_keys(tmp_path):
    path = save_object(tmp_path / "bad.npy", {"clips": {}, "vocabulary": []})
    with pytest.raises(
        ValueError, match=r"bad.npy: expected key 'sequences', found keys \['clips', 'vocabulary'\]"
    ):
        read_mabe_mouse_triplets(path)


def test_mouse_keypoints_without_xy_pairs():
    with pytest.raises(ValueError, match=r"expected keypoints \[T, n_mice, n_keypoints, 2\]"):
        read_mabe_mouse_triplets({"sequences": {"s": {"keypoints": np.zeros((5, 3, 12, 3))}}})


def test_shot7m2_sequences_under_another_key():
    with pytest.raises(ValueError, match=r"expected key 'keypoints', found keys \['poses'\]"):
        read_shot7m2({"sequences": {"poses": {}}})


def test_shot7m2_poses_with_another_joint_count():
    with pytest.raises(ValueError, match=r"expected poses \[T, 1, 26, 3\], got shape"):
        read_shot7m2({"sequences": {"keypoints": {"e": np.zeros((5, 1, 25, 3))}}})


def test_hbabel_poses_longer_than_the_joints():
    with pytest.raises(ValueError, match="poses has 10 frames but joint_positions_processed only"):
        read_hbabel([{"poses": np.zeros(10), "joint_positions_processed": np.zeros((8, 25, 3))}])


def test_hbabel_item_without_joint_positions():
    with pytest.raises(ValueError, match="expected key 'joint_positions_processed'"):
        read_hbabel([{"poses": np.zeros(10), "joints": np.zeros((10, 25, 3))}])


def test_hbabel_file_that_is_not_a_list():
    with pytest.raises(ValueError, match="expected a non-empty list of dicts"):
        read_hbabel({"poses": np.zeros(3)})


def test_npz_with_several_unnamed_arrays(tmp_path):
    archive = tmp_path / "several.npz"
    np.savez(archive, left=np.zeros(3), right=np.zeros(3))
    with pytest.raises(ValueError, match="expected one array or an array named 'keypoints'"):
        read_keypoint_arrays(archive)


def test_csv_with_a_non_numeric_cell(tmp_path):
    bad_cell = tmp_path / "bad_cell.csv"
    bad_cell.write_text("x,y\n1,2\n3,oops\n")
    with pytest.raises(ValueError,
                       match="bad_cell.csv: non-numeric value 'oops' at row 3, column 2"):
        read_keypoint_arrays(bad_cell)


def test_ragged_csv(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="ragged.csv: row 2 has 1 columns, expected 2"):
        read_keypoint_arrays(ragged)


def test_empty_csv(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv: the CSV file has no rows"):
        read_keypoint_arrays(empty)


def test_layout_that_does_not_fit_the_frame_size():
    with pytest.raises(ValueError, match=r"cannot be laid out as \(H, W\) = \(4, 4\)"):
        read_keypoint_arrays(np.zeros((6, 8)), layout=(4, 4))


def test_layout_letters_that_do_not_describe_the_shape():
    with pytest.raises(ValueError, match="layout 'tk' does not describe shape"):
        read_keypoint_arrays(np.zeros((6, 8, 2)), layout="tk")


def test_frames_of_another_shape_than_the_models():
    data = {"sequences": {"s": {"keypoints": MICE}}}
    with pytest.raises(ValueError, match=r"sequence 's'.*\(H, W\) = \(3, 24\).*expects.*\(1, 72\)"):
        read_mabe_mouse_triplets(data, expected_hw=(1, 72))


def test_generic_frames_of_another_shape_than_the_models():
    with pytest.raises(ValueError, match=r"model expects \(H, W\) = \(3, 24\)"):
        read_keypoint_arrays([np.zeros((4, 2))], expected_hw=(3, 24))


# ---------------------------------------------------------------- empty, short, NaN, non-numeric

def test_sequence_without_frames():
    with pytest.raises(ValueError, match="has no frames"):
        read_mabe_mouse_triplets({"sequences": {"s": {"keypoints": np.zeros((0, 3, 12, 2))}}})


def test_too_short_sequence_when_padding_is_off():
    data = {"sequences": {"s": {"keypoints": MICE}}}
    with pytest.raises(ValueError, match="5 frames, fewer than num_frames=900"):
        read_mabe_mouse_triplets(data, num_frames=900, pad_short_sequences=False)


def test_too_short_generic_sequence_when_padding_is_off():
    with pytest.raises(ValueError, match="4 frames, fewer than num_frames=10"):
        read_keypoint_arrays([np.zeros((4, 2))], num_frames=10, pad_short_sequences=False)


def test_all_nan_sequence():
    all_nan = np.full((5, 3, 12, 2), np.nan)
    with pytest.raises(ValueError, match="sequence 's': every value is NaN"):
        read_mabe_mouse_triplets({"sequences": {"s": {"keypoints": all_nan}}})


def test_all_nan_generic_sequence():
    with pytest.raises(ValueError, match="every value is NaN"):
        read_keypoint_arrays([np.full((4, 2), NAN)])


def test_coordinate_that_is_never_tracked():
    never_tracked = np.zeros((4, 3))
    never_tracked[:, 2] = NAN
    with pytest.raises(ValueError, match=r"\(individual 0, feature 2\) is NaN in every frame"):
        read_keypoint_arrays([never_tracked])


def test_infinite_values():
    with pytest.raises(ValueError, match="infinite values"):
        read_keypoint_arrays([np.array([[1.0, np.inf]])])


def test_text_keypoints():
    text = np.full((5, 3, 12, 2), "1.0")
    with pytest.raises(ValueError, match="non-numeric values of dtype <U3"):
        read_mabe_mouse_triplets({"sequences": {"s": {"keypoints": text}}})


def test_object_keypoints():
    objects = np.empty((5, 3, 12, 2), dtype=object)
    with pytest.raises(ValueError, match="non-numeric values of dtype object"):
        read_mabe_mouse_triplets({"sequences": {"s": {"keypoints": objects}}})


def test_npy_of_strings_is_named(tmp_path):
    strings = tmp_path / "strings.npy"
    np.save(strings, np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="strings.npy: expected numeric keypoints"):
        read_keypoint_arrays(strings)


def test_unknown_fill_mode():
    with pytest.raises(ValueError, match="fill must be"):
        read_keypoint_arrays([np.zeros((4, 2))], fill="zero")
