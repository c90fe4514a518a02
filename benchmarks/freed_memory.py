"""Freed memory kept for reuse (`keras_hbehavemae.allocator`) against the defaults.

    python benchmarks/freed_memory.py --backends tensorflow,jax,torch --rounds 2

For each backend and round, two fresh processes run the same job, one with the defaults
and one with `reuse_freed_memory` (alternating which goes first), and report the median
seconds, the minor page faults and the kernel CPU seconds per unit, and the peak RSS:

- `train`: `model.fit` on a cached, prefetched `tf.data` pipeline (as `train_speed.py`),
  `--warmup` untimed steps, then `--units` timed steps;
- `extract`: `HBehaveMAEBackbone.predict_on_batch` on one batch, the same counts.

`--setting glibc` gives TensorFlow glibc's settings instead of its best-fit allocator (the
alternative the design record compares). Raw rows go to `--output` as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("backends", ["tensorflow", "jax", "torch"], "Keras backends.")
flags.DEFINE_list("jobs", ["train", "extract"], "train and/or extract.")
flags.DEFINE_enum("config", "shot7m2", ["shot7m2", "mabe22", "tiny"], "Configuration.")
flags.DEFINE_integer("batch_size", 32, "Windows per step or batch.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed units first (compilation).", lower_bound=1)
flags.DEFINE_integer("units", 8, "Timed units per process.", lower_bound=1)
flags.DEFINE_integer("rounds", 1, "Pairs of processes per backend and job.", lower_bound=1)
flags.DEFINE_enum("setting", "default", ["default", "glibc"], "What `reuse` means under "
                  "TensorFlow: its best-fit allocator (default) or glibc's settings.")
flags.DEFINE_string("worker", "", "Internal: run one process (JSON arguments).")
flags.DEFINE_string("output", "", "Write every row as JSON to this file.")

MARK = "@@ "


def _usage() -> tuple[int, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(arguments: dict) -> dict:
    """One process: the setting, then the job; its figures."""
    backend = os.environ["KERAS_BACKEND"]
    reused = False
    if arguments["reuse"]:
        from keras_hbehavemae.allocator import reuse_freed_memory

        reused = reuse_freed_memory("torch" if arguments["glibc"] else backend)
    import benchmark_common
    import keras
    import tensorflow as tf

    config = benchmark_common.benchmark_config(arguments["config"])
    keras.utils.set_random_seed(0)
    batch = arguments["batch_size"]
    stamps = []
    if arguments["job"] == "train":
        from keras_hbehavemae.training.initial import build_pretrainer
        from keras_hbehavemae.training.optimizer import published_optimizer, scaled_learning_rate

        model = build_pretrainer(config, seed=0)
        model.compile(optimizer=published_optimizer(model, scaled_learning_rate(1.6e-4, batch)))
        windows = benchmark_common.random_walk_windows(4 * batch, config.input_size, 0)
        dataset = (tf.data.Dataset.from_tensor_slices(windows).batch(batch, drop_remainder=True)
                   .cache().repeat().prefetch(tf.data.AUTOTUNE))

        class Stamps(keras.callbacks.Callback):
            def on_train_batch_end(self, index, logs=None):
                float(logs["loss"])  # waits for the step
                stamps.append((time.perf_counter(), *_usage()))

        stamps.append((time.perf_counter(), *_usage()))
        model.fit(dataset, epochs=1, steps_per_epoch=arguments["warmup"] + arguments["units"],
                  verbose=0, callbacks=[Stamps()])
        compiled = model.jit_compile
    else:
        from keras_hbehavemae import HBehaveMAEBackbone

        backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
        backbone.compile()
        windows = benchmark_common.random_walk_windows(batch, config.input_size, 0)
        stamps.append((time.perf_counter(), *_usage()))
        for _ in range(arguments["warmup"] + arguments["units"]):
            backbone.predict_on_batch(windows)
            stamps.append((time.perf_counter(), *_usage()))
        compiled = backbone.jit_compile
    timed = stamps[arguments["warmup"]:]
    pairs = list(zip(timed, timed[1:], strict=False))
    from keras_hbehavemae.allocator import reusing_freed_memory

    return {"backend": backend, "job": arguments["job"], "reuse": arguments["reuse"],
            "setting": "glibc" if arguments["glibc"] or backend != "tensorflow" else "bfc",
            "applied": reused, "reusing": reusing_freed_memory(), "jit_compile": str(compiled),
            "seconds": [b[0] - a[0] for a, b in pairs],
            "median_seconds": statistics.median(b[0] - a[0] for a, b in pairs),
            "page_faults": statistics.median(b[1] - a[1] for a, b in pairs),
            "kernel_seconds": statistics.median(b[2] - a[2] for a, b in pairs),
            "rss_mb": _rss_mb(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_process(backend: str, job: str, reuse: bool) -> dict:
    arguments = {"job": job, "reuse": reuse, "glibc": FLAGS.setting == "glibc",
                 "config": FLAGS.config, "batch_size": FLAGS.batch_size,
                 "warmup": FLAGS.warmup, "units": FLAGS.units}
    completed = subprocess.run(
        [sys.executable, __file__, f"--worker={json.dumps(arguments)}"],
        env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True,
        timeout=3600)
    rows = [line[len(MARK):] for line in completed.stdout.splitlines() if line.startswith(MARK)]
    if completed.returncode or not rows:
        raise RuntimeError(f"{backend} {job} reuse={reuse} failed:\n{completed.stderr[-2000:]}")
    return json.loads(rows[-1])


def main(argv):
    del argv
    if FLAGS.worker:
        print(MARK + json.dumps(worker(json.loads(FLAGS.worker))), flush=True)
        return
    rows = []
    print("| backend | job | setting | s per unit | page faults per unit | kernel s per unit | "
          "peak RSS MB |\n| --- | --- | --- | ---: | ---: | ---: | ---: |", flush=True)
    for backend in FLAGS.backends:
        for job in FLAGS.jobs:
            for round_index in range(FLAGS.rounds):
                order = (False, True) if round_index % 2 == 0 else (True, False)
                for reuse in order:
                    row = run_process(backend, job, reuse)
                    rows.append(row)
                    setting = row["setting"] if reuse else "defaults"
                    print(f"| {backend} | {job} | {setting} | {row['median_seconds']:.2f} | "
                          f"{row['page_faults']:,.0f} | {row['kernel_seconds']:.2f} | "
                          f"{row['peak_rss_mb']:,.0f} |", flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump({"benchmark": "freed_memory", "config": FLAGS.config,
                       "batch_size": FLAGS.batch_size, "units": FLAGS.units,
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}, file,
                      indent=1)


if __name__ == "__main__":
    app.run(main)
