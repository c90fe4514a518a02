"""The direct readers (`data.pose_hdf5`: DeepLabCut and SLEAP analysis `.h5`; `data.pose_csv`:
DeepLabCut-style `.csv` of DeepLabCut and LightningPose) give exactly what movement gives:
the same names and, point by point, the same float32 values and low-confidence gaps, on
every layout they read, read in many small blocks, and without movement installed. Other
files go to movement; a forged pickled attribute is refused; bad layouts name the file."""

import pickle
import sys
import warnings

import h5py
import numpy as np
import pytest
from pose_writers import (
    INDIVIDUALS,
    KEYPOINTS,
    dlc_frame,
    require_movement,
    synthetic_poses,
    write_dlc_csv,
    write_dlc_h5,
    write_nwb,
    write_sleap_analysis_h5,
)

from keras_hbehavemae.data import pose_csv, pose_hdf5
from keras_hbehavemae.data.pose import PoseOptions, open_tracks, read_pose
from keras_hbehavemae.data.pose_io import PoseReaderWarning, load_pose_dataset
from keras_hbehavemae.data.pose_tracks import BlockTracks, DatasetTracks
from keras_hbehavemae.files.unpickling import UnsafePickleError

pytestmark = pytest.mark.backend_independent

FRAMES = 1200  # more than one storage chunk of every layout
SINGLE = dict(individuals=INDIVIDUALS[:1], multi_animal=False)


@pytest.fixture(scope="module")
def poses():
    """Positions `[T, 2, K, I]` with about 3% NaN points, and confidences `[T, K, I]`."""
    position, confidence = synthetic_poses(FRAMES, seed=5)
    rng = np.random.default_rng(6)
    position[np.broadcast_to(rng.random((FRAMES, 1) + position.shape[2:]) < 0.03,
                             position.shape)] = np.nan
    confidence[rng.random(confidence.shape) < 0.01] = np.nan  # NaN scores are kept
    return position, confidence


