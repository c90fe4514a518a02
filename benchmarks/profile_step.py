"""Where one pretraining step's time goes, under the current backend.

The same breakdown on every backend, from timings in this process:

- `forward`: the compiled test step (masked encoder, decoder and loss, no gradients);
- `train step`: the compiled train step (forward, backward and the AdamW update);
- `backward + update` = train step − forward;
- `matmul only`: the step's matrix products timed alone at their shapes
  (`matmul_ceiling.py`), and `everything else` = train step − matmul only: the
  elementwise passes, normalisation, softmax, reshapes and copies, pooling, masking,
  the loss and the optimizer.

Under torch it also prints the profiler's table of the operators of one train step,
by self time. XLA's CPU runtime (JAX, TensorFlow with `--jit_compile true`) reports
per-operator times to the profilers only when the process starts with
`XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true` (then `jax.profiler.trace` or
`tf.profiler.experimental.start` record one event per compiled HLO fusion; map the names
to layers with `--xla_dump_to`); without it, the backend-neutral breakdown above is all.
At tiny sizes the dispatch of each separately timed product dominates, and the split
means nothing; use it at the published sizes.

Examples:

    KERAS_BACKEND=torch python benchmarks/profile_step.py --config shot7m2 --batch_size 32
    KERAS_BACKEND=tensorflow python benchmarks/profile_step.py --jit_compile true
"""

from __future__ import annotations

import statistics
import time

import benchmark_common
import flop_count
import keras
import machine_peak
import numpy as np
import product_timing
from absl import app, flags

from keras_hbehavemae.allocator import reusing_freed_memory
from keras_hbehavemae.cli.allocator_flag import apply_allocator_flag, define_allocator_flag
from keras_hbehavemae.training.initial import build_pretrainer
from keras_hbehavemae.training.optimizer import published_optimizer, scaled_learning_rate

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "shot7m2", list(benchmark_common.CONFIG_NAMES), "Configuration.")
flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "`compile(jit_compile=…)`; auto = Keras' default for the backend.")
flags.DEFINE_integer("steps", 3, "Timed calls of each step (the median is reported).",
                     lower_bound=1)
flags.DEFINE_integer("matmul_repeats", 2, "Timed runs per matrix product.", lower_bound=1)
flags.DEFINE_integer("operators", 25, "Torch operators to list.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of weights, data and masks.")
flags.DEFINE_string("output", "", "Write all figures as JSON to this file.")
define_allocator_flag()

PRINTED = ("backend", "config", "batch_size", "jit_compile", "reuse_freed_memory",
           "forward_seconds",
           "train_step_seconds", "backward_and_update_seconds", "matmul_only_seconds",
           "everything_else_seconds", "matmul_share_of_step", "train_step_gflops",
           "matmul_only_gflops")


def median_seconds(call, steps: int) -> float:
    """Median wall time of `steps` calls after one untimed call (compilation)."""
    call()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_operator_table(model, batch, rows: int) -> str:
    """The profiler's operator table of one torch train step, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        model.train_on_batch(batch)
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows,
                                         max_name_column_width=60)


def matmul_seconds(matmuls, run) -> float:
    """Summed best times of `matmuls` (each distinct shape timed once)."""
    seconds = {}
    for matmul in matmuls:
        key = matmul[1:]
        if key not in seconds:
            seconds[key] = product_timing.seconds_per_product(run, matmul, FLAGS.matmul_repeats)
    return sum(seconds[matmul[1:]] for matmul in matmuls)


def main(argv):
    del argv
    apply_allocator_flag()  # as `hbehavemae pretrain` does
    config = benchmark_common.benchmark_config(FLAGS.config)
    batch_size = FLAGS.batch_size
    keras.utils.set_random_seed(FLAGS.seed)
    model = build_pretrainer(config, seed=FLAGS.seed)
    model.compile(optimizer=published_optimizer(model, scaled_learning_rate(1.6e-4, batch_size)),
                  jit_compile=benchmark_common.parse_jit_compile(FLAGS.jit_compile))
    model.optimizer.build(model.trainable_variables)
    batch = benchmark_common.random_walk_windows(batch_size, config.input_size, FLAGS.seed)
    if keras.config.backend() == "torch":
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(batch))
    forward = median_seconds(lambda: model.test_on_batch(batch), FLAGS.steps)
    step = median_seconds(lambda: model.train_on_batch(batch), FLAGS.steps)
    geometry = model.geometry
    run = product_timing.backend_matmul(FLAGS.jit_compile)
    matmul_only = matmul_seconds(flop_count.training_step_matmuls(geometry, batch_size), run)
    step_flops = flop_count.training_step_flops(geometry) * batch_size
    figures = {
        "benchmark": "profile_step",
        "backend": keras.config.backend(),
        "versions": benchmark_common.backend_versions(),
        "config": FLAGS.config,
        "batch_size": batch_size,
        "jit_compile": str(model.jit_compile),
        "reuse_freed_memory": reusing_freed_memory(),  # in effect
        "forward_seconds": forward,
        "train_step_seconds": step,
        "backward_and_update_seconds": step - forward,
        "matmul_only_seconds": matmul_only,
        "everything_else_seconds": step - matmul_only,
        "matmul_share_of_step": matmul_only / step,
        "train_step_gflops": step_flops / step / 1e9,
        "matmul_only_gflops": step_flops / matmul_only / 1e9,
        "peak_rss_mib": machine_peak.peak_rss_bytes() / 2**20,
    }
    benchmark_common.print_figures("profile_step", figures, PRINTED)
    if keras.config.backend() == "torch" and FLAGS.operators:
        table = torch_operator_table(model, batch, FLAGS.operators)
        figures["torch_operators"] = table
        print(table, flush=True)
    if FLAGS.output:
        benchmark_common.write_json(FLAGS.output, figures)


if __name__ == "__main__":
    app.run(main)
