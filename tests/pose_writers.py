"""Small pose-tracking files in the real formats, written without the tracking software.

- DeepLabCut `.h5`: a pandas DataFrame with column levels scorer / individuals / bodyparts /
  coords (x, y, likelihood), stored under the key `df_with_missing` (PyTables) in pandas'
  `table` format, as DeepLabCut writes it (or `fixed`, pandas' default); its `.csv` is the
  same frame written by pandas (4 header rows, or 3 for a single animal).
- SLEAP analysis `.h5` (h5py, gzip-compressed as SLEAP writes it): `tracks` [tracks, space,
  nodes, frames], `node_names`, `track_names` (bytes), `point_scores` [tracks, nodes,
  frames], `track_occupancy`.
- NWB with ndx-pose: one `PoseEstimation` of `PoseEstimationSeries` (one per keypoint) in
  the `behavior` processing module; one individual per file.

`synthetic_poses` gives positions `[T, 2, K, I]` and confidences `[T, K, I]` in movement's
dimension order (time, space, keypoints, individuals).
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest

MOVEMENT_REASON = "reading pose files needs the [pose] extra (movement)"


def require_movement():
    """`pytest.importorskip("movement")`, with movement first imported the package's way, so
    that importing it creates no `~/.movement` log folder (see `data.pose_io`)."""
    from keras_hbehavemae.data.pose_io import import_movement

    try:
        import_movement()
    except ImportError:
        pass  # importorskip skips, with the reason
    return pytest.importorskip("movement", reason=MOVEMENT_REASON)


KEYPOINTS = ("nose", "ear_left", "ear_right", "centre", "tail_base")
INDIVIDUALS = ("mouse_a", "mouse_b")


def synthetic_poses(num_frames=120, keypoints=KEYPOINTS, individuals=INDIVIDUALS, seed=0,
                    arena=400.0):
    """Smoothly moving animals: positions `[T, 2, K, I]` (pixels), confidence `[T, K, I]`."""
    rng = np.random.default_rng(seed)
    time = np.arange(num_frames)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(1, len(keypoints), len(individuals)))
    offset = rng.uniform(0.3, 0.7, size=(1, len(keypoints), len(individuals))) * arena
    x = offset + 40 * np.sin(time / 15 + phase)
    y = offset[::-1] + 40 * np.cos(time / 20 + phase)
    position = np.stack([x, y], axis=1)  # [T, 2, K, I]
    confidence = rng.uniform(0.5, 1.0, size=(num_frames, len(keypoints), len(individuals)))
    return position, confidence


def dlc_frame(position, confidence, keypoints=KEYPOINTS, individuals=INDIVIDUALS,
              scorer="DLC_resnet50_test", multi_animal=True):
    """The DeepLabCut DataFrame of positions `[T, 2, K, I]` and confidence `[T, K, I]`."""
    import pandas as pd

    num_frames = position.shape[0]
    values = np.concatenate([position, confidence[:, None]], axis=1)  # [T, 3, K, I]
    if multi_animal:
        columns = pd.MultiIndex.from_product(
            [[scorer], list(individuals), list(keypoints), ["x", "y", "likelihood"]],
            names=["scorer", "individuals", "bodyparts", "coords"])
        table = values.transpose(0, 3, 2, 1).reshape(num_frames, len(columns))  # [T, I·K·3]
    else:
        columns = pd.MultiIndex.from_product(
            [[scorer], list(keypoints), ["x", "y", "likelihood"]],
            names=["scorer", "bodyparts", "coords"])
        table = values[..., 0].transpose(0, 2, 1).reshape(num_frames, len(columns))  # [T, K·3]
    return pd.DataFrame(table, columns=columns)


def write_dlc_h5(path, position, confidence, format="table", **names):
    """`format`: "table" (DeepLabCut's) or "fixed"; an empty frame needs "fixed" (pandas
    writes no table for it)."""
    dlc_frame(position, confidence, **names).to_hdf(path, key="df_with_missing", mode="w",
                                                    format=format)
    return path


def write_dlc_csv(path, position, confidence, **names):
    dlc_frame(position, confidence, **names).to_csv(path)
    return path


def write_sleap_analysis_h5(path, position, confidence, keypoints=KEYPOINTS,
                            individuals=INDIVIDUALS, chunks=True):
    """`confidence` None: no `point_scores`; `individuals` empty: no track names. `chunks`:
    True, gzip in h5py's chunks (as SLEAP writes); a number, gzip in chunks of that many
    frames; False, contiguous and uncompressed."""
    import h5py

    def storage(shape):
        if chunks is False:
            return {}
        return dict(compression="gzip", compression_opts=9,
                    chunks=True if chunks is True else (*shape[:-1], chunks))

    with h5py.File(path, "w") as file:
        tracks = position.transpose(3, 1, 2, 0)  # [tracks, space, nodes, frames]
        file.create_dataset("tracks", data=tracks, **storage(tracks.shape))
        if confidence is not None:
            scores = confidence.transpose(2, 1, 0)  # [tracks, nodes, frames]
            file.create_dataset("point_scores", data=scores, **storage(scores.shape))
        file["node_names"] = np.array([name.encode() for name in keypoints])
        file["track_names"] = np.array([name.encode() for name in individuals], dtype="S")
        file["track_occupancy"] = np.ones((position.shape[0], position.shape[3]), np.uint8)
    return path


def write_nwb(path, position, confidence, keypoints=KEYPOINTS, identifier="mouse_a",
              rate=30.0):
    """One individual (`position[..., 0]`) as an NWB file with ndx-pose."""
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(session_description="pose test", identifier=identifier,
                  session_start_time=datetime.datetime(2024, 1, 1,
                                                       tzinfo=datetime.UTC))
    skeleton = Skeleton(name=f"skeleton_{identifier}", nodes=list(keypoints),
                        edges=np.array([[0, 1]], dtype="uint8"))
    series = [PoseEstimationSeries(
        name=name, description=name, data=position[:, :, index, 0], unit="pixels",
        reference_frame="top left", confidence=confidence[:, index, 0], rate=rate,
        starting_time=0.0) for index, name in enumerate(keypoints)]
    estimation = PoseEstimation(name="PoseEstimation", pose_estimation_series=series,
                                description="test", source_software="DeepLabCut",
                                skeleton=skeleton)
    behaviour = nwb.create_processing_module(name="behavior", description="behaviour")
    behaviour.add(Skeletons(skeletons=[skeleton]))
    behaviour.add(estimation)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path
