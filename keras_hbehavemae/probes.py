"""Linear probes of frame embeddings (SPEC §11): ridge models, the seeded protocol, tables.

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

Implementation choice: NumPy, not scikit-learn. A ridge probe is one linear solve, so
the closed form below (about a hundred lines) is exact, has no solver tolerances, and
is checked against `np.linalg.lstsq` in the tests. It also shares one Gram matrix
between all α of a fit and accumulates it over row chunks in float64, so probing a
million frames needs no float64 copy of the embeddings. scikit-learn would add a
heavy, compiled dependency (and SciPy) to a package whose core needs neither, for no
gain in what is computed.

Features are used raw by default (`standardize=False`), as in the published protocol,
which probes the submitted embeddings without scaling them. `standardize=True` divides
each feature by its (weighted) training standard deviation before the penalty applies.

Example:
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> model = RidgeRegression(alpha=1e-9).fit(x, 2 * x[:, 0] + 1)
    >>> np.round(model.coef_, 6).tolist(), round(float(model.intercept_), 6)
    ([2.0], 1.0)
    >>> RidgeClassifier().fit(x, [0, 0, 1, 1]).predict(x).tolist()
    [0, 0, 1, 1]
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_ALPHAS = (0.1, 0.5, 1.0, 2.0, 5.0)
DEFAULT_SEEDS = (41, 42, 43)
_CHUNK_ROWS = 65536

FrameNumberMap = Mapping[str, tuple[int, int]]


# ------------------------------------------------------------------ closed-form ridge
def _solve(matrix: np.ndarray, right: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(matrix, right)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(matrix, right, rcond=None)[0]


def ridge_path(
    x: np.ndarray,
    y: np.ndarray,
    alphas: Sequence[float],
    sample_weight: np.ndarray | None = None,
    *,
    standardize: bool = False,
    solver: str = "auto",
) -> list[tuple[np.ndarray, np.ndarray | float]]:
    """Weighted ridge regression with an unpenalised intercept, for several α at once.

    Minimises `Σ_i w_i (y_i − x_i·b − c)² + α |b|²` in closed form: X and y are centred
    with their weighted means (so the intercept is not penalised), then either the
    primal system `(XᵀWX + αI) b = XᵀWy` (D ≤ N) or the dual system
    `b = XᵀW^½ (W^½XXᵀW^½ + αI)⁻¹ W^½y` (D > N) is solved in float64.

    Args:
        x: features `[N, D]` (any float dtype; read in chunks).
        y: targets `[N]` or `[N, K]`.
        alphas: penalties, each > 0.
        sample_weight: non-negative weights `[N]`, or None for ones.
        standardize: divide each feature by its weighted standard deviation first (the
            returned coefficients apply to the raw features).
        solver: "auto", "primal" or "dual".

    Returns:
        one `(coef, intercept)` per α: `coef` `[D]` and a float intercept for 1-D `y`,
        `coef` `[D, K]` and intercept `[K]` otherwise.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got shape {x.shape}")
    num_rows, num_features = x.shape
    targets = np.asarray(y, dtype=np.float64)
    single = targets.ndim == 1
    targets = targets[:, None] if single else targets
    if targets.ndim != 2 or targets.shape[0] != num_rows:
        raise ValueError(f"y must be [N] or [N, K] with N = {num_rows}, got {np.shape(y)}")
    if num_rows == 0:
        raise ValueError("cannot fit a ridge model on zero samples")
    weights = (
        np.ones(num_rows)
        if sample_weight is None
        else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    )
    if weights.shape != (num_rows,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("sample_weight must be [N], non-negative, with a positive sum")
    alphas = [float(alpha) for alpha in alphas]
    if not alphas or min(alphas) <= 0:
        raise ValueError(f"alphas must be positive, got {alphas}")
    if solver == "auto":
        solver = "primal" if num_features <= num_rows else "dual"
    if solver not in ("primal", "dual"):
        raise ValueError(f"solver must be 'auto', 'primal' or 'dual', got {solver!r}")

    total = weights.sum()
    chunks = [slice(start, start + _CHUNK_ROWS) for start in range(0, num_rows, _CHUNK_ROWS)]
    x_mean = sum(weights[rows] @ x[rows].astype(np.float64) for rows in chunks) / total
    y_mean = weights @ targets / total
    identity = np.eye(num_features if solver == "primal" else num_rows)
    if solver == "primal":
        gram = np.zeros((num_features, num_features))
        cross = np.zeros((num_features, targets.shape[1]))
        for rows in chunks:
            centred = x[rows].astype(np.float64) - x_mean
            weighted = centred * weights[rows, None]
            gram += weighted.T @ centred
            cross += weighted.T @ (targets[rows] - y_mean)
        scale = _feature_scale(np.diag(gram) / total, standardize)
        gram /= np.outer(scale, scale)
        cross /= scale[:, None]
        scaled_coefs = [_solve(gram + alpha * identity, cross) for alpha in alphas]
    else:
        root = np.sqrt(weights)[:, None]
        centred = x.astype(np.float64) - x_mean
        scale = _feature_scale(weights @ centred**2 / total, standardize)
        design = centred / scale * root
        kernel = design @ design.T
        right = (targets - y_mean) * root
        scaled_coefs = [design.T @ _solve(kernel + alpha * identity, right) for alpha in alphas]
    path = []
    for scaled in scaled_coefs:
        coef = scaled / scale[:, None]
        intercept = y_mean - x_mean @ coef
        path.append((coef[:, 0], float(intercept[0])) if single else (coef, intercept))
    return path


def _feature_scale(variance: np.ndarray, standardize: bool) -> np.ndarray:
    if not standardize:
        return np.ones_like(variance)
    scale = np.sqrt(np.maximum(variance, 0.0))
    return np.where(scale > 1e-12 * max(float(scale.max(initial=0.0)), 1e-300), scale, 1.0)


def _affine(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != coef.shape[0]:
        raise ValueError(f"x must be [N, {coef.shape[0]}], got shape {x.shape}")
    parts = [
        x[start : start + _CHUNK_ROWS].astype(np.float64) @ coef + intercept
        for start in range(0, x.shape[0], _CHUNK_ROWS)
    ]
    if not parts:
        return np.zeros((0,) + coef.shape[1:])
    return np.concatenate(parts)


def balanced_sample_weights(y: np.ndarray) -> np.ndarray:
    """`n_samples / (n_classes · count_c)` for each sample of class c ("balanced")."""
    _, inverse, counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    return len(inverse) / (len(counts) * counts[inverse].astype(np.float64))


def one_vs_rest_targets(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Targets in {−1, +1}: `[N, 1]` (+1 = `classes[1]`) for two classes, else `[N, C]`.

    With a single class the target is +1 everywhere (`[N, 1]`).
    """
    y = np.asarray(y)
    if len(classes) == 2:
        return np.where(y == classes[1], 1.0, -1.0)[:, None]
    if len(classes) == 1:
        return np.ones((len(y), 1))
    return np.where(y[:, None] == np.asarray(classes)[None, :], 1.0, -1.0)


class RidgeRegression:
    """Closed-form ridge regression with an unpenalised intercept (see `ridge_path`)."""

    def __init__(self, alpha: float = 1.0, *, standardize: bool = False, solver: str = "auto"):
        self.alpha = alpha
        self.standardize = standardize
        self.solver = solver

    def fit(self, x, y, sample_weight=None) -> RidgeRegression:
        ((self.coef_, self.intercept_),) = ridge_path(
            x, y, [self.alpha], sample_weight, standardize=self.standardize, solver=self.solver
        )
        return self

    def predict(self, x) -> np.ndarray:
        return _affine(x, self.coef_, self.intercept_)


class RidgeClassifier:
    """One-vs-rest ridge classifier on {−1, +1} targets, like scikit-learn's.

    `class_weight="balanced"` weights each sample by `n_samples / (n_classes · count_c)`.
    Two classes: one decision column, `predict` is `classes_[1]` where it is > 0.
    More classes: one column per class, `predict` is the argmax.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        class_weight: str | None = "balanced",
        standardize: bool = False,
        solver: str = "auto",
    ):
        if class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
        self.alpha = alpha
        self.class_weight = class_weight
        self.standardize = standardize
        self.solver = solver

    def fit(self, x, y) -> RidgeClassifier:
        y = np.asarray(y)
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("labels must be finite; drop unlabelled (NaN) frames first")
        self.classes_ = np.unique(y)
        weights = balanced_sample_weights(y) if self.class_weight == "balanced" else None
        ((self.coef_, self.intercept_),) = ridge_path(
            x, one_vs_rest_targets(y, self.classes_), [self.alpha], weights,
            standardize=self.standardize, solver=self.solver,
        )  # fmt: skip
        return self

    def decision_function(self, x) -> np.ndarray:
        scores = _affine(x, self.coef_, self.intercept_)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, x) -> np.ndarray:
        return _class_predictions(self.decision_function(x), self.classes_)


def _class_predictions(decision: np.ndarray, classes: np.ndarray) -> np.ndarray:
    if len(classes) == 1:
        return np.full(decision.shape[0], classes[0])
    if decision.ndim == 1:
        return classes[(decision > 0).astype(int)]
    return classes[np.argmax(decision, axis=1)]


# ---------------------------------------------------------------------------- metrics
def f1_binary(y_true, y_pred, positive: float = 1.0) -> float:
    """F1 of the `positive` class; 0.0 when it is neither true nor predicted anywhere."""
    truth, predicted = np.asarray(y_true) == positive, np.asarray(y_pred) == positive
    true_positive = np.count_nonzero(truth & predicted)
    denominator = 2 * true_positive + np.count_nonzero(truth ^ predicted)
    return float(2.0 * true_positive / denominator) if denominator else 0.0


def f1_macro(y_true, y_pred) -> float:
    """Unweighted mean of per-class F1 over the classes present in truth or predictions."""
    classes = np.union1d(np.asarray(y_true), np.asarray(y_pred))
    return float(np.mean([f1_binary(y_true, y_pred, value) for value in classes]))


def mean_squared_error(y_true, y_pred) -> float:
    difference = np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)
    return float(np.mean(difference**2))


