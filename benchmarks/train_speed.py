"""Pretraining speed through `model.fit` on a `tf.data` pipeline, under the current backend.

For one configuration (`--config shot7m2|mabe22|tiny`, from the built-in presets),
precision, compilation setting and batch size, this script:

1. measures R, this machine's dense float32 numpy matmul rate (2048³, after warm-up),
   in this process and before anything else;
2. builds the pretrainer under `KERAS_BACKEND`, compiles it with the published
   optimizer (constant learning rate 1.6e-4 · batch / 256) and `--jit_compile`;
3. trains `--warmup_steps + --steps` steps with `model.fit` on an in-memory `tf.data`
   pipeline of random-walk windows (`.batch(drop_remainder=True).cache().repeat()
   .prefetch`: the batches are formed once), so input is never the bottleneck;
   (without TensorFlow, `--input generator`: a Python generator over the same batches);
4. times the `--steps` steps after the warm-up from `on_train_batch_end` timestamps
   (compilation is excluded), and prints steps/s, samples/s, the achieved GFLOP/s
   (analytic training-step FLOPs from `benchmarks/flop_count.py`), its ratio to R,
   the device utilisation when `--device_peak_tflops` is given, peak resident memory
   and every step's loss.

Weights, data and masks are all seeded by `--seed`, so two runs that differ only in
precision see the same data and masks. `--compare_precisions` runs mixed_bfloat16 and
then float32 in one process and reports how far apart their loss curves are.

Examples:

    KERAS_BACKEND=tensorflow python benchmarks/train_speed.py --config shot7m2 \\
        --batch_size 32 --warmup_steps 5 --steps 10 --output runs/bench/train.json
    KERAS_BACKEND=jax python benchmarks/train_speed.py --config tiny --compare_precisions
"""

from __future__ import annotations

import gc
import importlib.util
import time

import benchmark_common
import flop_count
import keras
import machine_peak
from absl import app, flags

from keras_hbehavemae.allocator import reusing_freed_memory
from keras_hbehavemae.cli.allocator_flag import apply_allocator_flag, define_allocator_flag
from keras_hbehavemae.training.initial import build_pretrainer
from keras_hbehavemae.training.optimizer import published_optimizer, scaled_learning_rate

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "shot7m2", ["shot7m2", "mabe22", "tiny"], "Configuration.")
flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Keras dtype policy.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "`compile(jit_compile=…)`. auto is Keras' default: XLA under JAX, and under "
                  "TensorFlow only when a GPU is present; eager (no torch.compile) under torch.")
flags.DEFINE_integer("steps", 10, "Timed steps (after the warm-up).", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps first (compilation happens here).",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of weights, data and masks.")
flags.DEFINE_float("learning_rate", None, "Constant learning rate (default 1.6e-4·batch/256).")
flags.DEFINE_integer("pool_batches", 4, "Distinct batches of random windows in memory.",
                     lower_bound=1)
flags.DEFINE_float("device_peak_tflops", 0.0,
                   "The accelerator's dense peak in TFLOP/s (e.g. 989 for an H200 in "
                   "bfloat16); when > 0 the utilisation against it is reported.")
flags.DEFINE_integer("matmul_size", machine_peak.DEFAULT_SIZE, "Size of R's numpy matmul.")
flags.DEFINE_bool("compare_precisions", False,
                  "Run mixed_bfloat16 and float32 with the same seed and compare their losses "
                  "(--precision is then ignored).")
flags.DEFINE_bool("build_optimizer", True,
                  "Build the optimizer before `fit` (halves TensorFlow's first-step tracing; "
                  "compilation is not timed either way).")
flags.DEFINE_bool("require_accelerator", False,
                  "Stop (exit status 3) when the backend sees no GPU, instead of running a "
                  "GPU-sized benchmark on the host CPU.")
