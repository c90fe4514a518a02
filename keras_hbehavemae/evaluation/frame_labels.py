"""Per-frame labels in CSV files, for probes on your own recordings.

Two layouts, one row per labelled frame and one column per label:

- one CSV for all recordings: `recording,frame,<label>,<label>,...`, where `recording`
  (or `sequence`) names the recording: its sequence name (the file name without suffix,
  as `hbehavemae embed` names it), its file name, or its path;
- one CSV per recording: `frame,<label>,...`, given per recording in the manifest's
  `labels` column (or as `--labels` when there is one recording only).

`frame` is the frame index in the recording (0-based, as in the embeddings' `frame`
array). Frames without a row, and empty cells, are unlabelled (NaN). A label whose values
are all numbers is discrete when they are all integers, continuous otherwise; a label with
words (e.g. `grooming`) is discrete, its classes numbered in sorted order.

Example:

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "labels.csv")
>>> _ = open(path, "w").write("recording,frame,action\\ns1,0,run\\ns1,2,rest\\ns2,1,run\\n")
>>> labels = read_labels_csv(path, {"s1": (0, 3), "s2": (3, 5)})
>>> labels.labels["action"].tolist(), labels.task_types
([1.0, nan, 0.0, nan, 1.0], {'action': 'discrete'})
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence

import numpy as np

from keras_hbehavemae.evaluation.labels import LabelsFile, load_labels_file

RECORDING_COLUMNS = ("recording", "sequence")


def _rows(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as file:
        rows = [row for row in csv.reader(file) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path}: the labels CSV is empty")
    header = [cell.strip() for cell in rows[0]]
    if "frame" not in [name.lower() for name in header]:
        raise ValueError(f"{path}: the labels CSV needs a 'frame' column; its header is "
                         f"{header}")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} cells, the header has "
                             f"{len(header)}")
    return header, rows[1:]


def _aliases(frame_map: Mapping[str, tuple[int, int]],
             sources: Mapping[str, str] | None) -> dict[str, str]:
    """Every spelling of a recording (name, file name, stem, path) → its sequence name."""
    aliases = {name: name for name in frame_map}
    for name, source in (sources or {}).items():
        for alias in (source, os.path.basename(source),
                      os.path.splitext(os.path.basename(source))[0], os.path.abspath(source)):
            aliases.setdefault(alias, name)
    return aliases


def _label_values(path: str, name: str, cells: list[str]) -> tuple[np.ndarray, str, tuple]:
    """Float values (NaN for empty cells), the task type, and class names for words."""
    filled = [cell.strip() for cell in cells]
    try:
        values = np.array([float(cell) if cell else np.nan for cell in filled], np.float64)
    except ValueError:
        classes = tuple(sorted({cell for cell in filled if cell}))
        index = {value: number for number, value in enumerate(classes)}
        values = np.array([index[cell] if cell else np.nan for cell in filled], np.float64)
        return values, "discrete", classes
    if np.isinf(values).any():
        raise ValueError(f"{path}: label {name!r} holds infinite values")
    finite = values[np.isfinite(values)]
    kind = "discrete" if np.all(finite == np.round(finite)) else "continuous"
    return values, kind, ()


def _collect(path: str, frame_map: dict[str, tuple[int, int]],
             sources: Mapping[str, str] | None, recording: str | None
             ) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Row positions in the concatenated frames, and each label's cells (as written)."""
    header, rows = _rows(path)
    lowered = [name.lower() for name in header]
    frame_column = lowered.index("frame")
    recording_column = next((lowered.index(name) for name in RECORDING_COLUMNS
                             if name in lowered), None)
    label_columns = [index for index in range(len(header))
                     if index not in (frame_column, recording_column)]
    if not label_columns:
        raise ValueError(f"{path}: no label columns besides 'frame'; header {header}")
    if recording_column is None and recording is None:
        if len(frame_map) != 1:
            raise ValueError(f"{path}: no 'recording' column, and the embeddings hold "
                             f"{len(frame_map)} recordings; add the column, or list one labels "
                             "CSV per recording in the manifest's 'labels' column")
        recording = next(iter(frame_map))
    aliases = _aliases(frame_map, sources)
    positions = np.empty(len(rows), np.int64)
    for line, row in enumerate(rows, start=2):
        name = recording if recording_column is None else row[recording_column].strip()
        spellings = (name, os.path.basename(name), os.path.splitext(os.path.basename(name))[0])
        found = next((aliases[spelling] for spelling in spellings if spelling in aliases), None)
        if found is None:
            raise ValueError(f"{path}, line {line}: recording {name!r} is not among the "
                             f"embedded recordings {sorted(frame_map)}")
        name = found
        start, end = frame_map[name]
        try:
            frame = int(row[frame_column])
        except ValueError:
            raise ValueError(f"{path}, line {line}: frame {row[frame_column]!r} is not an "
                             "integer") from None
        if not 0 <= frame < end - start:
            raise ValueError(f"{path}, line {line}: frame {frame} is outside recording "
                             f"{name!r}, which has {end - start} frames")
        positions[line - 2] = start + frame
    if len(np.unique(positions)) != len(positions):
        raise ValueError(f"{path}: a frame of a recording is labelled twice")
    return positions, {header[column]: [row[column] for row in rows]
                       for column in label_columns}