# ------------------------------------------------------------------------ the protocol
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


def _task_kind(task_type: Any) -> str:
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
                raw = _affine(score_x, coef, intercept)
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
                predicted = _affine(score_x, coef, intercept)
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
                array, values, task, _task_kind(task_types[task]), splits, alphas,
                reported_alpha, protocol, standardize, solver,
            )  # fmt: skip
            for task, values in label_arrays.items()
        }
        for level, array in arrays.items()
    }
    return results if isinstance(embeddings, Mapping) else results[""]


# ------------------------------------------------------------------------------ tables
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


# ------------------------------------------------------------------------------- files
@dataclasses.dataclass
class LabelsFile:
    """A labels file in the published layout, read back.

    Attributes:
        frame_number_map: name → half-open `(start, end)`.
        labels: task name → float `[N_frames]` (NaN = unlabelled), in vocabulary order.
        task_types: task name → "discrete" or "continuous".
    """

    frame_number_map: dict[str, tuple[int, int]]
    labels: dict[str, np.ndarray]
    task_types: dict[str, str]


def write_labels_file(
    sequences: Any,
    path: str | os.PathLike[str],
    *,
    tasks: Sequence[str] | None = None,
    binarize_discrete: bool = False,
) -> dict[str, Any]:
    """Writes the labels of a `KeypointSequences` as a published-layout labels `.npy` dict.

    The dict holds `frame_number_map` (name → `(start, end)`, cumulative in sequence
    order), `label_array` float32 `[n_tasks, n_frames]` (NaN = unlabelled),
    `vocabulary` (task names) and `task_type` (per task, "Discrete" or "Continuous").

    Args:
        sequences: a `KeypointSequences` with labels.
        path: the `.npy` file to write (with `allow_pickle`).
        tasks: label names to write (default: all, sorted).
        binarize_discrete: replace each discrete label with more than two classes by
            one binary task per class, named `"<label>=<class name>"` (the published
            Shot7M2 and hBABEL tasks are binary in this way).

    Returns:
        the dict written.
    """
    if not sequences.label_names:
        raise ValueError("the sequences carry no labels")
    tasks = list(tasks) if tasks is not None else sequences.label_names
    vocabulary, rows, types = [], [], []
    for task in tasks:
        values = sequences.label_array(task).astype(np.float32)
        info = sequences.label_info[task]
        classes = np.unique(values[np.isfinite(values)])
        if info.task_type == "discrete" and binarize_discrete and len(classes) > 2:
            names = info.class_names or ()
            for value in classes:
                index = int(value)
                class_name = names[index] if 0 <= index < len(names) else f"{value:g}"
                binary = np.where(values == value, 1.0, 0.0).astype(np.float32)
                binary[~np.isfinite(values)] = np.nan
                vocabulary.append(f"{task}={class_name}")
                rows.append(binary)
                types.append("Discrete")
        else:
            vocabulary.append(task)
            rows.append(values)
            types.append("Discrete" if info.task_type == "discrete" else "Continuous")
    content = {
        "frame_number_map": dict(sequences.frame_number_map()),
        "label_array": np.stack(rows).astype(np.float32),
        "vocabulary": vocabulary,
        "task_type": types,
    }
    np.save(path, np.array(content, dtype=object), allow_pickle=True)
    return content


