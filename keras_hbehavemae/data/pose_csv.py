"""DeepLabCut-style `.csv` pose files (DeepLabCut, LightningPose), read a block of rows at a time.

movement reads the whole table into one pandas DataFrame and then into xarray, which peaks
at about 8x the model's float32 array for a one-hour recording. This module reads the same
layout with the same parser, pandas' (the `[pose]` extra), about 4 MiB of text at a time,
straight into the float32 `[T, I, K, S]` of the chosen points (`pose_tracks.BlockTracks`).
Names and values are movement's (the tests compare the two):

- The header: the first field of the first rows reads `scorer`, `individuals`,
  `bodyparts`, `coords` (multi-animal), or `scorer`, `bodyparts`, `coords` when the fourth
  row's first field is a frame number (single-animal); each header row gives one level of
  every column's label after the first (the frame index, which is not used: rows are
  frames in file order). Columns follow `pose_dlc.deeplabcut_layout`.
- A row per frame; blank lines are skipped. A missing value is an empty field or one of
  pandas' NA spellings (`NaN`, `NA`, `null`, ...). Any other text where a number belongs
  is an error naming the file.
- LightningPose files hold one individual.

Example:

>>> import tempfile
>>> path = tempfile.mkdtemp() + "/session.csv"
>>> with open(path, "w") as file:
...     _ = file.write("scorer,me,me,me\\nbodyparts,nose,nose,nose\\ncoords,x,y,likelihood\\n"
...                    "0,1.5,2.5,0.9\\n1,,3.5,0.2\\n")
>>> tracks = open_csv_tracks(path, "DeepLabCut", fps=None)
>>> tracks.individuals, tracks.keypoints, tracks.num_frames
(('individual_0',), ('nose',), 2)
>>> tracks.gather([0], [0], threshold=0.5)[:, 0, 0].tolist()  # [T, S]: frame 1 is below 0.5
[[1.5, 2.5], [nan, nan]]
"""

from __future__ import annotations

import csv
import itertools

import numpy as np

from keras_hbehavemae.data.pose_dlc import deeplabcut_layout
from keras_hbehavemae.data.pose_io import cannot_read, import_pandas
from keras_hbehavemae.data.pose_tracks import Blocks, BlockTracks

#: Bytes of text parsed per block of rows.
BLOCK_BYTES = 4 << 20
SOFTWARE = ("DeepLabCut", "LightningPose")
LEVELS = ("scorer", "individuals", "bodyparts", "coords")


def _header(path: str, software: str) -> tuple[list[str], list[list[str]]]:
    """The level names and the header rows (fields after the first), movement's rule."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(itertools.islice(file, 4)))
    if len(rows) == 4 and rows[3][:1] and rows[3][0].isdigit():
        rows = rows[:3]  # single-animal: the fourth row is frame 0
    names = [row[0] if row else "" for row in rows]
    if names not in (list(LEVELS), [LEVELS[0], *LEVELS[2:]]):
        raise cannot_read(path, software, f"the first fields of the header rows read {names}, "
                          f"expected {list(LEVELS)} or, for one animal, "
                          f"{[LEVELS[0], *LEVELS[2:]]}")
    if len({len(row) for row in rows}) != 1:
        raise cannot_read(path, software, "the header rows have different numbers of fields")
    return names, [row[1:] for row in rows]


def _count_rows(path: str, header_rows: int) -> tuple[int, int]:
    """(data rows, length of the first) after the header; blank lines do not count, as
    pandas skips them."""
    with open(path, encoding="utf-8") as file:
        rows = itertools.filterfalse(str.isspace, itertools.islice(file, header_rows, None))
        first = next(rows, "")
        return (1 if first else 0) + sum(1 for _ in rows), len(first)


def open_csv_tracks(path: str, source_software: str, fps: float | None) -> BlockTracks | None:
    """The tracks of a DeepLabCut-style `.csv` of DeepLabCut or LightningPose, or None for
    any other file or software. Checks of the software's name, the frame rate and the
    file's existence are the caller's (`pose_io.check_pose_file`).

    Raises:
        ValueError: naming the file: not the layout, or not one individual for LightningPose.
    """
    if source_software not in SOFTWARE or not path.lower().endswith(".csv"):
        return None
    try:
        names, header = _header(path, source_software)
        columns = list(zip(*header, strict=True))
        layout = deeplabcut_layout(path, source_software, columns, names)
        if source_software == "LightningPose" and len(layout.individuals) > 1:
            raise cannot_read(path, source_software, f"{len(layout.individuals)} individuals: "
                              "LightningPose files hold one (a DeepLabCut file?)")
        num_frames, row_bytes = _count_rows(path, len(names))
    except (UnicodeDecodeError, csv.Error, OSError) as error:
        raise cannot_read(path, source_software, f"{type(error).__name__}: {error}") from None
    block_rows = max(1, BLOCK_BYTES // max(1, row_bytes))

    def read_blocks() -> Blocks:
        pandas = import_pandas()
        chunks = pandas.read_csv(path, header=None, skiprows=len(names), usecols=range(
            1, len(columns) + 1), dtype=np.float64, chunksize=block_rows, encoding="utf-8")
        read = 0
        with chunks:
            try:
                for chunk in chunks:
                    values = chunk.to_numpy()  # [n, C]
                    read += len(values)
                    yield values, values  # the likelihoods are columns too
            except ValueError as error:
                raise cannot_read(path, source_software, f"{error}, in data rows {read + 1}-"
                                  f"{read + block_rows} (counted from 1 after the header, "
                                  "blank lines skipped)") from None

    return BlockTracks(path, fps, num_frames, layout.individuals, layout.keypoints,
                       layout.space, layout.position_columns, layout.score_columns,
                       read_blocks, np.float64)
