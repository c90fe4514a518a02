"""Pickled and array files that try to run code, forge sizes or are damaged.

- A crafted pickle that would create a marker file if executed is fed to every reader of
  pickled content (datasets, keypoint arrays, labels, embedding and submission files,
  checkpoints, the hBABEL joblib files, the plot command's data, a DeepLabCut `.h5`'s
  pickled column labels): the marker never appears and the error names the file.
- joblib files are read without joblib: real files written by joblib 1.6.0
  (`tests/fixtures/hbabel_joblib/`, see `tests/joblib_files.py`) and files framed here.
- A `.npy` header that promises a huge array is refused before anything is allocated.
- Every file reader, given an empty, truncated or binary file, raises a ValueError naming it.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import pickle
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import write_zip
from joblib_files import FIXTURE_FORMATS, HBABEL_FIXTURES, hbabel_content, joblib_bytes

from keras_hbehavemae.cli.plot_reconstruction import load_window
from keras_hbehavemae.convert.checkpoint import read_state_dict_file
from keras_hbehavemae.convert.torch_pickle import TORCH_CHECKPOINT, load_torch_file
from keras_hbehavemae.data.keypoint_arrays import read_keypoint_arrays
from keras_hbehavemae.data.layouts import read_split
from keras_hbehavemae.data.pose import PoseOptions, read_pose
from keras_hbehavemae.data.readers import HBABEL_JOINT_ORDER, read_mabe_mouse_triplets
from keras_hbehavemae.evaluation.labels import load_embedding_folder, load_labels_file
from keras_hbehavemae.files.npy import read_npy
from keras_hbehavemae.files.pickle_files import load_pickled_file
from keras_hbehavemae.files.unpickling import UnsafePickleError
from keras_hbehavemae.loading import read_model_config

pytestmark = pytest.mark.backend_independent

REFUSED_SYSTEM = r"refused global '(os|posix)\.system'.*nothing in it was executed"
OBJECTS_REFUSED = r"holds pickled Python objects"
JOBLIB_FILE = "babel-smplh-30fps-male/val_proc_realigned_procrustes.pth.tar"


class _RunsCode:
    """Pickles as `os.system("touch <marker>")`, the classic pickle attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_crafted_pickle_runs_code_when_loaded_unrestricted(tmp_path):
    """The payload of this module is live: plain `pickle.loads` creates the marker."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_RunsCode(marker)))  # noqa: S301 - the point of the test
    assert marker.exists()


def _save_objects(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(content, dtype=object))
    return path


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _hbabel_item(joints) -> list:
    return [{"poses": np.zeros((3, 6)), "joint_positions_processed": joints}]


def _embedding_levels(folder: Path, level_file: Path) -> Path:
    (folder / "frame_number_map.json").write_text('{"a": [0, 2]}')
    return level_file


def _dlc_h5(path: Path) -> Path:
    """A DeepLabCut `.h5` in pandas' table format (needs the `[pose]` extra's pandas)."""
    pytest.importorskip("tables", reason="writing a DeepLabCut file needs the [pose] extra")
    from pose_writers import synthetic_poses, write_dlc_h5

    return write_dlc_h5(path, *synthetic_poses(20))


def _dlc_h5_with_attribute(path: Path, pickled: bytes) -> Path:
    """A DeepLabCut `.h5` whose pickled column labels are `pickled`."""
    import h5py

    _dlc_h5(path)
    with h5py.File(path, "r+") as file:
        file["df_with_missing/table"].attrs["values_block_0_kind"] = np.bytes_(pickled)
    return path


def _sleap_h5(path: Path) -> Path:
    from pose_writers import synthetic_poses, write_sleap_analysis_h5

    return write_sleap_analysis_h5(path, *synthetic_poses(200))


def _dlc_csv(path: Path) -> Path:
    pytest.importorskip("pandas", reason="a DeepLabCut CSV is parsed by the [pose] extra's "
                        "pandas")
    from pose_writers import synthetic_poses, write_dlc_csv

    return write_dlc_csv(path, *synthetic_poses(20))


def read_pose_file(software: str):
    return lambda path: read_pose(str(path), PoseOptions(source_software=software))


# id → (write(folder, payload) → the file holding it, load(folder, file), expected message).
CRAFTED = {
    "dataset_npy_mabe22": (
        lambda folder, payload: _save_objects(folder / "mouse_triplet_train.npy",
                                              {"sequences": payload}),
        lambda folder, path: read_split("mabe_mice", str(folder), "train"), REFUSED_SYSTEM),
    "dataset_npy_shot7m2": (
        lambda folder, payload: _save_objects(folder / "test" / "test_dictionary_poses.npy",
                                              {"sequences": {"keypoints": payload}}),
        lambda folder, path: read_split("shot7m2", str(folder), "test"), REFUSED_SYSTEM),
    "dataset_npy_hbabel": (
        lambda folder, payload: _save_objects(folder / "val.npy", _hbabel_item(payload)),
        lambda folder, path: read_split("hbabel", str(folder), "val"), REFUSED_SYSTEM),
    "dataset_pkl_hbabel": (
        lambda folder, payload: _write(folder / "val.pkl", pickle.dumps(_hbabel_item(payload))),
        lambda folder, path: read_split("hbabel", str(folder), "val"), REFUSED_SYSTEM),
    **{
        f"hbabel_joblib_{name}": (
            lambda folder, payload, compress=compress: _write(
                folder / JOBLIB_FILE, compress(joblib_bytes(_hbabel_item(payload)))),
            lambda folder, path: read_split("hbabel", str(folder), "val"), REFUSED_SYSTEM)
        for name, compress in (("plain", bytes), ("zlib", zlib.compress),
                               ("gzip", gzip.compress), ("bz2", bz2.compress),
                               ("xz", lzma.compress))
    },
    "hbabel_joblib_object_array": (  # joblib pickles an object array as a nested pickle
        lambda folder, payload: _write(folder / JOBLIB_FILE, joblib_bytes(
            _hbabel_item(np.zeros((3, 25, 3))) + [np.array([payload, 1], dtype=object)])),
        lambda folder, path: read_split("hbabel", str(folder), "val"), REFUSED_SYSTEM),
    "keypoint_arrays_npy": (
        lambda folder, payload: _save_objects(folder / "test" / "mouse.npy", [payload]),
        lambda folder, path: read_keypoint_arrays(path.parent), REFUSED_SYSTEM),
    "keypoint_arrays_npz": (
        lambda folder, payload: np.savez(folder / "mouse.npz",
                                         keypoints=np.array([payload], dtype=object))
        or folder / "mouse.npz",
        lambda folder, path: read_keypoint_arrays(path), OBJECTS_REFUSED),
    "labels": (
        lambda folder, payload: _save_objects(folder / "labels.npy", {
            "frame_number_map": payload, "label_array": np.zeros((1, 2)), "vocabulary": ["a"]}),
        lambda folder, path: load_labels_file(path), REFUSED_SYSTEM),
    "submission_file": (
        lambda folder, payload: _save_objects(folder / "test_submission_0.npy", {
            "frame_number_map": {"a": (0, 2)}, "embeddings": payload}),
        lambda folder, path: load_embedding_folder(folder), REFUSED_SYSTEM),
    "embedding_level_file": (
        lambda folder, payload: _embedding_levels(
            folder, _save_objects(folder / "level_0.npy", [payload, payload])),
        lambda folder, path: load_embedding_folder(folder), OBJECTS_REFUSED),
    "checkpoint_pickle": (
        lambda folder, payload: _write(folder / "evil.pth", pickle.dumps({"model": payload})),
        lambda folder, path: read_state_dict_file(path), REFUSED_SYSTEM),
    "checkpoint_torch_zip": (
        lambda folder, payload: write_zip(folder / "evil.pth", {
            "archive/data.pkl": pickle.dumps({"model": payload}, protocol=2),
            "archive/version": b"3\n"}),
        lambda folder, path: read_state_dict_file(path), REFUSED_SYSTEM),
    "checkpoint_npz": (
        lambda folder, payload: np.savez(folder / "evil.npz", **{
            "param/weight": np.array([payload], dtype=object)}) or folder / "evil.npz",
        lambda folder, path: read_state_dict_file(path), OBJECTS_REFUSED),
    "checkpoint_as_starting_preset": (
        lambda folder, payload: _write(folder / "start.pth", pickle.dumps({"args": payload})),
        lambda folder, path: read_model_config(str(path), "--preset"), REFUSED_SYSTEM),
    "pose_deeplabcut_h5_attribute": (
        lambda folder, payload: _dlc_h5_with_attribute(folder / "session.h5", pickle.dumps(
            payload, protocol=0)),
        lambda folder, path: read_pose(str(path), PoseOptions(source_software="DeepLabCut")),
        REFUSED_SYSTEM),
    "plot_reconstruction_data": (
        lambda folder, payload: _save_objects(folder / "test.npy", {"sequences": payload}),
        lambda folder, path: load_window(str(path), "0", 0, (4, 3, 24), "auto"),
        REFUSED_SYSTEM),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_pickle_runs_nothing_in_any_reader(tmp_path, case):
    write, load, message = CRAFTED[case]
    marker = tmp_path / "pwned"
    folder = tmp_path / "data"
    folder.mkdir()
    path = write(folder, _RunsCode(marker))
    with pytest.raises(ValueError, match=message) as error:
        load(folder, path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_a_pickle_cannot_change_the_allow_lists_stand_ins(tmp_path):
    """BUILD on a stand-in class or marker (here `argparse.Namespace` and `torch.float32`)
    fails, and the next checkpoint is read as before."""
    for module, name, state in ((b"argparse", b"Namespace", b"X\x01\x00\x00\x00x"),
                                (b"torch", b"float32", b"X\x04\x00\x00\x00name")):
        path = tmp_path / f"{name.decode()}.pkl"
        # GLOBAL module.name; BUILD (None, {key: "float64"}): set an attribute on it.
        path.write_bytes(b"\x80\x02c" + module + b"\n" + name + b"\nN}" + state
                         + b"X\x07\x00\x00\x00float64s\x86b.")
        with pytest.raises(ValueError, match=rf"{path.name}: (corrupt pickle|.* cannot be given "
                                             r"a state)"):
            load_torch_file(path)
    assert TORCH_CHECKPOINT.stand_ins[("torch", "float32")].name == "float32"
    assert not hasattr(TORCH_CHECKPOINT.stand_ins[("argparse", "Namespace")], "x")


# ---------------------------------------------------------------- joblib files, no joblib

def _assert_same(loaded, expected):
    if isinstance(expected, dict):
        assert list(loaded) == list(expected)
        for key, value in expected.items():
            _assert_same(loaded[key], value)
    elif isinstance(expected, list):
        assert isinstance(loaded, list) and len(loaded) == len(expected)
        for loaded_item, expected_item in zip(loaded, expected, strict=True):
            _assert_same(loaded_item, expected_item)
    elif isinstance(expected, np.ndarray):
        assert isinstance(loaded, np.ndarray) and loaded.shape == expected.shape
        assert loaded.dtype == expected.dtype.newbyteorder("=") and loaded.dtype.isnative
        if expected.dtype.hasobject:
            _assert_same(list(loaded.ravel()), list(expected.ravel()))
        else:
            np.testing.assert_array_equal(loaded, expected)
    else:
        assert type(loaded) is type(expected) and loaded == expected


@pytest.mark.parametrize("name", list(FIXTURE_FORMATS))
def test_joblib_file_written_by_joblib_is_read(name):
    _assert_same(load_pickled_file(HBABEL_FIXTURES / name), hbabel_content())


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_joblib_framing_of_every_pickle_protocol_is_read(tmp_path, protocol):
    path = _write(tmp_path / "data.pth.tar", joblib_bytes(hbabel_content(), protocol))
    _assert_same(load_pickled_file(path), hbabel_content())


@pytest.mark.parametrize("compress", [0, "zlib", "gzip", "bz2", "xz", "lzma"])
def test_files_of_the_installed_joblib_are_read(tmp_path, compress):
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "data.pth.tar"
    joblib.dump(hbabel_content(), path, compress=compress)
    _assert_same(load_pickled_file(path), hbabel_content())


def test_hbabel_split_is_read_from_the_published_joblib_file(tmp_path):
    target = tmp_path / JOBLIB_FILE
    target.parent.mkdir(parents=True)
    shutil.copy(HBABEL_FIXTURES / "plain_protocol4.pth.tar", target)
    sequences = read_split("hbabel", str(tmp_path))
    assert sequences.names == ["seq_a", "seq_b"]
    joints = hbabel_content()[0]["joint_positions_processed"]
    expected = joints[:3, list(HBABEL_JOINT_ORDER)].reshape(3, 1, 75)
    np.testing.assert_array_equal(sequences.keypoints[0], expected)
    assert sequences.keypoints[1].shape == (2, 1, 75)


@pytest.mark.parametrize(("magic", "named"), [(b"\x04\x22\x4d\x18", "lz4"),
                                               (b"ZF0x1234", "pre-0.9.3 joblib format")])
def test_joblib_compression_that_is_not_read_is_named(tmp_path, magic, named):
    path = _write(tmp_path / JOBLIB_FILE, magic + b"\x00" * 64)
    with pytest.raises(ValueError, match=rf"{path.name}: a joblib file in (the )?{named}, which "
                                         r"this reader does not support .*re-save it"):
        read_split("hbabel", str(tmp_path))


@pytest.mark.parametrize("compress", [bytes, gzip.compress])
def test_joblib_frame_promising_a_huge_array_is_refused(tmp_path, compress):
    huge = joblib_bytes(_hbabel_item(np.zeros((3, 25, 3))), shape_of=lambda _: (10**9, 10**9))
    path = _write(tmp_path / "forged.pth.tar", compress(huge))
    with pytest.raises(ValueError, match=r"forged\.pth\.tar: truncated or corrupt pickle .*"
                                         r"(needs 8000000000000000000 bytes|data ends after)"):
        load_pickled_file(path)


def test_data_after_the_joblib_pickle_is_named(tmp_path):
    path = _write(tmp_path / "long.pth.tar", joblib_bytes([np.zeros(2)]) + b"more")
    with pytest.raises(ValueError, match=r"long\.pth\.tar: data follows the end of its pickle"):
        load_pickled_file(path)


# ---------------------------------------------------------------- sizes that are not real

def _npy_promising(path: Path, shape: tuple) -> Path:
    """A `.npy` file whose header promises `shape` float32, followed by 16 bytes."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f4", "fortran_order": False, "shape": shape})
        file.write(b"\x00" * 16)
    return path