def _labels_file(where: str, frame_map: dict[str, tuple[int, int]], positions: np.ndarray,
                 cells: dict[str, list[str]]) -> LabelsFile:
    total = max((end for _, end in frame_map.values()), default=0)
    labels, task_types = {}, {}
    for name, column in cells.items():
        values, kind, _ = _label_values(where, name, column)
        full = np.full(total, np.nan)
        full[positions] = values
        labels[name], task_types[name] = full, kind
    return LabelsFile(frame_number_map=frame_map, labels=labels, task_types=task_types)


def _frame_map(frame_number_map: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    return {str(name): (int(span[0]), int(span[1])) for name, span in frame_number_map.items()}


def read_labels_csv(path: str, frame_number_map: Mapping[str, Sequence[int]],
                    sources: Mapping[str, str] | None = None,
                    recording: str | None = None) -> LabelsFile:
    """Reads a labels CSV (either layout) onto the frames of `frame_number_map`.

    Args:
        path: the CSV file.
        frame_number_map: recording name → half-open (start, end), as the embeddings have it.
        sources: recording name → its source path (so that rows may name the file).
        recording: for a per-recording CSV (no `recording` column): the recording it
            labels (default: the only one in the map).

    Raises:
        ValueError: naming the file (and line): no frame column, an unknown recording,
            a frame outside the recording, a repeated frame, a bad number.
    """
    frame_map = _frame_map(frame_number_map)
    positions, cells = _collect(path, frame_map, sources, recording)
    return _labels_file(path, frame_map, positions, cells)


def read_labels_per_recording(paths: Mapping[str, str],
                              frame_number_map: Mapping[str, Sequence[int]]) -> LabelsFile:
    """Per-recording labels CSVs (recording name → CSV path) as one `LabelsFile`.

    Word classes are numbered over all files together, so they mean the same everywhere.
    """
    frame_map = _frame_map(frame_number_map)
    collected = [(path, *_collect(path, frame_map, None, name)) for name, path in paths.items()]
    names = list(dict.fromkeys(label for _, _, cells in collected for label in cells))
    positions = np.concatenate([rows for _, rows, _ in collected])
    cells = {label: [cell for _, rows, columns in collected
                     for cell in columns.get(label, [""] * len(rows))] for label in names}
    return _labels_file(", ".join(paths.values()), frame_map, positions, cells)


def load_labels(path: str, frame_number_map: Mapping[str, Sequence[int]] | None = None,
                sources: Mapping[str, str] | None = None) -> LabelsFile:
    """A labels `.npy` (the published layout) or a labels `.csv` (needs `frame_number_map`)."""
    if str(path).lower().endswith(".csv"):
        if frame_number_map is None:
            raise ValueError(f"{path}: a labels CSV needs the embeddings' frame_number_map")
        return read_labels_csv(path, frame_number_map, sources)
    return load_labels_file(path)
