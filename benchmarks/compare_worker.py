"""One side of `compare_published.py`: a process that builds one implementation for one job,
warms it up, then times it whenever the driver asks.

    python benchmarks/compare_worker.py --implementation package --job train --config shot7m2
    python benchmarks/compare_worker.py --implementation published --behavemae_dir PATH ...

Implementations: `package` (this package under `KERAS_BACKEND`) or `published` (the
published PyTorch code from `--behavemae_dir`, see `published_model.py`).

Jobs, at `--batch_size` float32 windows of random walks:

- `train`: one pretraining step. Package: `model.fit` on a cached `tf.data` pipeline with
  the published optimizer (as `train_speed.py`). Published: the step of its training loop
  in float32: forward with its own random mask, `loss.item()`, backward, gradient clipping
  to 0.02, the foreach AdamW step of its recipe, zeroing the gradients.
- `extract`: one batch through the full unmasked encoder. Package:
  `HBehaveMAEBackbone.predict_on_batch`. Published: its encoder (`gen_hiera`) in eval
  mode under `torch.no_grad()`, returning the per-level maps (`return_intermediates`).
- `exact`: exact-mode embedding of one `--sequence_frames`-frame sequence (all L + T − 1
  stride-1 windows, per-frame means). Package: `embed_sequences`. Published protocol,
  re-implemented here: edge padding by T − 1, every stride-1 window in batches of
  `--batch_size` through its encoder, each level's time tokens repeated over their frames,
  and every frame averaged over the windows that cover it.

Protocol: after warming up the worker prints one line `@@ {"ready": ...}`; then for each
line `time N` on its standard input it runs N units of its job and prints `@@ {...}` with
the wall and CPU seconds of each; `quit` ends it. Everything else it prints is noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

MARK = "@@ "


def say(content: dict) -> None:
    print(MARK + json.dumps(content), flush=True)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--implementation", choices=("package", "published"), required=True)
    parser.add_argument("--job", choices=("train", "extract", "exact"), required=True)
    parser.add_argument("--config", default="shot7m2", choices=("shot7m2", "mabe22", "tiny"))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--jit_compile", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: leave them as they are)")
    parser.add_argument("--sequence_frames", type=int, default=32)
    parser.add_argument("--behavemae_dir", default=None)
    parser.add_argument("--timm", default="auto", choices=("auto", "timm", "stand-in"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse_freed_memory", default="auto", choices=("auto", "true", "false"),
                        help="keep freed memory for reuse (keras_hbehavemae.allocator); auto: "
                        "yes for the package, as its commands do, no for the published code")
    return parser.parse_args(argv)


def configuration(name: str) -> dict:
    """The package's parameters of a benchmark configuration (built-in presets, or tiny)."""
    import benchmark_common

    return benchmark_common.benchmark_config(name).to_dict()


def unit_gflop(arguments) -> float:
    """Analytic GFLOP of one unit of the job (`flop_count.py`): a training step or an
    encoder batch of `--batch_size` windows, or the L + T − 1 windows of the sequence."""
    import benchmark_common
    import flop_count

    from keras_hbehavemae.models.geometry import compute_geometry

    geometry = compute_geometry(benchmark_common.benchmark_config(arguments.config))
    if arguments.job == "train":
        return flop_count.training_step_flops(geometry) * arguments.batch_size / 1e9
    windows = arguments.batch_size
    if arguments.job == "exact":
        windows = arguments.sequence_frames + geometry.config.input_size[0] - 1
    return flop_count.encoder_forward_flops(geometry) * windows / 1e9


def set_torch_threads(arguments) -> None:
    """`--threads` for torch (the published code, or the package under torch)."""
    if arguments.threads > 0:
        import torch

        torch.set_num_threads(arguments.threads)


def reuse_memory(arguments):
    """Applies `--reuse_freed_memory` (auto is what each side does by default: the package's
    commands keep freed memory for reuse, the published code leaves glibc's defaults);
    returns `keras_hbehavemae.allocator`, whose `reusing_freed_memory()` says whether it is
    in effect, or None when the setting is off."""
    wanted = {"true": True, "false": False}.get(arguments.reuse_freed_memory,
                                                arguments.implementation == "package")
    if not wanted:
        return None
    # Loaded from its file, so that the published side does not import Keras with the
    # package (and works under a --reference_python without the package installed).
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "keras_hbehavemae" / "allocator.py"
    spec = importlib.util.spec_from_file_location("keras_hbehavemae_allocator", path)
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)
    allocator.reuse_freed_memory("torch" if arguments.implementation == "published"
                                 else os.environ.get("KERAS_BACKEND", "tensorflow"))
    return allocator


def windows_for(arguments, input_size):
    import benchmark_common

    return benchmark_common.random_walk_windows(arguments.batch_size, input_size,
                                                arguments.seed)


