"""Read PyTorch checkpoint files without importing torch or running pickled code.

`torch.save` writes a zip archive holding a pickle (`<root>/data.pkl`) and one raw
byte entry per tensor storage (`<root>/data/<key>`). This module reads the archive and
unpickles it with the package's one restricted unpickler (`files.unpickling`), under the
`TORCH_CHECKPOINT` allow-list: plain containers and NumPy values, plus the torch tensor
and parameter rebuild functions, storage types, dtypes and `argparse.Namespace`, each
mapped to a local function that rebuilds plain Python or NumPy values. Every tensor comes
back as a `numpy.ndarray`; nothing from the file is ever imported or called, so a
malicious checkpoint is refused instead of executed.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from keras_hbehavemae.files.npy import existing_file
from keras_hbehavemae.files.unpickling import (
    ARRAYS_AND_CONTAINERS,
    LimitedReader,
    SealedClass,
    UnsafePickleError,
    unpickle,
)

__all__ = [
    "TORCH_CHECKPOINT", "ArgumentNamespace", "UnsafeCheckpointError",
    "extract_args", "extract_state_dict", "load_torch_file",
]

#: The error for a global outside the allow-list (the unpickler's one error type).
UnsafeCheckpointError = UnsafePickleError

# The first object pickled by the legacy (pre-1.6, non-zip) `torch.save` format.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

# torch dtype name -> NumPy element type used to read its storage bytes.
# bfloat16 is read as uint16 and widened to float32 afterwards.
_ELEMENT_TYPES: dict[str, Any] = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "bfloat16": np.uint16, "complex128": np.complex128, "complex64": np.complex64,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
    "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16, "uint8": np.uint8,
    "bool": np.bool_,
}

# torch dtypes that may appear in a pickle but have no NumPy equivalent (refused on use).
_UNSUPPORTED_DTYPES = (
    "complex32", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
    "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "quint8", "qint32", "quint4x2",
)

# Legacy typed storage classes (`torch.FloatStorage`, ...) -> torch dtype name.
_STORAGE_CLASSES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class ArgumentNamespace(dict, metaclass=SealedClass):
    """Stand-in for `argparse.Namespace`: a dict with read-only attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ArgumentNamespace is read-only (tried to set {name!r})")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"unexpected argparse.Namespace state of type {type(state).__name__}")
        dict.update(self, state)


class _Marker:
    """A stand-in value: a pickle's BUILD cannot change it."""

    def __setstate__(self, state: Any) -> None:
        raise ValueError(f"{self!r} cannot be given a state")


@dataclass(frozen=True)
class _TorchDtype(_Marker):
    """A `torch.<dtype>` global, kept as its name."""

    name: str


@dataclass(frozen=True)
class _StorageClass(_Marker):
    """A storage class global; `dtype_name` is None for `UntypedStorage` (raw bytes)."""

    dtype_name: str | None


@dataclass(frozen=True)
class _Storage:
    """Raw bytes of one storage entry and the byte order they were written in."""

    name: str
    raw: bytes
    dtype_name: str
    byteorder: str

    def elements(self, dtype_name: str) -> np.ndarray:
        """Returns the storage bytes viewed as a 1-D array of `dtype_name` elements."""
        if dtype_name not in _ELEMENT_TYPES:
            raise ValueError(f"tensor dtype torch.{dtype_name} has no NumPy equivalent")
        element_type = np.dtype(_ELEMENT_TYPES[dtype_name])
        element_type = element_type.newbyteorder("<" if self.byteorder == "little" else ">")
        if len(self.raw) % element_type.itemsize:
            raise ValueError(f"storage {self.name} size is not a multiple of {dtype_name}")
        return np.frombuffer(self.raw, dtype=element_type)


