"""Many pose files: which files `--data` names, their sequence names, and the seeded split.

`--data` is one of:

- a folder: its files with the source software's suffixes (`pose_io.SUFFIXES`), sorted;
- a glob such as `"sessions/*.h5"` (quote it, so the shell leaves it to us), sorted;
- a manifest CSV, recognised by its header's `path` column: `path` (required; relative
  paths are relative to the manifest's folder), `split` (optional: `train`, or `test` /
  `held_out` / `val` for the held-out split; empty cells are split by the seed) and
  `labels` (optional: a per-frame labels CSV of that recording, for `hbehavemae evaluate`);
- one file.

Each file is one sequence, named after its file name without the suffix (or, when names
repeat, after its path). Reading never writes anything next to the files.

Example:

>>> files = [PoseFile(f"s{index}.h5", f"s{index}") for index in range(10)]
>>> [file.name for file in split_files(files, 0.2, seed=0) if file.split == "test"]
['s4', 's6']
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
from collections.abc import Sequence

import numpy as np

from keras_hbehavemae.data.pose_io import SUFFIXES, source_software_name
from keras_hbehavemae.errors import invalid

TRAIN, HELD_OUT = "train", "test"
_SPLIT_NAMES = {"train": TRAIN, "test": HELD_OUT, "held_out": HELD_OUT, "held-out": HELD_OUT,
                "val": HELD_OUT, "validation": HELD_OUT}
_GLOB_CHARACTERS = "*?["


@dataclasses.dataclass(frozen=True)
class PoseFile:
    """One recording file: its path, sequence name, split (None: unassigned), labels CSV."""

    path: str
    name: str
    split: str | None = None
    labels: str | None = None


def is_manifest(path: str) -> bool:
    """True for a CSV file whose header row has a `path` column."""
    if not (os.path.isfile(path) and path.lower().endswith(".csv")):
        return False
    with open(path, newline="", encoding="utf-8-sig") as file:
        header = next(csv.reader(file), [])
    return "path" in [cell.strip().lower() for cell in header]


def _read_manifest(path: str) -> list[tuple[str, str | None, str | None]]:
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as file:
        rows = list(csv.DictReader(file))
    entries = []
    for line, row in enumerate(rows, start=2):
        row = {str(key).strip().lower(): (value or "").strip() for key, value in row.items()
               if key is not None}
        unknown = sorted(set(row) - {"path", "split", "labels"})
        if unknown:
            raise ValueError(f"{path}: unknown manifest columns {unknown}; the columns are "
                             "path, split (optional) and labels (optional)")
        if not row.get("path"):
            raise ValueError(f"{path}, line {line}: the path cell is empty")
        split = row.get("split") or None
        if split is not None and split.lower() not in _SPLIT_NAMES:
            raise ValueError(f"{path}, line {line}: split {split!r} is invalid: must be "
                             f"empty or one of {sorted(_SPLIT_NAMES)}")
        labels = row.get("labels") or None
        resolve = lambda value: value if os.path.isabs(value) else os.path.join(  # noqa: E731
            folder, value)
        entries.append((resolve(row["path"]), None if split is None else
                        _SPLIT_NAMES[split.lower()], None if labels is None else resolve(labels)))
    if not entries:
        raise ValueError(f"{path}: the manifest lists no files")
    return entries


def sequence_names(paths: Sequence[str]) -> list[str]:
    """One unique name per file: the file name without suffix, or the path where they repeat
    (with the suffix where even that repeats).

    Example:
        >>> sequence_names(["a/s1.h5", "b/s1.h5", "b/s2.h5"])
        ['a__s1', 'b__s1', 's2']
        >>> sequence_names(["a/s1.h5", "a/s1.csv"])
        ['s1.h5', 's1.csv']
    """
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    repeated = {stem for stem in stems if stems.count(stem) > 1}
    if not repeated:
        return stems
    common = os.path.commonpath([os.path.abspath(path) for path in paths]) if len(
        paths) > 1 else ""
    names = []
    for path, stem in zip(paths, stems, strict=True):
        if stem not in repeated:
            names.append(stem)
            continue
        relative = os.path.relpath(os.path.abspath(path), common) if common else path
        names.append(os.path.splitext(relative)[0].replace(os.sep, "__"))
    clashing = {name for name in names if names.count(name) > 1}  # same stem, same folder
    names = [os.path.relpath(os.path.abspath(path), common).replace(os.sep, "__")
             if name in clashing else name for path, name in zip(paths, names, strict=True)]
    if len(set(names)) != len(names):
        raise ValueError(f"two files give the same sequence name: {sorted(names)}")
    return names


def list_pose_files(data: str, source_software: str, parameter: str = "--data"
                    ) -> list[PoseFile]:
    """The files `data` names (see the module docstring), in a fixed order.

    Raises:
        FileNotFoundError: nothing matches, or the path does not exist.
        ValueError: a bad manifest, or an unknown source software.
    """
    software = source_software_name(source_software, f"--source_software (for {parameter} "
                                    f"{data!r})")
    if not isinstance(data, str) or not data.strip():
        raise invalid(parameter, data, "give a folder, a glob, a manifest CSV or a file")
    suffixes = SUFFIXES[software]
    entries: list[tuple[str, str | None, str | None]]
    if any(character in data for character in _GLOB_CHARACTERS) and not os.path.exists(data):
        matches = sorted(path for path in glob.glob(data) if os.path.isfile(path))
        if not matches:
            raise FileNotFoundError(f"{parameter} {data!r}: the glob matches no file")
        entries = [(path, None, None) for path in matches]
    elif os.path.isdir(data):
        matches = sorted(os.path.join(data, entry) for entry in os.listdir(data)
                         if entry.lower().endswith(suffixes)
                         and os.path.isfile(os.path.join(data, entry)))
        if not matches:
            raise FileNotFoundError(f"{parameter} {data!r}: the folder has no "
                                    f"{' or '.join(suffixes)} files (--source_software "
                                    f"{software})")
        entries = [(path, None, None) for path in matches]
    elif is_manifest(data):
        entries = _read_manifest(data)
    elif os.path.isfile(data):
        entries = [(data, None, None)]
    else:
        raise FileNotFoundError(f"{parameter} {data!r}: no such file, folder or glob match")
    names = sequence_names([path for path, _, _ in entries])
    return [PoseFile(path, name, split, labels)
            for (path, split, labels), name in zip(entries, names, strict=True)]


def split_files(files: Sequence[PoseFile], held_out_fraction: float, seed: int
                ) -> list[PoseFile]:
    """Assigns the unassigned files to `train` or `test` (held out), seeded, by file.

    round(fraction × unassigned) files are held out, at least one when the fraction is
    positive and there are two or more files, and never all of them.

    Raises:
        ValueError: a fraction outside [0, 1).
    """
    if not 0 <= held_out_fraction < 1:
        raise invalid("--held_out_fraction", held_out_fraction, "must lie in [0, 1)")
    open_indices = [index for index, file in enumerate(files) if file.split is None]
    count = int(round(held_out_fraction * len(open_indices)))
    if held_out_fraction > 0 and len(open_indices) >= 2:
        count = max(count, 1)
    count = min(count, max(len(open_indices) - 1, 0))
    order = np.random.default_rng(seed).permutation(len(open_indices))
    held_out = {open_indices[position] for position in order[:count]}
    result = []
    for index, file in enumerate(files):
        split = file.split or (HELD_OUT if index in held_out else TRAIN)
        result.append(dataclasses.replace(file, split=split))
    return result
