"""The probing protocol: seeded sequence splits, per-level probes of every task, results.

Each embedding level is probed separately against every labelled task, frame by frame:

1. Per seed, the sequences (clips, never single frames) are split (`splits.make_splits`):
   - `split="kfold"` (the default, `folds=4`): each fold's probe is fitted on the other
     folds' sequences and scores its own, so every frame of every sequence is scored
     exactly once per seed;
   - `split="train_test_split"`: the published split (scikit-learn's, drawn without it);
     the held-out `test_fraction` of the sequences is scored;
   - with `evaluation_sequences` (the published protocol): those sequences are scored by
     every seed and never fitted on; the others are split with `train_test_split` and
     their held-out part is unused.
2. Frames whose label is NaN are dropped, for fitting and for scoring.
3. For every α in `alphas`, a linear probe is fitted: a ridge classifier with balanced
   class weights for discrete tasks, ridge regression for continuous ones.
4. Metrics: binary F1 (positive class = the larger class value, 1 for 0/1 labels),
   macro F1 over the classes present in the truth or the predictions for multi-class
   tasks, and MSE for regression. A seed's score is the metric over all the frames it
   scored (its folds' predictions pooled); each fold's own score is kept too.
5. The reported score (`ProbeResult.score`) is the mean of the seed scores at
   α = `reported_alpha` (1.0), and its spread (`ProbeResult.spread`) is their sample
   standard deviation across seeds. The published protocol's numbers are kept as well:
   the seed ensemble per frame (the mean for regression, a logical OR for binary tasks,
   a majority vote for multi-class tasks, ties to the highest summed decision value)
   and the standard deviation of the ensemble score across α.

`ProbeResult.chance` is the expected score of a guess drawn from the label frequencies
of the scored frames: the positive class's frequency for binary F1, 1/classes for macro
F1, and the label variance (predicting the mean) for MSE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.evaluation.metrics import f1_binary, f1_macro, mean_squared_error
from keras_hbehavemae.evaluation.moments import FoldFitter, fold_predictions
from keras_hbehavemae.evaluation.splits import (
    FrameNumberMap,
    SeedSplit,
    frame_sequence_index,
    make_splits,
)

DEFAULT_ALPHAS = (0.1, 0.5, 1.0, 2.0, 5.0)
DEFAULT_SEEDS = (41, 42, 43, 44, 45)
DEFAULT_FOLDS = 4


def task_kind(task_type: Any) -> str:
    kind = getattr(task_type, "task_type", task_type)  # LabelInfo or a string
    return "discrete" if str(kind).lower() == "discrete" else "continuous"


def sample_std(values) -> float:
    """Sample standard deviation (ddof = 1) of the finite values; NaN for fewer than two."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """The probe scores of one task on one embedding.

    Attributes:
        task, task_type: the label name and "discrete" or "continuous".
        metric: "f1" (binary), "macro_f1" (more than two classes) or "mse".
        reported_alpha: the α of `score`, `spread` and `ensemble`.
        protocol: "kfold", "train_test_split" or "evaluation_set".
        folds: folds per seed (1 unless k-fold).
        seed_scores: α → seed → the seed's score over all frames it scored (NaN if none).
        fold_scores: α → seed → the score of each of the seed's folds.
        ensemble_scores: α → the score of the seed ensemble.
        num_scored_frames: labelled frames scored by at least one seed.
        seed_scored_frames: seed → labelled frames the seed scored (each once).
        chance: the score of a guess drawn from the label frequencies.
    """

    task: str
    task_type: str
    metric: str
    reported_alpha: float
    protocol: str
    folds: int
    seed_scores: dict[float, dict[int, float]]
    fold_scores: dict[float, dict[int, list[float]]]
    ensemble_scores: dict[float, float]
    num_scored_frames: int
    seed_scored_frames: dict[int, int]
    chance: float

    @property
    def seeds(self) -> list[int]:
        return list(self.seed_scores[self.reported_alpha])

    def seed_values(self) -> np.ndarray:
        """The seed scores at `reported_alpha`, in seed order."""
        return np.array(list(self.seed_scores[self.reported_alpha].values()), np.float64)

    @property
    def score(self) -> float:
        """Mean of the seed scores at `reported_alpha` (the table's number)."""
        values = self.seed_values()
        values = values[np.isfinite(values)]
        return float(np.mean(values)) if len(values) else float("nan")

    @property
    def spread(self) -> float:
        """Sample standard deviation of the seed scores at `reported_alpha` (the "±")."""
        return sample_std(self.seed_values())

    @property
    def ensemble(self) -> float:
        """The seed ensemble's score at `reported_alpha` (published protocol)."""
        return self.ensemble_scores[self.reported_alpha]

    @property
    def std_across_alphas(self) -> float:
        """Population standard deviation of the ensemble scores across α (published "±")."""
        return float(np.std(list(self.ensemble_scores.values())))

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "mse"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "task_type": self.task_type, "metric": self.metric,
            "reported_alpha": self.reported_alpha, "protocol": self.protocol,
            "folds": self.folds, "score": self.score, "spread_across_seeds": self.spread,
            "seeds": self.seeds, "chance": self.chance, "ensemble": self.ensemble,
            "std_across_alphas": self.std_across_alphas,
            "seed_scores": {
                str(a): {str(seed): s for seed, s in scores.items()}
                for a, scores in self.seed_scores.items()
            },
            "fold_scores": {
                str(a): {str(seed): list(s) for seed, s in scores.items()}
                for a, scores in self.fold_scores.items()
            },
            "ensemble_scores": {str(a): s for a, s in self.ensemble_scores.items()},
            "num_scored_frames": self.num_scored_frames,
            "seed_scored_frames": {str(seed): n for seed, n in self.seed_scored_frames.items()},
        }  # fmt: skip