def _build_array(storage: Any, offset: Any, size: Any, stride: Any, dtype_name: str) -> np.ndarray:
    """Copies the strided view `(offset, size, stride)` of `storage` into a new array."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
    elements = storage.elements(dtype_name)
    offset, shape, steps = int(offset), tuple(map(int, size)), tuple(map(int, stride))
    if len(shape) != len(steps) or min((offset, *shape, *steps)) < 0:
        raise ValueError(f"invalid tensor view of storage {storage.name}: {shape=} {steps=}")
    if 0 in shape:
        array = np.empty(shape, dtype=elements.dtype)
    else:
        last = offset + sum((length - 1) * step for length, step in zip(shape, steps, strict=True))
        if last >= elements.size:
            raise ValueError(
                f"tensor view needs element {last} of storage {storage.name}, "
                f"which has {elements.size} elements"
            )
        byte_steps = tuple(step * elements.itemsize for step in steps)
        array = as_strided(elements[offset:], shape=shape, strides=byte_steps, writeable=False)
    array = array.astype(array.dtype.newbyteorder("="), copy=True)
    if dtype_name == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """`torch._utils._rebuild_tensor` / `_rebuild_tensor_v2`: dtype from the storage."""
    dtype_name = storage.dtype_name if isinstance(storage, _Storage) else ""
    return _build_array(storage, offset, size, stride, dtype_name)


def _rebuild_tensor_v3(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
    backward_hooks: Any, dtype: Any, metadata: Any = None,
) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v3`: untyped storage, dtype as a later argument."""
    if not isinstance(dtype, _TorchDtype):
        raise ValueError(f"_rebuild_tensor_v3 got dtype {dtype!r}, not a torch dtype")
    return _build_array(storage, offset, size, stride, dtype.name)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """`torch._utils._rebuild_parameter[_with_state]`: a parameter is just its data."""
    return data


def _torch_device(kind: Any, index: Any = None) -> str:
    """`torch.device`: kept as its string form, e.g. 'cuda:0'."""
    return f"{kind}:{index}" if index is not None else str(kind)


#: What a torch checkpoint may name: plain containers and NumPy values, tensors, storages,
#: dtypes, devices and the training arguments (`argparse.Namespace`).
TORCH_CHECKPOINT = ARRAYS_AND_CONTAINERS.extended("torch checkpoints", {
    ("argparse", "Namespace"): ArgumentNamespace,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): lambda items=(): tuple(items),
    ("torch", "device"): _torch_device,
    ("torch", "UntypedStorage"): _StorageClass(None),
    ("torch.storage", "UntypedStorage"): _StorageClass(None),
    **{("torch", name): _StorageClass(dtype) for name, dtype in _STORAGE_CLASSES.items()},
    **{("torch", name): _TorchDtype(name) for name in (*_ELEMENT_TYPES, *_UNSUPPORTED_DTYPES)},
})


def _load_zip(archive: zipfile.ZipFile, path: str) -> Any:
    """Unpickles a `torch.save` zip archive."""
    names = set(archive.namelist())
    pickles = sorted(name for name in names if name.endswith("/data.pkl") and name.count("/") == 1)
    if not pickles:
        if names and all(name.endswith(".npy") for name in names):
            raise ValueError(f"{path}: this is a NumPy .npz archive, not a torch checkpoint")
        raise ValueError(f"{path}: not a torch checkpoint: missing data.pkl in the zip archive")
    root = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if f"{root}byteorder" in names:
        byteorder = archive.read(f"{root}byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder {byteorder!r}")
    storages: dict[str, _Storage] = {}

    def load_storage(persistent_id: Any) -> _Storage:
        if not isinstance(persistent_id, tuple) or len(persistent_id) != 5 \
                or persistent_id[0] != "storage":
            raise ValueError(f"unexpected persistent id {persistent_id!r}")
        _, storage_class, key, _location, numel = persistent_id
        if not isinstance(storage_class, _StorageClass):
            raise ValueError(f"unexpected storage type {storage_class!r}")
        entry = f"data/{key}"
        if entry not in storages:
            if f"{root}{entry}" not in names:
                raise ValueError(f"missing storage entry {entry}")
            dtype_name = storage_class.dtype_name or "uint8"
            expected = int(numel) * np.dtype(_ELEMENT_TYPES[dtype_name]).itemsize
            raw = archive.read(f"{root}{entry}")
            if len(raw) < expected:
                raise ValueError(f"truncated: storage {entry} has {len(raw)} bytes, "
                                 f"expected {expected}")
            storages[entry] = _Storage(entry, raw[:expected], dtype_name, byteorder)
        return storages[entry]

    with archive.open(pickles[0]) as stream:
        data = stream.read()
    return unpickle(io.BytesIO(data), path, TORCH_CHECKPOINT, load_storage)


