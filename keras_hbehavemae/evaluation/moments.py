"""Ridge fits of many splits from one pass over the frames: per-group moments.

Every split of the probes trains on whole sequences, and a discrete task's balanced
weights are constant within a class. So the weighted Gram matrix and cross products of
any training set are sums of per-(sequence, class) moments (count, Σx, Σxxᵀ; and Σy,
Σxy per sequence for regression): `GroupMoments` computes them once per task and
embedding, and `ridge_from_moments` solves the same weighted ridge as `ridge.ridge_path`
(primal form, unpenalised intercept) for any set of groups. With k folds and s seeds this
reads the embeddings once instead of k·s times.

The features are centred on their overall mean before the moments are taken (the group
products are float32 on centred data, the sums float64), so the Gram matrix does not lose
its small entries to a large mean; the tests check the fits against `ridge_path`.
"""

from __future__ import annotations

import numpy as np

from keras_hbehavemae.evaluation.ridge import (
    affine,
    balanced_sample_weights,
    one_vs_rest_targets,
    ridge_path,
)

#: Above this many bytes of group moments, the probes fit each split directly instead.
MAX_MOMENT_BYTES = 1 << 30


class GroupMoments:
    """Moments of the rows of `x` per group (groups 0..G−1; −1 rows are ignored).

    Attributes:
        centre: `[D]` the mean subtracted from every row first.
        count: `[G]` rows per group.
        sum: `[G, D]` Σ (x − centre).
        gram: `[G, D, D]` Σ (x − centre)(x − centre)ᵀ (float32).
        target_sum, cross: `[G, K]`, `[G, D, K]` Σ y and Σ (x − centre) yᵀ when `y`
            (`[N, K]`) is given, else None.
    """

    def __init__(self, x: np.ndarray, groups: np.ndarray, num_groups: int,
                 y: np.ndarray | None = None):
        used = np.flatnonzero(groups >= 0)
        order = used[np.argsort(groups[used], kind="stable")]
        sorted_groups = groups[order]
        bounds = np.searchsorted(sorted_groups, np.arange(num_groups + 1))
        dimension = x.shape[1]
        self.centre = (np.asarray(x[order], np.float64).mean(axis=0) if len(order)
                       else np.zeros(dimension))
        self.count = np.diff(bounds).astype(np.float64)
        self.sum = np.zeros((num_groups, dimension))
        self.gram = np.zeros((num_groups, dimension, dimension), np.float32)
        self.target_sum = self.cross = None
        if y is not None:
            y = np.asarray(y, np.float64).reshape(len(x), -1)
            self.target_sum = np.zeros((num_groups, y.shape[1]))
            self.cross = np.zeros((num_groups, dimension, y.shape[1]))
        centre32 = self.centre.astype(np.float32)
        for group in range(num_groups):
            rows = order[bounds[group]:bounds[group + 1]]
            if len(rows) == 0:
                continue
            centred = np.asarray(x[rows], np.float32) - centre32
            self.sum[group] = centred.sum(axis=0, dtype=np.float64)
            self.gram[group] = centred.T @ centred
            if y is not None:
                self.target_sum[group] = y[rows].sum(axis=0)
                self.cross[group] = centred.T.astype(np.float64) @ y[rows]

    @staticmethod
    def nbytes(num_groups: int, dimension: int) -> int:
        return num_groups * dimension * dimension * 4


