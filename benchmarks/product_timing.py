"""Timing the model's matrix products one by one, with the current backend's matmul.

Shared by `matmul_ceiling.py` and `profile_step.py`. Import after `KERAS_BACKEND` is set.
"""

from __future__ import annotations

import time

import flop_count
import keras
import machine_peak
import numpy as np
from keras import ops


def backend_matmul(jit_compile: str):
    """`run(left, right)`: one product with the current backend, finished when it returns."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        product = jax.jit(ops.matmul)
        return lambda left, right: product(left, right).block_until_ready()
    if backend == "tensorflow":
        import tensorflow as tf

        # Keras' "auto" means no XLA for TensorFlow on a CPU-only machine.
        use_xla = jit_compile == "true" or (jit_compile == "auto" and bool(
            machine_peak.accelerator_names()))
        product = tf.function(ops.matmul, jit_compile=use_xla)
        return lambda left, right: product(left, right).numpy()
    import torch

    def run_torch(left, right):
        ops.matmul(left, right)
        if left.is_cuda:  # eager CUDA kernels are asynchronous
            torch.cuda.synchronize()

    return run_torch


def operands(matmul: flop_count.Matmul, rng: np.random.Generator):
    """Random float32 operands `[batch?, rows, inner]` and `[batch?, inner, cols]`."""
    leading = (matmul.batch,) if matmul.batch > 1 else ()
    left = rng.standard_normal((*leading, matmul.rows, matmul.inner), dtype=np.float32)
    right = rng.standard_normal((*leading, matmul.inner, matmul.cols), dtype=np.float32)
    return ops.convert_to_tensor(left), ops.convert_to_tensor(right)


def seconds_per_product(run, matmul: flop_count.Matmul, repeats: int, seed: int = 0) -> float:
    """Best wall time of one product after one untimed run (compilation)."""
    left, right = operands(matmul, np.random.default_rng(seed))
    run(left, right)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(left, right)
        best = min(best, time.perf_counter() - start)
    return best


def workload_matmuls(geometry, workload: str, batch_size: int) -> list[flop_count.Matmul]:
    """The products of one step of `workload` at `batch_size`, from `flop_count`."""
    if workload == "train":
        return flop_count.training_step_matmuls(geometry, batch_size)
    return [flop_count.batched(matmul, batch_size)
            for part in flop_count.encoder_matmuls(geometry).values() for matmul in part]
