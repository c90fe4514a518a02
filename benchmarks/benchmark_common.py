"""Shared pieces of the benchmark scripts: configurations, input data, reporting.

Import after `KERAS_BACKEND` is set: it imports keras_hbehavemae, and through it Keras.
"""

from __future__ import annotations

import json
import math
import pathlib

import keras
import numpy as np

from keras_hbehavemae.models.config import HBehaveMAEConfig

#: Benchmark configuration name → built-in preset (architecture, decoder and mask ratio).
PRESETS = {"shot7m2": "hbehavemae_shot7m2", "mabe22": "hbehavemae_mabe22_mice"}

#: The tiny golden-fixture architecture, for smoke runs on a CPU.
TINY = HBehaveMAEConfig(
    input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1), q_strides="2,1,2;2,2,1",
    out_embed_dims=(8, 12, 16), init_embed_dim=16, decoder_embed_dim=16,
    decoding_strategy="multi", norm_loss=True, mask_ratio=0.75)

CONFIG_NAMES = ("shot7m2", "mabe22", "tiny")


def benchmark_config(name: str) -> HBehaveMAEConfig:
    """The configuration of a benchmark: a published preset's, or the tiny fixture's."""
    if name == "tiny":
        return TINY
    if name not in PRESETS:
        raise ValueError(f"config must be one of {CONFIG_NAMES}, got {name!r}")
    return HBehaveMAEConfig.from_preset(PRESETS[name])


def random_walk_windows(count: int, input_size, seed: int = 0) -> np.ndarray:
    """`count` smooth random windows `[T, H, W]` (random walks, standardised), float32.

    Smooth in time like keypoint tracks, so masked units can be partly reconstructed from
    their neighbours and the loss falls during a short run.
    """
    frames, rows, features = input_size
    rng = np.random.default_rng(seed)
    windows = np.empty((count, frames, rows, features), np.float32)
    for index in range(count):  # one window at a time keeps the float64 temporaries small
        steps = rng.standard_normal((frames, rows, features)) * 0.1
        walk = np.cumsum(steps, axis=0) + rng.standard_normal((1, rows, features))
        windows[index] = walk
    windows -= windows.mean()
    windows /= windows.std()
    return windows


def machine_rate_figures(before: float, after: float) -> dict:
    """R measured before and after the timed work; the ratio uses the larger (conservative).

    The 2-core machines here share their host: R moves by tens of percent between
    minutes, and dividing by whichever R happened to be measured could flatter a run.
    """
    return {"machine_matmul_gflops_before": before, "machine_matmul_gflops_after": after,
            "machine_matmul_gflops": max(before, after)}


def add_ratio_figures(figures: dict, r_before: float, r_after: float,
                      device_peak_tflops: float = 0.0) -> None:
    """Adds R (`machine_rate_figures`), `ratio_to_machine_matmul` and, when the device's
    peak is given, `device_utilisation`, all from `figures["achieved_gflops"]`."""
    figures.update(machine_rate_figures(r_before, r_after))
    figures["ratio_to_machine_matmul"] = (figures["achieved_gflops"]
                                          / figures["machine_matmul_gflops"])
    if device_peak_tflops > 0:
        figures["device_peak_tflops"] = device_peak_tflops
        figures["device_utilisation"] = figures["achieved_gflops"] / (device_peak_tflops * 1e3)


def parse_jit_compile(value: str):
    """Flag value "true" / "false" / "auto" → the `jit_compile` argument of `compile`."""
    return {"true": True, "false": False, "auto": "auto"}[value]


def backend_versions() -> dict[str, str]:
    """Versions of Keras and the current backend's framework."""
    backend = keras.config.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return {"keras": keras.__version__, backend: __import__(module).__version__}


def write_json(path: str, content: dict) -> None:
    """Writes `content` as indented JSON (creating the parent folder)."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(content, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def per_step_losses(running_means: list[float]) -> list[float]:
    """Per-step losses from Keras' running means (the loss metric is a mean over the epoch).

    Example:
        >>> per_step_losses([2.0, 1.5, 1.0])
        [2.0, 1.0, 0.0]
    """
    losses, previous = [], 0.0
    for index, mean in enumerate(running_means):
        losses.append((index + 1) * mean - index * previous)
        previous = mean
    return losses


def loss_comparison(reference: list[float], other: list[float]) -> dict:
    """How far `other`'s per-step losses are from `reference`'s, relative to `reference`.

    Example:
        >>> round(loss_comparison([1.0, 2.0], [1.01, 2.0])["max_step_relative_difference"], 6)
        0.01
    """
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    relative = np.abs(other - reference) / np.abs(reference)
    curve_ref, curve_other = np.cumsum(reference), np.cumsum(other)
    return {
        "steps_compared": int(reference.size),
        "max_step_relative_difference": float(relative.max()),
        "mean_step_relative_difference": float(relative.mean()),
        "mean_loss_relative_difference": float(
            abs(other.mean() - reference.mean()) / abs(reference.mean())),
        "max_running_mean_relative_difference": float(
            (np.abs(curve_other - curve_ref) / np.abs(curve_ref)).max()),
    }


def print_figures(title: str, figures: dict, keys) -> None:
    """Prints `title` and one `name: value` line per key present in `figures`."""
    print(f"== {title}")
    for key in keys:
        if key not in figures:
            continue
        value = figures[key]
        if isinstance(value, float):
            text = f"{value:.4g}" if math.isfinite(value) else str(value)
        else:
            text = str(value)
        print(f"{key}: {text}")
