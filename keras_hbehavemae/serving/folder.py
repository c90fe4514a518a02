"""The export folder: TensorFlow Serving's layout, written whole or not at all.

An export folder `OUTPUT` holds one SavedModel per version, `OUTPUT/<version>/` (a
positive integer), which is the layout TensorFlow Serving watches
(`--model_base_path=OUTPUT`): it serves the highest version and picks up new ones.

Rules for writing version V into `OUTPUT`:

- `OUTPUT` absent or empty: created, with `OUTPUT/V`.
- `OUTPUT` an export folder (only version folders, each a SavedModel): `OUTPUT/V` is
  added, or replaced as a whole if it exists; the other versions stay.
- `OUTPUT` anything else (the user's files, an export in an older single-folder layout):
  refused, and nothing is written, unless `overwrite=True` (`--overwrite`), which
  replaces `OUTPUT` as a whole by a folder holding only `V`.

`OUTPUT/V` is built in a temporary sibling (`OUTPUT/.partial-V-...`, a name TensorFlow
Serving ignores) and renamed into place, so a server never sees half a version.

Example:

>>> import pathlib, tempfile
>>> output = pathlib.Path(tempfile.mkdtemp()) / "exported"
>>> check_export_folder(output, version=1)  # absent: fine
>>> output.mkdir(); _ = (output / "notes.txt").write_text("mine")
>>> check_export_folder(output, version=1)
Traceback (most recent call last):
...
FileExistsError: --output_dir '...exported': the folder is not empty and is not an export folder ...
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

from keras_hbehavemae.errors import invalid
from keras_hbehavemae.files.atomic import TEMPORARY_PREFIX, write_folder_atomically

#: What a SavedModel folder holds (`tf.saved_model.save`, plus our `assets.extra`).
SAVED_MODEL_ENTRIES = frozenset({"saved_model.pb", "variables", "assets", "assets.extra",
                                 "fingerprint.pb"})
DEFAULT_VERSION = 1


def check_version(version) -> int:
    """`version` as an int; ValueError unless it is a positive integer."""
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise invalid("version", version, "must be a positive integer (the SavedModel's "
                      "TensorFlow Serving version)")
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise invalid("version", version, "must be a positive integer (the SavedModel's "
                      "TensorFlow Serving version)")
    return int(text)


def _entries(folder: pathlib.Path) -> list[pathlib.Path]:
    return [entry for entry in folder.iterdir() if not entry.name.startswith(TEMPORARY_PREFIX)]


def is_saved_model_folder(folder: pathlib.Path) -> bool:
    """True if `folder` is a SavedModel and holds nothing else."""
    names = {entry.name for entry in _entries(folder)}
    return "saved_model.pb" in names and names <= SAVED_MODEL_ENTRIES


def is_export_folder(folder: pathlib.Path) -> bool:
    """True if `folder` holds version folders (SavedModels) and nothing else."""
    entries = _entries(folder)
    return bool(entries) and all(
        entry.is_dir() and not entry.is_symlink() and entry.name.isdigit()
        and is_saved_model_folder(entry) for entry in entries)


def check_export_folder(directory, version: int, overwrite: bool = False,
                        flag: str = "--output_dir") -> None:
    """Raises unless version `version` may be written into `directory` (see the module).

    Raises:
        FileExistsError: `directory` is a file, or a non-empty folder that is not an
            export folder and `overwrite` is False.
    """
    directory = pathlib.Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{flag} {str(directory)!r}: is a file, not a folder; choose a "
                              "new folder for the export")
    if overwrite or not directory.is_dir() or not _entries(directory):
        return
    if not is_export_folder(directory):
        old_layout = is_saved_model_folder(directory)
        raise FileExistsError(
            f"{flag} {str(directory)!r}: the folder is not empty and is not an export folder "
            "(version folders 1, 2, ... of SavedModels)"
            + (", it holds a SavedModel in the older single-folder layout" if old_layout
               else "") + "; nothing was written. Choose a new or empty folder, or pass "
            "--overwrite (overwrite=True) to replace the whole folder")


def write_export_version(directory, version: int, write: Callable[[pathlib.Path], None], *,
                         overwrite: bool = False, flag: str = "--output_dir") -> pathlib.Path:
    """Writes `directory/<version>` through `write(temporary_folder)`; returns that folder.

    With `overwrite` and a non-empty `directory`, the whole of `directory` is replaced by a
    folder holding only this version.
    """
    directory = pathlib.Path(directory)
    check_export_folder(directory, version, overwrite, flag)
    name = str(version)
    if overwrite and directory.is_dir() and _entries(directory):
        write_folder_atomically(directory, lambda folder: _write_into(folder / name, write),
                                is_same_kind=lambda _: True, kind="export folder",
                                overwrite=True, flag=flag)
        return directory / name
    directory.mkdir(parents=True, exist_ok=True)
    return write_folder_atomically(directory / name, write, is_same_kind=is_saved_model_folder,
                                   kind="SavedModel", flag=f"{flag} version {name}")


def _write_into(folder: pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
    os.makedirs(folder)
    write(folder)