HUGE = (10**9, 10**9)
HUGE_MESSAGE = r"truncated: its header promises an array of shape \(1000000000, 1000000000\)"
NPY_READERS = {
    "dataset": lambda path: read_mabe_mouse_triplets(path),
    "keypoint_arrays": lambda path: read_keypoint_arrays(path),
    "labels": lambda path: load_labels_file(path),
    "embedding_level": lambda path: load_embedding_folder(
        _embedding_levels(path.parent, path).parent),
    "plot_reconstruction_data": lambda path: load_window(str(path), "0", 0, (4, 1, 4), "auto"),
    "read_npy": lambda path: read_npy(path),
}


@pytest.mark.parametrize("reader", list(NPY_READERS))
def test_npy_header_promising_a_huge_array_is_refused(tmp_path, reader):
    path = _npy_promising(tmp_path / "level_0.npy", HUGE)
    with pytest.raises(ValueError, match=HUGE_MESSAGE) as error:
        NPY_READERS[reader](path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("reader", ["keypoints", "checkpoint"])
def test_npz_member_promising_a_huge_array_is_refused(tmp_path, reader):
    member = _npy_promising(tmp_path / "member.npy", HUGE).read_bytes()
    name = "keypoints.npy" if reader == "keypoints" else "param/weight.npy"
    path = write_zip(tmp_path / "forged.npz", {name: member})
    with pytest.raises(ValueError, match=rf"forged\.npz, array '.*': {HUGE_MESSAGE}"):
        (read_keypoint_arrays if reader == "keypoints" else read_state_dict_file)(path)


@pytest.mark.parametrize(("length", "message"), [
    (2**60, r"corrupt pickle: a length field asks for more memory than there is"),
    (2**20, r"truncated or corrupt pickle \(pickle data was truncated\)"),
])
def test_pickle_length_field_promising_more_bytes_is_refused(tmp_path, length, message):
    path = tmp_path / "forged.pkl"
    path.write_bytes(b"\x80\x04\x8e" + length.to_bytes(8, "little") + b"abc.")  # BINBYTES8
    with pytest.raises(ValueError, match=rf"forged\.pkl: {message}"):
        load_pickled_file(path)


# ---------------------------------------------------------------- files of another kind

def test_binary_csv_is_named(tmp_path):
    path = _write(tmp_path / "mouse.csv", bytes(range(256)))
    with pytest.raises(ValueError, match=r"mouse\.csv: not a text CSV file \(byte 128 is not "
                                         r"UTF-8 text\)"):
        read_keypoint_arrays(path)


def test_csv_with_nul_bytes_is_named(tmp_path):
    path = _write(tmp_path / "mouse.csv", b"1,2\n\x00,\x00\n")
    with pytest.raises(ValueError, match=r"mouse\.csv: (not a readable CSV file .*NUL|"
                                         r"non-numeric value '\\x00' at row 2, column 1)"):
        read_keypoint_arrays(path)


def test_labels_file_holding_a_plain_array_is_named(tmp_path):
    path = tmp_path / "labels.npy"
    np.save(path, np.zeros((3, 10)))
    with pytest.raises(ValueError, match=r"labels\.npy: holds an array of shape \(3, 10\) and "
                                         r"dtype float64, not a labels dict"):
        load_labels_file(path)


def test_npz_where_a_pickled_dataset_is_expected_is_named(tmp_path):
    path = tmp_path / "train.npz"
    np.savez(path, keypoints=np.zeros((5, 3, 12, 2)))
    with pytest.raises(ValueError, match=r"train\.npz: a zip archive \(an \.npz file or a "
                                         r"torch\.save checkpoint\), not a pickle"):
        read_mabe_mouse_triplets(path)


def test_npz_named_npy_is_named(tmp_path):
    np.savez(tmp_path / "labels.npz", label_array=np.zeros(3))
    path = Path(shutil.move(tmp_path / "labels.npz", tmp_path / "labels.npy"))
    with pytest.raises(ValueError, match=r"labels\.npy: a zip archive \(an \.npz file\?\), not a "
                                         r"\.npy file"):
        load_labels_file(path)


@pytest.mark.parametrize("reader", [load_pickled_file, read_npy, load_torch_file,
                                    load_labels_file, read_state_dict_file])
def test_folder_where_a_file_is_expected_is_named(tmp_path, reader):
    folder = tmp_path / "labels.npy"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"labels\.npy: a folder, where a file is expected"):
        reader(folder)


