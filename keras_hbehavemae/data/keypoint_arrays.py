"""`read_keypoint_arrays`: generic lab keypoint data as `KeypointSequences`.

Sources, one sequence per file or per array:

- a folder of `.npy`, `.npz` and `.csv` files (sorted by file name; the name of
  a sequence is the file name without extension);
- one such file;
- one numeric array `[T, ...]`, a list (or object array) of arrays, or a dict
  `name -> array`.

A `.csv` file has one row per frame and one column per feature; a header row is
optional (it is recognised by a non-numeric cell) and empty cells are NaN. An
`.npz` file holds one array, or several of which the one called "keypoints" is
read. A `.npy` file holding a list or dict of arrays (pickled; read with the
restricted unpickler, so nothing in it runs) yields several sequences.

`layout` maps each frame to the model's `(H, W)` (individuals, features):

- None: `[T]` → `[T, 1, 1]`, `[T, F]` → `[T, 1, F]`, `[T, H, W]` as is,
  `[T, n_individuals, n_keypoints, n_dims]` → `[T, n_individuals, n_keypoints·n_dims]`;
- `(H, W)`: each frame is reshaped row-major to `(H, W)`;
- a string naming the axes with the letters t (time), i (individuals),
  k (keypoints) and d (coordinate dims), e.g. "tdki" for `[T, dims, keypoints,
  individuals]`: the result is `[T, individuals, keypoints·dims]`.

NaN marks an untracked value. `fill="interpolate"` interpolates linearly in time
per coordinate and holds the edge values; `fill="hold"` repeats the last observed
value (the first one at the start); `fill=None` keeps the NaNs. The validity mask
is True where every coordinate of the frame was observed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from keras_hbehavemae.data.filling import hold_fill, interpolate_fill
from keras_hbehavemae.data.sequences import KeypointSequences
from keras_hbehavemae.data.validation import check_sequence, numeric_array
from keras_hbehavemae.files.npy import npz_names, read_npz
from keras_hbehavemae.files.pickle_files import load_pickled_file

SUPPORTED_SUFFIXES = (".npy", ".npz", ".csv")
_LAYOUT_LETTERS = "tikd"


def _read_csv(path: str) -> np.ndarray:
    """Reads a frames × features CSV file with an optional header row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not a text CSV file (byte {error.start} is not UTF-8 text); a keypoint "
            "CSV file holds one row of numbers per frame"
        ) from None
    except csv.Error as error:
        raise ValueError(f"{path}: not a readable CSV file ({error})") from None
    # Skip blank lines; a line of empty cells (",,") is a frame with nothing tracked.
    rows = [row for row in rows if len(row) > 1 or (row and row[0].strip())]
    if not rows:
        raise ValueError(f"{path}: the CSV file has no rows")

    def parse(cell: str) -> float:
        cell = cell.strip()
        return float(cell) if cell else float("nan")

    first_line = 1
    try:
        [parse(cell) for cell in rows[0]]
    except ValueError:
        rows, first_line = rows[1:], 2  # a header row
    if not rows:
        raise ValueError(f"{path}: the CSV file has a header but no data rows")
    width = len(rows[0])
    values = np.empty((len(rows), width), dtype=np.float64)
    for row_index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(
                f"{path}: row {row_index + first_line} has {len(row)} columns, expected {width}"
            )
        for column, cell in enumerate(row):
            try:
                values[row_index, column] = parse(cell)
            except ValueError:
                raise ValueError(
                    f"{path}: non-numeric value {cell!r} at row {row_index + first_line}, "
                    f"column {column + 1}"
                ) from None
    return values


def _read_npz(path: str) -> np.ndarray:
    keys = npz_names(path)
    if "keypoints" in keys:
        return read_npz(path, ["keypoints"])["keypoints"]
    if len(keys) == 1:
        return read_npz(path)[keys[0]]
    raise ValueError(
        f"{path}: expected one array or an array named 'keypoints', found keys {keys}"
    )


def _named_arrays(obj: Any, prefix: str, where: str) -> list[tuple[str, Any, str]]:
    """Splits a loaded object into `(name, array, where)` triples, one per sequence."""
    if isinstance(obj, Mapping):
        return [(str(name), value, f"{where}, sequence {name!r}") for name, value in obj.items()]
    is_collection = isinstance(obj, (list, tuple)) or (
        isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 1
    )
    if is_collection:
        return [
            (f"{prefix}_{index}", value, f"{where}, sequence {index}")
            for index, value in enumerate(obj)
        ]
    return [(prefix, obj, where)]


