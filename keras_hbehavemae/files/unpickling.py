"""Loading pickled dataset files without running arbitrary code.

The published datasets ship as pickled Python objects: `.npy` files holding a dict
(written with `np.save(path, dictionary)`, read with `np.load(path,
allow_pickle=True).item()`), or `.pkl` files holding lists of dicts.

Unpickling can execute arbitrary code, so a pickled file must only be read from a
trusted source. As a safeguard, `load_pickled_file` uses a restricted unpickler
by default: it rebuilds only plain Python containers, numbers, strings and NumPy
arrays, dtypes and scalars, and refuses every other global with a clear error.
Pass `allow_arbitrary_code=True` to fall back to the unrestricted loaders for a
file you trust that needs more.
"""

from __future__ import annotations

import importlib
import os
import pickle
from typing import Any

import numpy as np

# (module, name) pairs a dataset file may reference. `numpy.core` is the NumPy 1
# spelling of `numpy._core`; both appear in files written by different versions.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in `_ALLOWED_GLOBALS`."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self._source}: refusing to load global '{module}.{name}'; only plain "
                "containers and NumPy arrays are allowed. If you trust this file, pass "
                "allow_arbitrary_code=True."
            )
        if module.startswith("numpy.core."):
            modern = "numpy._core." + module.removeprefix("numpy.core.")
            try:
                return getattr(importlib.import_module(modern), name)
            except (ImportError, AttributeError):
                pass
        return getattr(importlib.import_module(module), name)


def _load_npy(path: str, allow_arbitrary_code: bool) -> Any:
    with open(path, "rb") as file:
        try:
            version = np.lib.format.read_magic(file)
        except ValueError as error:
            raise ValueError(f"{path}: not a NumPy .npy file ({error})") from None
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
        if not dtype.hasobject:
            try:
                return np.load(path, allow_pickle=False)
            except ValueError as error:  # fewer data bytes than the header promises
                raise ValueError(f"{path}: not a complete NumPy .npy file ({error})") from None
        if allow_arbitrary_code:
            return np.load(path, allow_pickle=True)
        # np.save pickles object arrays whole, right after the header.
        array = _RestrictedUnpickler(file, path).load()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: the pickled payload is not a NumPy array")
    return array


def load_pickled_file(path: str | os.PathLike[str], allow_arbitrary_code: bool = False) -> Any:
    """Loads a `.npy` or `.pkl`/`.pickle` file, unpickling only safe types by default.

    A `.npy` file holding a 0-d object array (a saved dict) is unwrapped, so the
    dict itself is returned, as `np.load(path, allow_pickle=True).item()` would.
    Numeric `.npy` files load as plain arrays.

    Pickled files execute code on load when read without restrictions; read them
    only from trusted sources. `allow_arbitrary_code=True` lifts the restriction.

    Args:
        path: the file to read.
        allow_arbitrary_code: use the unrestricted unpickler.

    Returns:
        The unpickled object.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not a readable `.npy` or pickle file, or it
            references a type outside the allowed set.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "example.npy")
        >>> np.save(path, {"sequences": {"a": np.zeros(2)}})
        >>> load_pickled_file(path)
        {'sequences': {'a': array([0., 0.])}}
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    lowered = path.lower()
    try:
        if lowered.endswith(".npy"):
            loaded = _load_npy(path, allow_arbitrary_code)
        elif lowered.endswith((".pkl", ".pickle")):
            with open(path, "rb") as file:
                if allow_arbitrary_code:
                    loaded = pickle.load(file)  # noqa: S301 - explicitly trusted by the caller
                else:
                    loaded = _RestrictedUnpickler(file, path).load()
        else:
            raise ValueError(
                f"{path}: unsupported file type; expected .npy, .pkl or .pickle. For joblib or "
                "torch files (e.g. .pth.tar), load the object yourself and pass it in directly."
            )
    except pickle.UnpicklingError as error:
        message = str(error)
        if not message.startswith(path):
            message = f"{path}: not a readable pickle ({message})"
        raise ValueError(message) from None
    except (EOFError, OSError) as error:
        raise ValueError(f"{path}: could not be read ({error})") from None
    if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.ndim == 0:
        return loaded.item()
    return loaded