# ---------------------------------------------------------------- damaged files, every reader

def _joblib_file(folder: Path, compressed: bool) -> Path:
    name = "gzip.pth.tar" if compressed else "plain_protocol4.pth.tar"
    return Path(shutil.copy(HBABEL_FIXTURES / name, folder / name))


def _labels(folder: Path) -> Path:
    return _save_objects(folder / "labels.npy", {
        "frame_number_map": {"a": (0, 4)}, "label_array": np.zeros((1, 4)), "vocabulary": ["t"]})


def _submission(folder: Path) -> Path:
    return _save_objects(folder / "test_submission_0.npy", {
        "frame_number_map": {"a": (0, 4)}, "embeddings": np.ones((4, 3))})


def _level(folder: Path) -> Path:
    np.save(folder / "level_0.npy", np.ones((4, 3)))
    return _embedding_levels(folder, folder / "level_0.npy")


def _frame_map(folder: Path) -> Path:
    np.save(folder / "level_0.npy", np.ones((4, 3)))
    (folder / "frame_number_map.json").write_text(json.dumps({"a": [0, 4], "b": [4, 4]}))
    return folder / "frame_number_map.json"


def _numeric(folder: Path, suffix: str) -> Path:
    path = folder / f"mouse{suffix}"
    keypoints = np.arange(40, dtype=np.float32).reshape(10, 4)
    if suffix == ".npy":
        np.save(path, keypoints)
    elif suffix == ".npz":
        np.savez(path, keypoints=keypoints)
    else:
        np.savetxt(path, keypoints, delimiter=",")
    return path