def chance_score(truth: np.ndarray, metric: str) -> float:
    """The expected score of a guess drawn from the frequencies of `truth` (see module)."""
    if len(truth) == 0:
        return float("nan")
    if metric == "mse":
        return float(np.var(truth))
    classes, counts = np.unique(truth, return_counts=True)
    if metric == "f1":
        return float(counts[-1] / len(truth)) if len(classes) == 2 else float(len(classes) == 1)
    return 1.0 / len(classes)


class _Ensemble:
    """Per-frame accumulators of the seed ensemble, for one α."""

    def __init__(self, num_frames: int, num_classes: int | None):
        self.counts = np.zeros(num_frames, np.int64)
        if num_classes is None:
            self.sums = np.zeros(num_frames)
        else:
            self.votes = np.zeros((num_frames, num_classes), np.int64)
            self.decisions = np.zeros((num_frames, num_classes))

    def score(self, truth, all_classes, metric, score_fn) -> float:
        covered = self.counts > 0
        if not np.any(covered):
            return float("nan")
        if metric == "mse":
            return score_fn(truth[covered], self.sums[covered] / self.counts[covered])
        if metric == "f1":
            if len(all_classes) == 2:  # logical OR: positive if any seed says positive
                prediction = np.where(self.votes[:, 1] > 0, all_classes[1], all_classes[0])
            else:
                prediction = np.full(len(truth), all_classes[0])
            return score_fn(truth[covered], prediction[covered])
        # majority vote; ties to the class with the highest summed decision
        ranks = np.argsort(np.argsort(self.decisions, axis=1), axis=1)
        key = self.votes + ranks / (2.0 * len(all_classes))
        return score_fn(truth[covered], all_classes[np.argmax(key, axis=1)][covered])


def _probe_task(x, y, task, kind, splits: list[SeedSplit], sequence_index, num_sequences,
                alphas, reported_alpha, protocol, standardize, solver) -> ProbeResult:
    labelled = np.isfinite(y)
    ever_scored = np.any([split.scored for split in splits], axis=0) & labelled
    pool = np.flatnonzero(ever_scored)
    position = np.full(len(y), -1, dtype=np.int64)
    position[pool] = np.arange(len(pool))
    all_classes = np.unique(y[labelled]) if kind == "discrete" else None
    if kind == "continuous":
        metric, score_fn = "mse", mean_squared_error
    elif len(all_classes) <= 2:
        positive = all_classes[-1] if len(all_classes) else 1.0
        metric, score_fn = "f1", (lambda t, p: f1_binary(t, p, positive))
    else:
        metric, score_fn = "macro_f1", f1_macro
    ensembles = [_Ensemble(len(pool), None if all_classes is None else len(all_classes))
                 for _ in alphas]
    fitter = FoldFitter(x, y, labelled, kind, all_classes, sequence_index, num_sequences,
                         standardize, solver)
    seed_scores = {alpha: {} for alpha in alphas}
    fold_scores = {alpha: {} for alpha in alphas}
    seed_frames = {}
    for split in splits:
        seed_rows, seed_predictions = [], [[] for _ in alphas]
        for alpha in alphas:
            fold_scores[alpha][split.seed] = []
        for fold in split.folds:
            fit_rows = np.flatnonzero(fold.train & labelled)
            score_rows = np.flatnonzero(fold.scored & labelled)
            if len(fit_rows) == 0 or len(score_rows) == 0:
                for alpha in alphas:
                    fold_scores[alpha][split.seed].append(float("nan"))
                continue
            outputs = fold_predictions(fitter, fit_rows, score_rows, alphas)
            slots = position[score_rows]
            seed_rows.append(score_rows)
            for index, (alpha, (predicted, decision)) in enumerate(zip(alphas, outputs,
                                                                       strict=True)):
                fold_scores[alpha][split.seed].append(score_fn(y[score_rows], predicted))
                seed_predictions[index].append(predicted)
                ensemble = ensembles[index]
                ensemble.counts[slots] += 1
                if decision is None:
                    ensemble.sums[slots] += predicted
                else:
                    ensemble.votes[slots, np.searchsorted(all_classes, predicted)] += 1
                    ensemble.decisions[slots] += decision
        rows = np.concatenate(seed_rows) if seed_rows else np.zeros(0, np.int64)
        seed_frames[split.seed] = len(rows)
        for index, alpha in enumerate(alphas):
            seed_scores[alpha][split.seed] = (
                score_fn(y[rows], np.concatenate(seed_predictions[index])) if len(rows)
                else float("nan"))
    truth = y[pool]
    return ProbeResult(
        task=task, task_type=kind, metric=metric, reported_alpha=reported_alpha,
        protocol=protocol, folds=len(splits[0].folds) if splits else 0,
        seed_scores=seed_scores, fold_scores=fold_scores,
        ensemble_scores={alpha: ensembles[index].score(truth, all_classes, metric, score_fn)
                         for index, alpha in enumerate(alphas)},
        num_scored_frames=len(pool), seed_scored_frames=seed_frames,
        chance=chance_score(truth, metric),
    )  # fmt: skip


