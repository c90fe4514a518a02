"""Reading `.npy` and `.npz` files: the header is checked against the data before use.

A `.npy` header states the shape and dtype of the array that follows. `np.load` trusts it
and allocates the array first, so a damaged or forged header claiming a huge shape ends in
a `MemoryError`, and a short file in an error without the file name. Here the size the
header promises is compared with the bytes the file (or `.npz` member) holds before
anything is allocated, and every error names the file and the rule. An array of Python
objects (a saved dict or list) is pickled after the header; it is read with the
restricted unpickler only where the caller accepts objects (`objects=True`).

Example:

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "example.npy")
>>> np.save(path, np.arange(6.0).reshape(2, 3))
>>> read_npy_header(path).shape
(2, 3)
>>> read_npy(path)
array([[0., 1., 2.],
       [3., 4., 5.]])
>>> with open(path, "r+b") as file:
...     _ = file.truncate(150)
>>> read_npy(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: ...example.npy: truncated: its header promises an array of shape (2, 3) ...
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

from keras_hbehavemae.files.unpickling import LimitedReader, describe, unpickle

__all__ = ["NpyHeader", "existing_file", "npz_names", "read_npy", "read_npy_header", "read_npz"]

_MAGIC = b"\x93NUMPY"
_CHUNK = 1 << 24  # bytes read at a time where a size is not known to be real


@dataclasses.dataclass(frozen=True)
class NpyHeader:
    """What a `.npy` header states, and where its data lies.

    Attributes:
        shape: the array's shape.
        fortran_order: whether the data is in column-major order.
        dtype: the array's dtype (`object` for pickled Python objects).
        data_offset: the byte position where the data starts.
        data_size: the number of bytes after the header.
    """

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    data_offset: int
    data_size: int

    @property
    def data_bytes(self) -> int:
        """The bytes a numeric array of this header needs."""
        return math.prod(self.shape) * self.dtype.itemsize


def existing_file(path: str | os.PathLike[str]) -> str:
    """`path` as a string, after checking that it names a file (not a folder)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: a folder, where a file is expected")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    return path


def _not_npy(start: bytes) -> str:
    if not start:
        return "the file is empty"
    if start.startswith(b"PK"):
        return "a zip archive (an .npz file?), not a .npy file"
    if start.startswith(b"\x80"):
        return "a pickle, not a .npy file"
    return "not a NumPy .npy file (no .npy magic string)"


def _parse_header(stream: BinaryIO, size: int, where: str) -> NpyHeader:
    """Reads the magic string and header from `stream`, whose content is `size` bytes."""
    start = stream.read(len(_MAGIC))
    if start != _MAGIC:
        raise ValueError(f"{where}: {_not_npy(start)}")
    version = stream.read(2)
    try:
        if version == b"\x01\x00":
            header = np.lib.format.read_array_header_1_0(stream)
        elif version == b"\x02\x00":
            header = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy format version {tuple(version)} is not supported "
                             "(versions 1.0 and 2.0 are)")
    except ValueError as error:
        raise ValueError(f"{where}: not a NumPy .npy file: damaged header ({error})") from None
    shape, fortran_order, dtype = header
    offset = stream.tell()
    result = NpyHeader(tuple(shape), bool(fortran_order), dtype, offset, size - offset)
    if dtype.hasobject:
        if dtype != np.dtype(object):
            raise ValueError(f"{where}: dtype {dtype} mixes Python objects with other fields; "
                             "only plain arrays and arrays of objects are read")
        return result
    if result.data_size < result.data_bytes:
        raise ValueError(
            f"{where}: truncated: its header promises an array of shape {result.shape} and "
            f"dtype {dtype} ({result.data_bytes} bytes), but only {result.data_size} bytes "
            "of data follow it; the file is damaged"
        )
    if result.data_size > result.data_bytes:
        raise ValueError(
            f"{where}: {result.data_size - result.data_bytes} bytes follow the array of "
            f"shape {result.shape} and dtype {dtype} that its header describes; the file is "
            "damaged"
        )
    return result


def _open(path: str | os.PathLike[str]) -> tuple[str, BinaryIO, int]:
    path = existing_file(path)
    file = open(path, "rb")  # noqa: SIM115 - closed by the caller
    return path, file, os.fstat(file.fileno()).st_size


def read_npy_header(path: str | os.PathLike[str]) -> NpyHeader:
    """Reads a `.npy` file's header and checks the data size it promises.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if the file is empty, not a `.npy` file, or holds fewer or more data
            bytes than its header promises (for a numeric array); the message names it.
    """
    path, file, size = _open(path)
    with file:
        return _parse_header(file, size, path)


