"""The one restricted unpickler: every reader of pickled content goes through it.

A pickle is a small program that may import and call any function it names, so loading
one with `pickle.load`, `np.load(allow_pickle=True)`, `joblib.load` or `torch.load` can
run code from the file. `RestrictedUnpickler` resolves only the globals on an `AllowList`,
each mapped to a local stand-in that rebuilds a plain value and checks its arguments;
anything else raises `UnsafePickleError` before it is called. Nothing a file names is
ever imported or executed.

| allow-list | what it rebuilds | defined in |
|---|---|---|
| `ARRAYS_AND_CONTAINERS` | plain containers, NumPy arrays, dtypes and scalars | here |
| joblib files | the above and joblib's array frames | `files.pickle_files` |
| torch checkpoints | the above, tensors, storages, `argparse.Namespace` | `convert.torch_pickle` |

A stand-in cannot be changed by the pickle: functions are handed out as fresh
`functools.partial` objects, classes are built-in immutable types or `SealedClass`es, and
other stand-ins are read-only. `unpickle` reads one pickle from a stream and names the
source in every error.

Example:

>>> import io, pickle
>>> unpickle(io.BytesIO(pickle.dumps({"x": np.arange(3)})), "example.pkl")
{'x': array([0, 1, 2])}
>>> unpickle(io.BytesIO(pickle.dumps(print)), "evil.pkl")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
keras_hbehavemae.files.unpickling.UnsafePickleError: evil.pkl: refused global 'builtins.print'...
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import functools
import io
import pickle
import types
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np

from keras_hbehavemae.files import numpy_rebuild

__all__ = [
    "ARRAYS_AND_CONTAINERS", "AllowList", "LimitedReader", "RestrictedUnpickler",
    "SealedClass", "UnsafePickleError", "unpickle",
]

_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: built-in types refuse setattr


class UnsafePickleError(ValueError):
    """A pickle names a global that is not on the reader's allow-list; nothing was run."""


