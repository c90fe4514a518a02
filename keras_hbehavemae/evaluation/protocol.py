"""The probing protocol: seeded sequence splits, per-level probes of every task, results.

Each embedding level is probed separately against every labelled task, frame by frame:

1. Per seed, the sequences (clips, never single frames) are split with a seeded
   permutation into a train part and a held-out part (`split_sequences`).
2. Frames whose label is NaN are dropped, for fitting and for scoring.
3. For every α in `alphas`, a linear probe is fitted on the train part: a ridge
   classifier with balanced class weights for discrete tasks, ridge regression for
   continuous ones.
4. Each seed's probe predicts the scored frames; the seeds are ensembled: the mean for
   regression, a logical OR for binary tasks (the mean of the 0/1 predictions is
   > 0), and a majority vote of the predicted classes for multi-class tasks (ties go
   to the class with the highest summed decision value).
5. Metrics: binary F1 (positive class = the larger class value, 1 for 0/1 labels),
   macro F1 over the classes present in the truth or the predictions for multi-class
   tasks (the published tasks are all binary; the synthetic dataset's `activity`,
   `action` and `moveme` are not), and MSE for regression. The reported score uses
   α = `reported_alpha` (1.0); its "±" is the population standard deviation of the
   ensemble scores across α; "No Ensemble" is the mean of the single-seed scores.

Which frames are scored:

- `evaluation_sequences=None` (self-contained, the default): each seed scores its own
  held-out sequences. The ensemble then combines, per frame, the seeds in which the
  frame's sequence was held out, and is scored on every frame held out at least once
  (with 0.25 and three seeds, most frames are held out by one seed only, so the
  ensemble is close to the single-seed scores).
- `evaluation_sequences=[...]` (the published protocol): those sequences (publicTest)
  are never fitted on; the others (SubmissionTrain) are split per seed, the held-out
  part is unused, and every seed predicts the same evaluation frames.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.evaluation.metrics import f1_binary, f1_macro, mean_squared_error
from keras_hbehavemae.evaluation.ridge import (
    affine,
    balanced_sample_weights,
    one_vs_rest_targets,
    ridge_path,
)

DEFAULT_ALPHAS = (0.1, 0.5, 1.0, 2.0, 5.0)
DEFAULT_SEEDS = (41, 42, 43)

FrameNumberMap = Mapping[str, tuple[int, int]]


def split_sequences(
    num_sequences: int, seed: int, test_fraction: float, *, min_held_out: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of sequence indices into sorted `(train, held_out)` index arrays.

    `ceil(test_fraction · num_sequences)` sequences are held out (at least
    `min_held_out`, and at least one sequence is kept for training).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    num_held_out = max(min_held_out, math.ceil(test_fraction * num_sequences))
    if num_held_out > num_sequences - 1:
        raise ValueError(
            f"cannot hold out {num_held_out} of {num_sequences} sequences and keep one to train"
        )
    order = np.random.default_rng(seed).permutation(num_sequences)
    return np.sort(order[num_held_out:]), np.sort(order[:num_held_out])


def frame_sequence_index(
    sequence_ids: FrameNumberMap | np.ndarray, num_frames: int
) -> tuple[np.ndarray, list[Any]]:
    """Per-frame sequence index `[N]` (−1 = no sequence) and the sequence ids in order.

    `sequence_ids` is a frame number map (name → half-open `(start, end)`), or an
    array `[N]` with one sequence id per frame.
    """
    if isinstance(sequence_ids, Mapping):
        index = np.full(num_frames, -1, dtype=np.int64)
        names = list(sequence_ids)
        for position, name in enumerate(names):
            start, end = (int(value) for value in sequence_ids[name])
            if not 0 <= start <= end <= num_frames:
                raise ValueError(
                    f"sequence {name!r}: frames ({start}, {end}) are outside [0, {num_frames})"
                )
            if np.any(index[start:end] >= 0):
                raise ValueError(f"sequence {name!r} overlaps another sequence's frames")
            index[start:end] = position
        return index, names
    ids = np.asarray(sequence_ids)
    if ids.shape != (num_frames,):
        raise ValueError(f"sequence_ids must be [{num_frames}], got shape {ids.shape}")
    names, index = np.unique(ids, return_inverse=True)
    return index.astype(np.int64), names.tolist()


def task_kind(task_type: Any) -> str:
    kind = getattr(task_type, "task_type", task_type)  # LabelInfo or a string
    return "discrete" if str(kind).lower() == "discrete" else "continuous"


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """The probe scores of one task on one embedding.

    Attributes:
        task, task_type: the label name and "discrete" or "continuous".
        metric: "f1" (binary), "macro_f1" (more than two classes) or "mse".
        reported_alpha: the α of `score` and `no_ensemble`.
        ensemble_scores: α → the score of the seed ensemble.
        seed_scores: α → seed → the single-seed score (NaN if the seed scored nothing).
        num_scored_frames: labelled frames behind the ensemble score.
        protocol: "held_out" or "evaluation_set" (see the module docstring).
    """

    task: str
    task_type: str
    metric: str
    reported_alpha: float
    ensemble_scores: dict[float, float]
    seed_scores: dict[float, dict[int, float]]
    num_scored_frames: int
    protocol: str

    @property
    def score(self) -> float:
        """The ensemble score at α = `reported_alpha`."""
        return self.ensemble_scores[self.reported_alpha]

    @property
    def std_across_alphas(self) -> float:
        """Population standard deviation of the ensemble scores across α (the "±")."""
        return float(np.std(list(self.ensemble_scores.values())))

    @property
    def no_ensemble(self) -> float:
        """Mean of the single-seed scores at α = `reported_alpha`."""
        values = [v for v in self.seed_scores[self.reported_alpha].values() if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "mse"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "task_type": self.task_type, "metric": self.metric,
            "reported_alpha": self.reported_alpha, "score": self.score,
            "std_across_alphas": self.std_across_alphas, "no_ensemble": self.no_ensemble,
            "ensemble_scores": {str(a): s for a, s in self.ensemble_scores.items()},
            "seed_scores": {
                str(a): {str(seed): s for seed, s in scores.items()}
                for a, scores in self.seed_scores.items()
            },
            "num_scored_frames": self.num_scored_frames, "protocol": self.protocol,
        }  # fmt: skip


@dataclasses.dataclass
class _Split:
    seed: int
    train: np.ndarray  # bool [N]: frames of training sequences
    scored: np.ndarray  # bool [N]: frames scored by this seed


def _make_splits(
    sequence_index: np.ndarray,
    names: list[Any],
    seeds: Sequence[int],
    test_fraction: float,
    evaluation_sequences: Sequence[Any] | None,
) -> list[_Split]:
    if evaluation_sequences is None:
        splits = []
        for seed in seeds:
            train, held_out = split_sequences(len(names), seed, test_fraction)
            splits.append(
                _Split(int(seed), np.isin(sequence_index, train), np.isin(sequence_index, held_out))
            )
        return splits
    missing = set(evaluation_sequences) - set(names)
    if missing:
        raise ValueError(f"evaluation sequences not in the frame map: {sorted(missing)[:5]}")
    evaluation = np.flatnonzero(np.isin(np.asarray(names, dtype=object),
                                        np.asarray(list(evaluation_sequences), dtype=object)))
    pool = np.setdiff1d(np.arange(len(names)), evaluation)
    scored = np.isin(sequence_index, evaluation)
    splits = []
    for seed in seeds:
        train, _ = split_sequences(len(pool), seed, test_fraction, min_held_out=0)
        splits.append(_Split(int(seed), np.isin(sequence_index, pool[train]), scored))
    return splits


def _probe_task(
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    kind: str,
    splits: list[_Split],
    alphas: list[float],
    reported_alpha: float,
    protocol: str,
    standardize: bool,
    solver: str,
) -> ProbeResult:
    labelled = np.isfinite(y)
    ever_scored = np.zeros_like(labelled)
    for split in splits:
        ever_scored |= split.scored
    pool = np.flatnonzero(labelled & ever_scored)
    position = np.full(len(y), -1, dtype=np.int64)
    position[pool] = np.arange(len(pool))
    truth = y[pool]
    counts = np.zeros(len(pool), dtype=np.int64)
    if kind == "discrete":
        all_classes = np.unique(y[labelled])
        metric = "f1" if len(all_classes) <= 2 else "macro_f1"
        positive = all_classes[-1] if len(all_classes) else 1.0
        score_fn = (lambda t, p: f1_binary(t, p, positive)) if metric == "f1" else f1_macro
        votes = [np.zeros((len(pool), len(all_classes)), np.int64) for _ in alphas]
        decision_sums = [np.zeros((len(pool), len(all_classes))) for _ in alphas]
    else:
        metric, score_fn = "mse", mean_squared_error
        sums = [np.zeros(len(pool)) for _ in alphas]
    seed_scores: dict[float, dict[int, float]] = {alpha: {} for alpha in alphas}

    for split in splits:
        fit_rows = np.flatnonzero(split.train & labelled)
        score_rows = np.flatnonzero(split.scored & labelled)
        if len(fit_rows) == 0 or len(score_rows) == 0:
            for alpha in alphas:
                seed_scores[alpha][split.seed] = float("nan")
            continue
        fit_x, fit_y, score_x = x[fit_rows], y[fit_rows], x[score_rows]
        slots = position[score_rows]
        counts[slots] += 1
        if kind == "discrete":
            classes = np.unique(fit_y)
            path = ridge_path(
                fit_x, one_vs_rest_targets(fit_y, classes), alphas, balanced_sample_weights(fit_y),
                standardize=standardize, solver=solver,
            )  # fmt: skip
            columns = np.searchsorted(all_classes, classes)
            for index, (alpha, (coef, intercept)) in enumerate(zip(alphas, path, strict=True)):
                decision = np.full((len(score_rows), len(all_classes)), -np.inf)
                raw = affine(score_x, coef, intercept)
                if len(classes) == 2:
                    decision[:, columns[0]], decision[:, columns[1]] = -raw[:, 0], raw[:, 0]
                else:
                    decision[:, columns] = raw
                predicted_column = np.argmax(decision, axis=1)
                seed_scores[alpha][split.seed] = score_fn(y[score_rows],
                                                          all_classes[predicted_column])
                votes[index][slots, predicted_column] += 1
                decision_sums[index][slots] += decision
        else:
            path = ridge_path(fit_x, fit_y, alphas, standardize=standardize, solver=solver)
            for index, (alpha, (coef, intercept)) in enumerate(zip(alphas, path, strict=True)):
                predicted = affine(score_x, coef, intercept)
                seed_scores[alpha][split.seed] = score_fn(y[score_rows], predicted)
                sums[index][slots] += predicted

    covered = counts > 0
    ensemble_scores = {}
    for index, alpha in enumerate(alphas):
        if not np.any(covered):
            ensemble_scores[alpha] = float("nan")
        elif kind == "continuous":
            mean = sums[index][covered] / counts[covered]
            ensemble_scores[alpha] = score_fn(truth[covered], mean)
        elif metric == "f1":
            if len(all_classes) == 2:  # logical OR: positive if any seed says positive
                prediction = np.where(votes[index][:, 1] > 0, all_classes[1], all_classes[0])
            else:
                prediction = np.full(len(pool), all_classes[0])
            ensemble_scores[alpha] = score_fn(truth[covered], prediction[covered])
        else:  # majority vote; ties to the class with the highest summed decision
            ranks = np.argsort(np.argsort(decision_sums[index], axis=1), axis=1)
            key = votes[index] + ranks / (2.0 * len(all_classes))
            prediction = all_classes[np.argmax(key, axis=1)]
            ensemble_scores[alpha] = score_fn(truth[covered], prediction[covered])
    return ProbeResult(
        task=task, task_type=kind, metric=metric, reported_alpha=reported_alpha,
        ensemble_scores=ensemble_scores, seed_scores=seed_scores,
        num_scored_frames=int(np.count_nonzero(covered)), protocol=protocol,
    )  # fmt: skip


def probe_embeddings(
    embeddings: np.ndarray | Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    task_types: Mapping[str, Any],
    sequence_ids: FrameNumberMap | np.ndarray,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    test_fraction: float = 0.25,
    reported_alpha: float = 1.0,
    evaluation_sequences: Sequence[Any] | None = None,
    standardize: bool = False,
    solver: str = "auto",
) -> dict[str, ProbeResult] | dict[str, dict[str, ProbeResult]]:
    """Probes frame embeddings against per-frame labels with the seeded protocol.

    Args:
        embeddings: `[N_frames, D]`, or a dict level name → `[N_frames, D_k]` (every
            level is probed with the same splits).
        labels: task name → `[N_frames]` values, NaN = unlabelled. Discrete values are
            class ids (any numbers).
        task_types: task name → "discrete" (any case, e.g. "Discrete") or anything else
            for regression; `LabelInfo` objects work too. Missing names are errors.
        sequence_ids: a frame number map (name → half-open `(start, end)`) or an array
            `[N_frames]` of per-frame sequence ids. Frames outside every sequence are
            neither fitted nor scored.
        alphas: ridge penalties; must contain `reported_alpha`.
        seeds: one split (and one probe per α) per seed.
        test_fraction: fraction of the sequences (of the non-evaluation sequences when
            `evaluation_sequences` is given) held out per seed, rounded up.
        reported_alpha: the α of `ProbeResult.score`.
        evaluation_sequences: optional fixed evaluation sequences (names or ids as in
            `sequence_ids`); see the module docstring.
        standardize: scale features to unit training variance (default: raw features).
        solver: "auto" (primal if D ≤ N_train, else dual), "primal" or "dual".

    Returns:
        task → `ProbeResult` for an array, level → task → `ProbeResult` for a dict.

    Raises:
        ValueError: on misaligned shapes, non-finite embeddings, unknown task types,
            an empty `alphas` without `reported_alpha`, or too few sequences to split.
    """
    alphas = [float(alpha) for alpha in alphas]
    reported_alpha = float(reported_alpha)
    if reported_alpha not in alphas:
        raise ValueError(f"reported_alpha {reported_alpha} is not among alphas {alphas}")
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"alphas must be distinct, got {alphas}")
    levels = dict(embeddings) if isinstance(embeddings, Mapping) else {"": embeddings}
    arrays = {name: np.asarray(array) for name, array in levels.items()}
    num_frames = None
    for name, array in arrays.items():
        if array.ndim != 2:
            raise ValueError(f"embeddings {name!r} must be [N_frames, D], got {array.shape}")
        num_frames = array.shape[0] if num_frames is None else num_frames
        if array.shape[0] != num_frames:
            raise ValueError("every embedding level must have the same number of frames")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"embeddings {name!r} contain non-finite values")
    label_arrays = {}
    for task, values in labels.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (num_frames,):
            raise ValueError(f"labels {task!r} must be [{num_frames}], got {values.shape}")
        if task not in task_types:
            raise ValueError(f"no task type for label {task!r}")
        label_arrays[task] = values
    sequence_index, names = frame_sequence_index(sequence_ids, num_frames)
    splits = _make_splits(sequence_index, names, seeds, test_fraction, evaluation_sequences)
    protocol = "held_out" if evaluation_sequences is None else "evaluation_set"
    results = {
        level: {
            task: _probe_task(
                array, values, task, task_kind(task_types[task]), splits, alphas,
                reported_alpha, protocol, standardize, solver,
            )  # fmt: skip
            for task, values in label_arrays.items()
        }
        for level, array in arrays.items()
    }
    return results if isinstance(embeddings, Mapping) else results[""]
