"""Figures: probe heat map and training curves (PNG files written, not compared by pixel)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from keras_hbehavemae.evaluation import plots, probe_table

pytestmark = pytest.mark.backend_independent

MIN_PNG_BYTES = 5000


def _table():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(12), 40)
    x = rng.normal(size=(len(ids), 4))
    labels = {"threshold": (x[:, 0] > 0).astype(float), "three": np.argmax(x[:, :3], 1) * 1.0,
              "linear": x @ [1.0, -1.0, 0.5, 0.0]}
    types = {"threshold": "discrete", "three": "discrete", "linear": "continuous"}
    return probe_table({"level_0": x, "level_1": rng.normal(size=(len(ids), 2))}, labels, types,
                       ids, baseline=rng.normal(size=(len(ids), 3)), seeds=(0, 1),
                       alphas=(1.0,))


def test_probe_heatmap_png(tmp_path):
    pytest.importorskip("matplotlib")
    plots.plot_probe_heatmap(_table(), tmp_path / "heatmap.png", title="probes")
    data = (tmp_path / "heatmap.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > MIN_PNG_BYTES


def _write_logs(directory):
    epochs = np.arange(20)
    rows = [{"epoch": int(e), "loss": float(1 / (1 + e)), "grad_norm": float(2 + np.sin(e)),
             "learning_rate": float(1e-3 * min(1.0, (e + 1) / 5))} for e in epochs]
    csv_path = directory / "history.csv"
    csv_path.write_text("epoch,loss,grad_norm,learning_rate\n" + "".join(
        f"{r['epoch']},{r['loss']},{r['grad_norm']},{r['learning_rate']}\n" for r in rows))
    jsonl_path = directory / "metrics.jsonl"  # the run directory's layout (train_ prefixes)
    jsonl_path.write_text("".join(json.dumps(
        {"epoch": r["epoch"], "train_loss": r["loss"], "train_grad_norm": r["grad_norm"],
         "train_learning_rate": r["learning_rate"],
         **({"test_loss": r["loss"] * 1.1} if r["epoch"] % 5 == 0 else {})}) + "\n"
        for r in rows))
    return csv_path, jsonl_path


def test_read_training_log_formats(tmp_path):
    csv_path, jsonl_path = _write_logs(tmp_path)
    from_csv = plots.read_training_log(csv_path)
    assert sorted(from_csv) == ["epoch", "grad_norm", "learning_rate", "loss"]
    assert from_csv["loss"].shape == (20,)
    from_directory = plots.read_training_log(tmp_path)  # metrics.jsonl is preferred
    assert "train_loss" in from_directory
    assert np.isnan(from_directory["test_loss"][1]) and np.isfinite(from_directory["test_loss"][0])


@pytest.mark.parametrize("which", ["csv", "jsonl"])
def test_training_curves_png(tmp_path, which):
    pytest.importorskip("matplotlib")
    csv_path, jsonl_path = _write_logs(tmp_path)
    output = tmp_path / f"curves_{which}.png"
    plots.plot_training_curves(csv_path if which == "csv" else jsonl_path, output)
    data = output.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > MIN_PNG_BYTES


def test_training_curves_need_a_known_column(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "other.csv"
    path.write_text("epoch,accuracy\n0,0.5\n")
    with pytest.raises(ValueError, match="no loss"):
        plots.plot_training_curves(path, tmp_path / "x.png")


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plots.plot_training_curves(tmp_path / "unused.csv", tmp_path / "x.png")
