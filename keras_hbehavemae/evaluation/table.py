"""The probe table: one row per task; columns for the levels, their controls and baselines.

Columns, in order: each level of the trained model, the same levels of the control (the
same architecture untrained, `control_<level>`), then the baselines: raw keypoints and
raw keypoints with their motion (`baselines.motion_features`). Every cell is the mean ±
the sample standard deviation of the seed scores (`protocol`); a level's cell is marked
▲ or ▼ when it beats or trails its control level beyond the seed spread (`comparison`).
Under the table, `summary` sets each task's best level against the best control level
and the best baseline, paired by seed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.evaluation.baselines import DEFAULT_MOTION_WINDOWS, motion_features
from keras_hbehavemae.evaluation.comparison import MARGIN, MARKS, PairedComparison, compare
from keras_hbehavemae.evaluation.protocol import ProbeResult, probe_embeddings
from keras_hbehavemae.evaluation.splits import FrameNumberMap
from keras_hbehavemae.files.atomic import write_text_atomically

CONTROL_PREFIX = "control_"


@dataclasses.dataclass
class ProbeTable:
    """Probe scores per task (rows) and embedding (columns).

    Attributes:
        columns: embedding names in column order.
        tasks: task names in row order.
        results: column → task → `ProbeResult`.
        controls: column → the name of its control column (levels with a control).
        baseline_columns: the model-free columns (raw keypoints, raw + motion).
        notes: extra caption lines (what the control is, the motion windows).
    """

    columns: list[str]
    tasks: list[str]
    results: dict[str, dict[str, ProbeResult]]
    controls: dict[str, str] = dataclasses.field(default_factory=dict)
    baseline_columns: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def result(self, task: str, column: str) -> ProbeResult:
        return self.results[column][task]

    @property
    def level_columns(self) -> list[str]:
        """Columns of the probed model (neither a control nor a baseline)."""
        controls = set(self.controls.values())
        return [c for c in self.columns if c not in controls and c not in self.baseline_columns]

    def comparison(self, task: str, column: str) -> PairedComparison | None:
        """`column` against its control on `task`, or None without a control."""
        control = self.controls.get(column)
        if control is None:
            return None
        return compare(self.results[column][task], self.results[control][task])

    def _best(self, task: str, columns: Sequence[str]) -> str | None:
        scores = np.array([self.results[c][task].score for c in columns], np.float64)
        if not np.any(np.isfinite(scores)):
            return None
        signed = scores if self.results[columns[0]][task].higher_is_better else -scores
        return columns[int(np.nanargmax(signed))]

    def summary(self) -> list[dict[str, Any]]:
        """Per task: the best level against the best control level and the best baseline
        (`PairedComparison`s, None where a group of columns is absent)."""
        levels, baselines = self.level_columns, self.baseline_columns
        control_columns = [c for c in self.columns if c in set(self.controls.values())]
        rows = []
        for task in self.tasks:
            best = self._best(task, levels) if levels else None
            control = self._best(task, control_columns) if control_columns else None
            baseline = self._best(task, baselines) if baselines else None
            row = {"task": task, "best_level": best, "best_control": control,
                   "best_baseline": baseline, "chance": self.results[self.columns[0]][task].chance}
            for key, other in (("versus_control", control), ("versus_baseline", baseline)):
                row[key] = (compare(self.results[best][task], self.results[other][task])
                            if best is not None and other is not None else None)
            rows.append(row)
        return rows

    def rows(self) -> list[dict[str, Any]]:
        """One dict per task: `task`, `task_type`, `metric`, `chance`; per column `<c>`
        (mean across seeds), `<c>_sd` (sample sd across seeds), `<c>_ensemble`, one
        `<c>_seed_<s>` per seed, and for levels with a control `<c>_gain`,
        `<c>_gain_sd` and `<c>_vs_control` (better, worse or same)."""
        rows = []
        for task in self.tasks:
            first = self.results[self.columns[0]][task]
            row: dict[str, Any] = {"task": task, "task_type": first.task_type,
                                   "metric": first.metric, "chance": first.chance}
            for column in self.columns:
                result = self.results[column][task]
                row[column] = result.score
                row[f"{column}_sd"] = result.spread
                row[f"{column}_ensemble"] = result.ensemble
                for seed, value in zip(result.seeds, result.seed_values(), strict=True):
                    row[f"{column}_seed_{seed}"] = float(value)
                comparison = self.comparison(task, column)
                if comparison is not None:
                    row[f"{column}_gain"] = comparison.gain
                    row[f"{column}_gain_sd"] = comparison.gain_spread
                    row[f"{column}_vs_control"] = comparison.verdict
            rows.append(row)
        return rows

    def caption(self) -> list[str]:
        """The lines under the table: what the numbers are."""
        if not self.tasks:
            return []
        first = self.results[self.columns[0]][self.tasks[0]]
        seeds = ", ".join(str(seed) for seed in first.seeds)
        if first.protocol == "kfold":
            how = (f"{first.folds}-fold cross-validation over the sequences per seed (every "
                   "frame scored once per seed)")
        elif first.protocol == "train_test_split":
            how = "one train/held-out split of the sequences per seed (published split)"
        else:
            how = "fitted on a split of the other sequences per seed, scored on the evaluation set"
        lines = [
            f"Mean ± sample standard deviation across {len(first.seeds)} seeds ({seeds}) of "
            f"the probe scores; {how}; ridge α = {first.reported_alpha:g}.",
            "f1: binary F1, macro_f1: macro F1 (higher is better); mse: mean squared error "
            "(lower is better). chance: a guess drawn from the label frequencies.",
        ]
        if self.controls:
            lines.append(
                f"▲/▼: better/worse than the same level of the control by more than {MARGIN:g} "
                "seed standard deviations (paired by seed: the largest of the sd of the "
                "per-seed differences, of the cell and of the control). Bold: best column.")
        return lines + list(self.notes)

    def to_markdown(self, digits: int = 3) -> str:
        """The table, its caption and the best-level summary, as Markdown."""
        header = ["task", "metric", "chance", *self.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for task in self.tasks:
            best = self._best(task, self.columns)
            first = self.results[self.columns[0]][task]
            cells = []
            for column in self.columns:
                result = self.results[column][task]
                cell = f"{result.score:.{digits}f} ± {_number(result.spread, digits)}"
                cell = f"**{cell}**" if column == best else cell
                comparison = self.comparison(task, column)
                if comparison is not None and MARKS[comparison.verdict]:
                    cell += " " + MARKS[comparison.verdict]
                cells.append(cell)
            lines.append("| " + " | ".join(
                [task, first.metric, f"{first.chance:.{digits}f}", *cells]) + " |")
        lines += [""] + self.caption()
        summary = self.summary()
        if any(row["versus_control"] or row["versus_baseline"] for row in summary):
            lines += ["", "Best level against the best control level and the best baseline "
                      "(gain: mean ± sd of the per-seed differences, positive = better; ✓: "
                      f"beyond {MARGIN:g} seed sd):", "",
                      "| task | best level | best control | gain | best baseline | gain |",
                      "|---|---|---|---|---|---|"]
            for row in summary:
                lines.append("| " + " | ".join([
                    row["task"], self._named(row["task"], row["best_level"], digits),
                    self._named(row["task"], row["best_control"], digits),
                    _gain(row["versus_control"], digits),
                    self._named(row["task"], row["best_baseline"], digits),
                    _gain(row["versus_baseline"], digits)]) + " |")
        return "\n".join(lines) + "\n"

    def _named(self, task: str, column: str | None, digits: int) -> str:
        if column is None:
            return "–"
        result = self.results[column][task]
        return f"{column} {result.score:.{digits}f} ± {_number(result.spread, digits)}"

    def write_markdown(self, path: str | os.PathLike[str]) -> None:
        write_table_markdown(self, path)

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        write_table_csv(self, path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns, "tasks": self.tasks, "controls": self.controls,
            "baseline_columns": self.baseline_columns, "caption": self.caption(),
            "results": {column: {task: result.to_dict() for task, result in by_task.items()}
                        for column, by_task in self.results.items()},
            "comparisons": {
                column: {task: self.comparison(task, column).to_dict() for task in self.tasks}
                for column in self.controls},
            "summary": [{key: (value.to_dict() if isinstance(value, PairedComparison)
                               else value) for key, value in row.items()}
                        for row in self.summary()],
        }  # fmt: skip


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "–"


def _gain(comparison: PairedComparison | None, digits: int) -> str:
    if comparison is None:
        return "–"
    text = f"{comparison.gain:+.{digits}f} ± {_number(comparison.gain_spread, digits)}"
    return text + (" ✓" if comparison.verdict == "better" else "")


def write_table_markdown(table: ProbeTable, path: str | os.PathLike[str]) -> None:
    """Writes `table.to_markdown()` to `path` (whole or not at all)."""
    write_text_atomically(path, table.to_markdown())


def write_table_csv(table: ProbeTable, path: str | os.PathLike[str]) -> None:
    """Writes `table.rows()` as CSV (header: task, task_type, metric, chance, then per
    column the fields listed in `ProbeTable.rows`), whole or not at all."""
    rows = table.rows()
    fields = list(rows[0]) if rows else ["task", "task_type", "metric", "chance"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, text.getvalue())


def probe_table(
    per_level_embeddings: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    task_types: Mapping[str, Any],
    sequence_ids: FrameNumberMap | np.ndarray,
    *,
    control_embeddings: Mapping[str, np.ndarray] | None = None,
    baseline: np.ndarray | None = None,
    baseline_name: str = "raw_keypoints",
    motion_windows: Sequence[int] | None = DEFAULT_MOTION_WINDOWS,
    motion_name: str = "raw_motion",
    notes: Sequence[str] = (),
    **probe_options: Any,
) -> ProbeTable:
    """Probes every level, its control and the baselines on every task, with one set of
    splits (so that every pair of columns can be compared seed by seed).

    Args:
        per_level_embeddings: level name → `[N_frames, D_k]`, in column order.
        labels, task_types, sequence_ids: as in `probe_embeddings`.
        control_embeddings: optional level name → `[N_frames, D_k]` of the control model
            (the same architecture untrained); its levels become `control_<level>` and
            each is the control of the level of the same name.
        baseline: optional raw (normalised) keypoints `[N_frames, F]` (or
            `[N_frames, H, W]`, flattened), probed as `baseline_name`.
        motion_windows: window lengths of the raw + motion baseline (`motion_features`),
            probed as `motion_name` when `baseline` is given; None or () for none.
        notes: extra caption lines.
        **probe_options: `alphas`, `seeds`, `split`, `folds`, `test_fraction`,
            `reported_alpha`, `evaluation_sequences`, `standardize`, `solver`.
    """
    columns = dict(per_level_embeddings)
    controls, baselines = {}, []

    def add(name, array, what):
        if name in columns:
            raise ValueError(f"{what} column {name!r} is also a level name")
        array = np.asarray(array)
        columns[name] = array.reshape(array.shape[0], -1)

    for level, array in dict(control_embeddings or {}).items():
        if level not in per_level_embeddings:
            raise ValueError(f"control level {level!r} is not a level of the model "
                             f"({list(per_level_embeddings)})")
        add(CONTROL_PREFIX + level, array, "control")
        controls[level] = CONTROL_PREFIX + level
    if baseline is not None:
        add(baseline_name, baseline, "baseline")
        baselines.append(baseline_name)
        if motion_windows:
            add(motion_name, motion_features(baseline, sequence_ids, motion_windows),
                "baseline")
            baselines.append(motion_name)
    if not columns:
        raise ValueError("nothing to probe: no embedding levels and no baseline")
    results = probe_embeddings(columns, labels, task_types, sequence_ids, **probe_options)
    notes = list(notes)
    if motion_windows and baseline is not None:
        notes.append(f"{motion_name}: the keypoints with each coordinate's displacement and "
                     f"its absolute value over {', '.join(map(str, motion_windows))} frames.")
    return ProbeTable(columns=list(columns), tasks=list(labels), results=results,
                      controls=controls, baseline_columns=baselines, notes=notes)
