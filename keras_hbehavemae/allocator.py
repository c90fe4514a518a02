"""Keep the memory a process frees for reuse, instead of handing it back to the OS.

A training step or an encoder batch allocates and frees the same large buffers every
time: activations and gradients of hundreds of MB (on Shot7M2 at batch 32 the first
stage's MLP activations alone are `[46080, 384]` float32, 71 MB). TensorFlow's default CPU
allocator, XLA under JAX and torch all take them from glibc's `malloc`, which serves every
request above a threshold (at most 32 MB) with a fresh `mmap`, returns it with `munmap`
when it is freed, and unmaps a thread's heap as soon as it is empty. So each step touches
its buffers as new pages, and every 4 KiB page costs a page fault in the kernel: 420,000
to 640,000 faults (1.7–2.5 GB) and 0.9–2.5 s of kernel CPU time per Shot7M2 training step.

`reuse_freed_memory(backend)` keeps the memory instead:

- **TensorFlow**: its own best-fit allocator with coalescing for CPU memory
  (`TF_CPU_ALLOCATOR_USE_BFC=true`), which grows on demand and keeps what it has. Its limit
  (`TF_CPU_BFC_MEM_LIMIT_IN_MB`, TensorFlow's default 64 GB) is set to the machine's
  physical memory. TensorFlow reads both when it creates its CPU allocator, at its first
  operation, so they must be set before that; an environment that sets them already wins.
- **JAX and torch** (and the published PyTorch code): glibc's `mallopt`, process-wide, for
  allocations made from then on. `M_MMAP_MAX` 0 (no block is served by `mmap`),
  `M_TRIM_THRESHOLD` -1 (glibc's documented "never trim"; an `int` cannot express a
  threshold above 2 GB, and a JAX step frees more than that at once) and `M_ARENA_MAX` 1
  (threads share the main heap: under `model.fit` the steps run in threads whose own
  heaps glibc unmaps when empty, and the first two settings alone still faulted 421,000 to
  637,000 pages a step). On another C library (macOS, musl) nothing changes.

The numbers the model computes do not change, only where the buffers come from. Measured
on Shot7M2 at batch 32, `model.fit` on `tf.data`, 2 cores, one fresh process per setting,
median of 7–21 steps (docs/results.md, "Freed memory, kept"):

| backend | setting | s per step | page faults per step | peak RSS |
| --- | --- | ---: | ---: | ---: |
| TensorFlow (XLA) | default | 3.54 | | 3.9 GB |
| TensorFlow (XLA) | its best-fit allocator | 2.18–2.75 | 2–4 | 4.0–4.1 GB |
| TensorFlow (XLA) | the glibc settings above | 2.7–3.0 | | 8.7 GB |
| JAX | default | 3.56 | 637,000 | 4.4 GB |
| JAX | glibc settings | 2.74 | 0 | 6.7 GB |
| torch | default | 3.39 | 273,000 | 2.4 GB |
| torch | glibc settings | 2.26 | 3 | 2.7 GB |

The price is memory the process keeps until it ends (for JAX, half as much again). The
command-line apps `hbehavemae pretrain` and `hbehavemae embed` call this at start
(`--reuse_freed_memory`, default true); the library never does on its own, so importing
`keras_hbehavemae` leaves a notebook's allocator as it was.

Example:

>>> reuse_freed_memory("tensorflow", apply=False)
True
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

#: glibc `mallopt` parameters (malloc.h) and the values set for JAX and torch.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
GLIBC_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))

#: TensorFlow's switch to its best-fit CPU allocator, and that allocator's limit.
TENSORFLOW_BFC = "TF_CPU_ALLOCATOR_USE_BFC"
TENSORFLOW_BFC_LIMIT_MB = "TF_CPU_BFC_MEM_LIMIT_IN_MB"

BACKENDS = ("tensorflow", "jax", "torch")

_applied: str | None = None  # "tensorflow" or "glibc" once applied


def _glibc():
    """The C library, where it is glibc; else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        library = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    library.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    library.mallopt.restype = ctypes.c_int
    return library


def _physical_memory_mb() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


def reuse_freed_memory(backend: str, apply: bool = True) -> bool:
    """Keeps the memory the process frees for reuse (module docstring); True where it does.

    Args:
        backend: "tensorflow" (TensorFlow's best-fit CPU allocator), "jax" or "torch"
            (glibc's `mallopt`).
        apply: False only reports whether the setting is available here.

    Returns:
        True when the setting was applied (or, with `apply=False`, is available); False
        for JAX or torch on another C library than glibc, and for TensorFlow when the
        environment already sets `TF_CPU_ALLOCATOR_USE_BFC` to something else than true.

    Raises:
        ValueError: `backend` is not one of `BACKENDS`.
        RuntimeError: glibc refused a setting (none of them is expected to fail).
    """
    global _applied
    if backend not in BACKENDS:
        raise ValueError(f"backend: {backend!r} is invalid: must be one of {BACKENDS}")
    if backend == "tensorflow":
        wanted = os.environ.get(TENSORFLOW_BFC, "true").lower() in ("true", "1")
        if apply and wanted:
            os.environ.setdefault(TENSORFLOW_BFC, "true")
            limit = _physical_memory_mb()
            if limit:
                os.environ.setdefault(TENSORFLOW_BFC_LIMIT_MB, str(limit))
            _applied = "tensorflow"
        return wanted
    library = _glibc()
    if library is None:
        return False
    if apply:
        for parameter, value in GLIBC_SETTINGS:
            if library.mallopt(parameter, value) != 1:
                raise RuntimeError(f"glibc mallopt({parameter}, {value}) failed")
        _applied = "glibc"
    return True


def reusing_freed_memory() -> bool:
    """Whether freed memory is being kept in this process (for the records a run and an
    extraction write). For TensorFlow this asks its CPU allocator, which reports memory
    statistics only when it is the best-fit one: False if TensorFlow had made its
    allocator before `reuse_freed_memory` ran. Call it once TensorFlow is running."""
    if _applied == "glibc":
        return True
    if _applied != "tensorflow":
        return False
    import tensorflow as tf

    try:
        tf.config.experimental.get_memory_info("CPU:0")
    except ValueError:  # TensorFlow's default allocator keeps no statistics
        return False
    return True
