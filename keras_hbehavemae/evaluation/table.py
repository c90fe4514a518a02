"""The probe table: one row per task, one column per embedding level and baseline."""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_hbehavemae.evaluation.protocol import (
    FrameNumberMap,
    ProbeResult,
    probe_embeddings,
)


@dataclasses.dataclass
class ProbeTable:
    """Probe scores per task (rows) and embedding (columns: levels, then the baseline).

    Attributes:
        columns: embedding names in column order.
        tasks: task names in row order.
        results: column → task → `ProbeResult`.
        baseline_column: the name of the raw-keypoint column, or None.
    """

    columns: list[str]
    tasks: list[str]
    results: dict[str, dict[str, ProbeResult]]
    baseline_column: str | None = None

    def result(self, task: str, column: str) -> ProbeResult:
        return self.results[column][task]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per task: `task`, `task_type`, `metric`, then per column `<c>`,
        `<c>_std` (across α) and `<c>_no_ensemble`."""
        rows = []
        for task in self.tasks:
            first = self.results[self.columns[0]][task]
            row: dict[str, Any] = {"task": task, "task_type": first.task_type,
                                   "metric": first.metric}
            for column in self.columns:
                result = self.results[column][task]
                row[column] = result.score
                row[f"{column}_std"] = result.std_across_alphas
                row[f"{column}_no_ensemble"] = result.no_ensemble
            rows.append(row)
        return rows

    def to_markdown(self, digits: int = 3) -> str:
        """A Markdown table, "score ± std across α", best column of each row in bold."""
        header = ["task", "metric", *self.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for task in self.tasks:
            results = [self.results[column][task] for column in self.columns]
            scores = np.array([result.score for result in results])
            best = None
            if np.any(np.isfinite(scores)):
                signed = scores if results[0].higher_is_better else -scores
                best = int(np.nanargmax(signed))
            cells = []
            for index, result in enumerate(results):
                cell = f"{result.score:.{digits}f} ± {result.std_across_alphas:.{digits}f}"
                cells.append(f"**{cell}**" if index == best else cell)
            lines.append("| " + " | ".join([task, results[0].metric, *cells]) + " |")
        if self.tasks:
            alpha = self.results[self.columns[0]][self.tasks[0]].reported_alpha
            lines.append("")
            lines.append(
                f"Scores at α = {alpha:g}, ensembled over seeds; ± is the standard deviation "
                "across α. f1: binary F1, macro_f1: macro F1, mse: mean squared error (lower "
                "is better)."
            )
        return "\n".join(lines) + "\n"

    def write_markdown(self, path: str | os.PathLike[str]) -> None:
        write_table_markdown(self, path)

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        write_table_csv(self, path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns, "tasks": self.tasks, "baseline_column": self.baseline_column,
            "results": {column: {task: result.to_dict() for task, result in by_task.items()}
                        for column, by_task in self.results.items()},
        }  # fmt: skip


def write_table_markdown(table: ProbeTable, path: str | os.PathLike[str]) -> None:
    """Writes `table.to_markdown()` to `path`."""
    with open(path, "w", encoding="utf-8") as file:
        file.write(table.to_markdown())


def write_table_csv(table: ProbeTable, path: str | os.PathLike[str]) -> None:
    """Writes `table.rows()` as CSV (header: task, task_type, metric, then per column
    `<c>`, `<c>_std`, `<c>_no_ensemble`)."""
    fields = ["task", "task_type", "metric"]
    for column in table.columns:
        fields += [column, f"{column}_std", f"{column}_no_ensemble"]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table.rows())


def probe_table(
    per_level_embeddings: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    task_types: Mapping[str, Any],
    sequence_ids: FrameNumberMap | np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    baseline_name: str = "raw_keypoints",
    **probe_options: Any,
) -> ProbeTable:
    """Probes every level (and the optional raw-keypoint baseline) on every task.

    Args:
        per_level_embeddings: level name → `[N_frames, D_k]`, in column order.
        labels, task_types, sequence_ids: as in `probe_embeddings`.
        baseline: optional raw (normalised) keypoints `[N_frames, F]` (or
            `[N_frames, H, W]`, flattened), probed as the last column.
        baseline_name: the baseline column's name.
        **probe_options: `alphas`, `seeds`, `test_fraction`, `reported_alpha`,
            `evaluation_sequences`, `standardize`, `solver`.
    """
    columns = dict(per_level_embeddings)
    if baseline is not None:
        if baseline_name in columns:
            raise ValueError(f"baseline_name {baseline_name!r} is also a level name")
        baseline = np.asarray(baseline)
        columns[baseline_name] = baseline.reshape(baseline.shape[0], -1)
    if not columns:
        raise ValueError("nothing to probe: no embedding levels and no baseline")
    results = probe_embeddings(columns, labels, task_types, sequence_ids, **probe_options)
    return ProbeTable(
        columns=list(columns), tasks=list(labels), results=results,
        baseline_column=baseline_name if baseline is not None else None,
    )  # fmt: skip
