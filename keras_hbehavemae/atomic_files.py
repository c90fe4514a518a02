"""Atomic file writes: nothing half-written ever replaces a good file.

`write_atomically(path, write)` calls `write(temporary_path)` on a temporary file in the
same folder, flushes it to disk, and renames it over `path` (`os.replace`, atomic on
POSIX and Windows). If `write` fails or the process dies, `path` keeps its old content.

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
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes the file private
        os.replace(temporary, path)
        _fsync_directory(directory)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w") as file:
            file.write(text)

    write_atomically(path, write)


def write_json_atomically(path: str | os.PathLike, content: Any) -> None:
    write_text_atomically(path, json.dumps(content, indent=2, sort_keys=True) + "\n")
