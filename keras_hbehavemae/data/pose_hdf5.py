"""DeepLabCut and SLEAP analysis `.h5` pose files, read with h5py a block of frames at a time.

movement reads a DeepLabCut `.h5` through pandas and a SLEAP analysis `.h5` as whole float64
arrays, so a one-hour recording peaks at 4.6-6.2x the model's float32 array before the
model sees it. These two layouts are plain HDF5, and h5py is a core dependency, so this
module reads them directly: a block of frames (about 1 MiB of the file, whole storage
chunks) at a time, straight into the float32 `[T, I, K, S]` of the chosen points. The names,
values and confidence rule are movement's (the tests compare the two on each layout):

| file | layout read here | names |
|---|---|---|
| DeepLabCut `.h5` | pandas' HDF5 store under the key `df_with_missing`, one float block, in the `table` format (what DeepLabCut writes: rows of `values_block_0`, column labels in the pickled attributes `non_index_axes`, `values_block_0_kind` and `info`, read with the restricted unpickler) or the `fixed` format (`block0_values` `[T, C]`, labels as `block0_items_level{n}` / `block0_items_label{n}`) | column levels `scorer`, optional `individuals` (else one, `individual_0`), `bodyparts`, `coords` (`x`, `y`, optional `z`, optional `likelihood`), each in the order of first appearance |
| SLEAP analysis `.h5` | `tracks` `[tracks, space, nodes, frames]`, `node_names`, `track_names`, optional `point_scores` `[tracks, nodes, frames]` | `track_names` (none: `id_0`, `id_1`, ...), `node_names` |

A DeepLabCut file in another pandas layout (several blocks, non-string labels) is read by
movement instead (`open_hdf5_tracks` returns None). Confidence follows movement's dtypes:
DeepLabCut likelihoods are compared in the file's float64, SLEAP scores in float32.

Both come back as `pose_tracks.BlockTracks`.

Example (a SLEAP analysis file of 3 frames, 1 track, 2 nodes):

>>> import tempfile, h5py
>>> path = tempfile.mkdtemp() + "/session.analysis.h5"
>>> with h5py.File(path, "w") as file:
...     file["tracks"] = np.arange(12.0).reshape(1, 2, 2, 3)  # [tracks, space, nodes, frames]
...     file["node_names"] = [b"nose", b"tail"]
...     file["track_names"] = [b"mouse"]
>>> tracks = open_hdf5_tracks(path, "SLEAP", fps=30.0)
>>> tracks.individuals, tracks.keypoints, tracks.space, tracks.num_frames
(('mouse',), ('nose', 'tail'), ('x', 'y'), 3)
>>> tracks.gather([0], [1], None)[0].tolist()  # frame 0, [I, K, S]: the tail's x and y
[[[3.0, 9.0]]]
"""  # noqa: E501

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import h5py
import numpy as np

from keras_hbehavemae.data.pose_dlc import SPACE, deeplabcut_layout
from keras_hbehavemae.data.pose_io import PoseReaderWarning, cannot_read
from keras_hbehavemae.data.pose_tracks import Blocks, BlockTracks
from keras_hbehavemae.files.unpickling import unpickle

