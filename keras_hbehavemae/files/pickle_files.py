"""Pickled data files: `.npy` object arrays, plain pickles and joblib files, no code run.

`load_pickled_file` reads what the published datasets ship (a `*.npy` name, or content
starting like a `.npy` file, is read as one; anything else as a pickle or joblib file):

| content | read by |
|---|---|
| a `.npy` file (a saved dict, list or array) | `npy.read_npy`, objects unpickled |
| a pickle (protocol 2 or later) | the restricted unpickler |
| a joblib file (the hBABEL `*.pth.tar` files) | the restricted unpickler, joblib's frames |

A pickle or joblib file may be uncompressed, or compressed with zlib, gzip, bz2, xz or lzma.

joblib writes a pickle in which each NumPy array is a `joblib.numpy_pickle.NumpyArrayWrapper`
object whose state gives the shape, order and dtype; the array's raw bytes follow that
object in the file, outside the pickle opcodes (after a padding byte and padding, when the
state names an alignment). An array of Python objects follows as a nested pickle. The
whole stream may be compressed. Here the wrapper is a stand-in that reads those bytes from
the stream when the pickle sets its state, so joblib is neither needed nor run. lz4 and
the pre-0.9.3 joblib format are refused with an error naming the file.

Example:

>>> import os, pickle, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "example.pkl")
>>> with open(path, "wb") as file:
...     pickle.dump([{"poses": np.zeros(2)}], file)
>>> load_pickled_file(path)
[{'poses': array([0., 0.])}]
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import zlib
from typing import Any, BinaryIO

import numpy as np

from keras_hbehavemae.files import numpy_rebuild
from keras_hbehavemae.files.npy import existing_file, read_npy
from keras_hbehavemae.files.unpickling import (
    ARRAYS_AND_CONTAINERS,
    LimitedReader,
    RestrictedUnpickler,
    SealedClass,
    unpickle,
)

__all__ = ["load_pickled_file", "read_pickle_file"]

_CHUNK = 1 << 24  # the most bytes decompressed or allocated ahead of real data
_FRAME_KEYS = frozenset(("subclass", "shape", "order", "dtype"))
_OPTIONAL_FRAME_KEYS = frozenset(("allow_mmap", "numpy_array_alignment_bytes"))

# (magic prefix, format) of compressed joblib files this reader refuses.
_REFUSED = ((b"\x04\x22\x4d\x18", "lz4"), (b"ZF", "the pre-0.9.3 joblib format"))


class _Inflating:
    """A zlib (`wbits=15`) or gzip (`wbits=31`) stream, decompressed as it is read."""

    def __init__(self, file: BinaryIO, wbits: int) -> None:
        self._file = file
        self._inflater = zlib.decompressobj(wbits)
        self._buffer = b""
        self._position = 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) - self._position < size and not self._inflater.eof:
            data = self._inflater.unconsumed_tail or self._file.read(_CHUNK)
            if not data:
                raise EOFError("the compressed stream ends before its end marker")
            self._buffer = self._buffer[self._position:] + self._inflater.decompress(data, _CHUNK)
            self._position = 0
            if self._inflater.eof and (self._inflater.unused_data or self._file.read(1)):
                raise ValueError("data follows the end of the compressed stream")
        result = self._buffer[self._position: self._position + size]
        self._position += len(result)
        return result


class _Exact(io.RawIOBase):
    """A decompressing stream read exactly as asked, in chunks: no `peek`, and nothing
    allocated ahead of the data that is really there."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError("an unbounded read of a compressed stream")
        chunks, wanted = [], size
        while wanted:
            chunk = self._stream.read(min(wanted, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)

    def readline(self, size: int | None = -1) -> bytes:
        limit = _CHUNK if size is None or size < 0 else min(size, _CHUNK)
        line = bytearray()
        while len(line) < limit and not line.endswith(b"\n"):
            byte = self.read(1)
            if not byte:
                break
            line += byte
        return bytes(line)


def _stream(file: BinaryIO, size: int, path: str) -> Any:
    """The pickle stream of an opened pickle or joblib file (decompressing it)."""
    start = file.read(8)
    file.seek(0)
    if not start:
        raise ValueError(f"{path}: the file is empty")
    if start.startswith(b"\x80"):
        return LimitedReader(file, size)
    if start[:1] == b"\x78" and len(start) > 1 and (start[0] << 8 | start[1]) % 31 == 0:
        return _Exact(_Inflating(file, wbits=15))
    if start.startswith(b"\x1f\x8b"):
        return _Exact(_Inflating(file, wbits=31))
    if start.startswith(b"BZ"):
        return _Exact(bz2.BZ2File(file))
    if start.startswith(b"\xfd7zXZ"):
        return _Exact(lzma.LZMAFile(file, format=lzma.FORMAT_XZ))
    if start.startswith(b"\x5d\x00"):
        return _Exact(lzma.LZMAFile(file, format=lzma.FORMAT_ALONE))
    for magic, name in _REFUSED:
        if start.startswith(magic):
            raise ValueError(
                f"{path}: a joblib file in {name}, which this reader does not support (it "
                "reads uncompressed, zlib, gzip, bz2, xz and lzma joblib files); re-save it "
                "uncompressed, with joblib.dump(joblib.load(path), new_path), where you "
                "trust the file")
    if start.startswith(b"PK"):
        raise ValueError(f"{path}: a zip archive (an .npz file or a torch.save checkpoint), "
                         "not a pickle: expected a .npy file, a pickle or a joblib file")
    raise ValueError(f"{path}: not a .npy file, a pickle (protocol 2 or later) or a joblib "
                     "file")


def _read_exactly(stream: Any, size: int) -> bytearray:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(_CHUNK, size - len(data)))
        if not chunk:
            raise EOFError(f"joblib array data ends after {len(data)} of {size} bytes")
        data += chunk
    return data