def _normalised_frame_map(frame_map: Mapping[Any, Any]) -> dict[str, tuple[int, int]]:
    return {str(name): (int(span[0]), int(span[1])) for name, span in frame_map.items()}


def load_labels_file(path: str | os.PathLike[str]) -> LabelsFile:
    """Reads a published-layout labels `.npy` dict (see `write_labels_file`).

    `task_type` may be a list parallel to `vocabulary` or one string for all tasks;
    "Discrete" (any case) is classification, anything else regression.
    """
    content = np.load(path, allow_pickle=True)
    content = content.item() if isinstance(content, np.ndarray) else content
    for key in ("frame_number_map", "label_array", "vocabulary"):
        if key not in content:
            raise ValueError(f"{os.fspath(path)}: the labels dict has no {key!r}")
    label_array = np.asarray(content["label_array"], dtype=np.float64)
    vocabulary = [str(name) for name in content["vocabulary"]]
    if label_array.ndim != 2 or label_array.shape[0] != len(vocabulary):
        raise ValueError(
            f"label_array must be [n_tasks={len(vocabulary)}, n_frames], got {label_array.shape}"
        )
    task_type = content.get("task_type", "Discrete")
    types = [task_type] * len(vocabulary) if isinstance(task_type, str) else list(task_type)
    if len(types) != len(vocabulary):
        raise ValueError(f"task_type has {len(types)} entries for {len(vocabulary)} tasks")
    return LabelsFile(
        frame_number_map=_normalised_frame_map(content["frame_number_map"]),
        labels={name: label_array[index] for index, name in enumerate(vocabulary)},
        task_types={name: _task_kind(kind) for name, kind in zip(vocabulary, types, strict=True)},
    )