def load_torch_file(path: str | os.PathLike) -> Any:
    """Loads a `torch.save` checkpoint (zip format) or a plain pickle without torch.

    Args:
        path: Path of the checkpoint file.

    Returns:
        The unpickled object: dicts, lists, numbers and strings as usual, tensors as
        `numpy.ndarray` (bfloat16 widened to float32), `argparse.Namespace` as
        `ArgumentNamespace`.

    Raises:
        FileNotFoundError: There is no such file.
        UnsafeCheckpointError: The pickle references a global outside the allow-list.
        ValueError: The file is empty, truncated, corrupt, an .npz archive, in the
            legacy (pre-1.6) torch format, or not a zip or pickle at all.
    """
    path = existing_file(path)
    with open(path, "rb") as file:
        header = file.read(2)
        file.seek(0)
        if not header:
            raise ValueError(f"{path}: empty file")
        if header == b"PK":
            try:
                with zipfile.ZipFile(file) as archive:
                    return _load_zip(archive, path)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                raise ValueError(f"{path}: truncated or corrupt zip archive ({error})") from None
        if header[:1] != b"\x80":
            raise ValueError(f"{path}: not a zip or pickle (protocol 2+) file")
        result = unpickle(LimitedReader(file, os.fstat(file.fileno()).st_size), path,
                          TORCH_CHECKPOINT)
    if type(result) is int and result == _LEGACY_MAGIC_NUMBER:
        raise ValueError(
            f"{path}: legacy (pre-1.6) torch checkpoint format is not supported; re-save it "
            "with a current torch: torch.save(torch.load(p, weights_only=False), p2)"
        )
    return result


def _strip_module_prefix(state: Mapping) -> dict[str, np.ndarray]:
    """Drops a leading `module.` (DataParallel) from keys; values must be arrays."""
    not_arrays = [key for key, value in state.items() if not isinstance(value, np.ndarray)]
    if not_arrays:
        raise ValueError(f"state dict entries are not tensors: {not_arrays}")
    return {key.removeprefix("module."): value for key, value in state.items()}


def extract_state_dict(checkpoint: Any) -> dict[str, np.ndarray]:
    """Returns the model state dict of a loaded checkpoint.

    Args:
        checkpoint: Object returned by `load_torch_file`.

    Returns:
        `checkpoint["model"]`, else `["model_state"]`, else `["state_dict"]`, else the
        checkpoint itself if it maps str to arrays; keys without a `module.` prefix.

    Raises:
        ValueError: No state dict found (the message lists the top-level keys).
    """
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint is a {type(checkpoint).__name__}, not a dict")
    for key in ("model", "model_state", "state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            return _strip_module_prefix(checkpoint[key])
    if checkpoint and all(
        isinstance(key, str) and isinstance(value, np.ndarray) for key, value in checkpoint.items()
    ):
        return _strip_module_prefix(checkpoint)
    raise ValueError(
        "no model state dict found (expected 'model', 'model_state' or 'state_dict'); "
        f"top-level keys: {list(checkpoint)}"
    )


def extract_args(checkpoint: Any) -> dict[str, Any] | None:
    """Returns the checkpoint's `args` namespace as a plain dict, or None if absent."""
    args = checkpoint.get("args") if isinstance(checkpoint, Mapping) else None
    if args is None:
        return None
    if not isinstance(args, Mapping):
        raise ValueError(f"checkpoint 'args' is a {type(args).__name__}, not a namespace")
    return dict(args)