# ---------------------------------------------------------------------- the package
class PackageTrain:
    def __init__(self, arguments):
        import benchmark_common
        import keras
        import tensorflow as tf

        from keras_hbehavemae.models.compilation import parse_jit_compile_flag
        from keras_hbehavemae.training.initial import build_pretrainer
        from keras_hbehavemae.training.optimizer import published_optimizer, scaled_learning_rate

        config = benchmark_common.benchmark_config(arguments.config)
        keras.utils.set_random_seed(arguments.seed)
        self.model = build_pretrainer(config, seed=arguments.seed)
        rate = scaled_learning_rate(1.6e-4, arguments.batch_size)
        self.model.compile(optimizer=published_optimizer(self.model, rate),
                           jit_compile=parse_jit_compile_flag(arguments.jit_compile))
        self.model.optimizer.build(self.model.trainable_variables)
        windows = benchmark_common.random_walk_windows(4 * arguments.batch_size,
                                                       config.input_size, arguments.seed)
        dataset = (tf.data.Dataset.from_tensor_slices(windows)
                   .batch(arguments.batch_size, drop_remainder=True).cache().repeat()
                   .prefetch(tf.data.AUTOTUNE))
        self.iterator_source = dataset
        self.losses = []
        self.describe = {"jit_compile": str(self.model.jit_compile)}

    def run(self, count: int) -> list[tuple[float, float]]:
        import keras

        stamps = []
        outer = self

        class Stamps(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                stamps.append((time.perf_counter(), time.process_time()))

            def on_train_batch_end(self, batch, logs=None):
                outer.losses.append(float(logs["loss"]))  # waits for the step
                stamps.append((time.perf_counter(), time.process_time()))

        self.model.fit(self.iterator_source, epochs=1, steps_per_epoch=count, verbose=0,
                       callbacks=[Stamps()])
        return [(stamps[2 * i + 1][0] - stamps[2 * i][0], stamps[2 * i + 1][1] - stamps[2 * i][1])
                for i in range(count)]


class PackageExtract:
    def __init__(self, arguments):
        import benchmark_common
        import keras

        from keras_hbehavemae import HBehaveMAEBackbone
        from keras_hbehavemae.models.compilation import parse_jit_compile_flag

        config = benchmark_common.benchmark_config(arguments.config)
        keras.utils.set_random_seed(arguments.seed)
        self.backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
        self.backbone.compile(jit_compile=parse_jit_compile_flag(arguments.jit_compile))
        self.windows = windows_for(arguments, config.input_size)
        self.describe = {"jit_compile": str(self.backbone.jit_compile)}

    def run(self, count: int) -> list[tuple[float, float]]:
        return [timed(lambda: self.backbone.predict_on_batch(self.windows))
                for _ in range(count)]


class PackageExact:
    def __init__(self, arguments):
        extract = PackageExtract(arguments)
        self.backbone, self.describe = extract.backbone, extract.describe
        self.batch_size = arguments.batch_size
        self.sequence = sequence_for(arguments, extract.backbone.geometry.config.input_size)

    def run(self, count: int) -> list[tuple[float, float]]:
        from keras_hbehavemae.embeddings import embed_sequences

        return [timed(lambda: embed_sequences(self.backbone, [self.sequence], mode="exact",
                                              batch_size=self.batch_size, verbose=0))
                for _ in range(count)]


def sequence_for(arguments, input_size):
    import benchmark_common

    frames = (arguments.sequence_frames, *input_size[1:])
    return benchmark_common.random_walk_windows(1, frames, arguments.seed + 1)[0]


def timed(function) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call of `function`."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


# ---------------------------------------------------------------------- the published code
class Published:
    """Shared set-up: the published factory functions and arguments; torch threads."""

    def __init__(self, arguments):
        import published_model
        import torch

        torch.manual_seed(arguments.seed)
        parameters = configuration(arguments.config)  # the built-in preset's, or tiny
        self.published_model = published_model
        self.timm = published_model.ensure_timm_layers(arguments.timm)
        self.factories = published_model.load_published_models(arguments.behavemae_dir,
                                                               arguments.timm)
        self.args = published_model.published_arguments(parameters)
        self.input_size = self.args["input_size"]
        self.describe = {"timm_layers": self.timm, "torch_threads": torch.get_num_threads(),
                         "torch_interop_threads": torch.get_num_interop_threads(),
                         "torch": torch.__version__}


class PublishedTrain(Published):
    def __init__(self, arguments):
        super().__init__(arguments)
        import torch

        self.model = self.factories.hbehavemae(**self.args)
        self.model.train()
        groups = self.published_model.published_parameter_groups(self.model)
        rate = self.published_model.BASE_LEARNING_RATE * arguments.batch_size / 256
        self.optimizer = torch.optim.AdamW(groups, lr=rate, betas=self.published_model.BETAS,
                                           foreach=True)
        self.parameters = [p for p in self.model.parameters()]
        self.windows = torch.from_numpy(windows_for(arguments, self.input_size))
        self.losses = []

    def step(self):
        import torch

        loss = self.model(self.windows, [], mask_ratio=self.args["mask_ratio"],
                          mask_strategy="random")[0]
        self.losses.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, self.published_model.CLIP_GRAD)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def run(self, count: int) -> list[tuple[float, float]]:
        return [timed(self.step) for _ in range(count)]


