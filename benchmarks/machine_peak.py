"""This machine's dense matrix-multiply rate and the process's peak memory.

Every benchmark measures, in its own process and before it builds a model, the rate R
of a dense float32 numpy matrix multiply (2048 × 2048 × 2048 after warm-up, best of
several repeats), and reports the model's achieved FLOP rate divided by R. R is what this
machine's BLAS gives one process at that moment, so the ratio is comparable across
machines and across load.

Run it alone to print R (and, optionally, the bfloat16 matmul rates of TensorFlow and
torch for reference):

    python benchmarks/machine_peak.py
    python benchmarks/machine_peak.py --bf16 --output peak.json

Importable helpers: `numpy_matmul_gflops`, `framework_matmul_gflops`,
`peak_rss_bytes`, `accelerator_peak_memory_bytes`, `accelerator_names`.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np

DEFAULT_SIZE = 2048


def matmul_flops(size: int) -> int:
    """FLOPs of one `size³` matrix multiply (2 per multiply-add)."""
    return 2 * size**3


def _best_rate(run, size: int, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return matmul_flops(size) / best / 1e9


def numpy_matmul_gflops(size: int = DEFAULT_SIZE, repeats: int = 5, warmup: int = 2,
                        seed: int = 0) -> float:
    """R: the best float32 numpy `size³` matmul rate of `repeats` runs after `warmup`, GFLOP/s."""
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((size, size), dtype=np.float32)
    right = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), np.float32)
    return _best_rate(lambda: np.matmul(left, right, out=out), size, repeats, warmup)


def _framework_matmul(framework: str, dtype: str):
    """`make(size) -> run()` for a `size³` matmul in `framework`, or None if not installed."""
    if framework == "tensorflow":
        try:
            import tensorflow as tf
        except ImportError:
            return None
        product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))

        def make(size):
            left = tf.random.normal((size, size), dtype="float32")
            left, right = tf.cast(left, dtype), tf.cast(tf.transpose(left), dtype)
            return lambda: product(left, right).numpy()

        return make
    if framework == "torch":
        try:
            import torch
        except ImportError:
            return None
        device = "cuda" if torch.cuda.is_available() else "cpu"

        def make(size):
            left = torch.randn(size, size, device=device).to(getattr(torch, dtype))
            right = torch.randn(size, size, device=device).to(getattr(torch, dtype))

            def run():
                torch.matmul(left, right)
                if device == "cuda":
                    torch.cuda.synchronize()

            return run

        return make
    raise ValueError(f"framework must be 'tensorflow' or 'torch', got {framework!r}")


def framework_matmul_gflops(framework: str, dtype: str = "bfloat16", size: int = DEFAULT_SIZE,
                            repeats: int = 5, warmup: int = 2, max_seconds: float = 20.0
                            ) -> tuple[float, int] | None:
    """`(GFLOP/s, size used)` of a TensorFlow or torch matmul in `dtype` on its default device.

    For reference only. Some CPUs have no fast bfloat16 kernels (torch's bfloat16 matmul
    ran at 0.2 GFLOP/s on the 2-core development machine), so a 512³ probe runs first,
    and when the full size would take more than `max_seconds` the probe's rate is
    returned with size 512. Returns None when the framework is not installed.
    """
    make = _framework_matmul(framework, dtype)
    if make is None:
        return None
    probe_size = min(size, 512)
    probe = make(probe_size)
    probe()
    start = time.perf_counter()
    probe()
    probe_seconds = time.perf_counter() - start
    projected = probe_seconds * (size / probe_size) ** 3 * (repeats + warmup)
    if size == probe_size or projected > max_seconds:
        return matmul_flops(probe_size) / probe_seconds / 1e9, probe_size
    return _best_rate(make(size), size, repeats, warmup), size


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (`getrusage`), in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def accelerator_names() -> list[str]:
    """The accelerators the current Keras backend computes on (empty on a CPU)."""
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return [str(device) for device in jax.devices() if device.platform != "cpu"]
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [device.name for device in tf.config.list_logical_devices("GPU")]


def accelerator_peak_memory_bytes() -> int | None:
    """Peak memory in use on the first accelerator of the current backend, else None."""
    import keras

    backend = keras.config.backend()
    try:
        if backend == "jax":
            import jax

            devices = [device for device in jax.devices() if device.platform != "cpu"]
            stats = devices[0].memory_stats() if devices else None
            return int(stats["peak_bytes_in_use"]) if stats else None
        if backend == "torch":
            import torch

            return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
        import tensorflow as tf

        if not tf.config.list_logical_devices("GPU"):
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except (KeyError, RuntimeError, ValueError):
        return None


def measure(size: int = DEFAULT_SIZE, bf16: bool = False) -> dict:
    """R (and optionally the frameworks' bfloat16 rates) as a JSON-ready dict."""
    result = {"matmul_size": size, "numpy_float32_gflops": numpy_matmul_gflops(size)}
    if bf16:
        for framework in ("tensorflow", "torch"):
            rate = framework_matmul_gflops(framework, size=size)
            if rate is not None:
                result[f"{framework}_bfloat16_gflops"], result[f"{framework}_bfloat16_size"] = rate
    result["peak_rss_mib"] = peak_rss_bytes() / 2**20
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="matrix size")
    parser.add_argument("--bf16", action="store_true",
                        help="also time TensorFlow and torch bfloat16 matmuls")
    parser.add_argument("--output", default="", help="write the result as JSON here")
    args = parser.parse_args(argv)
    result = measure(args.size, args.bf16)
    for key, value in result.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