def _csv_with_na_spellings(path, position, confidence):
    """A DeepLabCut CSV whose missing values are spelt `NaN`, `NA` and `null` as well as
    left empty, with blank lines among the rows and at the end."""
    write_dlc_csv(path, position, confidence)
    lines = path.read_text().splitlines(keepends=True)
    for index in range(4, len(lines), 3):
        spelling = ("NaN", "NA", "null")[index % 3]
        lines[index] = lines[index].replace(",,", f",{spelling},", 1)
    lines.insert(len(lines) // 2, "\n")
    path.write_text("".join(lines) + "\n\n")
    return path


def _layouts(folder, position, confidence):
    """{name: (path, software)} of every layout the direct readers take."""
    one = (position[..., :1], confidence[..., :1])
    return {
        "dlc_table": (write_dlc_h5(folder / "table.h5", position, confidence), "DeepLabCut"),
        "dlc_fixed": (write_dlc_h5(folder / "fixed.h5", position, confidence, format="fixed"),
                      "DeepLabCut"),
        "dlc_single": (write_dlc_h5(folder / "single.h5", *one, **SINGLE), "DeepLabCut"),
        "dlc_csv": (write_dlc_csv(folder / "multi.csv", position, confidence), "DeepLabCut"),
        "dlc_csv_single": (write_dlc_csv(folder / "single.csv", *one, **SINGLE), "DeepLabCut"),
        "dlc_csv_na": (_csv_with_na_spellings(folder / "spelt.csv", position, confidence),
                       "DeepLabCut"),
        "lightning_pose": (write_dlc_csv(folder / "lp.csv", *one, **SINGLE), "LightningPose"),
        "sleap": (write_sleap_analysis_h5(folder / "a.analysis.h5", position, confidence,
                                          chunks=16), "SLEAP"),
        "sleap_contiguous": (write_sleap_analysis_h5(folder / "b.analysis.h5", position,
                                                     confidence, chunks=False), "SLEAP"),
        "sleap_no_scores": (write_sleap_analysis_h5(folder / "c.analysis.h5", position, None,
                                                    chunks=16), "SLEAP"),
        "sleap_no_tracks": (write_sleap_analysis_h5(folder / "d.analysis.h5", *one,
                                                    individuals=(), chunks=16), "SLEAP"),
    }


LAYOUTS = ["dlc_table", "dlc_fixed", "dlc_single", "dlc_csv", "dlc_csv_single", "dlc_csv_na",
           "lightning_pose", "sleap", "sleap_contiguous", "sleap_no_scores", "sleap_no_tracks"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, poses):
    require_movement()
    return {name: (str(path), software) for name, (path, software) in
            _layouts(tmp_path_factory.mktemp("layouts"), *poses).items()}


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of a few frames, so every read crosses many block and chunk boundaries."""
    monkeypatch.setattr(pose_hdf5, "BLOCK_BYTES", 256)
    monkeypatch.setattr(pose_csv, "BLOCK_BYTES", 4096)


def _read_quietly(read, *arguments, **keywords):
    """`read(...)` and the messages of the `PoseReaderWarning`s it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = read(*arguments, **keywords)
    return value, [str(warning.message) for warning in caught
                   if issubclass(warning.category, PoseReaderWarning)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reads_exactly_as_movement_reads_it(layouts, layout, small_blocks):
    path, software = layouts[layout]
    options = PoseOptions(source_software=software, fps=30.0)
    direct, warned = _read_quietly(open_tracks, path, options)
    assert isinstance(direct, BlockTracks)
    assert bool(warned) == (layout == "sleap_no_tracks"), warned
    blocks = [len(values) for values, _ in direct.read_blocks()]
    assert len(blocks) > 1 and sum(blocks) == FRAMES
    dataset, _ = _read_quietly(load_pose_dataset, path, software, fps=30.0)
    reference = DatasetTracks.of(dataset, path, float(dataset.attrs["fps"]))
    for name in ("num_frames", "individuals", "keypoints", "space", "fps"):
        assert getattr(direct, name) == getattr(reference, name), name
    np.testing.assert_array_equal(direct.times(), reference.times())
    everyone = list(range(len(direct.individuals)))
    chosen = ([len(KEYPOINTS) - 1, 0, 2], everyone[::-1])
    for keypoints, individuals in ((list(range(len(KEYPOINTS))), everyone), chosen):
        unthresholded = reference.gather(individuals, keypoints, None)
        assert np.isnan(unthresholded).any()  # the missing points are in the comparison
        for threshold in (None, 0.7):
            expected = reference.gather(individuals, keypoints, threshold)
            got = direct.gather(individuals, keypoints, threshold)
            assert got.dtype == np.float32 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, expected)  # NaN where NaN
            if threshold is not None and layout != "sleap_no_scores":
                assert np.isnan(got).sum() > np.isnan(unthresholded).sum()  # gaps were made


def test_read_pose_needs_no_movement_for_these_files(layouts, poses, tmp_path, monkeypatch):
    """With movement made unimportable, the `.h5` and `.csv` files still read, into the frames
    read through movement; an NWB file still needs it."""
    from keras_hbehavemae.data import pose_io

    options = PoseOptions(source_software="DeepLabCut", fps=30.0, confidence_threshold=0.6,
                          normalisation="arena:400")
    names = ("dlc_table", "dlc_csv", "sleap")
    through_movement = {}
    for name in names:
        path, software = layouts[name]
        dataset = load_pose_dataset(path, software, fps=30.0)
        through_movement[name] = read_pose(dataset, options, name=name)
    nwb = str(write_nwb(tmp_path / "mouse_a.nwb", *poses))
    monkeypatch.setattr(pose_io, "_MOVEMENT", {})
    monkeypatch.setitem(sys.modules, "movement", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "movement.io", None)
    for name in names:
        path, software = layouts[name]
        direct = read_pose(path, options.replace(source_software=software))
        expected = through_movement[name]
        np.testing.assert_array_equal(direct.frames(options), expected.frames(options))
        np.testing.assert_array_equal(direct.validity, expected.validity)
        assert not direct.validity.all() and np.isfinite(direct.poses).all()  # gaps filled
        assert (direct.individuals, direct.keypoints) == (expected.individuals,
                                                          expected.keypoints)
    with pytest.raises(ImportError, match=r"'pose' extra"):
        read_pose(nwb, PoseOptions(source_software="NWB"))


def test_files_the_direct_readers_do_not_take_go_to_movement(tmp_path, poses):
    require_movement()
    position, confidence = poses
    frame = dlc_frame(position, confidence)
    frame[frame.columns[0]] = frame[frame.columns[0]].astype("float32")  # a second block
    path = tmp_path / "two_blocks.h5"
    frame.to_hdf(path, key="df_with_missing", format="fixed")
    assert pose_hdf5.open_hdf5_tracks(str(path), "DeepLabCut", None) is None
    tracks = open_tracks(str(path), PoseOptions(source_software="DeepLabCut"))
    assert isinstance(tracks, DatasetTracks) and tracks.keypoints == KEYPOINTS
    nwb = write_nwb(tmp_path / "mouse_a.nwb", position, confidence)
    assert isinstance(open_tracks(str(nwb), PoseOptions(source_software="NWB")),
                      DatasetTracks)


def test_a_forged_pickled_attribute_is_refused_and_never_run(tmp_path, poses):
    path = write_dlc_h5(tmp_path / "forged.h5", *poses)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with h5py.File(path, "r+") as file:
        file["df_with_missing/table"].attrs["values_block_0_kind"] = np.bytes_(
            pickle.dumps(Payload(), protocol=0))
    with pytest.raises(UnsafePickleError, match=r"forged\.h5: attribute 'values_block_0_kind'"
                       r".*refused global"):
        read_pose(str(path), PoseOptions(source_software="DeepLabCut"))
    assert not marker.exists()


def _bad_file(layout, path, position, confidence):
    if layout == "not_hdf5":
        path.write_text("scorer,DLC\n")
    elif layout == "no_key":
        with h5py.File(path, "w") as file:
            file["tracks"] = np.zeros((1, 2, 1, 3))
    elif layout == "ragged":
        frame = dlc_frame(position, confidence)
        frame.drop(columns=frame.columns[:3]).to_hdf(path, key="df_with_missing",
                                                     format="table")
    elif layout == "coords":
        frame = dlc_frame(position, confidence)
        frame.columns = frame.columns.set_levels(["likelihood", "u", "v"], level="coords")
        frame.to_hdf(path, key="df_with_missing", format="table")
    elif layout == "sleap_names":
        write_sleap_analysis_h5(path, position, confidence, keypoints=KEYPOINTS[:4])
    elif layout == "sleap_shape":
        with h5py.File(path, "w") as file:
            file["tracks"] = np.zeros((2, 5, 3))
            file["node_names"] = [b"nose"]
    elif layout == "csv_header":
        write_dlc_csv(path, position, confidence)
        path.write_text(path.read_text().replace("bodyparts", "parts", 1))
    elif layout == "csv_text":
        write_dlc_csv(path, position, confidence)
        lines = path.read_text().splitlines(keepends=True)
        fields = lines[10].split(",")  # data row 7 of a multi-animal file
        fields[2] = "oops"
        lines[10] = ",".join(fields)
        path.write_text("".join(lines))
    elif layout == "csv_lightning_pose_two_animals":
        write_dlc_csv(path, position, confidence)


@pytest.mark.parametrize("layout, message", [
    ("not_hdf5", r"cannot read it as a DeepLabCut pose file \(not an HDF5 file\)"),
    ("no_key", "no pandas table under the key 'df_with_missing'"),
    ("ragged", "columns are not one per individual x bodypart x coordinate"),
    ("coords", r"coords \['u', 'v', 'likelihood'\]"),
    ("sleap_names", "4 node names for 5 nodes"),
    ("sleap_shape", "'tracks' has shape"),
    ("csv_header", r"header rows read \['scorer', 'individuals', 'parts', 'coords'\]"),
    ("csv_text", r"could not convert string to float: 'oops', in data rows 1-"),
    ("csv_lightning_pose_two_animals", "2 individuals: LightningPose files hold one"),
])
def test_bad_layouts_name_the_file_and_the_problem(tmp_path, poses, layout, message):
    position, confidence = poses
    suffix = ".csv" if layout.startswith("csv") else ".h5"
    path = tmp_path / f"{layout}{suffix}"
    _bad_file(layout, path, position, confidence)
    software = ("SLEAP" if layout.startswith("sleap") else "LightningPose"
                if "lightning" in layout else "DeepLabCut")
    with pytest.raises(ValueError, match=message) as error:
        read_pose(str(path), PoseOptions(source_software=software))
    assert str(error.value).startswith(str(path))