class SealedClass(type):
    """Metaclass of stand-in classes: a pickle's BUILD cannot set attributes on them."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")


def _check_stand_in(key: tuple[str, str], stand_in: Any) -> None:
    if isinstance(stand_in, type) and not (
        isinstance(stand_in, SealedClass) or stand_in.__flags__ & _IMMUTABLE_TYPE
    ):
        raise TypeError(f"allow-list entry {key}: class {stand_in.__name__} is not sealed")


@dataclasses.dataclass(frozen=True)
class AllowList:
    """The globals a pickle may name, each with the local stand-in that rebuilds it.

    Attributes:
        name: what the list reads, used in messages (e.g. "torch checkpoint").
        stand_ins: `(module, name)` → the stand-in: a function (called with the pickle's
            arguments), a sealed or built-in class, or a read-only marker value.
    """

    name: str
    stand_ins: Mapping[tuple[str, str], Any]

    def __post_init__(self) -> None:
        for key, stand_in in self.stand_ins.items():
            _check_stand_in(key, stand_in)
        object.__setattr__(self, "stand_ins", types.MappingProxyType(dict(self.stand_ins)))

    def extended(self, name: str, stand_ins: Mapping[tuple[str, str], Any]) -> AllowList:
        """This list plus `stand_ins`, read under the name `name`."""
        return AllowList(name, {**self.stand_ins, **stand_ins})


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode`, used by protocol 2 for bytes; only latin-1 text is allowed."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _bytearray(source: Any = b"", encoding: Any = None) -> bytearray:
    """`bytearray` from bytes (protocol 3+) or latin-1 text (protocol 2); not from a size."""
    if isinstance(source, bytes) and encoding is None:
        return bytearray(source)
    if isinstance(source, str) and encoding in ("latin1", "latin-1"):
        return bytearray(source.encode("latin1"))
    raise ValueError(f"bytearray from a {type(source).__name__} is not allowed")


#: Plain containers and NumPy arrays, dtypes and scalars: what dataset files hold.
#: `numpy.core` is the NumPy 1 spelling of `numpy._core`; files use both.
ARRAYS_AND_CONTAINERS = AllowList("NumPy arrays and plain containers", {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("builtins", "range"): range,
    ("builtins", "bytearray"): _bytearray,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): numpy_rebuild.numpy_dtype,
    ("numpy", "ndarray"): numpy_rebuild.NDARRAY,
    **{
        (f"numpy.{core}.{module}", name): function
        for core in ("core", "_core")
        for module, name, function in (
            ("multiarray", "scalar", numpy_rebuild.numpy_scalar),
            ("multiarray", "_reconstruct", numpy_rebuild.numpy_reconstruct),
            ("numeric", "_frombuffer", numpy_rebuild.numpy_frombuffer),
        )
    },
})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals on its allow-list, to their stand-ins.

    Args:
        file: the binary stream holding the pickle. It should read exactly what is asked
            (no `peek`), so that the stream stands right after the pickle when it ends.
        allow_list: the globals the pickle may name.
        persistent_load: resolves persistent ids (torch storages); None refuses them.
    """

    def __init__(self, file: Any, allow_list: AllowList,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self.allow_list = allow_list
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        """The stand-in for `module.name`, or UnsafePickleError."""
        # Undo the Python 2 name mapping that protocol < 3 applies (`__builtin__`, ...).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) not in self.allow_list.stand_ins:
            raise UnsafePickleError(
                f"refused global '{module}.{name}': it is not on the allow-list for "
                f"{self.allow_list.name}, so the file may be malicious (or use an unsupported "
                "feature); nothing in it was executed"
            )
        stand_in = self.allow_list.stand_ins[(module, name)]
        if isinstance(stand_in, types.FunctionType):
            return functools.partial(stand_in)  # BUILD can only touch this copy
        return stand_in

    def persistent_load(self, persistent_id: Any) -> Any:
        """Resolves a persistent id through `persistent_load`, if the reader has one."""
        if self._persistent_load is None:
            raise ValueError(f"unexpected persistent id {persistent_id!r}")
        return self._persistent_load(persistent_id)

    def load(self) -> Any:
        """Unpickles the stream, with NumPy dtypes and arrays fully rebuilt."""
        return numpy_rebuild.resolve_pending(super().load())


def unpickle(stream: Any, source: str, allow_list: AllowList = ARRAYS_AND_CONTAINERS,
             persistent_load: Callable[[Any], Any] | None = None) -> Any:
    """Reads one pickle from `stream` with `RestrictedUnpickler`; errors name `source`.

    Raises:
        UnsafePickleError: the pickle names a global outside `allow_list`.
        ValueError: the pickle is truncated, corrupt or holds a value a stand-in refuses.
    """
    try:
        return RestrictedUnpickler(stream, allow_list, persistent_load).load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{source}: {error}") from None
    except (pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f"{source}: truncated or corrupt pickle ({error})") from None
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    except MemoryError:
        raise ValueError(f"{source}: corrupt pickle: a length field asks for more memory than "
                         "there is; the file is damaged or forged") from None
    except Exception as error:  # noqa: BLE001 - any failure of a damaged stream
        raise ValueError(
            f"{source}: corrupt pickle ({type(error).__name__}: {error})"
        ) from None


class LimitedReader(io.RawIOBase):
    """The next `limit` bytes of a binary stream, read exactly as asked (no `peek`).

    A pickle's length fields are never trusted: a read never asks the stream for more
    than is left, so a forged length ends in a short read, not a huge allocation.
    """

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        super().__init__()
        self._stream = stream
        self.remaining = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self.remaining]
        count = self._stream.readinto(view) or 0
        self.remaining -= count
        return count

    def read(self, size: int | None = -1) -> bytes:
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.read(size)
        self.remaining -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.readline(size)
        self.remaining -= len(data)
        return data


def describe(value: Any) -> str:
    """A short description of a loaded value for messages, e.g. 'an array of shape (3,)'."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
