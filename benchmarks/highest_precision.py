"""Float32 matrix multiplies at full precision (no TF32, no bfloat16 passes) on GPUs.

GPUs multiply float32 matrices in TF32 by default under TensorFlow (and in reduced
precision under JAX's default precision), which is about 1e-3 relative: far from the
1e-5 of the golden-fixture parity tests. `apply()` switches the current backend to
full float32:

- TensorFlow: `tf.config.experimental.enable_tensor_float_32_execution(False)`;
- JAX: `jax_default_matmul_precision = "highest"`;
- torch: `torch.backends.cuda.matmul.fp32_precision = "ieee"` (or `allow_tf32 = False`
  on older versions), cuDNN likewise, and `set_float32_matmul_precision("highest")`.

`probe()` then checks that it took effect: a float32 matmul on the backend's default
device, compared with float64 numpy (float32: about 1e-6 relative; TF32: about 1e-3).

As a pytest plugin (`PYTHONPATH=benchmarks python -m pytest -p highest_precision …`) it
applies the settings before any test runs and prints both in the report header.
`gpu_check.sh` also sets `NVIDIA_TF32_OVERRIDE=0` (cuBLAS and cuDNN) and
`JAX_DEFAULT_MATMUL_PRECISION=highest` in the environment.
"""

from __future__ import annotations

import os

import numpy as np


def _backend() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def apply() -> dict[str, str]:
    """Sets full-precision float32 matmuls for the current backend; returns the settings."""
    backend = _backend()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
        return {"jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision)}
    if backend == "torch":
        import torch

        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        if hasattr(matmul, "fp32_precision"):
            matmul.fp32_precision = "ieee"
            cudnn.fp32_precision = "ieee"
            settings = {"cuda.matmul.fp32_precision": str(matmul.fp32_precision),
                        "cudnn.fp32_precision": str(cudnn.fp32_precision)}
        else:
            matmul.allow_tf32 = False
            cudnn.allow_tf32 = False
            settings = {"cuda.matmul.allow_tf32": str(matmul.allow_tf32),
                        "cudnn.allow_tf32": str(cudnn.allow_tf32)}
        torch.set_float32_matmul_precision("highest")
        settings["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        return settings
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)
    return {"tensor_float_32_execution":
            str(tf.config.experimental.tensor_float_32_execution_enabled())}


def probe(size: int = 512, seed: int = 0) -> float:
    """Largest relative error of a float32 `size²` matmul on the backend's default device."""
    import keras

    rng = np.random.default_rng(seed)
    left = rng.standard_normal((size, size)).astype(np.float32)
    right = rng.standard_normal((size, size)).astype(np.float32)
    product = keras.ops.convert_to_numpy(
        keras.ops.matmul(keras.ops.convert_to_tensor(left), keras.ops.convert_to_tensor(right)))
    reference = left.astype(np.float64) @ right.astype(np.float64)
    scale = np.abs(left).astype(np.float64) @ np.abs(right).astype(np.float64)
    return float(np.max(np.abs(product - reference) / scale))


_SETTINGS: dict[str, str] = {}


def pytest_configure(config):
    _SETTINGS.update(apply())


def pytest_report_header(config):
    settings = ", ".join(f"{key}={value}" for key, value in _SETTINGS.items())
    error = probe()
    verdict = "full float32" if error < 1e-5 else "REDUCED PRECISION (TF32 or bfloat16)"
    return [f"highest_precision ({_backend()}): {settings}",
            f"highest_precision probe: float32 matmul max relative error {error:.1e} "
            f"({verdict})"]