def align_frames(
    array: np.ndarray, source_map: FrameNumberMap, target_map: FrameNumberMap
) -> np.ndarray:
    """Reorders the rows of `array` (laid out by `source_map`) into `target_map`'s layout.

    Every target sequence must exist in the source with the same number of frames.
    Returns `array` itself when the maps are equal.
    """
    source, target = _normalised_frame_map(source_map), _normalised_frame_map(target_map)
    if source == target:
        return array
    total = max((end for _, end in target.values()), default=0)
    aligned = np.zeros((total,) + array.shape[1:], dtype=array.dtype)
    for name, (start, end) in target.items():
        if name not in source:
            raise ValueError(f"sequence {name!r} of the labels is missing from the embeddings")
        source_start, source_end = source[name]
        if source_end - source_start != end - start:
            raise ValueError(
                f"sequence {name!r}: {source_end - source_start} embedded frames, "
                f"{end - start} labelled frames"
            )
        aligned[start:end] = array[source_start:source_end]
    return aligned


def _level_sort_key(name: str) -> tuple[int, int, str]:
    suffix = name.split("_")[-1]
    return (0, int(suffix), name) if suffix.isdigit() else (1, 0, name)


def load_embedding_folder(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, tuple[int, int]]]]:
    """Reads per-level embeddings written by the extraction script.

    Either `level_{k}.npy` arrays `[N_frames, D_k]` with one `frame_number_map.json`
    (name → `[start, end]`), or `test_submission_{k}.npy` dicts `{frame_number_map,
    embeddings}` (SPEC §10). Levels are named `level_{k}` and sorted by k; a
    `level_combined.npy` or `test_submission_combined.npy` becomes "combined", last.

    Returns:
        `(level name → float32 [N_frames, D_k], level name → its frame number map)`.
    """
    directory = os.fspath(directory)
    files = sorted(os.listdir(directory))
    arrays, maps = {}, {}
    level_files = [name for name in files if re.fullmatch(r"level_\w+\.npy", name)]
    if level_files:
        map_path = os.path.join(directory, "frame_number_map.json")
        if not os.path.exists(map_path):
            raise FileNotFoundError(f"{directory}: level_*.npy without frame_number_map.json")
        with open(map_path, encoding="utf-8") as file:
            frame_map = _normalised_frame_map(json.load(file))
        for name in level_files:
            suffix = name[len("level_") : -len(".npy")]
            level = f"level_{suffix}" if suffix.isdigit() else suffix
            arrays[level] = np.load(os.path.join(directory, name))
            maps[level] = frame_map
    else:
        for name in files:
            match = re.fullmatch(r"test_submission_?(\w*)\.npy", name)
            if not match:
                continue
            suffix = match.group(1)
            level = f"level_{suffix}" if suffix.isdigit() else (suffix or "submission")
            content = np.load(os.path.join(directory, name), allow_pickle=True).item()
            arrays[level] = np.asarray(content["embeddings"])
            maps[level] = _normalised_frame_map(content["frame_number_map"])
    if not arrays:
        raise FileNotFoundError(
            f"{directory}: no level_*.npy or test_submission_*.npy embedding files"
        )
    for level, array in arrays.items():
        if array.ndim != 2:
            raise ValueError(f"{level}: embeddings must be 2-D, got shape {array.shape}")
        arrays[level] = array.astype(np.float32, copy=False)
    order = sorted(arrays, key=_level_sort_key)
    return {level: arrays[level] for level in order}, {level: maps[level] for level in order}
