"""The documented end-to-end command sequence (README, "End to end: pretrain, extract, probe,
plot"), at a tiny size: pretrain on synthetic data (keeping the initial weights), extract
embeddings of the trained model and of its untrained control, probe every level against its
control and the baselines, plot the training curves and a reconstruction. Each step runs as a
subprocess on the current backend, exactly as a user would type it."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_hbehavemae.allocator import reuse_freed_memory

pytestmark = pytest.mark.slow  # subprocesses, model builds and SavedModels

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_ARCHITECTURE = ["--input_size=24,3,24", "--patch_kernel=3,1,24", "--stages=1,1",
                     "--q_strides=2,1,1", "--mask_unit_attn=True,False", "--init_embed_dim=8",
                     "--out_embed_dims=8,16", "--decoder_embed_dim=8"]
LEVELS = ("level_0", "level_1")
TASKS = ("action", "activity", "cohesion", "moveme")


def run_script(name, *arguments, environment):
    completed = subprocess.run([sys.executable, os.path.join(REPOSITORY, "scripts", name),
                                *arguments], cwd=REPOSITORY, env=environment,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, f"{name} failed:\n{completed.stderr[-3000:]}"
    return completed


@pytest.fixture(scope="module")
def end_to_end(tmp_path_factory):
    """Runs the whole sequence once and returns the run folder."""
    pytest.importorskip("matplotlib")
    run = tmp_path_factory.mktemp("end_to_end")
    environment = {**os.environ, "KERAS_BACKEND": keras.config.backend(),
                   "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    run_script("pretrain.py", f"--output_dir={run}", "--synthetic_sequences=8,8",
               "--synthetic_frames=400", "--epochs=2",
               "--warmup_epochs=1", "--steps_per_epoch=6", "--batch_size=8", "--save_initial",
               *TINY_ARCHITECTURE, environment=environment)
    run_script("extract_embeddings.py", f"--preset={run / 'preset'}",
               f"--control={run / 'initial_preset'}", "--mode=strided",
               f"--path_to_data_dir={run / 'data'}", "--noembedsum", "--batch_size=256",
               f"--output_dir={run / 'embeddings'}", environment=environment)
    evaluated = run_script("evaluate.py", f"--embeddings={run / 'embeddings'}",
                           f"--output_dir={run / 'probes'}", environment=environment)
    (run / "evaluate.out").write_text(evaluated.stdout)
    run_script("plot_training.py", f"--log={run / 'metrics.jsonl'}",
               f"--output={run / 'training.png'}", environment=environment)
    run_script("plot_reconstruction.py", f"--preset={run / 'preset'}",
               f"--data={run / 'data' / 'test.npy'}", "--sequence=0", "--start=100",
               "--keypoints=0,1", f"--output={run / 'reconstruction.png'}",
               environment=environment)
    return run


def test_extraction_writes_levels_labels_and_baseline(end_to_end):
    folder = end_to_end / "embeddings"
    frame_map = json.loads((folder / "frame_number_map.json").read_text())
    frames = max(end for _, end in frame_map.values())
    assert len(frame_map) == 8 and frames == 8 * 400
    # Flattened (no embedsum): level 0 keeps the 3 mice apart, level 1 too (no pooling on H).
    assert np.load(folder / "level_0.npy").shape == (frames, 3 * 8)
    assert np.load(folder / "level_1.npy").shape == (frames, 3 * 16)
    keypoints = np.load(folder / "keypoints.npy")
    assert keypoints.shape == (frames, 72)
    assert -1.0 <= keypoints.min() and keypoints.max() <= 1.0  # arena-normalised
    labels = np.load(folder / "labels.npy", allow_pickle=True).item()
    assert sorted(labels["vocabulary"]) == sorted(TASKS)
    # A new user's default extraction takes the fast path measured for a small model
    # (tests/test_compilation.py): XLA under JAX only; freed memory kept for reuse (glibc).
    summary = json.loads((folder / "extraction.json").read_text())
    assert summary["jit_compile"] == "auto"
    assert summary["compiled"] == str(keras.config.backend() == "jax")
    assert summary["reuse_freed_memory"] is reuse_freed_memory(keras.config.backend(), apply=False)
    assert labels["label_array"].shape == (4, frames)


def test_control_embeddings_come_from_the_initial_weights(end_to_end):
    control = end_to_end / "embeddings" / "control"
    summary = json.loads((control / "extraction.json").read_text())
    assert summary["preset"] == str(end_to_end / "initial_preset")
    assert summary["weights"] == "initial" and summary["role"] == "control"
    trained = np.load(end_to_end / "embeddings" / "level_1.npy")
    assert np.load(control / "level_1.npy").shape == trained.shape
    assert not np.allclose(np.load(control / "level_1.npy"), trained)


def test_probe_table_has_levels_controls_and_baselines(end_to_end):
    with open(end_to_end / "probes" / "probe_table.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["task"] for row in rows) == sorted(TASKS)
    columns = (*LEVELS, *(f"control_{level}" for level in LEVELS), "raw_keypoints",
               "raw_motion")
    for row in rows:
        for column in columns:
            score, spread = float(row[column]), float(row[f"{column}_sd"])
            assert np.isfinite(score) and score >= 0.0, (row, column)
            assert np.isfinite(spread) and spread >= 0.0, (row, column)
            seeds = [float(row[f"{column}_seed_{seed}"]) for seed in (41, 42, 43, 44, 45)]
            assert score == pytest.approx(np.mean(seeds)), (row, column)
            if row["task"] != "cohesion":  # F1 scores; cohesion is an MSE
                assert score <= 1.0
        for level in LEVELS:
            assert row[f"{level}_vs_control"] in ("better", "worse", "same")
    markdown = (end_to_end / "probes" / "probe_table.md").read_text()
    assert "sample standard deviation across 5 seeds" in markdown
    assert "4-fold cross-validation" in markdown
    wrote = (end_to_end / "evaluate.out").read_text().splitlines()[-1]
    for name in ("probe_table.md", "probe_table.csv", "probe_results.json",
                 "probe_heatmap.png"):
        assert name in wrote


def test_pictures_are_written(end_to_end):
    for name in ("probes/probe_heatmap.png", "training.png", "reconstruction.png"):
        path = end_to_end / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size > 10_000, name


def test_the_run_kept_freed_memory_for_reuse_by_default(end_to_end):
    summary = json.loads((end_to_end / "final_metrics.json").read_text())
    assert summary["reuse_freed_memory"] is reuse_freed_memory(keras.config.backend(), apply=False)
