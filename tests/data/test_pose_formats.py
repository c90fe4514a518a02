"""Pose files in each real format, written here and read back through `read_pose` (movement):
DeepLabCut `.h5` and `.csv` (multi- and single-animal), a SLEAP analysis `.h5`, an NWB file
with ndx-pose, and an xarray Dataset in memory. The values must arrive in the model's
`[T, H = individuals, W = keypoints x space]` order, keypoint-major."""

import os
import stat
import warnings

import numpy as np
import pytest
from pose_writers import (
    INDIVIDUALS,
    KEYPOINTS,
    require_movement,
    synthetic_poses,
    write_dlc_csv,
    write_dlc_h5,
    write_nwb,
    write_sleap_analysis_h5,
)

pytestmark = pytest.mark.backend_independent
require_movement()

from keras_hbehavemae.data.pose import PoseOptions, read_pose  # noqa: E402
from keras_hbehavemae.data.pose_dataset import load_pose_pretraining_data  # noqa: E402
from keras_hbehavemae.data.pose_io import PoseReaderWarning  # noqa: E402

FRAMES = 60


def expected_frames(position, keypoints=KEYPOINTS, individuals=None):
    """`[T, I, K·2]` of movement-order positions `[T, 2, K, I]`, keypoints in `keypoints` order."""
    order = [KEYPOINTS.index(name) for name in keypoints]
    chosen = position[:, :, order]
    if individuals is not None:
        chosen = chosen[..., individuals]
    frames, _, count, animals = chosen.shape
    return chosen.transpose(0, 3, 2, 1).reshape(frames, animals, count * 2)  # k0_x, k0_y, ...


@pytest.fixture(scope="module")
def poses():
    return synthetic_poses(FRAMES, seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory, poses):
    """One file per format, in a folder made read-only afterwards."""
    folder = tmp_path_factory.mktemp("tracking")
    position, confidence = poses
    paths = {
        "dlc_h5": write_dlc_h5(folder / "session_dlc.h5", position, confidence),
        "dlc_csv": write_dlc_csv(folder / "session_dlc.csv", position, confidence),
        "dlc_single": write_dlc_h5(folder / "single.h5", position[..., :1], confidence[..., :1],
                                   individuals=INDIVIDUALS[:1], multi_animal=False),
        "sleap": write_sleap_analysis_h5(folder / "session.analysis.h5", position, confidence),
        "nwb": write_nwb(folder / "mouse_a.nwb", position, confidence, rate=30.0),
    }
    for path in paths.values():
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    yield {name: str(path) for name, path in paths.items()}
    os.chmod(folder, stat.S_IRWXU)


@pytest.mark.parametrize("kind, software", [("dlc_h5", "DeepLabCut"), ("dlc_csv", "DeepLabCut"),
                                            ("sleap", "SLEAP")])
def test_multi_animal_files_map_to_individuals_by_keypoint_major_features(files, poses, kind,
                                                                          software):
    recording = read_pose(files[kind], PoseOptions(source_software=software, fps=30))
    assert recording.individuals == INDIVIDUALS and recording.keypoints == KEYPOINTS
    assert recording.fps == 30.0 and recording.num_frames == FRAMES
    np.testing.assert_allclose(recording.frames(PoseOptions()), expected_frames(poses[0]),
                               rtol=1e-5)
    np.testing.assert_allclose(recording.times, np.arange(FRAMES) / 30)
    assert recording.validity.all()


def test_single_animal_deeplabcut_and_nwb(files, poses):
    single = read_pose(files["dlc_single"], PoseOptions(source_software="deeplabcut"))
    assert single.individuals == ("individual_0",) and single.fps is None
    np.testing.assert_allclose(single.frames(PoseOptions()), expected_frames(poses[0], None
                                                                             or KEYPOINTS, [0]),
                               rtol=1e-5)
    np.testing.assert_array_equal(single.times, np.arange(FRAMES))  # frames: rate unknown
    nwb = read_pose(files["nwb"], PoseOptions(source_software="NWB", keypoints=KEYPOINTS))
    assert nwb.individuals == ("mouse_a",) and nwb.fps == 30.0  # NWB stores the rate
    np.testing.assert_allclose(nwb.frames(PoseOptions()), expected_frames(poses[0], KEYPOINTS,
                                                                          [0]), rtol=1e-5)


def test_an_in_memory_dataset_reads_like_its_file(files, poses):
    import xarray as xr

    position, confidence = poses
    dataset = xr.Dataset(
        {"position": (("time", "space", "keypoints", "individuals"), position),
         "confidence": (("time", "keypoints", "individuals"), confidence)},
        coords={"space": ["x", "y"], "keypoints": list(KEYPOINTS),
                "individuals": list(INDIVIDUALS)}, attrs={"fps": 30.0})
    options = PoseOptions(keypoints=("tail_base", "nose"), individuals=("mouse_b",))
    in_memory = read_pose(dataset, options)
    from_file = read_pose(files["dlc_h5"], options.replace(source_software="DeepLabCut",
                                                           fps=30))
    np.testing.assert_allclose(in_memory.frames(options), from_file.frames(options), rtol=1e-5)
    np.testing.assert_allclose(in_memory.frames(options),
                               expected_frames(position, ("tail_base", "nose"), [1]), rtol=1e-5)
    assert dataset["position"].values is not None and np.isfinite(dataset["position"]).all()