flags.DEFINE_enum("input", "auto", ["auto", "tf_data", "generator"],
                  "Batches from a cached tf.data pipeline, or from a Python generator over "
                  "the same batches (for machines without TensorFlow, e.g. a GPU image with "
                  "only JAX and torch; not with the TensorFlow backend). auto: tf.data if "
                  "TensorFlow can be imported.")
flags.DEFINE_string("output", "", "Write all figures as JSON to this file.")
define_allocator_flag()

PRINTED = ("backend", "config", "precision", "jit_compile", "reuse_freed_memory", "batch_size",
           "steps",
           "compile_seconds", "steps_per_second", "samples_per_second",
           "train_gflop_per_sample", "achieved_gflops", "machine_matmul_gflops_before",
           "machine_matmul_gflops_after", "machine_matmul_gflops", "ratio_to_machine_matmul",
           "device_peak_tflops", "device_utilisation",
           "peak_rss_mib", "accelerator_peak_memory_mib", "devices")


class StepTimer(keras.callbacks.Callback):
    """`on_train_batch_end` completion timestamps and losses, in the training loop.

    Converting the loss to a float waits for the step, so each timestamp is that step's
    completion. The callback is deliberately not `async_safe`: worker threads may run
    the callbacks of several steps out of order on a loaded 2-core machine, and the
    timestamps would then not be monotone (the JAX CI leg once measured a negative
    rate). Waiting in the loop costs one dispatch per step, milliseconds against steps of
    seconds.
    """

    def __init__(self):
        super().__init__()
        self.events = {}  # batch → (completion time, running-mean loss)
        self.begin = None

    def on_train_begin(self, logs=None):
        self.begin = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])  # waits for the step if the logs are still tensors
        self.events[batch] = (time.perf_counter(), loss)


def input_kind() -> str:
    """`--input`, with auto resolved: tf.data where TensorFlow can be imported."""
    if FLAGS.input != "auto":
        return FLAGS.input
    return "tf_data" if importlib.util.find_spec("tensorflow") else "generator"


def training_batches(windows, batch: int):
    """Endless batches of `windows`, formed once, as tf.data or a Python generator."""
    if input_kind() == "tf_data":
        import tensorflow as tf

        # Cached and prefetched, so each step only hands over a ready tensor.
        return (tf.data.Dataset.from_tensor_slices(windows).batch(batch, drop_remainder=True)
                .cache().repeat().prefetch(tf.data.AUTOTUNE))
    batches = [(windows[start:start + batch],)  # Keras takes a generator's (inputs,) tuple
               for start in range(0, len(windows) - batch + 1, batch)]

    def endless():
        while True:
            yield from batches

    return endless()