def _framed_array(stream: Any, state: Any) -> np.ndarray:
    """Reads the array that a joblib `NumpyArrayWrapper` with `state` announces."""
    if not (isinstance(state, dict) and _FRAME_KEYS <= set(state)
            and set(state) <= _FRAME_KEYS | _OPTIONAL_FRAME_KEYS):
        raise ValueError(f"unexpected joblib array frame {state!r}")
    if state["subclass"] is not numpy_rebuild.NDARRAY:
        raise ValueError(f"joblib array of class {state['subclass']!r} is not allowed")
    dtype = numpy_rebuild.dtype_of(state["dtype"])
    shape, count = numpy_rebuild.element_count(state["shape"])
    order = state["order"]
    if order not in ("C", "F"):
        raise ValueError(f"joblib array order {order!r} is not 'C' or 'F'")
    if dtype.hasobject:  # joblib pickles an object array whole, right after its frame
        array = RestrictedUnpickler(stream, ARRAYS_AND_CONTAINERS).load()
        if not (isinstance(array, np.ndarray) and array.dtype.hasobject
                and array.shape == shape):
            raise ValueError(f"joblib object array of shape {shape} not found after its frame")
        return array
    alignment = state.get("numpy_array_alignment_bytes")
    if alignment is not None:
        padding = stream.read(1)
        if not padding or padding[0] > alignment or len(stream.read(padding[0])) != padding[0]:
            raise ValueError("damaged joblib array padding")
    if isinstance(stream, LimitedReader) and stream.remaining < count * dtype.itemsize:
        raise EOFError(f"a joblib array of shape {shape} and dtype {dtype} needs "
                       f"{count * dtype.itemsize} bytes, {stream.remaining} are left")
    array = np.frombuffer(_read_exactly(stream, count * dtype.itemsize), dtype, count)
    if order == "F":
        array = array.reshape(shape[::-1]).transpose()  # Fortran order: the axes reversed
    return numpy_rebuild.native(array.reshape(shape))


def _array_frame_class(stream: Any) -> type:
    """joblib's `NumpyArrayWrapper`, as a stand-in bound to the stream it reads from."""

    class NumpyArrayWrapper(numpy_rebuild.PendingArray, metaclass=SealedClass):
        def __setstate__(self, state: Any) -> None:
            self.array = _framed_array(stream, state)

    return NumpyArrayWrapper


def read_pickle_file(path: str | os.PathLike[str]) -> Any:
    """Reads a pickle or joblib file with the restricted unpickler (see the module docstring).

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: for an empty, truncated or damaged file, a format that is not read, or
            a pickle that names a global outside the allow-list (`UnsafePickleError`);
            the message names the file.
    """
    path = existing_file(path)
    with open(path, "rb") as file:
        stream = _stream(file, os.fstat(file.fileno()).st_size, path)
        allow_list = ARRAYS_AND_CONTAINERS.extended(
            "pickle and joblib files (plain containers and NumPy arrays)",
            {("joblib.numpy_pickle", "NumpyArrayWrapper"): _array_frame_class(stream)})
        content = unpickle(stream, path, allow_list)
        try:
            rest = stream.read(1)
        except Exception as error:  # noqa: BLE001 - a damaged compressed tail
            raise ValueError(f"{path}: damaged after its pickle ({error})") from None
        if rest:
            raise ValueError(f"{path}: data follows the end of its pickle; the file is damaged "
                             "(or holds several pickles)")
    return content


def load_pickled_file(path: str | os.PathLike[str]) -> Any:
    """Reads a pickled data file: a `.npy` file, a pickle or a joblib file.

    A file named `*.npy`, or starting like one, is read as a `.npy` file; any other as a
    pickle or joblib file.

    Only plain containers (dict, list, tuple, set, ...), numbers, strings and NumPy arrays,
    dtypes and scalars are rebuilt; nothing in the file is executed. A `.npy` file holding
    a 0-d object array (a saved dict) is unwrapped, so the dict itself comes back, as
    `np.load(path, allow_pickle=True).item()` would give. A numeric `.npy` file gives its
    array.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: for an empty, truncated or damaged file, a file that is none of these,
            or a pickle that names a global outside the allow-list (`UnsafePickleError`);
            the message names the file.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "example.npy")
        >>> np.save(path, {"sequences": {"a": np.zeros(2)}})
        >>> load_pickled_file(path)
        {'sequences': {'a': array([0., 0.])}}
    """
    path = existing_file(path)
    is_npy = path.lower().endswith(".npy")
    if not is_npy:
        with open(path, "rb") as file:
            is_npy = file.read(6) == b"\x93NUMPY"
    loaded = read_npy(path, objects=True) if is_npy else read_pickle_file(path)
    if isinstance(loaded, np.ndarray) and loaded.dtype.hasobject and loaded.ndim == 0:
        return loaded.item()
    return loaded