def test_low_confidence_points_become_gaps_that_are_filled(files, poses):
    position, confidence = poses
    threshold = float(np.quantile(confidence, 0.2))
    recording = read_pose(files["dlc_h5"], PoseOptions(source_software="DeepLabCut",
                                                       confidence_threshold=threshold))
    low = (confidence < threshold).transpose(0, 2, 1)  # [T, I, K]
    assert not recording.validity[low.any(axis=(1, 2))].any()
    filled = recording.poses  # [T, I, K, 2]
    assert np.isfinite(filled).all()
    kept = ~low
    np.testing.assert_allclose(filled[kept], position.transpose(0, 3, 2, 1)[kept], rtol=1e-5)


def test_many_files_train_and_held_out_with_their_preprocessing_recorded(files):
    data, options = load_pose_pretraining_data(
        os.path.join(os.path.dirname(files["dlc_h5"]), "session_*.*"),
        PoseOptions(source_software="DeepLabCut", fps=30, normalisation="bounds"),
        num_frames=30, held_out_fraction=0.5, seed=1)
    assert data.describe()["train_sequences"] == 1 and data.describe()["test_sequences"] == 1
    preprocessing = data.describe()["source"]["preprocessing"]
    assert preprocessing["keypoints"] == list(KEYPOINTS) and preprocessing["num_individuals"] == 2
    assert preprocessing["normalisation"]["method"] == "bounds"
    assert preprocessing["normalisation"]["scale"] > 0 and options.model_fps == 30.0
    train = np.concatenate(data.train.keypoints)
    assert train.min() >= -1.0001 and train.max() <= 1.0001  # the bounds were fitted on it


def test_files_stay_as_they_were(files):
    before = {path: (os.stat(path).st_mtime_ns, open(path, "rb").read()) for path in
              files.values()}
    listing = sorted(os.listdir(os.path.dirname(files["dlc_h5"])))
    for kind, software in (("dlc_h5", "DeepLabCut"), ("sleap", "SLEAP"), ("nwb", "NWB")):
        read_pose(files[kind], PoseOptions(source_software=software))
    assert sorted(os.listdir(os.path.dirname(files["dlc_h5"]))) == listing
    assert before == {path: (os.stat(path).st_mtime_ns, open(path, "rb").read())
                      for path in files.values()}


def test_movement_side_effects_are_contained(files):
    read_pose(files["dlc_h5"], PoseOptions(source_software="DeepLabCut"))
    assert warnings.showwarning.__module__ == "warnings"  # movement's redirect was undone
    from movement.utils.logging import logger

    with pytest.warns(PoseReaderWarning, match="from movement"):
        logger.patch(lambda record: record.update(name="movement.io")).warning("from movement")


@pytest.fixture()
def bad_files(tmp_path, poses):
    position, confidence = poses
    empty_position, empty_confidence = synthetic_poses(0)
    untracked = position.copy()
    untracked[:] = np.nan
    never = position.copy()
    never[:, :, KEYPOINTS.index("tail_base"), 1] = np.nan
    return {
        "empty": write_dlc_h5(tmp_path / "empty.h5", empty_position, empty_confidence,
                              format="fixed"),
        "all_nan": write_dlc_csv(tmp_path / "all_nan.csv", untracked, confidence),
        "never": write_dlc_h5(tmp_path / "never.h5", never, confidence),
        "single": write_dlc_h5(tmp_path / "single.h5", position[..., :1], confidence[..., :1],
                               individuals=INDIVIDUALS[:1], multi_animal=False),
        "good": write_dlc_h5(tmp_path / "good.h5", position, confidence),
    }


@pytest.mark.parametrize("name, options, message", [
    ("good", dict(source_software="SLEAP"), "cannot read it as a SLEAP pose file"),
    ("good", dict(keypoints=("nose", "tail_tip")), r"missing keypoint name \['tail_tip'\]"),
    ("good", dict(individuals=("mouse_c",)), r"missing individual name \['mouse_c'\]"),
    ("single", dict(num_individuals=2), "holds 1 individual .* single-animal file.* expects 2"),
    ("empty", {}, "the recording has no frames"),
    ("all_nan", {}, "every position is NaN"),
    ("never", {}, "keypoint 'tail_base' of individual 'mouse_b' is never tracked"),
])
def test_bad_files_get_errors_naming_the_file_and_the_problem(bad_files, name, options,
                                                              message):
    options = PoseOptions(**{"source_software": "DeepLabCut", **options})
    with pytest.raises(ValueError, match=message) as error:
        read_pose(str(bad_files[name]), options)
    assert str(error.value).startswith(str(bad_files[name]))


def test_bad_source_software_and_frame_rates_name_the_file(bad_files, poses):
    import xarray as xr

    from keras_hbehavemae.data.pose_io import load_pose_dataset

    path = str(bad_files["good"])
    with pytest.raises(ValueError, match="source_software: 'DLC' is invalid") as error:
        load_pose_dataset(path, "DLC")
    assert str(error.value).startswith(path)
    with pytest.raises(ValueError, match="fps: 0 is invalid") as error:
        load_pose_dataset(path, "DeepLabCut", fps=0)
    assert str(error.value).startswith(path)
    dataset = xr.Dataset({"position": (("time", "space", "keypoints", "individuals"),
                                       poses[0])}, attrs={"fps": 0})
    with pytest.raises(ValueError, match="<in-memory Dataset>: frame rate 0 is invalid"):
        read_pose(dataset, PoseOptions())
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_pose(path + ".missing", PoseOptions(source_software="DeepLabCut"))