def _pickled_objects(stream: BinaryIO, header: NpyHeader, where: str) -> np.ndarray:
    reader = LimitedReader(stream, header.data_size)
    array = unpickle(reader, where)
    if not (isinstance(array, np.ndarray) and array.dtype.hasobject):
        raise ValueError(f"{where}: the pickled payload is {describe(array)}, "
                         "not the array of objects its header describes")
    if array.shape != header.shape:
        raise ValueError(f"{where}: the pickled array has shape {array.shape}, its header "
                         f"says {header.shape}")
    if reader.remaining:
        raise ValueError(f"{where}: {reader.remaining} bytes follow the pickled array; the "
                         "file is damaged")
    return array


def _numeric(data: bytes | bytearray, header: NpyHeader) -> np.ndarray:
    array = np.frombuffer(data, dtype=header.dtype, count=math.prod(header.shape))
    return array.reshape(header.shape, order="F" if header.fortran_order else "C")


def read_npy(path: str | os.PathLike[str], objects: bool = False) -> np.ndarray:
    """Reads a `.npy` file after checking its header against its size.

    Args:
        path: the file.
        objects: accept an array of Python objects (a saved dict or list), unpickled with
            the restricted unpickler. Otherwise such a file is an error.

    Returns:
        The array (a 0-d object array for a saved dict; see `pickle_files.load_pickled_file`
        to unwrap it).

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: for an empty, truncated or damaged file, a header whose shape does not
            fit the file, objects where `objects` is False, or a pickle that names a
            global outside the allow-list (`UnsafePickleError`); the message names the file.
    """
    path, file, size = _open(path)
    with file:
        header = _parse_header(file, size, path)
        if header.dtype.hasobject:
            if not objects:
                raise ValueError(f"{path}: holds pickled Python objects (an object array of "
                                 f"shape {header.shape}); a numeric array is expected here")
            return _pickled_objects(file, header, path)
        try:
            data = bytearray(header.data_bytes)
        except MemoryError:
            raise ValueError(f"{path}: the array of shape {header.shape} and dtype "
                             f"{header.dtype} ({header.data_bytes} bytes) does not fit in "
                             "memory") from None
        if file.readinto(data) != len(data):
            raise ValueError(f"{path}: truncated while it was read")
        return _numeric(data, header)


def _read_exactly(stream: BinaryIO, size: int, where: str) -> bytearray:
    """`size` bytes, read in chunks so that a size that is not real allocates nothing."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(_CHUNK, size - len(data)))
        if not chunk:
            raise ValueError(f"{where}: truncated: {size} bytes of array data expected, "
                             f"{len(data)} found")
        data += chunk
    return data


def _npz_members(archive: zipfile.ZipFile, path: str) -> dict[str, zipfile.ZipInfo]:
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ValueError(f"{path}: member {info.filename!r} is not a .npy array, so this "
                             "is not an .npz archive")
        members[info.filename[: -len(".npy")]] = info
    return members


def _open_npz(path: str | os.PathLike[str]) -> tuple[str, zipfile.ZipFile]:
    path = existing_file(path)
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty; expected an .npz archive")
    try:
        return path, zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path}: not a readable .npz archive ({error})") from None


def npz_names(path: str | os.PathLike[str]) -> list[str]:
    """The array names in an `.npz` archive, in archive order."""
    path, archive = _open_npz(path)
    with archive:
        return list(_npz_members(archive, path))


def read_npz(path: str | os.PathLike[str], names: Sequence[str] | None = None
             ) -> dict[str, np.ndarray]:
    """Reads numeric arrays from an `.npz` archive, each header checked against its size.

    Args:
        path: the archive.
        names: the arrays to read (default: all).

    Returns:
        name → array, in archive order.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: for an empty, truncated or damaged archive, a member that is not a
            numeric `.npy` array (pickled objects are refused), or a missing name.
    """
    path, archive = _open_npz(path)
    arrays = {}
    with archive:
        members = _npz_members(archive, path)
        missing = [name for name in names or () if name not in members]
        if missing:
            raise ValueError(f"{path}: no arrays named {missing}; it holds {list(members)}")
        for name, info in members.items():
            if names is not None and name not in names:
                continue
            where = f"{path}, array {name!r}"
            try:
                with archive.open(info) as member:
                    header = _parse_header(member, info.file_size, where)
                    if header.dtype.hasobject:
                        raise ValueError(f"{where}: holds pickled Python objects; only numeric "
                                         "arrays are read from an .npz archive")
                    arrays[name] = _numeric(
                        _read_exactly(member, header.data_bytes, where), header)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                raise ValueError(f"{path}: not a readable .npz archive ({error})") from None
    return arrays
