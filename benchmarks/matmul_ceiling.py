"""The model's own matrix products, timed alone: the matmul-bound ceiling of a step.

The FLOPs of a training step or an encoder forward are, by the counting convention of
`benchmarks/flop_count.py`, exactly the FLOPs of a list of matrix products
(`training_step_matmuls`, `encoder_matmuls`). This script times each of those products
on its own, at its real shape and batch size, with the current backend's matmul:
`jax.jit` under JAX, a `tf.function` (XLA with `--jit_compile true`) under TensorFlow,
eager under torch. Their summed time is the least a step can take if everything but the
matmuls were free, so `ceiling = FLOPs / summed time` is the best FLOP rate the model's
shapes allow on this machine, and `ceiling / R` the best ratio any implementation of this
model can reach here. Comparing a measured step (`train_speed.py`, `extract_speed.py`) with
it splits the step's time into "matmuls" and "everything else".

The thin products of the first stage (`[B·N, 96] · [96, 3·96]`) run far below R on a
CPU, whatever the library, which is why the ceiling is well under 1.

Examples:

    KERAS_BACKEND=jax python benchmarks/matmul_ceiling.py --config shot7m2 --batch_size 32
    KERAS_BACKEND=tensorflow python benchmarks/matmul_ceiling.py --workload extract \\
        --jit_compile true
"""

from __future__ import annotations

import collections

import benchmark_common
import flop_count
import keras
import machine_peak
import product_timing
from absl import app, flags

from keras_hbehavemae.models.geometry import compute_geometry

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "shot7m2", list(benchmark_common.CONFIG_NAMES), "Configuration.")
flags.DEFINE_integer("batch_size", 32, "Samples (training) or windows (extraction).",
                     lower_bound=1)
flags.DEFINE_enum("workload", "train", ["train", "extract"],
                  "A training step (forward and both gradients of every product) or the "
                  "full, unmasked encoder forward.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "TensorFlow only: XLA for the matmul (`auto` = off on a CPU, as Keras).")
flags.DEFINE_integer("repeats", 3, "Timed runs per product (the best is kept).", lower_bound=1)
flags.DEFINE_integer("matmul_size", machine_peak.DEFAULT_SIZE, "Size of R's numpy matmul.")
flags.DEFINE_integer("show", 8, "Products to list, the slowest first.", lower_bound=0)
flags.DEFINE_string("output", "", "Write all figures as JSON to this file.")

PRINTED = ("backend", "config", "workload", "batch_size", "jit_compile", "products",
           "distinct_shapes", "gflop_per_sample", "matmul_seconds_per_step",
           "ceiling_gflops", "machine_matmul_gflops", "ceiling_ratio_to_machine_matmul")


def main(argv):
    del argv
    r_before = machine_peak.numpy_matmul_gflops(FLAGS.matmul_size)
    geometry = compute_geometry(benchmark_common.benchmark_config(FLAGS.config))
    matmuls = product_timing.workload_matmuls(geometry, FLAGS.workload, FLAGS.batch_size)
    run = product_timing.backend_matmul(FLAGS.jit_compile)
    shapes = collections.Counter((m.batch, m.rows, m.inner, m.cols) for m in matmuls)
    seconds = {shape: product_timing.seconds_per_product(
                   run, flop_count.Matmul("", *shape[1:], shape[0]), FLAGS.repeats)
               for shape in shapes}
    r_after = machine_peak.numpy_matmul_gflops(FLAGS.matmul_size)
    total_seconds = sum(seconds[shape] * count for shape, count in shapes.items())
    total_flops = sum(m.flops for m in matmuls)
    rates = benchmark_common.machine_rate_figures(r_before, r_after)
    ceiling = total_flops / total_seconds / 1e9
    figures = {
        "benchmark": "matmul_ceiling",
        "backend": keras.config.backend(),
        "versions": benchmark_common.backend_versions(),
        "config": FLAGS.config,
        "workload": FLAGS.workload,
        "batch_size": FLAGS.batch_size,
        "jit_compile": FLAGS.jit_compile,
        "products": len(matmuls),
        "distinct_shapes": len(shapes),
        "gflop_per_sample": total_flops / FLAGS.batch_size / 1e9,
        "matmul_seconds_per_step": total_seconds,
        "ceiling_gflops": ceiling,
        **rates,
        "ceiling_ratio_to_machine_matmul": ceiling / rates["machine_matmul_gflops"],
        "slowest": [],
    }
    by_time = sorted(shapes, key=lambda shape: -seconds[shape] * shapes[shape])
    for shape in by_time:
        batch, rows, inner, cols = shape
        flops = 2 * batch * rows * inner * cols
        figures["slowest"].append({
            "shape": f"{batch}×[{rows}×{inner}]·[{inner}×{cols}]", "count": shapes[shape],
            "seconds": seconds[shape] * shapes[shape],
            "gflops": flops / seconds[shape] / 1e9})
    benchmark_common.print_figures("matmul_ceiling", figures, PRINTED)
    for row in figures["slowest"][:FLAGS.show]:
        print(f"  {row['shape']:>34s} ×{row['count']:<3d} {row['seconds']:.3f} s "
              f"at {row['gflops']:.0f} GFLOP/s", flush=True)
    if FLAGS.output:
        benchmark_common.write_json(FLAGS.output, figures)


if __name__ == "__main__":
    app.run(main)