#: Bytes of the file read per block of frames (rounded to whole storage chunks).
BLOCK_BYTES = 1 << 20
DLC_KEY = "df_with_missing"


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _block_rows(dataset: h5py.Dataset, axis: int, bytes_per_row: int) -> int:
    """Frames per block: about `BLOCK_BYTES`, a whole number of storage chunks."""
    rows = max(1, BLOCK_BYTES // max(1, bytes_per_row))
    if dataset.chunks is not None:
        chunk = dataset.chunks[axis]
        rows = max(chunk, rows // chunk * chunk)
    return rows


def _open(path: str) -> h5py.File:
    """Read-only; file locking is used where the file system supports it (network file
    systems often do not, and reading needs none)."""
    return h5py.File(path, "r", locking="best-effort")


@contextlib.contextmanager
def _reading(path: str, software: str) -> Iterator[h5py.File]:
    """The file open for reading; a damaged file's HDF5 error becomes a ValueError naming it."""
    try:
        with _open(path) as file:
            yield file
    except (OSError, KeyError) as error:
        raise cannot_read(path, software, f"{type(error).__name__}: {error}") from None


def _unpickled_attribute(node: h5py.HLObject, name: str, where: str):
    return unpickle(io.BytesIO(bytes(node.attrs[name])), f"{where}: attribute {name!r}")


def _dlc_table_columns(group: h5py.Group, where: str):
    """(column labels, level names, the rows' dataset, its float field) of a `table`-format
    store, or None (another layout)."""
    if _text(group.attrs.get("pandas_type", b"")) != "frame_table" or "table" not in group:
        return None
    if _unpickled_attribute(group, "values_cols", where) != ["values_block_0"]:
        return None
    info = _unpickled_attribute(group, "info", where)
    names = info.get(1, {}).get("names") if isinstance(info, dict) else None
    table = group["table"]
    labels = _unpickled_attribute(table, "values_block_0_kind", where)
    if not names or not isinstance(labels, list) or not all(
            isinstance(label, tuple) and len(label) == len(names) and all(
                isinstance(part, str) for part in label) for label in labels):
        return None
    if _unpickled_attribute(group, "non_index_axes", where) != [(1, labels)]:
        return None  # the block's columns are not the frame's, in its order
    if "values_block_0" not in (table.dtype.names or ()):
        return None
    field = table.dtype.fields["values_block_0"][0]
    if field.shape != (len(labels),) or field.base.kind != "f":
        return None
    return labels, [str(name) for name in names], table, "values_block_0"


def _dlc_fixed_columns(group: h5py.Group):
    """(column labels, level names, the values' dataset, None) of a `fixed`-format store,
    or None (another layout)."""
    attributes = group.attrs
    if (_text(attributes.get("pandas_type", b"")) != "frame" or int(attributes.get("nblocks", 0))
            != 1 or _text(attributes.get("block0_items_variety", b"")) != "multi"):
        return None
    values = group.get("block0_values")
    if values is None or values.ndim != 2 or values.dtype.kind != "f" or int(
            values.attrs.get("transposed", 0)) != 1:  # stored as [T, C]
        return None
    labels, names = [], []
    for level in range(int(attributes["block0_items_nlevels"])):
        level_values = group[f"block0_items_level{level}"]
        if _text(level_values.attrs.get("kind", b"")) != "string":
            return None
        decoded = [_text(value) for value in level_values[()]]
        codes = group[f"block0_items_label{level}"][()]
        if (codes < 0).any():
            return None  # a missing label
        labels.append([decoded[code] for code in codes])
        names.append(_text(level_values.attrs.get("name", b"")))
    columns = list(zip(*labels, strict=True))
    if values.shape[1] != len(columns):
        return None
    return columns, names, values, None


def _open_dlc(path: str, fps: float | None) -> BlockTracks | None:
    with _open(path) as file:
        if not isinstance(file.get(DLC_KEY), h5py.Group):
            raise cannot_read(path, "DeepLabCut", f"no pandas table under the key {DLC_KEY!r}")
        group = file[DLC_KEY]
        found = _dlc_table_columns(group, path) or _dlc_fixed_columns(group)
        if found is None:
            return None
        columns, names, dataset, field = found
        name, num_frames = dataset.name, int(dataset.shape[0])
        block_rows = _block_rows(dataset, 0, dataset.dtype.itemsize * (
            1 if field else dataset.shape[1]))
    layout = deeplabcut_layout(path, "DeepLabCut", columns, names)

    def read_blocks() -> Blocks:
        with _reading(path, "DeepLabCut") as file:
            rows = file[name].fields(field) if field else file[name]
            for start in range(0, num_frames, block_rows):
                values = rows[start:start + block_rows]  # [n, C]
                yield values, values  # the likelihoods are columns too

    return BlockTracks(path, fps, num_frames, layout.individuals, layout.keypoints,
                       layout.space, layout.position_columns, layout.score_columns,
                       read_blocks, np.float64)


def _open_sleap(path: str, fps: float | None) -> BlockTracks:
    with _open(path) as file:
        if not isinstance(file.get("tracks"), h5py.Dataset) or "node_names" not in file:
            raise cannot_read(path, "SLEAP", "no 'tracks' and 'node_names' datasets: not a "
                              "SLEAP analysis file")
        tracks = file["tracks"]
        if tracks.ndim != 4 or tracks.shape[1] not in (2, 3):
            raise cannot_read(path, "SLEAP", f"'tracks' has shape {tracks.shape}, expected "
                              "[tracks, space (2 or 3), nodes, frames]")
        num_tracks, num_space, num_nodes, num_frames = (int(size) for size in tracks.shape)
        keypoints = tuple(_text(name) for name in file["node_names"][()])
        individuals = tuple(_text(name) for name in file["track_names"][()]) if (
            "track_names" in file) else ()
        has_scores = "point_scores" in file
        if has_scores and file["point_scores"].shape != (num_tracks, num_nodes, num_frames):
            raise cannot_read(path, "SLEAP", f"'point_scores' has shape "
                              f"{file['point_scores'].shape}, expected "
                              f"{(num_tracks, num_nodes, num_frames)}")
        block_rows = _block_rows(tracks, 3, tracks.dtype.itemsize * num_tracks * num_space
                                 * num_nodes)
    if len(keypoints) != num_nodes:
        raise cannot_read(path, "SLEAP", f"{len(keypoints)} node names for {num_nodes} nodes")
    if not individuals:
        warnings.warn(f"{path}: the file names no SLEAP track; assuming one individual per "
                      "track, named id_0, id_1, ...", PoseReaderWarning, stacklevel=3)
        individuals = tuple(f"id_{index}" for index in range(num_tracks))
    if len(individuals) != num_tracks:
        raise cannot_read(path, "SLEAP", f"{len(individuals)} track names for {num_tracks} "
                          "tracks")
    # a block [n, I·S·K] of `tracks[..., start:stop]`: column (i, s, k) = (i·S + s)·K + k
    positions = np.arange(num_tracks * num_space * num_nodes).reshape(
        num_tracks, num_space, num_nodes).transpose(0, 2, 1)  # [I, S, K] -> [I, K, S]
    scores = np.arange(num_tracks * num_nodes).reshape(num_tracks, num_nodes) if (
        has_scores) else None

    def read_blocks() -> Blocks:
        with _reading(path, "SLEAP") as file:
            for start in range(0, num_frames, block_rows):
                values = file["tracks"][..., start:start + block_rows]  # [I, S, K, n]
                values = values.reshape(-1, values.shape[-1]).T  # [n, I·S·K]
                score_values = None
                if has_scores:
                    score_values = file["point_scores"][..., start:start + block_rows]
                    score_values = score_values.reshape(-1, values.shape[0]).T  # [n, I·K]
                yield values, score_values

    return BlockTracks(path, fps, num_frames, individuals, keypoints, SPACE[:num_space],
                       positions, scores, read_blocks, np.float32)


def open_hdf5_tracks(path: str, source_software: str, fps: float | None) -> BlockTracks | None:
    """The tracks of a DeepLabCut or SLEAP analysis `.h5`, or None for any other file.

    None also for a DeepLabCut store in a layout this module does not read (movement reads
    it). Checks of the software's name, the frame rate and the file's existence are the
    caller's (`pose_io.check_pose_file`).

    Raises:
        ValueError: naming the file: not an HDF5 file, or not the software's layout.
        files.unpickling.UnsafePickleError: a pickled DeepLabCut attribute names a global.
    """
    if source_software not in ("DeepLabCut", "SLEAP") or not path.lower().endswith(".h5"):
        return None
    if not h5py.is_hdf5(path):
        raise cannot_read(path, source_software, "not an HDF5 file")
    try:
        if source_software == "DeepLabCut":
            return _open_dlc(path, fps)
        return _open_sleap(path, fps)
    except (OSError, KeyError, TypeError) as error:
        raise cannot_read(path, source_software, f"{type(error).__name__}: {error}") from None
