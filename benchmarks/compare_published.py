"""This package against the published PyTorch hBehaveMAE, interleaved, in one run.

    python benchmarks/compare_published.py --behavemae_dir ~/src/BehaveMAE
    python benchmarks/compare_published.py                  # no published code: R ratios

With `--behavemae_dir` (the root of your own checkout of the published BehaveMAE code;
nothing of it is copied here, it is imported from there at run time, see
`published_model.py`), each job (`--jobs`: `train`, one pretraining step; `extract`, one
batch through the full encoder; `exact`, exact-mode embedding of one sequence) is timed
for the published code and for each package variant (`--variants`), every one in its own
worker process (`compare_worker.py`) that builds and warms up its model first. The
measurements alternate: published, variant, published, variant, …, published, and each
variant slot is compared with the mean of the published slots just before and after it,
so a change of the machine's speed during the run hits both sides. The table gives the
median speed-up over the rounds (published seconds / package seconds; above 1: the
package is faster) with its range, the seconds per unit, the ratio to R (this machine's
numpy float32 matmul rate, measured by this process around each variant) and the load
average. Without `--behavemae_dir` only the package variants run, each against R.

Variants: `tensorflow` (the default path: XLA), `tensorflow_eager` (`--jit_compile
false`), `jax`, `torch`, `torch_1thread` (torch with one intra-op thread), and
`published_1thread` (the published code with one thread, as its scripts set
`OMP_NUM_THREADS=1`). The package's workers keep freed memory for reuse, as its commands
do by default (`keras_hbehavemae.allocator`); `tensorflow_glibc_memory`, `jax_glibc_memory`
and `torch_glibc_memory` leave glibc's defaults, and `published_reused_memory` gives the
published code the package's setting. Only one package worker lives at a time (a Shot7M2
training worker holds up to 4.8 GB); the published worker of a job lives through the whole
job.

Raw results (every slot) go to `--output` as JSON.
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import statistics
import subprocess
import sys
import time

import machine_peak
from absl import app, flags

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "compare_worker.py"
MARK = "@@ "

#: Variant name → (KERAS_BACKEND or None for the published code, worker arguments).
VARIANTS = {
    "tensorflow": ("tensorflow", ["--jit_compile", "auto"]),
    "tensorflow_eager": ("tensorflow", ["--jit_compile", "false"]),
    "jax": ("jax", ["--jit_compile", "auto"]),
    "torch": ("torch", ["--jit_compile", "auto"]),
    "torch_1thread": ("torch", ["--jit_compile", "auto", "--threads", "1"]),
    "published_1thread": (None, ["--threads", "1"]),
    "published_reused_memory": (None, ["--reuse_freed_memory", "true"]),
    "tensorflow_glibc_memory": ("tensorflow", ["--jit_compile", "auto", "--reuse_freed_memory",
                                               "false"]),
    "jax_glibc_memory": ("jax", ["--jit_compile", "auto", "--reuse_freed_memory", "false"]),
    "torch_glibc_memory": ("torch", ["--jit_compile", "auto", "--reuse_freed_memory",
                                     "false"]),
}
JOBS = ("train", "extract", "exact")

FLAGS = flags.FLAGS
flags.DEFINE_string("behavemae_dir", None, "Root of a checkout of the published BehaveMAE "
                    "code (holding models/models_defs.py); without it only the package runs.")
flags.DEFINE_enum("config", "shot7m2", ["shot7m2", "mabe22", "tiny"], "Configuration.")
flags.DEFINE_integer("batch_size", 32, "Windows per training step or encoder batch.",
                     lower_bound=1)
flags.DEFINE_list("jobs", ["train", "extract"], f"Jobs to time: {', '.join(JOBS)}.")
flags.DEFINE_list("variants", ["tensorflow", "tensorflow_eager", "jax", "torch"],
                  f"Package variants: {', '.join(VARIANTS)}.")
flags.DEFINE_integer("rounds", 3, "Timed slots per variant (the published code gets one "
                     "more).", lower_bound=1)
flags.DEFINE_integer("units", 2, "Steps or batches per slot (exact: sequences).", lower_bound=1)
flags.DEFINE_integer("warmup", 2, "Untimed units each worker runs first (compilation).",
                     lower_bound=0)
flags.DEFINE_integer("reference_threads", 0, "torch threads of the published code (0: torch's "
                     "default).", lower_bound=0)
flags.DEFINE_enum("timm", "auto", ["auto", "timm", "stand-in"], "timm layers for the published "
                  "code: the installed timm if it imports (auto), or the stand-in.")
flags.DEFINE_string("reference_python", None, "Python interpreter for the published code "
                    "(default: this one).")
flags.DEFINE_integer("sequence_frames", 32, "Frames of the sequence of the exact job.",
                     lower_bound=1)
flags.DEFINE_integer("slot_timeout", 1800, "Seconds a worker may take to start or for one "
                     "slot.", lower_bound=1)
flags.DEFINE_integer("matmul_size", machine_peak.DEFAULT_SIZE, "Size of R's numpy matmul.")
flags.DEFINE_string("output", "", "Write every slot and the summary as JSON to this file.")


class WorkerError(RuntimeError):
    pass


class Worker:
    """A `compare_worker.py` process: started, asked for slots, ended."""

    def __init__(self, name: str, job: str, backend: str | None, arguments: list[str]):
        self.name = name
        published = backend is None
        command = [FLAGS.reference_python if published and FLAGS.reference_python
                   else sys.executable, str(WORKER),
                   "--implementation", "published" if published else "package",
                   "--job", job, "--config", FLAGS.config,
                   "--batch_size", str(FLAGS.batch_size), "--warmup", str(FLAGS.warmup),
                   "--sequence_frames", str(FLAGS.sequence_frames), *arguments]
        if published:
            command += ["--behavemae_dir", FLAGS.behavemae_dir, "--timm", FLAGS.timm]
        environment = dict(os.environ)
        environment["KERAS_BACKEND"] = backend or "torch"
        paths = [str(HERE), *filter(None, [environment.get("PYTHONPATH")])]
        environment["PYTHONPATH"] = os.pathsep.join(paths)
        environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=environment,
                                        bufsize=1)
        self.noise: list[str] = []
        self.ready = self._answer()

    def _answer(self) -> dict:
        deadline = time.monotonic() + FLAGS.slot_timeout
        streams = [self.process.stdout, self.process.stderr]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise WorkerError(f"{self.name}: no answer within {FLAGS.slot_timeout} s")
            readable, _, _ = select.select(streams, [], [], min(left, 5.0))
            for stream in readable:
                line = stream.readline()
                if not line:
                    streams.remove(stream)
                    continue
                if stream is self.process.stdout and line.startswith(MARK):
                    answer = json.loads(line[len(MARK):])
                    if "error" in answer:
                        self.stop()
                        raise WorkerError(f"{self.name}: {answer['error']}")
                    return answer
                self.noise = (self.noise + [line.rstrip()])[-40:]
            if not streams or self.process.poll() is not None and not readable:
                raise WorkerError(f"{self.name}: the worker ended (exit "
                                  f"{self.process.poll()}):\n" + "\n".join(self.noise[-15:]))

    def slot(self, units: int) -> dict:
        self.process.stdin.write(f"time {units}\n")
        self.process.stdin.flush()
        answer = self._answer()
        answer["load_average"] = os.getloadavg()[0]
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def seconds_per_unit(slot: dict) -> float:
    return statistics.median(slot["wall"])


def cpu_seconds_per_unit(slot: dict) -> float:
    return statistics.median(slot["cpu"])


def neighbour_ratios(reference: list[float], own: list[float]) -> list[float]:
    """Each own slot against the mean of the published slots just before and after it."""
    return [(reference[index] + reference[index + 1]) / 2 / value
            for index, value in enumerate(own)]


def summarise(variant_slots: list[dict], reference_slots: list[dict] | None,
              unit_gflop: float, rates: list[float]) -> dict:
    """Speed-ups against the neighbouring published slots, and rates against R."""
    seconds = [seconds_per_unit(slot) for slot in variant_slots]
    summary = {"seconds_per_unit": statistics.median(seconds),
               "seconds_per_unit_all": seconds,
               "load_average": [slot["load_average"] for slot in variant_slots],
               "machine_matmul_gflops": max(rates),
               "ratio_to_machine_matmul": unit_gflop / statistics.median(seconds) / max(rates)}
    if reference_slots is not None:
        reference = [seconds_per_unit(slot) for slot in reference_slots]
        speedups = neighbour_ratios(reference, seconds)
        # Process CPU seconds (all threads): less sensitive to other jobs on the machine,
        # but they count the threads' spinning too.
        cpu = neighbour_ratios([cpu_seconds_per_unit(slot) for slot in reference_slots],
                               [cpu_seconds_per_unit(slot) for slot in variant_slots])
        summary.update(speedup=statistics.median(speedups), speedup_min=min(speedups),
                       speedup_max=max(speedups), speedups=speedups,
                       cpu_speedup=statistics.median(cpu), cpu_speedups=cpu,
                       reference_seconds_per_unit=statistics.median(reference))
    return summary


def run_variant(job: str, name: str, reference: Worker | None) -> dict:
    backend, arguments = VARIANTS[name]
    print(f"[{time.strftime('%H:%M:%S')}] {job}: starting {name}", flush=True)
    rates = [machine_peak.numpy_matmul_gflops(FLAGS.matmul_size)]
    worker = Worker(name, job, backend, arguments)
    try:
        variant_slots, reference_slots = [], [] if reference else None
        if reference:
            reference_slots.append(reference.slot(FLAGS.units))
        for _ in range(FLAGS.rounds):
            variant_slots.append(worker.slot(FLAGS.units))
            if reference:
                reference_slots.append(reference.slot(FLAGS.units))
            print(f"  {name}: {seconds_per_unit(variant_slots[-1]):.3f} s/unit"
                  + (f", published {seconds_per_unit(reference_slots[-1]):.3f}"
                     if reference else "")
                  + f" (load {variant_slots[-1]['load_average']:.1f})", flush=True)
    finally:
        worker.stop()
    rates.append(machine_peak.numpy_matmul_gflops(FLAGS.matmul_size))
    unit_gflop = worker.ready["unit_gflop"]
    return {"variant": name, "job": job, "ready": worker.ready, "slots": variant_slots,
            "reference_slots": reference_slots, "machine_matmul_gflops": rates,
            **summarise(variant_slots, reference_slots, unit_gflop, rates)}


def run_job(job: str) -> list[dict]:
    reference = None
    if FLAGS.behavemae_dir:
        arguments = (["--threads", str(FLAGS.reference_threads)]
                     if FLAGS.reference_threads else [])
        print(f"[{time.strftime('%H:%M:%S')}] {job}: starting the published code", flush=True)
        reference = Worker("published", job, None, arguments)
        print(f"  published: {reference.ready.get('timm_layers')}, "
              f"{reference.ready.get('torch_threads')} threads", flush=True)
    results = []
    try:
        for name in FLAGS.variants:
            try:
                results.append(run_variant(job, name, reference))
            except WorkerError as error:
                print(f"  {name}: FAILED: {error}", flush=True)
                results.append({"variant": name, "job": job, "error": str(error)})
    finally:
        if reference is not None:
            reference.stop()
    if reference is not None:
        for result in results:
            result["reference_ready"] = reference.ready
    return results


def table(results: list[dict], with_reference: bool) -> str:
    header = ("| job | variant | s/unit | × published (median, range) | published s/unit "
              "| × published, CPU s | ratio to R | load |" if with_reference
              else "| job | variant | s/unit | ratio to R | load |")
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['job']} | {result['variant']} | failed |"
                         + " |" * (header.count("|") - 4))
            continue
        load = result["load_average"]
        cells = [result["job"], result["variant"], f"{result['seconds_per_unit']:.3f}"]
        if with_reference:
            cells += [f"**{result['speedup']:.2f}×** ({result['speedup_min']:.2f}–"
                      f"{result['speedup_max']:.2f})",
                      f"{result['reference_seconds_per_unit']:.3f}",
                      f"{result['cpu_speedup']:.2f}×"]
        cells += [f"{result['ratio_to_machine_matmul']:.2f}",
                  f"{min(load):.1f}–{max(load):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = [name for name in FLAGS.variants if name not in VARIANTS]
    if unknown:
        raise app.UsageError(f"--variants: unknown {unknown}; give some of {list(VARIANTS)}")
    if any(job not in JOBS for job in FLAGS.jobs):
        raise app.UsageError(f"--jobs: give some of {list(JOBS)}")
    if "published_1thread" in FLAGS.variants and not FLAGS.behavemae_dir:
        raise app.UsageError("--variants published_1thread needs --behavemae_dir")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results = []
    for job in FLAGS.jobs:
        results.extend(run_job(job))
    with_reference = bool(FLAGS.behavemae_dir)
    print(f"\n{FLAGS.config}, batch {FLAGS.batch_size}, float32; {FLAGS.rounds} rounds of "
          f"{FLAGS.units} units; started {started}")
    print(table(results, with_reference))
    if FLAGS.output:
        content = {"benchmark": "compare_published", "started": started,
                   "config": FLAGS.config, "batch_size": FLAGS.batch_size,
                   "rounds": FLAGS.rounds, "units": FLAGS.units,
                   "behavemae_dir": FLAGS.behavemae_dir, "results": results}
        path = pathlib.Path(FLAGS.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=1) + "\n")
    return 1 if any("error" in result for result in results) else 0


if __name__ == "__main__":
    app.run(main)