class PublishedExtract(Published):
    def __init__(self, arguments):
        super().__init__(arguments)
        import torch

        self.encoder = self.factories.gen_hiera(**self.args)
        self.encoder.eval()
        self.windows = torch.from_numpy(windows_for(arguments, self.input_size))

    def encode(self, windows):
        """The per-level maps `[B, T_k, H_k, W_k, C_k]` of windows `[B, T, H, W]`."""
        import torch

        with torch.no_grad():
            return self.encoder(windows[:, None], return_intermediates=True)[1]

    def run(self, count: int) -> list[tuple[float, float]]:
        return [timed(lambda: self.encode(self.windows)) for _ in range(count)]


class PublishedExact(PublishedExtract):
    """The published exact-mode protocol, written from its description (module docstring)."""

    def __init__(self, arguments):
        super().__init__(arguments)
        self.batch_size = arguments.batch_size
        self.sequence = sequence_for(arguments, self.input_size)

    def embed(self):
        import numpy as np
        import torch

        frames = self.input_size[0]
        length = self.sequence.shape[0]
        padded = np.pad(self.sequence, ((frames - 1, frames - 1), (0, 0), (0, 0)), mode="edge")
        starts = range(length + frames - 1)
        sums = counts = None
        for first in range(0, len(starts), self.batch_size):
            batch = np.stack([padded[start:start + frames]
                              for start in starts[first:first + self.batch_size]])
            levels = self.encode(torch.from_numpy(batch))
            if sums is None:
                sums = [np.zeros((padded.shape[0], int(np.prod(level.shape[2:]))))
                        for level in levels]
                counts = np.zeros(padded.shape[0])
            for level, total in zip(levels, sums, strict=True):
                repeat = frames // level.shape[1]  # frames per time token
                rows = torch.repeat_interleave(level.flatten(2), repeat, dim=1).numpy()
                for offset, start in enumerate(starts[first:first + self.batch_size]):
                    total[start:start + frames] += rows[offset]
            for start in starts[first:first + self.batch_size]:
                counts[start:start + frames] += 1
        middle = slice(frames - 1, frames - 1 + length)
        return [total[middle] / counts[middle, None] for total in sums]

    def run(self, count: int) -> list[tuple[float, float]]:
        return [timed(self.embed) for _ in range(count)]


JOBS = {
    ("package", "train"): PackageTrain, ("package", "extract"): PackageExtract,
    ("package", "exact"): PackageExact, ("published", "train"): PublishedTrain,
    ("published", "extract"): PublishedExtract, ("published", "exact"): PublishedExact,
}


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    if arguments.implementation == "published" and not arguments.behavemae_dir:
        say({"error": "--behavemae_dir is required for the published implementation"})
        return 2
    started = time.perf_counter()
    allocator = reuse_memory(arguments)
    if arguments.implementation == "published" or os.environ.get("KERAS_BACKEND") == "torch":
        set_torch_threads(arguments)
    try:
        job = JOBS[(arguments.implementation, arguments.job)](arguments)
        warm = job.run(arguments.warmup) if arguments.warmup else []
    except Exception as error:  # reported to the driver, which prints it
        say({"error": f"{type(error).__name__}: {error}"})
        return 1
    ready = {"ready": True, "setup_seconds": time.perf_counter() - started,
             "unit_gflop": unit_gflop(arguments),
             "warmup_seconds": [wall for wall, _ in warm], "pid": os.getpid(),
             "reuse_freed_memory": allocator is not None and allocator.reusing_freed_memory(),
             **job.describe}
    if arguments.implementation == "package":
        import benchmark_common
        import keras

        ready["backend"] = keras.config.backend()
        ready["versions"] = benchmark_common.backend_versions()
        if keras.config.backend() == "torch":
            import torch

            ready["torch_threads"] = torch.get_num_threads()
            ready["torch_interop_threads"] = torch.get_num_interop_threads()
    say(ready)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        times = job.run(int(command[1]))
        losses = getattr(job, "losses", [])
        say({"wall": [wall for wall, _ in times], "cpu": [cpu for _, cpu in times],
             "median_wall": statistics.median(wall for wall, _ in times),
             "last_loss": losses[-1] if losses else None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
