"""Embeddings and reconstructions from a trained model.

| module | concept |
|---|---|
| `extraction` | `embed_sequence`, `embed_sequences`: per-frame embeddings per level |
| `accumulation` | window embeddings → per-frame rows, per sequence |
| `modes` | the extraction modes (`exact`, `fast`, `strided`) and their windows |
| `pca` | exact and streaming PCA, the published limits |
| `submission` | the published submission files |
| `recordings` | one embedding file per pose recording (`hbehavemae embed --data`) |
| `reconstruction` | masked reconstruction |
| `imputation` | imputation of badly tracked frames |
"""

from keras_hbehavemae.embeddings.accumulation import level_rows
from keras_hbehavemae.embeddings.extraction import (
    DEFAULT_BATCH_SIZE,
    embed_sequence,
    embed_sequences,
    embedding_dims,
    encode_levels,
)
from keras_hbehavemae.embeddings.modes import MODES, count_windows, window_plan
from keras_hbehavemae.embeddings.pca import PCA, apply_pca_limit, fit_pca
from keras_hbehavemae.embeddings.submission import write_submission

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MODES",
    "PCA",
    "apply_pca_limit",
    "count_windows",
    "embed_sequence",
    "embed_sequences",
    "embedding_dims",
    "encode_levels",
    "fit_pca",
    "level_rows",
    "window_plan",
    "write_submission",
]
