"""The benchmark scripts (`benchmarks/`) at tiny size: they run and report every figure.

Behaviour only: no test here checks a speed. The scripts run in subprocesses under the
current KERAS_BACKEND, so each CI leg checks its own backend once.
"""

import json
import math
import os
import pathlib
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import benchmark_common  # noqa: E402
import machine_peak  # noqa: E402

from keras_hbehavemae.allocator import reuse_freed_memory  # noqa: E402

pytestmark = pytest.mark.slow  # subprocesses, model builds and SavedModels

BACKEND = keras.config.backend()

RATE_FIELDS = ("machine_matmul_gflops_before", "machine_matmul_gflops_after",
               "machine_matmul_gflops")
TRAIN_FIELDS = ("steps_per_second", "samples_per_second", "train_gflop_per_sample",
                "achieved_gflops", *RATE_FIELDS, "ratio_to_machine_matmul",
                "peak_rss_mib", "compile_seconds", "device_utilisation")
EXTRACT_FIELDS = ("samples_per_second", "encoder_gflop_per_sample", "achieved_gflops",
                  *RATE_FIELDS, "ratio_to_machine_matmul", "exact_seconds",
                  "fast_seconds", "strided_seconds", "exact_seconds_per_1800_frames",
                  "fast_seconds_per_1800_frames", "strided_seconds_per_1800_frames",
                  "exact_over_fast", "exact_over_strided", "exact_over_windows_1800_fast",
                  "exact_over_windows_1800_strided", "peak_rss_mib")
# The tiny gpu_check.sh (parity, then bf16 and f32 training) runs in the torch leg, where
# it is quickest; JAX compiles the train step once per precision (~200 s on 2 cores). It
# runs the same train_speed.py as the per-backend test below.
GPU_CHECK_BACKEND = "torch"


def _environment():
    return dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(BENCHMARKS))


def _run(command, timeout, **environment):
    result = subprocess.run(command, cwd=BENCHMARKS.parent, env={**_environment(), **environment},
                            capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def _assert_positive(figures, fields):
    for field in fields:
        value = figures[field]
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, field


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory):
    """`SIZE=tiny gpu_check.sh` for this backend: parity subset, then bf16 and f32 training."""
    if BACKEND != GPU_CHECK_BACKEND:
        pytest.skip(f"the tiny gpu_check.sh runs in the {GPU_CHECK_BACKEND} leg")
    folder = tmp_path_factory.mktemp("gpu_check")
    wheels = folder / "wheels"  # a carried wheel: unzipped onto PYTHONPATH, not installed
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "carried_probe-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("carried_probe.py", "")
    output = _run(["bash", str(BENCHMARKS / "gpu_check.sh")], timeout=1500, SIZE="tiny",
                  BACKENDS=f"{BACKEND} not_installed", OUT_DIR=str(folder),
                  PYTHON=sys.executable, WHEELS=str(wheels))
    return output, json.loads((folder / f"train_{BACKEND}.json").read_text())


def test_gpu_check_tiny_names_the_figures(gpu_check):
    output, _ = gpu_check
    assert f"=== {BACKEND}: parity, float32 at highest matmul precision" in output
    assert "highest_precision probe" in output and "(full float32)" in output
    assert " passed" in output and "failed" not in output
    for figure in ("samples_per_second", "device_utilisation", "ratio_to_machine_matmul",
                   "max_step_relative_difference", "peak_rss_mib"):
        assert f"{figure}: " in output, figure
    assert "== train_speed mixed_bfloat16" in output and "== train_speed float32" in output
    summary = output[output.index("=== summary"):]
    assert f"{BACKEND:10s} mixed_bfloat16" in summary and f"{BACKEND:10s} float32" in summary
    assert "TIMEOUT" not in output and "SKIPPED: only" not in output
    # Offline: a backend that is not installed is named and skipped; carried wheels are used.
    assert "=== not_installed: SKIPPED: not installed here" in output
    assert "gpu_check: carried wheel carried_probe-1.0-py3-none-any.whl" in output
    assert "pip install" not in (BENCHMARKS / "gpu_check.sh").read_text()


def test_train_speed_json(gpu_check):
    _, result = gpu_check
    runs = {run["precision"]: run for run in result["runs"]}
    assert set(runs) == {"mixed_bfloat16", "float32"}
    for run in runs.values():
        _assert_positive(run, TRAIN_FIELDS)
        assert run["backend"] == BACKEND and run["config"] == "tiny"
        assert len(run["losses"]) == run["warmup_steps"] + run["steps"]
        assert all(math.isfinite(loss) and loss > 0 for loss in run["losses"])
    comparison = result["loss_comparison"]
    assert comparison["steps_compared"] == len(runs["float32"]["losses"])
    assert 0 <= comparison["max_step_relative_difference"] < 0.5
    # The same seed gives the same data, masks and initial weights in both precisions.
    assert runs["mixed_bfloat16"]["losses"][0] == pytest.approx(runs["float32"]["losses"][0],
                                                                rel=0.05)


