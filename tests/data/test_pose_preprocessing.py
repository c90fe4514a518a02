"""Pose preprocessing without files: normalisation, resampling, the file list and its seeded
split, model sizes, and the errors for bad input (each naming the file and the problem)."""

import os

import numpy as np
import pytest

from keras_hbehavemae.data.pose import PoseOptions, PoseRecording
from keras_hbehavemae.data.pose_files import (
    HELD_OUT,
    TRAIN,
    PoseFile,
    list_pose_files,
    sequence_names,
    split_files,
)
from keras_hbehavemae.data.pose_transforms import (
    PoseNormalisation,
    interpolate_rows,
    resample_positions,
)
from keras_hbehavemae.models.config import HBehaveMAEConfig
from keras_hbehavemae.models.sizes import sized_parameters
from keras_hbehavemae.report.suggestions import divisibility_suggestions

pytestmark = pytest.mark.backend_independent
KEYPOINTS = ("nose", "centre", "tail")


def random_poses(frames=50, individuals=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 500, (frames, individuals, 3, 2)).astype(
        np.float32)


def recording(poses, fps=30.0):
    frames = poses.shape[0]
    individuals = tuple(f"m{index}" for index in range(poses.shape[1]))
    return PoseRecording("r", "<test>", poses, np.ones(frames, bool), fps,
                         np.arange(frames) / (fps or 1), individuals, KEYPOINTS, ("x", "y"))


# ---------------------------------------------------------------- normalisation
def test_arena_maps_the_arena_into_minus_one_one_with_one_scale():
    poses = np.array([[[[0, 0], [800, 400], [400, 200]]]], np.float32)
    normalised = PoseNormalisation.parse("arena:800,400").apply(poses, KEYPOINTS)
    np.testing.assert_allclose(normalised[0, 0], [[-1, -0.5], [1, 0.5], [0, 0]])


def test_bounds_are_fitted_on_the_training_recordings_and_stored():
    train = [random_poses(seed=1), random_poses(seed=2)]
    fitted = PoseNormalisation.parse("bounds").fitted(train, KEYPOINTS)
    normalised = np.concatenate([fitted.apply(poses, KEYPOINTS) for poses in train])
    assert normalised.min() >= -1 - 1e-6 and normalised.max() <= 1 + 1e-6
    assert np.isclose(np.abs(normalised).max(), 1, atol=1e-6)
    assert PoseNormalisation.from_dict(fitted.to_dict()) == fitted
    with pytest.raises(ValueError, match="fitted on the training recordings first"):
        PoseNormalisation.parse("bounds").apply(train[0], KEYPOINTS)


def test_egocentric_centres_rotates_and_scales():
    poses = random_poses()
    fitted = PoseNormalisation.parse("egocentric:centre,nose").fitted([poses], KEYPOINTS)
    normalised = fitted.apply(poses, KEYPOINTS)
    np.testing.assert_allclose(normalised[:, :, 1], 0, atol=1e-6)  # the centre at the origin
    np.testing.assert_allclose(normalised[:, :, 0, 1], 0, atol=1e-5)  # nose on the +x axis
    assert (normalised[:, :, 0, 0] > 0).all()
    lengths = np.linalg.norm(poses[:, :, 2] - poses[:, :, 1], axis=-1) / fitted.scale
    np.testing.assert_allclose(np.linalg.norm(normalised[:, :, 2], axis=-1), lengths, rtol=1e-4)
    assert np.mean(np.abs(normalised) <= 1) >= 0.99


@pytest.mark.parametrize("text, message", [
    ("arena", "positive sizes"), ("arena:-5", "positive sizes"), ("arena:wide", "numbers"),
    ("egocentric", "egocentric:KEYPOINT"), ("zscore", "must be none, arena")])
def test_bad_normalisation_choices(text, message):
    with pytest.raises(ValueError, match=message):
        PoseNormalisation.parse(text)


# ---------------------------------------------------------------- resampling
def test_resampling_keeps_the_time_span():
    np.testing.assert_allclose(resample_positions(7, 30, 15), [0, 2, 4, 6])
    np.testing.assert_allclose(resample_positions(3, 25, 50), [0, 0.5, 1, 1.5, 2])
    values = np.arange(10, dtype=np.float32)[:, None] * 3
    np.testing.assert_allclose(interpolate_rows(values, [0.5, 8.25, 20]), [[1.5], [24.75], [27]])
    poses = random_poses(frames=61)
    model_input = recording(poses, fps=30.0).model_input(PoseOptions(model_fps=10.0))
    assert model_input.shape == (21, 2, 6)
    np.testing.assert_allclose(model_input[5], poses[15].reshape(2, 6))
    with pytest.raises(ValueError, match="frame rate is unknown; give --fps"):
        recording(poses, fps=None).model_input(PoseOptions(model_fps=10.0))


# ---------------------------------------------------------------- many files
def test_the_split_is_seeded_by_file_and_respects_given_splits():
    files = [PoseFile(f"s{index}.h5", f"s{index}") for index in range(10)]
    first, again = split_files(files, 0.3, seed=4), split_files(files, 0.3, seed=4)
    assert first == again and sum(file.split == HELD_OUT for file in first) == 3
    assert [file.path for file in first] == [file.path for file in files]  # order kept
    assert split_files(files, 0.3, seed=5) != first
    given = [PoseFile("a.h5", "a", split=TRAIN), PoseFile("b.h5", "b")]
    assert [file.split for file in split_files(given, 0.5, seed=0)] == [TRAIN, TRAIN]
    assert [file.split for file in split_files(files[:2], 0.01, 0)].count(HELD_OUT) == 1
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_files(files, 1.0, 0)


