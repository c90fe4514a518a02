"""Figures: the probe score heat map and training curves, written as PNG files.

matplotlib is an optional dependency, imported only when a figure is drawn; without it
the plotting functions raise ImportError ("pip install matplotlib"). Figures are built
with `matplotlib.figure.Figure` directly, so no pyplot state or GUI backend is touched.
`read_training_log` needs only NumPy.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.files.atomic import write_atomically

_LOSS_KEYS = ("loss", "train_loss")
_VALIDATION_KEYS = ("test_loss", "val_loss", "validation_loss")
_LEARNING_RATE_KEYS = ("learning_rate", "train_learning_rate", "lr")
_GRAD_NORM_KEYS = ("grad_norm", "train_grad_norm")
_X_KEYS = ("step", "epoch")



def save_figure(figure, path, dpi: int = 120) -> None:
    """`figure.savefig(path)` written atomically (a temporary file, then a rename); the
    format follows the file's ending (PNG without one)."""
    path = os.fspath(path)
    file_format = os.path.splitext(path)[1][1:].lower() or "png"
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=dpi,
                                                            format=file_format))

def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "plotting needs matplotlib, which is not installed: pip install matplotlib"
        ) from error
    return Figure


def _text_colour(rgba: Sequence[float]) -> str:
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.5 else "white"


def plot_probe_heatmap(
    table: Any, path: str | os.PathLike[str], *, title: str | None = None, digits: int = 3
) -> None:
    """Draws a `probes.ProbeTable` as a heat map with the scores written in the cells.

    Tasks are rows, embeddings (levels, controls, then the baselines) columns; each cell
    shows the mean score and its standard deviation across seeds. Discrete tasks
    (F1, higher is better, colour scale fixed to [0, 1]) and continuous tasks (MSE, lower
    is better, their own scale, reversed so that better is brighter in both) get separate
    panels.
    """
    figure_class = _figure_class()
    panels = []
    for kind, label, colour_map in (
        ("discrete", "F1 (higher is better)", "viridis"),
        ("continuous", "MSE (lower is better)", "viridis_r"),
    ):
        tasks = [
            task for task in table.tasks
            if table.results[table.columns[0]][task].task_type == kind
        ]  # fmt: skip
        if tasks:
            values = np.array(
                [[table.results[column][task].score for column in table.columns] for task in tasks],
                dtype=np.float64,
            )
            panels.append((tasks, values, label, colour_map, kind))
    if not panels:
        raise ValueError("the table has no tasks to plot")
    num_rows = sum(len(tasks) for tasks, *_ in panels)
    width = 3.0 + 1.4 * len(table.columns)
    height = 1.4 * len(panels) + 0.6 * num_rows + 0.6
    figure = figure_class(figsize=(width, height), layout="constrained")
    grid = figure.add_gridspec(len(panels), 1, height_ratios=[len(p[0]) + 1.5 for p in panels])
    for index, (tasks, values, label, colour_map, kind) in enumerate(panels):
        axes = figure.add_subplot(grid[index])
        finite = values[np.isfinite(values)]
        if kind == "discrete":
            low, high = 0.0, 1.0
        else:
            low = 0.0
            high = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        image = axes.imshow(np.ma.masked_invalid(values), cmap=colour_map, vmin=low, vmax=high,
                            aspect="auto")
        axes.set_xticks(range(len(table.columns)), labels=table.columns, rotation=30, ha="right")
        axes.set_yticks(range(len(tasks)), labels=tasks)
        axes.set_title(label, fontsize=10)
        for row, task_values in enumerate(values):
            for column, value in enumerate(task_values):
                spread = table.results[table.columns[column]][tasks[row]].spread
                if math.isfinite(value):
                    colour = _text_colour(image.cmap(image.norm(value)))
                    text = f"{value:.{digits}f}"
                    if math.isfinite(spread):
                        text += f"\n±{spread:.{digits}f}"
                else:
                    colour, text = "black", "–"
                axes.text(column, row, text, ha="center", va="center", color=colour, fontsize=9)
        figure.colorbar(image, ax=axes, fraction=0.05)
    if title:
        figure.suptitle(title)
    save_figure(figure, path)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def read_training_log(log_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Reads a training log into columns (name → float array; NaN where missing).

    Accepts a CSV file with a header (e.g. `epoch,loss,grad_norm,learning_rate`), a
    JSON-lines file of dicts (e.g. a run's `metrics.jsonl`), a JSON file holding a list
    of dicts, or a run directory containing `metrics.jsonl` (or one `*.csv`).
    """
    path = os.fspath(log_path)
    if os.path.isdir(path):
        candidates = [os.path.join(path, "metrics.jsonl")] + sorted(
            os.path.join(path, name) for name in os.listdir(path) if name.endswith(".csv")
        )
        existing = [candidate for candidate in candidates if os.path.isfile(candidate)]
        if not existing:
            raise FileNotFoundError(f"{path}: no metrics.jsonl or *.csv training log")
        path = existing[0]
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such training log") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; expected a CSV or JSON training log"
                         ) from None
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = json.loads(stripped)
        elif stripped.startswith("{"):
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = list(csv.DictReader(text.splitlines()))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not records or not all(isinstance(record, dict) for record in records):
        raise ValueError(f"{path}: expected CSV rows or JSON dicts, found none")
    names = list(dict.fromkeys(name for record in records for name in record))
    return {
        name: np.array([_to_float(record.get(name)) for record in records]) for name in names
    }


def _first(columns: dict[str, np.ndarray], keys: Sequence[str]) -> tuple[str, np.ndarray] | None:
    for key in keys:
        if key in columns and np.any(np.isfinite(columns[key])):
            return key, columns[key]
    return None


def plot_training_curves(
    log_path: str | os.PathLike[str], path: str | os.PathLike[str], *, title: str | None = None
) -> None:
    """Plots loss (with the test/validation loss if logged), learning rate and gradient
    norm of a training log (see `read_training_log`) in three panels.

    The x axis is `step` if logged, else `epoch`, else the row number. A panel whose
    series is absent says so.
    """
    figure_class = _figure_class()
    columns = read_training_log(log_path)
    found_x = _first(columns, _X_KEYS)
    x_name, x = found_x if found_x else ("row", np.arange(len(next(iter(columns.values())))))
    series = {
        "loss": [_first(columns, _LOSS_KEYS), _first(columns, _VALIDATION_KEYS)],
        "learning rate": [_first(columns, _LEARNING_RATE_KEYS)],
        "gradient norm": [_first(columns, _GRAD_NORM_KEYS)],
    }
    if not any(found for panel in series.values() for found in panel):
        raise ValueError(
            f"{os.fspath(log_path)}: no loss, learning rate or gradient norm columns "
            f"(found {sorted(columns)})"
        )
    figure = figure_class(figsize=(7.0, 8.0), layout="constrained")
    axes_list = figure.subplots(3, 1, sharex=True)
    for axes, (panel, found_series) in zip(axes_list, series.items(), strict=True):
        drawn = False
        for found in found_series:
            if found is None:
                continue
            name, values = found
            keep = np.isfinite(values)
            axes.plot(x[keep], values[keep], marker="." if keep.sum() < 50 else None, label=name)
            drawn = True
        if drawn:
            axes.legend(loc="best", fontsize=8)
            axes.grid(alpha=0.3)
        else:
            axes.text(0.5, 0.5, "not logged", ha="center", va="center",
                      transform=axes.transAxes)
        axes.set_ylabel(panel)
    axes_list[-1].set_xlabel(x_name)
    if title:
        figure.suptitle(title)
    save_figure(figure, path)