def run_once(precision: str, windows) -> dict:
    """Builds, compiles and trains one pretrainer; returns its figures."""
    config = benchmark_common.benchmark_config(FLAGS.config)
    batch = FLAGS.batch_size
    keras.utils.set_random_seed(FLAGS.seed)
    model = build_pretrainer(config, seed=FLAGS.seed, precision=precision)
    rate = FLAGS.learning_rate or scaled_learning_rate(1.6e-4, batch)
    model.compile(optimizer=published_optimizer(model, rate),
                  jit_compile=benchmark_common.parse_jit_compile(FLAGS.jit_compile))
    if FLAGS.build_optimizer:
        # Keras' TensorFlow trainer otherwise builds the optimizer inside the first trace of
        # the train step, and tf.function then traces the whole step a second time.
        model.optimizer.build(model.trainable_variables)
    dataset = training_batches(windows, batch)
    timer = StepTimer()
    total = FLAGS.warmup_steps + FLAGS.steps
    model.fit(dataset, epochs=1, steps_per_epoch=total, callbacks=[timer], verbose=0)
    events = [timer.events[index] for index in range(total)]
    elapsed = events[-1][0] - events[FLAGS.warmup_steps - 1][0]
    steps_per_second = FLAGS.steps / elapsed
    samples_per_second = steps_per_second * batch
    flops = flop_count.training_step_flops(model.geometry)
    achieved = samples_per_second * flops / 1e9
    losses = benchmark_common.per_step_losses([loss for _, loss in events])
    figures = {
        "benchmark": "train_speed",
        "backend": keras.config.backend(),
        "versions": benchmark_common.backend_versions(),
        "devices": machine_peak.accelerator_names() or ["cpu"],
        "config": FLAGS.config,
        "precision": precision,
        "jit_compile_flag": FLAGS.jit_compile,
        "jit_compile": str(model.jit_compile),
        "input": input_kind(),
        "batch_size": batch,
        "warmup_steps": FLAGS.warmup_steps,
        "steps": FLAGS.steps,
        "seed": FLAGS.seed,
        "learning_rate": float(rate),
        "compile_seconds": events[0][0] - timer.begin,
        "timed_seconds": elapsed,
        "steps_per_second": steps_per_second,
        "samples_per_second": samples_per_second,
        "train_gflop_per_sample": flops / 1e9,
        "achieved_gflops": achieved,
        "peak_rss_mib": machine_peak.peak_rss_bytes() / 2**20,
        "losses": losses,
        "timed_losses": losses[FLAGS.warmup_steps:],
    }
    accelerator_memory = machine_peak.accelerator_peak_memory_bytes()
    if accelerator_memory is not None:
        figures["accelerator_peak_memory_mib"] = accelerator_memory / 2**20
    del model
    gc.collect()
    return figures


def main(argv):
    del argv
    if input_kind() == "generator" and keras.config.backend() == "tensorflow":
        raise app.UsageError("--input generator: the TensorFlow backend trains from tf.data")
    if FLAGS.require_accelerator and not machine_peak.accelerator_names():
        print(f"SKIPPED: the {keras.config.backend()} backend sees no accelerator "
              "(--require_accelerator)", flush=True)
        raise SystemExit(3)
    apply_allocator_flag()  # as `hbehavemae pretrain` does
    r_before = machine_peak.numpy_matmul_gflops(FLAGS.matmul_size)  # before any model
    config = benchmark_common.benchmark_config(FLAGS.config)
    windows = benchmark_common.random_walk_windows(
        FLAGS.pool_batches * FLAGS.batch_size, config.input_size, FLAGS.seed)
    precisions = (["mixed_bfloat16", "float32"] if FLAGS.compare_precisions
                  else [FLAGS.precision])
    runs = [run_once(precision, windows) for precision in precisions]
    r_after = machine_peak.numpy_matmul_gflops(FLAGS.matmul_size)
    for figures in runs:
        figures["reuse_freed_memory"] = reusing_freed_memory()  # in effect
        benchmark_common.add_ratio_figures(figures, r_before, r_after, FLAGS.device_peak_tflops)
        benchmark_common.print_figures(f"train_speed {figures['precision']}", figures,
                                       PRINTED)
        print("losses: " + " ".join(f"{loss:.5f}" for loss in figures["losses"]), flush=True)
    result = runs[0] if len(runs) == 1 else {"benchmark": "train_speed", "runs": runs}
    if FLAGS.compare_precisions:
        by_precision = {run["precision"]: run for run in runs}
        comparison = benchmark_common.loss_comparison(by_precision["float32"]["losses"],
                                     by_precision["mixed_bfloat16"]["losses"])
        comparison["bf16_over_f32_samples_per_second"] = (
            by_precision["mixed_bfloat16"]["samples_per_second"]
            / by_precision["float32"]["samples_per_second"])
        result["loss_comparison"] = comparison
        benchmark_common.print_figures("mixed_bfloat16 against float32 (same data and masks)",
                                       comparison, list(comparison))
    if FLAGS.output:
        benchmark_common.write_json(FLAGS.output, result)


if __name__ == "__main__":
    app.run(main)
