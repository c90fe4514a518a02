"""Stand-ins that rebuild NumPy arrays, dtypes and scalars named in a pickle, checking each.

A pickled array is a call of `numpy._core.multiarray._reconstruct` (or `_frombuffer` in
protocol 5) whose state holds a dtype and the raw bytes; a dtype is a call of
`numpy.dtype(name)` with a state of flags. NumPy's own functions trust that state (a forged
flag can turn raw bytes into object pointers), so the restricted unpickler maps those
globals to the stand-ins here instead. They rebuild only plain dtypes (numbers, booleans,
fixed-size strings and bytes, and `object` for arrays of pickled Python objects) from
bytes of exactly the size that dtype and shape need. Arrays and dtypes are pending while
the pickle is read; `resolve_pending` swaps in the real values once it has been read.

Example:

>>> dtype = numpy_dtype("f4")
>>> dtype.__setstate__((3, ">", None, None, None, -1, -1, 0))
>>> numpy_frombuffer(b"\\x3f\\x80\\x00\\x00", dtype, (1,), "C")
array([1.], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "NDARRAY", "PendingArray", "PendingDtype", "dtype_of", "element_count", "native",
    "numpy_dtype", "numpy_frombuffer",
    "numpy_reconstruct", "numpy_scalar", "resolve_pending",
]


class _Sentinel:
    """A named marker that a pickle can reference but never change."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self.name} is read-only")

    def __repr__(self) -> str:
        return self.name


#: Stand-in for the `numpy.ndarray` global: only ever an argument of `_reconstruct`.
NDARRAY = _Sentinel("numpy.ndarray")

# dtype kinds a pickle may name: booleans, integers, floats, complex numbers, bytes,
# unicode text, raw bytes ("V" without fields) and Python objects (pickled, never raw bytes).
_PLAIN_KINDS = frozenset("biufcSUV")


def native(array: np.ndarray) -> np.ndarray:
    """`array` in the machine's byte order (a copy only when it differs)."""
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


class PendingDtype:
    """`numpy.dtype(name)` as unpickled; a real dtype replaces it once loading ends.

    NumPy's own `dtype.__setstate__` trusts its state (flags, fields), so the state that
    BUILD applies is checked here and only its byte order is used.
    """

    def __init__(self, name: Any) -> None:
        if not isinstance(name, str | bytes):
            raise ValueError(f"numpy.dtype from {type(name).__name__} is not allowed")
        text = name.decode("latin1") if isinstance(name, bytes) else name
        try:
            dtype = np.dtype(text)
        except (TypeError, ValueError, SyntaxError):
            raise ValueError(f"numpy.dtype({text!r}) is not a dtype") from None
        plain = dtype.kind in _PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None
        if not plain and dtype != np.dtype(object):
            raise ValueError(f"numpy dtype {dtype} is not supported (plain dtypes only)")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (8, 9)) or any(
            item is not None for item in (*state[2:5], *state[8:])
        ):
            raise ValueError(f"unsupported numpy dtype state {state!r}")
        if state[5] not in (-1, self.dtype.itemsize):
            raise ValueError(f"numpy dtype state {state!r} does not match dtype {self.dtype}")
        if state[1] in ("<", ">") and self.dtype.kind not in "OSV":
            self.dtype = self.dtype.newbyteorder(state[1])


def numpy_dtype(name: Any, align: Any = False, copy: Any = False) -> PendingDtype:
    """`numpy.dtype(name, align, copy)`: a dtype that BUILD may give a byte order."""
    return PendingDtype(name)


def dtype_of(dtype: Any) -> np.dtype:
    """The dtype of a `PendingDtype` argument (anything else is refused)."""
    if not isinstance(dtype, PendingDtype):
        raise ValueError(f"expected a numpy dtype, got {type(dtype).__name__}")
    return dtype.dtype