def test_train_speed_runs_on_this_backend(tmp_path):
    output_file = tmp_path / "train.json"
    output = _run([sys.executable, str(BENCHMARKS / "train_speed.py"), "--config", "tiny",
                   "--batch_size", "4", "--steps", "2", "--warmup_steps", "1",
                   "--matmul_size", "256", "--output", str(output_file)], timeout=900)
    assert "ratio_to_machine_matmul: " in output
    run = json.loads(output_file.read_text())  # one precision: the run's figures
    _assert_positive(run, TRAIN_FIELDS[:-1])
    assert run["backend"] == BACKEND and run["precision"] == "float32"
    assert run["reuse_freed_memory"] is reuse_freed_memory(BACKEND, apply=False)  # as pretrain
    assert len(run["losses"]) == 3 and all(math.isfinite(loss) for loss in run["losses"])


def test_extract_speed_json(tmp_path):
    output_file = tmp_path / "extract.json"
    output = _run([sys.executable, str(BENCHMARKS / "extract_speed.py"), "--config", "tiny",
                   "--batch_size", "8", "--steps", "2", "--warmup_steps", "1",
                   "--sequence_frames", "40", "--output", str(output_file)], timeout=600)
    assert "exact_over_strided: " in output
    figures = json.loads(output_file.read_text())
    _assert_positive(figures, EXTRACT_FIELDS)
    assert figures["exact_windows"] == 40 + 32 - 1 and figures["fast_windows"] == 20
    assert figures["reuse_freed_memory"] is reuse_freed_memory(BACKEND, apply=False)
    assert figures["strided_windows"] == 9  # ⌈71 / 8⌉, window stride 32 // 4
    assert figures["projected_from_frames"] is True
    for mode in ("fast", "strided"):
        assert len(figures[f"{mode}_per_level_difference"]) == 3
        assert (figures[f"{mode}_exact_max_abs_difference"]
                >= figures[f"{mode}_exact_mean_abs_difference"])


def test_freed_memory_compares_the_defaults_with_reuse(tmp_path):
    output_file = tmp_path / "freed.json"
    output = _run([sys.executable, str(BENCHMARKS / "freed_memory.py"), "--config", "tiny",
                   f"--backends={BACKEND}", "--batch_size", "4", "--units", "2", "--warmup",
                   "1", "--output", str(output_file)], timeout=900)
    assert "| backend | job | setting | s per unit |" in output
    rows = json.loads(output_file.read_text())["rows"]
    assert [(row["job"], row["reuse"]) for row in rows] == [
        ("train", False), ("train", True), ("extract", False), ("extract", True)]
    available = reuse_freed_memory(BACKEND, apply=False)
    for row in rows:
        assert row["applied"] is (row["reuse"] and available)
        assert row["reusing"] is row["applied"]  # TensorFlow: its allocator confirms it
        assert len(row["seconds"]) == 2 and row["median_seconds"] > 0 and row["peak_rss_mb"] > 0


@pytest.mark.backend_independent
@pytest.mark.parametrize("file_format, reader", [("sleap_h5", "auto"), ("dlc_csv", "movement")])
def test_pose_read_speed_reports_seconds_and_memory(tmp_path, file_format, reader):
    from pose_writers import require_movement

    require_movement()
    output_file = tmp_path / "pose.json"
    _run([sys.executable, str(BENCHMARKS / "pose_read_speed.py"), "--minutes", "0.5",
          "--num_frames", "60", "--format", file_format, "--reader", reader,
          "--output", str(output_file)], timeout=600,
         PYTHONPATH=os.pathsep.join([str(BENCHMARKS.parent), str(BENCHMARKS)]))
    figures = json.loads(output_file.read_text())
    assert (figures["frames"], figures["individuals"], figures["features"]) == (900, 2, 24)
    assert figures["windows"] == len(range(0, 900 + 59 - 60 + 1, 17))
    assert (figures["format"], figures["reader"]) == (file_format, reader)
    assert figures["read_directly"] == (reader == "auto")
    _assert_positive(figures, ("read_and_window_seconds", "import_seconds",
                               "traced_peak_over_array", "rss_growth_mib", "array_mib"))
    assert figures["array_mib"] == pytest.approx(900 * 2 * 24 * 4 / 2**20)