def read_split_hbabel(path: Path):
    return read_split("hbabel", str(path))


# id → (write a good file into a folder → its path, read it). Each is damaged three ways.
READERS = {
    "dataset_npy": (lambda folder: _save_objects(folder / "train.npy", {
                        "sequences": {"s": {"keypoints": np.ones((5, 3, 12, 2))}}}),
                    read_mabe_mouse_triplets),
    "dataset_pkl": (lambda folder: _write(folder / "val.pkl", pickle.dumps(
                        _hbabel_item(np.zeros((3, 25, 3))))), read_split_hbabel),
    "hbabel_joblib": (lambda folder: _joblib_file(folder, False), read_split_hbabel),
    "hbabel_joblib_gzip": (lambda folder: _joblib_file(folder, True), read_split_hbabel),
    "keypoints_npy": (lambda folder: _numeric(folder, ".npy"), read_keypoint_arrays),
    "keypoints_npz": (lambda folder: _numeric(folder, ".npz"), read_keypoint_arrays),
    "keypoints_csv": (lambda folder: _numeric(folder, ".csv"), read_keypoint_arrays),
    "labels": (_labels, load_labels_file),
    "embedding_level": (_level, lambda path: load_embedding_folder(path.parent)),
    "frame_number_map_json": (_frame_map, lambda path: load_embedding_folder(path.parent)),
    "submission": (_submission, lambda path: load_embedding_folder(path.parent)),
    "checkpoint_pickle": (lambda folder: _write(folder / "state.pth", pickle.dumps(
                              {"model": {"w": np.ones((2, 2), np.float32)}})),
                          read_state_dict_file),
    "checkpoint_npz": (lambda folder: np.savez(folder / "state.npz", w=np.ones(2))
                       or folder / "state.npz", read_state_dict_file),
    "pose_deeplabcut_h5": (lambda folder: _dlc_h5(folder / "session.h5"),
                           read_pose_file("DeepLabCut")),
    "pose_sleap_h5": (lambda folder: _sleap_h5(folder / "session.analysis.h5"),
                      read_pose_file("SLEAP")),
    "pose_deeplabcut_csv": (lambda folder: _dlc_csv(folder / "session.csv"),
                            read_pose_file("DeepLabCut")),
}
DAMAGES = {
    "empty": lambda content: b"",
    "truncated": lambda content: content[: len(content) // 2],
    "binary": lambda content: bytes(range(256)) * 4,
}
# A CSV file has no length to check: its first half is a CSV file of fewer frames.
CASES = [(reader, damage) for reader in READERS for damage in DAMAGES
         if damage != "truncated" or not reader.endswith("csv")]


@pytest.mark.parametrize(("reader", "damage"), CASES)
def test_damaged_file_is_named_by_every_reader(tmp_path, reader, damage):
    write, read = READERS[reader]
    path = write(tmp_path)
    read(path)  # the undamaged file reads
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    with pytest.raises(ValueError) as error:
        read(path)
    assert str(path) in str(error.value)
    assert not isinstance(error.value, UnsafePickleError)