def test_folders_globs_manifests_and_files(tmp_path):
    for name in ("b.h5", "a.h5", "notes.txt", "c.slp"):
        (tmp_path / name).write_text("x")
    (tmp_path / "labels").mkdir()
    names = [file.name for file in list_pose_files(str(tmp_path), "DeepLabCut")]
    assert names == ["a", "b"]
    assert [file.name for file in list_pose_files(str(tmp_path / "*.slp"), "SLEAP")] == ["c"]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,split,labels\nb.h5,test,labels/b.csv\na.h5,,\n")
    listed = list_pose_files(str(manifest), "DeepLabCut")
    assert [(file.name, file.split) for file in listed] == [("b", HELD_OUT), ("a", None)]
    assert listed[0].labels == os.path.join(str(tmp_path), "labels/b.csv")
    assert list_pose_files(str(tmp_path / "a.h5"), "DeepLabCut")[0].name == "a"
    assert sequence_names(["x/s.h5", "y/s.h5"]) == ["x__s", "y__s"]


@pytest.mark.parametrize("content, message", [
    ("path,split\na.h5,later\n", "split 'later' is invalid"),
    ("path,camera\na.h5,top\n", "unknown manifest columns"),
    ("path\n", "lists no files")])
def test_bad_manifests_name_the_file(tmp_path, content, message):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        list_pose_files(str(manifest), "DeepLabCut")
    assert str(manifest) in str(error.value)


def test_missing_files_and_unknown_software(tmp_path):
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list_pose_files(str(tmp_path / "*.h5"), "DeepLabCut")
    with pytest.raises(FileNotFoundError, match="has no .nwb files"):
        list_pose_files(str(tmp_path), "NWB")
    with pytest.raises(ValueError, match="must be one of DeepLabCut, SLEAP") as error:
        list_pose_files(str(tmp_path), "DeepLabKit")
    assert str(tmp_path) in str(error.value)
    with pytest.raises(ValueError, match="fps: 0 is invalid"):
        PoseOptions(source_software="SLEAP", fps=0)
    with pytest.raises(ValueError, match="source_software: 'Ethovision' is invalid"):
        PoseOptions(source_software="Ethovision")


# ---------------------------------------------------------------- sizes
@pytest.mark.parametrize("size, input_size", [
    ("small", (300, 3, 24)), ("small", (300, 1, 10)), ("small", (60, 2, 36)),
    ("base", (900, 2, 24)), ("base", (900, 1, 51))])
def test_sizes_give_trainable_configurations(size, input_size):
    config = HBehaveMAEConfig(**sized_parameters(size, input_size))
    config.validate_for_training()
    assert config.input_size == input_size and config.patch_kernel == (3, 1, input_size[2])


def test_sizes_refuse_windows_the_pooling_does_not_divide():
    with pytest.raises(ValueError, match="nearest valid: 300 or 330"):
        sized_parameters("small", (310, 1, 10))
    with pytest.raises(ValueError, match="use a window of at least 60 frames"):
        sized_parameters("small", (45, 2, 36))
    with pytest.raises(ValueError, match="use a window of at least 240 frames"):
        sized_parameters("base", (210, 1, 36))
    with pytest.raises(ValueError, match="size: 'huge' is invalid"):
        sized_parameters("huge", (300, 1, 10))


def test_the_synthetic_run_is_the_small_size():
    from keras_hbehavemae.cli.pretrain import dataset_defaults

    defaults = dataset_defaults("synthetic")
    assert {key: defaults[key] for key in sized_parameters("small", (300, 3, 24))} == \
        sized_parameters("small", (300, 3, 24))


def test_divisibility_suggestions_name_windows_and_patches():
    lines = divisibility_suggestions("400 3 24", "3 1 5", "5,1,1;1,3,1")
    assert lines[0].startswith("T: 400 frames is not a multiple of patch 3 x mask unit 5")
    assert "nearest valid windows: 390 or 405" in lines[0]
    assert lines[1].startswith("W: 24 features") and "valid patch sizes on this axis: 4, 6" \
        in lines[1]
    assert divisibility_suggestions("300 3 24", "3 1 24", "5,1,1;1,3,1") == []


def test_without_movement_the_error_names_the_extra(monkeypatch, tmp_path):
    import sys

    from keras_hbehavemae.data import pose_io

    monkeypatch.setattr(pose_io, "_MOVEMENT", {})
    monkeypatch.setitem(sys.modules, "movement", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "movement.io", None)
    path = tmp_path / "session.h5"
    path.write_bytes(b"")
    with pytest.raises(ImportError, match=r"'pose' extra.*keras-hbehavemae\[pose\]"):
        pose_io.load_pose_dataset(str(path), "DeepLabCut")


def test_published_layouts_take_explicit_files_whatever_their_names(tmp_path):
    from keras_hbehavemae.data.recipes import load_pretraining_data
    from keras_hbehavemae.data.synthetic import write_synthetic_dataset

    paths = write_synthetic_dataset(tmp_path / "generated", 3, 2, 120, seed=0)
    train, held_out = tmp_path / "cage_a_week1.npy", tmp_path / "cage_b.npy"
    os.rename(paths["train"], train)
    os.rename(paths["test"], held_out)
    data = load_pretraining_data("mabe_mice", str(train), (60, 3, 24),
                                 held_out_path=str(held_out))
    assert (len(data.train), len(data.test)) == (3, 2)
    assert data.describe()["source"] == {"train": str(train), "held_out": str(held_out)}
    alone = load_pretraining_data("mabe_mice", str(train), (60, 3, 24))
    assert alone.test is None
    with pytest.raises(FileNotFoundError, match="--held_out_path .*no such file"):
        load_pretraining_data("mabe_mice", str(train), (60, 3, 24),
                              held_out_path=str(tmp_path / "missing.npy"))