@pytest.mark.parametrize("workload", ["train", "extract"])
def test_matmul_ceiling_times_the_counted_products(tmp_path, workload):
    import flop_count

    from keras_hbehavemae.models.geometry import compute_geometry

    output_file = tmp_path / "ceiling.json"
    output = _run([sys.executable, str(BENCHMARKS / "matmul_ceiling.py"), "--config", "tiny",
                   "--batch_size", "4", "--workload", workload, "--repeats", "1",
                   "--matmul_size", "256", "--output", str(output_file)], timeout=600)
    assert "ceiling_ratio_to_machine_matmul: " in output
    figures = json.loads(output_file.read_text())
    _assert_positive(figures, ("matmul_seconds_per_step", "ceiling_gflops",
                               "ceiling_ratio_to_machine_matmul", *RATE_FIELDS))
    geometry = compute_geometry(benchmark_common.TINY)
    expected = (flop_count.training_step_flops(geometry) if workload == "train"
                else flop_count.encoder_forward_flops(geometry))
    assert figures["gflop_per_sample"] == pytest.approx(expected / 1e9)
    assert sum(row["count"] for row in figures["slowest"]) == figures["products"]
    assert len(figures["slowest"]) == figures["distinct_shapes"]
    seconds = [row["seconds"] for row in figures["slowest"]]
    assert seconds == sorted(seconds, reverse=True)
    assert sum(seconds) == pytest.approx(figures["matmul_seconds_per_step"])


def test_profile_step_splits_the_step(tmp_path):
    output_file = tmp_path / "profile.json"
    output = _run([sys.executable, str(BENCHMARKS / "profile_step.py"), "--config", "tiny",
                   "--batch_size", "4", "--steps", "1", "--matmul_repeats", "1",
                   "--operators", "5", "--output", str(output_file)], timeout=900)
    figures = json.loads(output_file.read_text())
    _assert_positive(figures, ("forward_seconds", "train_step_seconds", "matmul_only_seconds",
                               "train_step_gflops", "matmul_only_gflops", "peak_rss_mib"))
    assert figures["backward_and_update_seconds"] == pytest.approx(
        figures["train_step_seconds"] - figures["forward_seconds"])
    assert figures["everything_else_seconds"] == pytest.approx(
        figures["train_step_seconds"] - figures["matmul_only_seconds"])
    if BACKEND == "torch":  # the profiler's operator table
        assert "Self CPU" in figures["torch_operators"] and "aten::" in output
    else:
        assert "torch_operators" not in figures


def test_machine_rate_uses_the_larger_measurement():
    rates = benchmark_common.machine_rate_figures(before=120.0, after=150.0)
    assert rates["machine_matmul_gflops"] == 150.0
    assert rates["machine_matmul_gflops_before"] == 120.0
    figures = {"achieved_gflops": 30.0}
    benchmark_common.add_ratio_figures(figures, 120.0, 150.0, device_peak_tflops=0.3)
    assert figures["ratio_to_machine_matmul"] == pytest.approx(0.2)
    assert figures["device_utilisation"] == pytest.approx(0.1)


def test_per_step_losses_undo_the_running_mean():
    losses = [3.0, 1.0, 2.0, 0.5]
    running = np.cumsum(losses) / np.arange(1, 5)
    assert benchmark_common.per_step_losses(list(running)) == pytest.approx(losses)


def test_loss_comparison():
    comparison = benchmark_common.loss_comparison([1.0, 2.0, 4.0], [1.0, 2.2, 4.0])
    assert comparison["steps_compared"] == 3
    assert comparison["max_step_relative_difference"] == pytest.approx(0.1)
    assert comparison["mean_step_relative_difference"] == pytest.approx(0.1 / 3)
    assert comparison["mean_loss_relative_difference"] == pytest.approx(0.2 / 7)


def test_random_walk_windows_are_seeded_and_standardised():
    first = benchmark_common.random_walk_windows(3, (16, 2, 3), seed=1)
    assert first.shape == (3, 16, 2, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, benchmark_common.random_walk_windows(3, (16, 2, 3), 1))
    assert abs(float(first.mean())) < 1e-5 and float(first.std()) == pytest.approx(1, rel=1e-4)


def test_benchmark_configs_come_from_the_presets():
    from keras_hbehavemae.models.geometry import compute_geometry

    shot = compute_geometry(benchmark_common.benchmark_config("shot7m2"))
    assert shot.config.input_size == (400, 1, 72) and shot.config.mask_ratio == 0.7
    assert shot.config.decoding_strategy == "single" and shot.num_kept_units == 15
    mabe = benchmark_common.benchmark_config("mabe22")
    assert mabe.input_size == (900, 3, 24) and mabe.decoding_strategy == "multi"
    with pytest.raises(ValueError, match="config must be one of"):
        benchmark_common.benchmark_config("hbabel_typo")


def test_machine_peak_helpers():
    assert machine_peak.matmul_flops(2048) == 2 * 2048**3
    assert machine_peak.numpy_matmul_gflops(size=128, repeats=2, warmup=1) > 0
    assert machine_peak.peak_rss_bytes() > 2**20