def _read_path(path: str) -> list[tuple[str, Any, str]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        files = sorted(
            entry for entry in os.listdir(path) if entry.lower().endswith(SUPPORTED_SUFFIXES)
        )
        if not files:
            raise ValueError(f"{path}: the folder has no .npy, .npz or .csv files")
        named = []
        for file_name in files:
            named.extend(_read_path(os.path.join(path, file_name)))
        return named
    stem, suffix = os.path.splitext(os.path.basename(path))
    suffix = suffix.lower()
    if suffix == ".csv":
        return [(stem, _read_csv(path), path)]
    if suffix == ".npz":
        return [(stem, _read_npz(path), path)]
    if suffix == ".npy":
        loaded = load_pickled_file(path)
        return _named_arrays(loaded, stem, path)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; expected .npy, .npz or .csv")


def apply_layout(
    array: np.ndarray, layout: tuple[int, int] | str | None, where: str
) -> np.ndarray:
    """Maps `[T, ...]` to `[T, H, W]` as described in the module docstring.

    Example:
        >>> apply_layout(np.zeros((7, 2, 5, 3)), None, "example").shape
        (7, 2, 15)
        >>> apply_layout(np.zeros((7, 3, 5, 2)), "tdki", "example").shape
        (7, 2, 15)
    """
    if array.ndim == 0:
        raise ValueError(f"{where}: expected an array [T, ...], got a scalar")
    num_frames = array.shape[0]
    if layout is None:
        if array.ndim == 1:
            return array.reshape(num_frames, 1, 1)
        if array.ndim == 2:
            return array.reshape(num_frames, 1, array.shape[1])
        if array.ndim == 3:
            return array
        if array.ndim == 4:
            return array.reshape(num_frames, array.shape[1], array.shape[2] * array.shape[3])
        raise ValueError(f"{where}: shape {array.shape} needs an explicit layout")
    if isinstance(layout, str):
        letters = layout.replace(" ", "").lower()
        if (
            len(letters) != array.ndim
            or len(set(letters)) != len(letters)
            or not set(letters) <= set(_LAYOUT_LETTERS)
            or "t" not in letters
        ):
            raise ValueError(
                f"{where}: layout {layout!r} does not describe shape {array.shape}; use one "
                "letter per axis from 't' (time, required), 'i', 'k', 'd'"
            )
        missing = [letter for letter in _LAYOUT_LETTERS if letter not in letters]
        expanded = array.reshape(array.shape + (1,) * len(missing))
        order = [(letters + "".join(missing)).index(letter) for letter in _LAYOUT_LETTERS]
        standard = np.transpose(expanded, order)  # [t, i, k, d]
        _, individuals, keypoints, dims = standard.shape
        return standard.reshape(num_frames, individuals, keypoints * dims)
    height, width = (int(size) for size in layout)
    if int(np.prod(array.shape[1:])) != height * width:
        raise ValueError(
            f"{where}: a frame of shape {array.shape[1:]} cannot be laid out as (H, W) = "
            f"({height}, {width})"
        )
    return array.reshape(num_frames, height, width)


def _fill_untracked(
    keypoints: np.ndarray, fill: str, where: str
) -> np.ndarray:
    missing = np.isnan(keypoints)
    never_observed = missing.all(axis=0)
    if never_observed.any():
        individual, feature = (int(index) for index in np.argwhere(never_observed)[0])
        raise ValueError(
            f"{where}: coordinate (individual {individual}, feature {feature}) is NaN in every "
            "frame, so it cannot be filled"
        )
    if fill == "interpolate":
        return interpolate_fill(keypoints, missing)
    return hold_fill(keypoints, missing)


def read_keypoint_arrays(
    source: str | os.PathLike[str] | np.ndarray | Sequence[Any] | Mapping[str, Any],
    layout: tuple[int, int] | str | None = None,
    fill: Literal["interpolate", "hold"] | None = "interpolate",
    expected_hw: tuple[int, int] | None = None,
    num_frames: int | None = None,
    pad_short_sequences: bool = True,
) -> KeypointSequences:
    """Reads generic keypoint sequences of any lengths into `KeypointSequences`.

    Args:
        source: a folder, a `.npy`/`.npz`/`.csv` file, an array, a list of arrays
            or a dict `name -> array` (see the module docstring).
        layout: how a frame maps to `(H, W)`: None (infer), a tuple `(H, W)` or an
            axis string such as "tikd".
        fill: "interpolate", "hold" or None, for NaN (untracked) values.
        expected_hw: the model's `(H, W)`; a mismatch raises ValueError.
        num_frames: the model's window length, checked only with
            `pad_short_sequences=False`.
        pad_short_sequences: accept sequences shorter than `num_frames`.

    Returns:
        `KeypointSequences` of float32 `[T, H, W]` with a validity mask.

    Raises:
        FileNotFoundError: if a path does not exist.
        ValueError: for non-numeric or infinite values, all-NaN sequences or
            coordinates (when filling), a layout that does not fit, or a shape
            other than `expected_hw`; the message names the file.

    Example:
        >>> track = np.array([[0.0, 10.0], [np.nan, np.nan], [2.0, 30.0]])
        >>> sequences = read_keypoint_arrays({"mouse": track})
        >>> sequences.keypoints[0][:, 0, :]
        array([[ 0., 10.],
               [ 1., 20.],
               [ 2., 30.]], dtype=float32)
        >>> sequences.validity[0]
        array([ True, False,  True])
    """
    if fill not in ("interpolate", "hold", None):
        raise ValueError(f"fill must be 'interpolate', 'hold' or None, got {fill!r}")
    if isinstance(source, (str, os.PathLike)):
        named = _read_path(os.fspath(source))
    else:
        named = _named_arrays(source, "sequence", "<in-memory data>")
        if len(named) == 1 and named[0][0] == "sequence":
            named = [("sequence_0", named[0][1], named[0][2])]
    names, arrays, validity = [], [], []
    for name, values, where in named:
        keypoints = apply_layout(numeric_array(values, where), layout, where)
        check_sequence(keypoints, where, expected_hw, num_frames, pad_short_sequences)
        validity.append(~np.isnan(keypoints).any(axis=(1, 2)))
        if fill is not None:
            keypoints = _fill_untracked(keypoints, fill, where)
        names.append(name)
        arrays.append(keypoints)
    try:
        return KeypointSequences(names, arrays, validity=validity)
    except ValueError as error:
        source_name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<data>"
        raise ValueError(f"{source_name}: {error}") from None
