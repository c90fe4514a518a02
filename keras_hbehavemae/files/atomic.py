"""Atomic writes: nothing half-written ever replaces a good file or folder.

- `write_atomically(path, write)` calls `write(temporary_path)` on a temporary file in the
  same folder, flushes it to disk, and renames it over `path` (`os.replace`, atomic on
  POSIX and Windows). If `write` fails or the process dies, `path` keeps its old content.
- `write_new_files_atomically({path: write, ...})` writes several new files the same way
  and publishes them without replacing anything: if any of them exists, nothing is
  written (`FileExistsError`).
- `check_output_is_not_input(output, flag, inputs)` refuses an output that is, holds or
  lies inside an input (input folders are read-only to the package).
- `write_folder_atomically(directory, write, ...)` builds a whole folder in a temporary
  sibling and renames it into place. A folder that is already there is replaced as a
  whole only if it is the same kind of output (or the caller passes `overwrite=True`);
  files are never mixed.

Example:

>>> import json, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "state.json")
>>> write_json_atomically(path, {"completed_epochs": 1})
>>> json.load(open(path))
{'completed_epochs': 1}
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

TEMPORARY_PREFIX = ".partial-"


def _fsync_directory(directory: str) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on every platform; the rename is still atomic
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomically(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Calls `write(temporary_path)`, then renames the temporary file to `path`.

    The temporary file keeps the file name as its ending (Keras checks for
    `.weights.h5`, numpy for `.npy`) and gets the permissions a plain `open` would give.
    If `write` fails, the temporary file is removed and the error propagates.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=TEMPORARY_PREFIX, suffix=f"-{os.path.basename(path)}")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file private
        os.replace(temporary, path)
        _fsync_directory(directory)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _publish_without_replacing(temporary: str, path: str) -> None:
    """Renames `temporary` to `path`, unless `path` exists (then FileExistsError).

    A hard link is the atomic "create if absent" of POSIX; where the file system has no
    hard links, a check and a rename stand in for it.
    """
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists; it was left as it is") from None
    except OSError:  # no hard links here (some network and FAT file systems)
        if os.path.lexists(path):
            raise FileExistsError(f"{path}: already exists; it was left as it is") from None
        os.replace(temporary, path)
    else:
        os.remove(temporary)


def write_new_files_atomically(writers: dict[str, Callable[[str], Any]]) -> list[str]:
    """Writes new files whole, or none of them; never replaces an existing file.

    Each `writers[path](temporary_path)` fills a temporary file next to `path`. Only when
    every one is written and flushed are they renamed into place, each only if its name
    is still free.

    Returns:
        The paths written, in the order given.

    Raises:
        FileExistsError: one of the paths exists (before or while publishing); nothing
            this call wrote is left behind.
    """
    paths = [os.fspath(path) for path in writers]
    for path in paths:
        if os.path.lexists(path):
            raise FileExistsError(f"{path}: already exists; it was left as it is")
    temporaries: dict[str, str] = {}
    published: list[str] = []
    try:
        for path, write in zip(paths, writers.values(), strict=True):
            directory = os.path.dirname(os.path.abspath(path))
            handle, temporary = tempfile.mkstemp(
                dir=directory, prefix=TEMPORARY_PREFIX, suffix=f"-{os.path.basename(path)}")
            os.close(handle)
            temporaries[path] = temporary
            write(temporary)
            with open(temporary, "rb") as file:
                os.fsync(file.fileno())
            os.chmod(temporary, 0o666 & ~_umask())
        for path in paths:
            _publish_without_replacing(temporaries[path], path)
            published.append(path)
        for directory in {os.path.dirname(os.path.abspath(path)) for path in paths}:
            _fsync_directory(directory)
    except BaseException:
        for path in published:  # all or nothing
            os.remove(path)
        raise
    finally:
        for temporary in temporaries.values():
            if os.path.exists(temporary):
                os.remove(temporary)
    return paths


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w") as file:
            file.write(text)

    write_atomically(path, write)


def write_json_atomically(path: str | os.PathLike, content: Any) -> None:
    write_text_atomically(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


def remove_partial_files(directory: str | os.PathLike) -> None:
    """Deletes temporary files and folders that a killed process left behind."""
    for entry in pathlib.Path(directory).iterdir():
        if entry.name.startswith(TEMPORARY_PREFIX):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def check_folder_replaceable(directory: str | os.PathLike, *,
                             is_same_kind: Callable[[pathlib.Path], bool], kind: str,
                             overwrite: bool = False, flag: str = "output folder") -> None:
    """Raises unless `write_folder_atomically` may write `directory` (call it early, to
    fail before the work that produces the folder's content).

    Raises:
        FileExistsError: `directory` is a file, or a non-empty folder that does not hold a
            `kind` (`is_same_kind`) and `overwrite` is False.
    """
    target = pathlib.Path(directory)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{flag} {str(target)!r}: is a file, not a folder; choose "
                              f"a new folder for the {kind}")
    occupied = target.is_dir() and any(target.iterdir())
    if occupied and not overwrite and not is_same_kind(target):
        raise FileExistsError(
            f"{flag} {str(target)!r}: the folder is not empty and does not hold a {kind}; "
            f"nothing was written. Choose a new or empty folder, or pass overwrite=True "
            "(--overwrite) to replace the whole folder")


def check_output_is_not_input(output: str | os.PathLike, output_flag: str,
                              inputs: dict[str, str | os.PathLike | None], *,
                              may_hold_inputs: bool = False) -> None:
    """Raises if an output would touch an input: the same path, a folder holding an input,
    or a path inside an input folder.

    `inputs` maps each input's flag to its path (None: not given). Input folders are
    read-only to the package, and replacing a folder that holds an input, even with
    `--overwrite`, would destroy the input. `may_hold_inputs=True` allows an output
    folder that holds an input (for an output that is written into, never replaced whole:
    a run folder).

    Raises:
        ValueError: naming both flags and paths.
    """
    def inside(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)

    target = os.path.realpath(os.fspath(output))
    for flag, path in inputs.items():
        if path is None or not os.path.lexists(os.fspath(path)):
            continue
        source = os.path.realpath(os.fspath(path))
        holds = inside(source, target) and (source == target or not may_hold_inputs)
        if holds or (os.path.isdir(source) and inside(target, source)):
            raise ValueError(
                f"{output_flag} {os.fspath(output)!r}: overlaps the input {flag} "
                f"{os.fspath(path)!r}; input folders and files are only read, never written "
                f"into. Choose an {output_flag} outside the input")


def write_folder_atomically(directory: str | os.PathLike, write: Callable[[pathlib.Path], Any],
                            *, is_same_kind: Callable[[pathlib.Path], bool], kind: str,
                            overwrite: bool = False, flag: str = "output folder") -> pathlib.Path:
    """Writes a whole folder through a temporary sibling, then renames it into place.

    Args:
        directory: the folder to create or replace.
        write: `write(temporary_folder)` fills the (empty, existing) temporary folder.
        is_same_kind: tells whether an existing folder holds this kind of output only (it
            may then be replaced as a whole).
        kind: what the folder is, for messages ("preset folder").
        overwrite: replace an existing non-empty folder whatever it holds.
        flag: the parameter or flag that named `directory`, for messages.

    Raises:
        FileExistsError: `directory` is a file, or a non-empty folder of something else
            and `overwrite` is False. Nothing was written.
    """
    target = pathlib.Path(directory)
    check_folder_replaceable(target, is_same_kind=is_same_kind, kind=kind, overwrite=overwrite,
                             flag=flag)
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    temporary = pathlib.Path(tempfile.mkdtemp(dir=parent,
                                              prefix=f"{TEMPORARY_PREFIX}{target.name}-"))
    retired = None
    try:
        write(temporary)
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp makes the folder private
        if target.is_dir():
            retired = pathlib.Path(tempfile.mkdtemp(
                dir=parent, prefix=f"{TEMPORARY_PREFIX}{target.name}-old-"))
            os.replace(target, retired / target.name)
        os.replace(temporary, target)
        _fsync_directory(str(parent))
    except BaseException:
        if retired is not None and not target.exists():
            os.replace(retired / target.name, target)  # put the old folder back
        raise
    finally:
        for leftover in (temporary, retired):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover)
    return target
