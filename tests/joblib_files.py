"""joblib files for the tests, without joblib: a small writer of joblib's array framing, the
content of the hBABEL fixtures, and (run as a script, with joblib installed) the writer of
those fixtures with the real joblib.

joblib pickles each NumPy array as a `joblib.numpy_pickle.NumpyArrayWrapper` object (its
state: subclass, shape, order, dtype, allow_mmap, numpy_array_alignment_bytes) and writes
the array's bytes right after it, outside the pickle opcodes: one byte giving the padding
length, that many 0xFF bytes (so the data starts on a 16-byte boundary), then the data.
From protocol 4 the pickle frame is ended before the bytes. `joblib_bytes` writes the same,
so tests can build damaged and malicious joblib files. Regenerate the fixtures with
`python tests/joblib_files.py` in an environment with joblib (they were written by
joblib 1.6.0).
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import pickle
import sys
import types

import numpy as np

HBABEL_FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "hbabel_joblib"

#: fixture file → (compression for joblib.dump, pickle protocol).
FIXTURE_FORMATS = {
    "plain_protocol2.pth.tar": (0, 2),
    "plain_protocol4.pth.tar": (0, 4),
    "zlib.pth.tar": (("zlib", 3), 4),
    "gzip.pth.tar": (("gzip", 3), 4),
    "bz2.pth.tar": (("bz2", 3), 4),
    "xz.pth.tar": (("xz", 3), 4),
    "lzma.pth.tar": (("lzma", 3), 4),
}


def hbabel_content() -> list[dict]:
    """Two processed hBABEL items, with the kinds of array joblib frames differently."""
    joints = np.arange(4 * 25 * 3, dtype=np.float32).reshape(4, 25, 3) / 8
    return [
        {"babel_id": "seq_a", "poses": np.linspace(0, 1, 18).reshape(3, 6),
         "joint_positions_processed": joints, "fps": np.float64(30.0),
         "frame_labels": np.array(["walk", "turn", "walk"]),
         "extra": np.array([np.zeros(2), "text"], dtype=object), "empty": np.zeros((0, 3))},
        {"babel_id": "seq_b", "poses": np.zeros((2, 6)),
         "joint_positions_processed": np.asfortranarray(
             -np.arange(2 * 25 * 3, dtype=">f8").reshape(2, 25, 3))},
    ]


@contextlib.contextmanager
def _joblib_module():
    """A stand-in `joblib.numpy_pickle` module, so the writer can name joblib's class."""
    saved = {name: sys.modules.get(name) for name in ("joblib", "joblib.numpy_pickle")}
    package, module = types.ModuleType("joblib"), types.ModuleType("joblib.numpy_pickle")
    wrapper = type("NumpyArrayWrapper", (), {"__module__": "joblib.numpy_pickle"})
    module.NumpyArrayWrapper, package.numpy_pickle = wrapper, module
    sys.modules.update({"joblib": package, "joblib.numpy_pickle": module})
    try:
        yield wrapper
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def joblib_bytes(value, protocol: int = 4, shape_of=None) -> bytes:
    """`value` as joblib.dump writes it, uncompressed. `shape_of(array)` may forge the
    shape written into an array's frame (the bytes written are the array's own)."""
    stream = io.BytesIO()
    with _joblib_module() as wrapper_class:

        class Writer(pickle._Pickler):  # the pure-Python pickler exposes its frames
            def save(self, obj, save_persistent_id=True):
                if type(obj) is not np.ndarray:
                    return super().save(obj, save_persistent_id)
                wrapper = wrapper_class()
                order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
                wrapper.__dict__.update(
                    subclass=np.ndarray, shape=shape_of(obj) if shape_of else obj.shape,
                    order=order, dtype=obj.dtype, allow_mmap=not obj.dtype.hasobject,
                    numpy_array_alignment_bytes=16)
                super().save(wrapper)
                if self.proto >= 4:
                    self.framer.commit_frame(force=True)
                if obj.dtype.hasobject:
                    pickle.dump(obj, stream, protocol=5)
                    return None
                padding = 16 - (stream.tell() + 1) % 16
                stream.write(bytes([padding]) + b"\xff" * padding)
                stream.write(obj.tobytes(order=order))
                return None

        Writer(stream, protocol=protocol).dump(value)
    return stream.getvalue()


def main() -> None:
    import joblib

    HBABEL_FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, (compress, protocol) in FIXTURE_FORMATS.items():
        joblib.dump(hbabel_content(), HBABEL_FIXTURES / name, compress=compress,
                    protocol=protocol)
        print("wrote", HBABEL_FIXTURES / name, f"(joblib {joblib.__version__})")


if __name__ == "__main__":
    main()
