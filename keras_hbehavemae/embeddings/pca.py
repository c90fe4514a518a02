"""PCA of extracted embeddings: exact full-SVD or streaming, and the published limits.

**PCA** (published limits: 64 for Shot7M2 and hBABEL, 128 for MABe22). When a level's D
exceeds the limit, PCA is fitted on the extracted embeddings themselves: exact full-SVD
PCA if D < 100, otherwise "incremental" PCA over batches of 320,000 rows. Our
incremental PCA streams the data once and accumulates, in float64, the row count, the
sum and the matrix of sums of outer products of the rows (shifted by the first batch's
mean for numerical stability), then takes the eigendecomposition of the covariance. Memory
is O(D² + batch·D); the result equals full PCA up to rounding. (It is therefore
not bit-identical to scikit-learn's `IncrementalPCA`, which truncates to the
kept components after every batch and is only approximately equal to full PCA.)
Both paths order components by decreasing explained variance, fix each
component's sign so that its largest-magnitude loading is positive, and output
float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: Full-SVD PCA is used when D is below this; incremental PCA otherwise.
FULL_SVD_MAX_DIM = 100

#: Rows per batch of the incremental PCA.
INCREMENTAL_PCA_BATCH = 320_000


# ---------------------------------------------------------------- PCA
@dataclasses.dataclass(frozen=True)
class PCA:
    """A fitted PCA: `transform(x) = (x − mean) · componentsᵀ`, float32.

    Attributes:
        mean: `[D]` float64, the mean of the fitted rows.
        components: `[k, D]` float64 orthonormal rows, by decreasing variance.
        explained_variance: `[k]` float64, the variance along each component
            (sample variance, N − 1 in the denominator).
        method: "full" (SVD of the centred data) or "incremental" (streamed covariance).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    method: str

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x, batch_size: int = INCREMENTAL_PCA_BATCH) -> np.ndarray:
        """`[N, D]` → float32 `[N, k]`, in batches of rows."""
        x = np.asarray(x)
        result = np.empty((x.shape[0], self.n_components), np.float32)
        for first in range(0, x.shape[0], batch_size):
            chunk = x[first:first + batch_size].astype(np.float64) - self.mean
            result[first:first + batch_size] = chunk @ self.components.T
        return result

    def inverse_transform(self, y) -> np.ndarray:
        """`[N, k]` → float32 `[N, D]`, the reconstruction in the original space."""
        return (np.asarray(y, np.float64) @ self.components + self.mean).astype(np.float32)


def _fix_signs(components: np.ndarray) -> np.ndarray:
    """Flips each row so its largest-magnitude entry is positive (a deterministic sign)."""
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(components.shape[0]), largest])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def fit_pca(
    x,
    n_components: int,
    method: str = "auto",
    batch_size: int = INCREMENTAL_PCA_BATCH,
) -> PCA:
    """Fits PCA on the rows of `x` `[N, D]`.

    Args:
        x: the embeddings, `[N, D]`.
        n_components: k ≤ D components to keep.
        method: "auto" (full SVD if D < 100, else incremental), "full" or
            "incremental" (see the module docstring).
        batch_size: rows per batch of the incremental path (published 320,000).

    Example:
        >>> rows = np.random.default_rng(0).standard_normal((50, 5)) * [5, 4, 3, 2, 1]
        >>> pca = fit_pca(rows, 2)
        >>> pca.method, pca.transform(rows).shape, pca.transform(rows).dtype
        ('full', (50, 2), dtype('float32'))
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"PCA: expected embeddings [N, D] with N ≥ 1, got shape {x.shape}")
    rows, dim = x.shape
    if int(n_components) != n_components or not 1 <= n_components <= dim:
        raise ValueError(f"PCA: n_components must be in 1 … {dim}, got {n_components!r}")
    if method == "auto":
        method = "full" if dim < FULL_SVD_MAX_DIM else "incremental"
    if method not in ("full", "incremental"):
        raise ValueError(f"PCA: method must be 'auto', 'full' or 'incremental', got {method!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"PCA: batch_size must be a positive integer, got {batch_size!r}")
    denominator = max(rows - 1, 1)
    if method == "full":
        mean = x.mean(axis=0, dtype=np.float64)
        centred = x.astype(np.float64) - mean
        _, singular, vt = np.linalg.svd(centred, full_matrices=rows < dim)
        variance = np.zeros(dim)
        variance[:singular.shape[0]] = singular**2 / denominator
        components, variance = vt[:n_components], variance[:n_components]
    else:
        shift = x[:batch_size].mean(axis=0, dtype=np.float64)
        total = np.zeros(dim)
        products = np.zeros((dim, dim))
        for first in range(0, rows, int(batch_size)):
            chunk = x[first:first + batch_size].astype(np.float64) - shift
            total += chunk.sum(axis=0)
            products += chunk.T @ chunk
        centre = total / rows
        covariance = (products - rows * np.outer(centre, centre)) / denominator
        covariance = (covariance + covariance.T) / 2
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
        order = np.argsort(eigenvalues)[::-1][:n_components]
        components = eigenvectors[:, order].T
        variance = np.maximum(eigenvalues[order], 0.0)
        mean = shift + centre
    return PCA(mean=mean, components=_fix_signs(components),
               explained_variance=np.asarray(variance, np.float64), method=method)


def apply_pca_limit(
    embeddings: np.ndarray | Sequence[np.ndarray],
    limit: int,
    method: str = "auto",
    batch_size: int = INCREMENTAL_PCA_BATCH,
):
    """Reduces each level with D > `limit` to `limit` dims by PCA fitted on it; float32 out.

    Levels with D ≤ `limit` are returned unchanged (as float32).

    Args:
        embeddings: one `[N, D]` array, or a list of them (one per level).
        limit: the PCA limit (published: 64 Shot7M2 and hBABEL, 128 MABe22; see
            `data.layouts`).
        method, batch_size: as in `fit_pca`.

    Returns:
        The same structure as `embeddings`, float32.
    """
    if int(limit) != limit or limit < 1:
        raise ValueError(f"PCA limit must be a positive integer, got {limit!r}")

    def reduce(level: np.ndarray) -> np.ndarray:
        level = np.asarray(level)
        if level.shape[1] <= limit:
            return level.astype(np.float32, copy=False)
        return fit_pca(level, int(limit), method, batch_size).transform(level, batch_size)

    if isinstance(embeddings, np.ndarray):
        return reduce(embeddings)
    return [reduce(level) for level in embeddings]