def probe_embeddings(
    embeddings: np.ndarray | Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    task_types: Mapping[str, Any],
    sequence_ids: FrameNumberMap | np.ndarray,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    split: str = "kfold",
    folds: int = DEFAULT_FOLDS,
    test_fraction: float = 0.25,
    reported_alpha: float = 1.0,
    evaluation_sequences: Sequence[Any] | None = None,
    standardize: bool = False,
    solver: str = "auto",
) -> dict[str, ProbeResult] | dict[str, dict[str, ProbeResult]]:
    """Probes frame embeddings against per-frame labels with the seeded protocol.

    Args:
        embeddings: `[N_frames, D]`, or a dict level name → `[N_frames, D_k]` (every
            level is probed with the same splits, so their seed scores pair up).
        labels: task name → `[N_frames]` values, NaN = unlabelled. Discrete values are
            class ids (any numbers).
        task_types: task name → "discrete" (any case, e.g. "Discrete") or anything else
            for regression; `LabelInfo` objects work too. Missing names are errors.
        sequence_ids: a frame number map (name → half-open `(start, end)`) or an array
            `[N_frames]` of per-frame sequence ids. Frames outside every sequence are
            neither fitted nor scored.
        alphas: ridge penalties; must contain `reported_alpha`.
        seeds: one split (and one probe per fold and α) per seed.
        split: "kfold" (every frame scored once per seed) or "train_test_split" (the
            published split); see the module docstring.
        folds: folds per seed of "kfold".
        test_fraction: fraction of the sequences (of the non-evaluation sequences when
            `evaluation_sequences` is given) held out per seed by "train_test_split",
            rounded up.
        reported_alpha: the α of `ProbeResult.score`.
        evaluation_sequences: optional fixed evaluation sequences (names or ids as in
            `sequence_ids`), scored by every seed; needs `split="train_test_split"`.
        standardize: scale features to unit training variance (default: raw features).
        solver: "auto" (primal if D ≤ N_train, else dual), "primal" or "dual".

    Returns:
        task → `ProbeResult` for an array, level → task → `ProbeResult` for a dict.

    Raises:
        ValueError: on misaligned shapes, non-finite embeddings, unknown task types,
            `alphas` without `reported_alpha`, bad split settings or too few sequences.
    """
    alphas = [float(alpha) for alpha in alphas]
    reported_alpha = float(reported_alpha)
    if reported_alpha not in alphas:
        raise ValueError(f"reported_alpha {reported_alpha} is not among alphas {alphas}")
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"alphas must be distinct, got {alphas}")
    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
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
    splits = make_splits(sequence_index, names, seeds, split=split, folds=folds,
                         test_fraction=test_fraction, evaluation_sequences=evaluation_sequences)
    protocol = split if evaluation_sequences is None else "evaluation_set"
    results = {
        level: {
            task: _probe_task(
                array, values, task, task_kind(task_types[task]), splits, sequence_index,
                len(names), alphas, reported_alpha, protocol, standardize, solver,
            )  # fmt: skip
            for task, values in label_arrays.items()
        }
        for level, array in arrays.items()
    }
    return results if isinstance(embeddings, Mapping) else results[""]
