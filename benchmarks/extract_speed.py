"""Embedding-extraction speed under the current backend: encoder throughput and per-sequence
cost in `exact`, `fast` and `strided` mode.

1. Measures R, this machine's dense float32 numpy matmul rate (2048³, after warm-up), in
   this process before anything else.
2. Encoder throughput: the full, unmasked encoder (`HBehaveMAEBackbone.predict_on_batch`,
   the compiled path `keras_hbehavemae.embeddings.extraction` uses) on batches of `--batch_size`
   random-walk windows; samples/s, achieved GFLOP/s (analytic full-encoder FLOPs from
   `benchmarks/flop_count.py`) and its ratio to R.
3. Per sequence: `keras_hbehavemae.embeddings.embed_sequence` on one random-walk sequence
   of `--sequence_frames` frames in each mode (all levels), timed end to end (windowing,
   backbone, running sums). Reports seconds, windows, the cost ratios exact / fast and
   exact / strided, and the largest and mean absolute difference of each cheap mode's
   embeddings to exact mode's. The cost per window is constant, so when
   `--sequence_frames` is not 1800 the seconds per 1800-frame sequence are projected
   from the measured seconds per window and each mode's window count
   (`projected_from_frames` says so).
4. Peak resident memory.

Examples:

    KERAS_BACKEND=tensorflow python benchmarks/extract_speed.py --config shot7m2 \\
        --batch_size 32 --output runs/bench/extract.json
    KERAS_BACKEND=jax python benchmarks/extract_speed.py --config tiny --sequence_frames 200
"""

from __future__ import annotations

import time

import benchmark_common
import flop_count
import keras
import machine_peak
import numpy as np
from absl import app, flags

from keras_hbehavemae import HBehaveMAEBackbone
from keras_hbehavemae.allocator import reusing_freed_memory
from keras_hbehavemae.cli.allocator_flag import apply_allocator_flag, define_allocator_flag
from keras_hbehavemae.embeddings import count_windows, embed_sequence

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "shot7m2", ["shot7m2", "mabe22", "tiny"], "Configuration.")
flags.DEFINE_string("preset", "",
                    "Optional preset (name or folder) whose backbone, with its weights, is "
                    "used instead of a freshly initialised --config model (float32 only).")
flags.DEFINE_integer("batch_size", 64, "Windows per backbone call.", lower_bound=1)
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Keras dtype policy.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "`compile(jit_compile=…)` of the backbone's predict function.")
flags.DEFINE_integer("steps", 5, "Timed encoder batches.", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 2, "Untimed encoder batches first (compilation).",
                     lower_bound=1)
