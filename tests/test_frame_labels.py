"""Probe inputs for your own recordings: per-frame labels CSVs (one for all recordings, or
one per recording from the manifest) and the per-recording embedding folders of
`hbehavemae embed --data`."""

import json

import numpy as np
import pytest

from keras_hbehavemae.evaluation import (
    load_labels,
    load_recording_folder,
    read_labels_csv,
    recording_probe_inputs,
)
from keras_hbehavemae.evaluation.frame_labels import read_labels_per_recording

pytestmark = pytest.mark.backend_independent
FRAME_MAP = {"s1": (0, 4), "s2": (4, 7)}


def write(path, text):
    path.write_text(text)
    return str(path)


def test_one_csv_for_all_recordings_by_name_file_name_or_path(tmp_path):
    path = write(tmp_path / "labels.csv", "recording,frame,action,speed\n"
                 "s1,0,groom,0.5\nsessions/s1.h5,3,rest,\ns2.h5,2,groom,1.25\n")
    labels = read_labels_csv(path, FRAME_MAP, {"s1": "sessions/s1.h5", "s2": "/d/s2.h5"})
    np.testing.assert_array_equal(labels.labels["action"], [0, np.nan, np.nan, 1, np.nan,
                                                            np.nan, 0])
    np.testing.assert_array_equal(labels.labels["speed"][[0, 6]], [0.5, 1.25])
    assert np.isnan(labels.labels["speed"][3])  # an empty cell is unlabelled
    assert labels.task_types == {"action": "discrete", "speed": "continuous"}
    assert labels.frame_number_map == FRAME_MAP
    assert load_labels(path, FRAME_MAP, {"s1": "s1.h5", "s2": "s2.h5"}).labels.keys() == \
        labels.labels.keys()


def test_per_recording_csvs_number_word_classes_the_same_everywhere(tmp_path):
    first = write(tmp_path / "s1.csv", "frame,action\n0,run\n1,walk\n")
    second = write(tmp_path / "s2.csv", "frame,action,count\n2,run\n".replace("2,run\n",
                                                                             "2,run,3\n"))
    labels = read_labels_per_recording({"s1": first, "s2": second}, FRAME_MAP)
    np.testing.assert_array_equal(labels.labels["action"][[0, 1, 6]], [0, 1, 0])
    assert np.isnan(labels.labels["count"][:4]).all() and labels.labels["count"][6] == 3
    assert labels.task_types["action"] == "discrete"


@pytest.mark.parametrize("text, message", [
    ("recording,frame,a\ns3,0,1\n", "line 2: recording 's3' is not among"),
    ("recording,frame,a\ns2,3,1\n", "frame 3 is outside recording 's2', which has 3 frames"),
    ("recording,frame,a\ns1,1,1\ns1,1,0\n", "labelled twice"),
    ("recording,frame,a\ns1,x,1\n", "frame 'x' is not an integer"),
    ("recording,time,a\ns1,0,1\n", "needs a 'frame' column"),
    ("frame,a\n0,1\n", "no 'recording' column, and the embeddings hold 2 recordings"),
    ("recording,frame\ns1,0\n", "no label columns"),
])
def test_bad_labels_name_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "labels.csv", text)
    with pytest.raises(ValueError, match=message) as error:
        read_labels_csv(path, FRAME_MAP)
    assert str(error.value).startswith(path)


@pytest.fixture()
def recording_folder(tmp_path):
    """A folder as `embed --data` writes it: two recordings, two levels."""
    rng = np.random.default_rng(0)
    entries = []
    for name, frames in (("s1", 4), ("s2", 3)):
        np.savez(tmp_path / f"{name}.npz", level_0=rng.normal(size=(frames, 5)),
                 level_1=rng.normal(size=(frames, 2)), keypoints=rng.normal(size=(frames, 6)),
                 time=np.arange(frames) / 30, frame=np.arange(frames),
                 valid=np.ones(frames, bool))
        entries.append({"name": name, "file": f"{name}.npz", "sidecar": f"{name}.json",
                        "source": f"/data/{name}.h5", "frames": frames,
                        "labels": str(tmp_path / f"{name}_labels.csv")})
        write(tmp_path / f"{name}_labels.csv", "frame,a\n0,1\n1,0\n")
    (tmp_path / "recordings.json").write_text(json.dumps(
        {"recordings": entries, "levels": ["level_0", "level_1"]}))
    return tmp_path


def test_recording_folders_concatenate_in_order_with_their_labels(recording_folder):
    folder = load_recording_folder(recording_folder)
    assert folder.frame_number_map == FRAME_MAP
    assert folder.levels["level_0"].shape == (7, 5) and folder.keypoints.shape == (7, 6)
    with np.load(recording_folder / "s2.npz") as archive:
        np.testing.assert_allclose(folder.levels["level_1"][4:], archive["level_1"], rtol=1e-6)
    levels, labels, baseline = recording_probe_inputs(recording_folder, None, None)
    np.testing.assert_array_equal(labels.labels["a"][[0, 1, 2, 4, 5, 6]],
                                  [1, 0, np.nan, 1, 0, np.nan])
    assert baseline.shape == (7, 6) and list(levels) == ["level_0", "level_1"]
    combined = write(recording_folder / "all.csv", "recording,frame,b\ns2,2,1.5\n")
    _, labels, baseline = recording_probe_inputs(recording_folder, combined, "none")
    assert baseline is None and labels.labels["b"][6] == 1.5


def test_damaged_recording_folders_are_reported(recording_folder):
    (recording_folder / "s2.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="s2.npz: damaged or incomplete"):
        load_recording_folder(recording_folder)
    (recording_folder / "s2.npz").unlink()
    with pytest.raises(FileNotFoundError, match="listed in recordings.json but missing"):
        load_recording_folder(recording_folder)
