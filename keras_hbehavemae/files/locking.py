"""One writer per folder: an exclusive lock with a record of who holds it.

`FolderLock(directory)` takes an exclusive `flock` on `directory/LOCK_FILE` and writes the
holder record (PID, host, start time, command line) into that file. A second process that
tries to take the lock stops at once with `FolderInUseError`, which names the folder and
the holder. The kernel releases a `flock` when its process dies, even by `kill -9`; the
record such a process leaves behind is then stale, and the next holder overwrites it.
Within one process the lock is re-entrant: the pretrain command holds it while it
prepares the run's data, and `run_pretraining` takes it again for the training itself.

The lock file stays in the folder (removing it would let two processes lock two
different files of the same name); on release its record is emptied.

Example:

>>> import tempfile
>>> directory = tempfile.mkdtemp()
>>> with FolderLock(directory) as lock:
...     holder = read_holder(directory)
>>> holder["pid"] == os.getpid(), read_holder(directory)
(True, None)
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import threading

LOCK_FILE = "run.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None
    import msvcrt


class FolderInUseError(RuntimeError):
    """Another process holds the folder's lock."""


_held: dict[str, list] = {}  # real path -> [open lock file, depth], in this process
_held_guard = threading.Lock()


def _try_lock(file) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):
        return False
    except OSError as error:  # EAGAIN / EACCES on some systems
        if error.errno in (11, 13, 35):
            return False
        raise
    return True


def _unlock(file) -> None:
    if fcntl is not None:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    else:  # pragma: no cover
        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)


def read_holder(directory: str | os.PathLike) -> dict | None:
    """The holder record in `directory`'s lock file: None when there is none (never locked,
    released, or a record being written this instant)."""
    try:
        with open(os.path.join(directory, LOCK_FILE)) as file:
            text = file.read()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def describe_holder(record: dict | None) -> str:
    """`"process 123 on host h (started 2026-..., command ...)"`, or a neutral phrase."""
    if not record:
        return "another process (its record is not written yet)"
    text = f"process {record.get('pid')} on host {record.get('host')!r}"
    details = [f"started {record['started']}"] if record.get("started") else []
    if record.get("command"):
        details.append(f"command: {record['command']}")
    return text + (f" ({'; '.join(details)})" if details else "")


class FolderLock:
    """Exclusive lock of `directory` (a context manager; also `acquire()` / `release()`).

    Args:
        directory: the folder (created if needed).
        flag: the parameter or flag that named it, for messages.
        what: what the folder is, for messages.

    Raises:
        FolderInUseError: from `acquire`, when another process holds the lock; the message
            names the folder and the holder (PID, host, start time, command).
    """

    def __init__(self, directory: str | os.PathLike, *, flag: str = "--output_dir",
                 what: str = "run folder"):
        self.directory = os.fspath(directory)
        self.flag = flag
        self.what = what
        self._key: str | None = None

    def _open(self):
        try:
            os.makedirs(self.directory, exist_ok=True)
            return open(os.path.join(self.directory, LOCK_FILE), "a+")  # noqa: SIM115
        except OSError as error:
            raise OSError(
                f"{self.flag} {self.directory!r} is not a writable folder "
                f"({error.strerror or error}); choose another {self.flag}") from None

    def acquire(self) -> FolderLock:
        """Takes the lock (see the class); returns self."""
        key = os.path.realpath(self.directory)
        with _held_guard:
            if key in _held:  # re-entrant within this process
                _held[key][1] += 1
                self._key = key
                return self
            file = self._open()
            if not _try_lock(file):
                file.close()
                holder = describe_holder(read_holder(self.directory))
                raise FolderInUseError(
                    f"{self.flag} {self.directory!r}: this {self.what} is in use by {holder}; "
                    "one run writes to a folder at a time. Wait for it to finish (or stop "
                    f"it), or choose another {self.flag}")
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "command": " ".join(sys.argv),
            }
            file.seek(0)
            file.truncate()
            file.write(json.dumps(record, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())
            _held[key] = [file, 1]
            self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        with _held_guard:
            entry = _held.get(self._key)
            self._key, key = None, self._key
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
            file = entry[0]
            try:
                file.seek(0)
                file.truncate()
                file.flush()
            finally:
                _unlock(file)
                file.close()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