flags.DEFINE_integer("sequence_frames", 1800,
                     "Frames of the sequence embedded in each mode (0 skips it).",
                     lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of weights and data.")
flags.DEFINE_float("device_peak_tflops", 0.0,
                   "The accelerator's dense peak in TFLOP/s; when > 0 the encoder's "
                   "utilisation against it is reported.")
flags.DEFINE_integer("matmul_size", machine_peak.DEFAULT_SIZE, "Size of R's numpy matmul.")
flags.DEFINE_string("output", "", "Write all figures as JSON to this file.")
define_allocator_flag()

REFERENCE_FRAMES = 1800
MODES = ("exact", "fast", "strided")
CHEAP_MODES = ("fast", "strided")

PRINTED = ("backend", "config", "precision", "jit_compile", "reuse_freed_memory", "batch_size",
           "compile_seconds", "samples_per_second", "encoder_gflop_per_sample",
           "achieved_gflops", "machine_matmul_gflops_before", "machine_matmul_gflops_after",
           "machine_matmul_gflops", "ratio_to_machine_matmul",
           "device_peak_tflops", "device_utilisation", "sequence_frames",
           *[f"{mode}_{figure}" for mode in MODES for figure in (
               "windows", "seconds", "seconds_per_1800_frames")],
           "projected_from_frames",
           *[f"{name}_{mode}" for mode in CHEAP_MODES for name in (
               "exact_over", "exact_over_windows_1800")],
           *[f"{mode}_exact_{name}" for mode in CHEAP_MODES for name in (
               "max_abs_difference", "mean_abs_difference", "relative_mean_difference")],
           "peak_rss_mib", "accelerator_peak_memory_mib", "devices")


def build_backbone(precision: str):
    if FLAGS.preset:
        if precision != "float32":
            raise app.UsageError("--preset runs in float32 only")
        return HBehaveMAEBackbone.from_preset(FLAGS.preset)
    config = benchmark_common.benchmark_config(FLAGS.config)
    keras.utils.set_random_seed(FLAGS.seed)
    return HBehaveMAEBackbone(**config.encoder_kwargs(), dtype=precision)


def time_encoder(backbone, windows) -> dict:
    """Warm-up and timed `predict_on_batch` calls (each returns NumPy arrays: synchronous)."""
    start = time.perf_counter()
    backbone.predict_on_batch(windows)
    compile_seconds = time.perf_counter() - start
    for _ in range(FLAGS.warmup_steps - 1):
        backbone.predict_on_batch(windows)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        backbone.predict_on_batch(windows)
    elapsed = time.perf_counter() - start
    return {"compile_seconds": compile_seconds, "timed_seconds": elapsed,
            "samples_per_second": FLAGS.steps * windows.shape[0] / elapsed}


def time_sequences(backbone, sequence) -> dict:
    """Every mode on one sequence: seconds, windows, projections to 1800 frames, differences."""
    num_frames = backbone.geometry.config.input_size[0]
    length = sequence.shape[0]
    figures, embeddings = {"sequence_frames": length}, {}
    for mode in MODES:
        start = time.perf_counter()
        embeddings[mode] = embed_sequence(backbone, sequence, mode=mode,
                                          batch_size=FLAGS.batch_size)
        seconds = time.perf_counter() - start
        windows = count_windows(length, num_frames, mode)
        figures[f"{mode}_windows"] = windows
        figures[f"{mode}_seconds"] = seconds
        figures[f"{mode}_seconds_per_1800_frames"] = (
            seconds * count_windows(REFERENCE_FRAMES, num_frames, mode) / windows)
    figures["projected_from_frames"] = length != REFERENCE_FRAMES
    for mode in CHEAP_MODES:
        figures[f"exact_over_{mode}"] = (figures["exact_seconds_per_1800_frames"]
                                         / figures[f"{mode}_seconds_per_1800_frames"])
        figures[f"exact_over_windows_1800_{mode}"] = (
            count_windows(REFERENCE_FRAMES, num_frames, "exact")
            / count_windows(REFERENCE_FRAMES, num_frames, mode))
        levels = []
        for exact, cheap in zip(embeddings["exact"], embeddings[mode], strict=True):
            difference = np.abs(cheap.astype(np.float64) - exact)
            levels.append({"max_abs_difference": float(difference.max()),
                           "mean_abs_difference": float(difference.mean()),
                           "mean_abs_exact": float(np.abs(exact).mean())})
        figures[f"{mode}_per_level_difference"] = levels
        figures[f"{mode}_exact_max_abs_difference"] = max(
            level["max_abs_difference"] for level in levels)
        figures[f"{mode}_exact_mean_abs_difference"] = float(np.mean(
            [level["mean_abs_difference"] for level in levels]))
        figures[f"{mode}_exact_relative_mean_difference"] = float(np.mean(
            [level["mean_abs_difference"] / level["mean_abs_exact"] for level in levels]))
    return figures


def main(argv):
    del argv
    apply_allocator_flag()  # as `hbehavemae embed` does
    r_before = machine_peak.numpy_matmul_gflops(FLAGS.matmul_size)  # before any model
    backbone = build_backbone(FLAGS.precision)
    backbone.compile(jit_compile=benchmark_common.parse_jit_compile(FLAGS.jit_compile))
    input_size = backbone.geometry.config.input_size
    windows = benchmark_common.random_walk_windows(FLAGS.batch_size, input_size, FLAGS.seed)
    flops = flop_count.encoder_forward_flops(backbone.geometry)
    figures = {
        "benchmark": "extract_speed",
        "backend": keras.config.backend(),
        "versions": benchmark_common.backend_versions(),
        "devices": machine_peak.accelerator_names() or ["cpu"],
        "config": FLAGS.preset or FLAGS.config,
        "precision": FLAGS.precision,
        "jit_compile_flag": FLAGS.jit_compile,
        "batch_size": FLAGS.batch_size,
        "warmup_steps": FLAGS.warmup_steps,
        "steps": FLAGS.steps,
        **time_encoder(backbone, windows),
        "jit_compile": str(backbone.jit_compile),
        "reuse_freed_memory": reusing_freed_memory(),  # in effect
        "encoder_gflop_per_sample": flops / 1e9,
    }
    figures["achieved_gflops"] = figures["samples_per_second"] * flops / 1e9
    benchmark_common.add_ratio_figures(figures, r_before,
                                       machine_peak.numpy_matmul_gflops(FLAGS.matmul_size),
                                       FLAGS.device_peak_tflops)
    if FLAGS.sequence_frames:
        sequence = benchmark_common.random_walk_windows(
            1, (FLAGS.sequence_frames, *input_size[1:]), FLAGS.seed + 1)[0]
        figures.update(time_sequences(backbone, sequence))
    figures["peak_rss_mib"] = machine_peak.peak_rss_bytes() / 2**20
    accelerator_memory = machine_peak.accelerator_peak_memory_bytes()
    if accelerator_memory is not None:
        figures["accelerator_peak_memory_mib"] = accelerator_memory / 2**20
    benchmark_common.print_figures("extract_speed", figures, PRINTED)
    if FLAGS.output:
        benchmark_common.write_json(FLAGS.output, figures)


if __name__ == "__main__":
    app.run(main)
