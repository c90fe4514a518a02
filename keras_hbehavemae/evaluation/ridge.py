"""Closed-form ridge probes: `RidgeRegression` and `RidgeClassifier` (balanced classes).

NumPy, not scikit-learn. A ridge probe is one linear solve, so the closed form below (about
a hundred lines) is exact, has no solver tolerances, and is checked against
`np.linalg.lstsq` in the tests. It also shares one Gram matrix between all α of a fit and
accumulates it over row chunks in float64, so probing a million frames needs no float64 copy
of the embeddings. scikit-learn would add a heavy, compiled dependency (and SciPy) to a
package whose core needs neither, for no gain in what is computed.

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

from collections.abc import Sequence

import numpy as np

_CHUNK_ROWS = 65536


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


def affine(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray | float) -> np.ndarray:
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
        return affine(x, self.coef_, self.intercept_)


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
        scores = affine(x, self.coef_, self.intercept_)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, x) -> np.ndarray:
        return _class_predictions(self.decision_function(x), self.classes_)


def _class_predictions(decision: np.ndarray, classes: np.ndarray) -> np.ndarray:
    if len(classes) == 1:
        return np.full(decision.shape[0], classes[0])
    if decision.ndim == 1:
        return classes[(decision > 0).astype(int)]
    return classes[np.argmax(decision, axis=1)]