def ridge_from_moments(
    moments: GroupMoments,
    group_weights: np.ndarray,
    alphas,
    *,
    group_targets: np.ndarray | None = None,
    standardize: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weighted ridge on the groups with a positive weight (each row of group g weighs
    `group_weights[g]`).

    The targets are `group_targets` `[G, K]` (the same target row for every row of a
    group, as the ±1 one-vs-rest targets of a class), or the moments' own `y`.

    Returns:
        per α, `(coef [D, K], intercept [K])` for the raw (uncentred) features.
    """
    weights = np.asarray(group_weights, np.float64)
    active = np.flatnonzero(weights > 0)
    total = float(weights[active] @ moments.count[active])
    if total <= 0:
        raise ValueError("cannot fit a ridge model on zero samples")
    weighted_count = weights[active] * moments.count[active]
    x_mean = weights[active] @ moments.sum[active] / total
    gram = np.zeros(moments.gram.shape[1:])
    for group in active:
        gram += weights[group] * moments.gram[group].astype(np.float64)
    gram -= total * np.outer(x_mean, x_mean)
    if group_targets is not None:
        targets = np.asarray(group_targets, np.float64)[active]
        y_mean = weighted_count @ targets / total
        cross = (moments.sum[active] * weights[active, None]).T @ targets
    else:
        y_mean = weights[active] @ moments.target_sum[active] / total
        cross = np.einsum("g,gdk->dk", weights[active], moments.cross[active])
    cross -= total * np.outer(x_mean, y_mean)
    scale = np.ones(len(gram))
    if standardize:
        scale = np.sqrt(np.maximum(np.diag(gram) / total, 0.0))
        scale = np.where(scale > 1e-12 * max(float(scale.max(initial=0.0)), 1e-300), scale, 1.0)
    gram /= np.outer(scale, scale)
    cross /= scale[:, None]
    identity = np.eye(len(gram))
    path = []
    for alpha in alphas:
        try:
            scaled = np.linalg.solve(gram + float(alpha) * identity, cross)
        except np.linalg.LinAlgError:
            scaled = np.linalg.lstsq(gram + float(alpha) * identity, cross, rcond=None)[0]
        coef = scaled / scale[:, None]
        path.append((coef, y_mean - (x_mean + moments.centre) @ coef))
    return path


class FoldFitter:
    """Fits the probes of one task on one embedding for any training set of sequences.

    Per-(sequence, class) moments (`moments.GroupMoments`) make each fit independent of
    the number of frames; `solver="dual"`, or moments that would not fit in
    `MAX_MOMENT_BYTES`, fit each training set directly with `ridge_path`.
    """

    def __init__(self, x, y, labelled, kind, all_classes, sequence_index, num_sequences,
                 standardize, solver):
        self.x, self.y, self.kind, self.all_classes = x, y, kind, all_classes
        self.standardize, self.solver = standardize, solver
        self.sequence_index = sequence_index
        per_sequence = 1 if kind == "continuous" else max(len(all_classes), 1)
        self.per_sequence = per_sequence
        num_groups = num_sequences * per_sequence
        self.moments = None
        nothing_labelled = not np.any(labelled)
        if nothing_labelled or solver == "dual":
            return
        if GroupMoments.nbytes(num_groups, x.shape[1]) <= MAX_MOMENT_BYTES:
            groups = np.where(labelled & (sequence_index >= 0), sequence_index, -1)
            if kind == "discrete":
                classes = np.searchsorted(all_classes, np.where(labelled, y, all_classes[0]))
                groups = np.where(groups >= 0, groups * per_sequence + classes, -1)
            self.moments = GroupMoments(x, groups, num_groups,
                                        y=y if kind == "continuous" else None)

    def fit(self, fit_rows, alphas):
        """Per α `(coef, intercept)`, and the classes seen in training (discrete)."""
        fit_y = self.y[fit_rows]
        if self.kind == "continuous":
            if self.moments is None:
                return ridge_path(self.x[fit_rows], fit_y, alphas, standardize=self.standardize,
                                  solver=self.solver), None
            weights = np.zeros(len(self.moments.count))
            weights[np.unique(self.sequence_index[fit_rows])] = 1.0
            path = ridge_from_moments(self.moments, weights, alphas,
                                      standardize=self.standardize)
            return [(coef[:, 0], intercept[0]) for coef, intercept in path], None
        classes = np.unique(fit_y)
        if self.moments is None:
            return ridge_path(
                self.x[fit_rows], one_vs_rest_targets(fit_y, classes), alphas,
                balanced_sample_weights(fit_y), standardize=self.standardize, solver=self.solver,
            ), classes  # fmt: skip
        per_sequence = self.per_sequence
        counts = np.zeros(per_sequence)
        np.add.at(counts, np.searchsorted(self.all_classes, fit_y), 1.0)
        present = counts > 0
        class_weights = np.where(present, len(fit_y) / (present.sum() * np.maximum(counts, 1)),
                                 0.0)
        in_training = np.zeros(len(self.moments.count) // per_sequence, bool)
        in_training[np.unique(self.sequence_index[fit_rows])] = True
        weights = (in_training[:, None] * class_weights[None, :]).reshape(-1)
        group_class = self.all_classes[np.tile(np.arange(per_sequence), len(in_training))]
        targets = one_vs_rest_targets(group_class, classes)
        return ridge_from_moments(self.moments, weights, alphas, group_targets=targets,
                                  standardize=self.standardize), classes


def fold_predictions(fitter: FoldFitter, fit_rows, score_rows, alphas):
    """Per α: the predictions for `score_rows` (class values, or values) and, for
    discrete tasks, the decision values `[n, classes]` (−inf for unseen classes)."""
    path, classes = fitter.fit(fit_rows, alphas)
    score_x = fitter.x[score_rows]
    if classes is None:
        return [(affine(score_x, coef, intercept), None) for coef, intercept in path]
    all_classes = fitter.all_classes
    columns = np.searchsorted(all_classes, classes)
    outputs = []
    for coef, intercept in path:
        decision = np.full((len(score_rows), len(all_classes)), -np.inf)
        raw = affine(score_x, coef, intercept)
        if len(classes) == 2:
            decision[:, columns[0]], decision[:, columns[1]] = -raw[:, 0], raw[:, 0]
        else:
            decision[:, columns] = raw
        outputs.append((all_classes[np.argmax(decision, axis=1)], decision))
    return outputs