def element_count(shape: Any) -> tuple[tuple[int, ...], int]:
    """`(shape, number of elements)` of a pickled shape, checked to be a tuple of sizes."""
    if not isinstance(shape, tuple) or not all(isinstance(size, int) for size in shape):
        raise ValueError(f"numpy array shape {shape!r} is not a tuple of integers")
    if any(size < 0 for size in shape):
        raise ValueError(f"numpy array shape {shape} has a negative size")
    return shape, math.prod(shape)


def array_from_bytes(raw: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    """A writable native-order array of `shape` from exactly enough raw bytes."""
    if dtype.hasobject:
        raise ValueError("an object array cannot be rebuilt from raw bytes")
    if not isinstance(raw, bytes | bytearray):
        raise ValueError(f"numpy array data is a {type(raw).__name__}, not bytes")
    shape, count = element_count(shape)
    if len(raw) != count * dtype.itemsize:
        raise ValueError(
            f"numpy array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} "
            f"bytes, the pickle holds {len(raw)}"
        )
    if isinstance(raw, bytearray):  # protocol 5: a private, writable buffer
        return native(np.frombuffer(raw, dtype=dtype).reshape(shape, order=order))
    # NumPy's own setstate, given a dtype built here (never the pickle's dtype state) and
    # bytes of the exact size, adopts large buffers without a copy, as np.load does.
    array = np.ndarray.__new__(np.ndarray, (0,), np.uint8)
    array.__setstate__((1, shape, dtype, order == "F", raw))
    return native(array)


class PendingArray:
    """`numpy._core.multiarray._reconstruct(...)`: filled by BUILD, replaced after loading."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise ValueError("unsupported numpy array state")
        _, shape, dtype, is_fortran, data = state
        dtype = dtype_of(dtype)
        order = "F" if is_fortran else "C"
        if not dtype.hasobject:
            self.array = array_from_bytes(data, dtype, shape, order)
            return
        shape, count = element_count(shape)
        if not isinstance(data, list) or len(data) != count:
            raise ValueError(f"object array of shape {shape} without its {count} items")
        array = np.empty(count, dtype=object)
        for index, item in enumerate(data):  # one by one: a nested list stays one item
            array[index] = item
        # NumPy lists an object array's items in C order, also for a Fortran-order array.
        self.array = array.reshape(shape)


def numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """`numpy._core.multiarray.scalar`: a NumPy scalar from its dtype and bytes."""
    dtype = dtype_of(dtype)
    if dtype.hasobject:
        raise ValueError("numpy object scalars are not supported")
    return array_from_bytes(data, dtype, (), "C")[()]


def numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> PendingArray:
    """`numpy._core.multiarray._reconstruct`: an array that BUILD fills afterwards."""
    if subtype is not NDARRAY:
        raise ValueError(f"numpy array subclass {subtype!r} is not allowed")
    return PendingArray()


def numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """`numpy._core.numeric._frombuffer` (protocol 5 arrays): a copy of the bytes."""
    if order not in ("C", "F"):
        raise ValueError(f"numpy array order {order!r} is not 'C' or 'F'")
    return array_from_bytes(buffer, dtype_of(dtype), shape, order)


def resolve_pending(value: Any, visited: set[int] | None = None) -> Any:
    """Replaces pending dtypes and arrays in a loaded object tree (dicts and lists in place)."""
    visited = set() if visited is None else visited
    if isinstance(value, PendingDtype):
        return value.dtype
    if isinstance(value, PendingArray):
        if value.array is None:
            raise ValueError("numpy array without data")
        value = value.array
        if not value.dtype.hasobject:
            return value
    if id(value) in visited:
        return value
    visited.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = resolve_pending(item, visited)
    elif isinstance(value, list):
        value[:] = [resolve_pending(item, visited) for item in value]
    elif isinstance(value, tuple | set | frozenset):
        return type(value)(resolve_pending(item, visited) for item in value)
    elif isinstance(value, np.ndarray) and value.dtype.hasobject:
        for index in np.ndindex(value.shape):
            value[index] = resolve_pending(value[index], visited)
    return value
