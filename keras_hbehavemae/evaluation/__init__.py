"""Evaluation of embeddings: linear probes per level against per-frame labels, and plots.

| module | concept |
|---|---|
| `ridge` | closed-form ridge regression and classification |
| `metrics` | F1 and MSE |
| `splits` | the seeded sequence splits (k-fold; the published train/test split) |
| `protocol` | per-level probes, scores per seed and fold |
| `comparison` | paired comparisons against a control across seeds |
| `baselines` | raw keypoints with their motion (the context baseline) |
| `table` | the probe table with controls and baselines (markdown, CSV, JSON) |
| `labels` | labels files and embedding folders on disk |
| `frame_labels` | per-frame labels in CSV files (your own recordings) |
| `recording_folder` | the per-recording embedding folders of `hbehavemae embed --data` |
| `plots` | the probe heat map and training curves (matplotlib) |
"""

from keras_hbehavemae.evaluation.baselines import DEFAULT_MOTION_WINDOWS, motion_features
from keras_hbehavemae.evaluation.comparison import PairedComparison, compare
from keras_hbehavemae.evaluation.frame_labels import load_labels, read_labels_csv
from keras_hbehavemae.evaluation.labels import (
    LabelsFile,
    align_frames,
    load_embedding_folder,
    load_labels_file,
    write_labels_file,
)
from keras_hbehavemae.evaluation.metrics import f1_binary, f1_macro, mean_squared_error
from keras_hbehavemae.evaluation.protocol import ProbeResult, chance_score, probe_embeddings
from keras_hbehavemae.evaluation.recording_folder import (
    is_recording_folder,
    load_recording_folder,
    recording_probe_inputs,
)
from keras_hbehavemae.evaluation.ridge import RidgeClassifier, RidgeRegression, ridge_path
from keras_hbehavemae.evaluation.splits import (
    frame_sequence_index,
    kfold_sequences,
    make_splits,
    split_sequences,
)
from keras_hbehavemae.evaluation.table import (
    ProbeTable,
    probe_table,
    write_table_csv,
    write_table_markdown,
)

__all__ = [
    "DEFAULT_MOTION_WINDOWS",
    "LabelsFile",
    "PairedComparison",
    "ProbeResult",
    "ProbeTable",
    "RidgeClassifier",
    "RidgeRegression",
    "align_frames",
    "chance_score",
    "compare",
    "f1_binary",
    "f1_macro",
    "frame_sequence_index",
    "is_recording_folder",
    "kfold_sequences",
    "load_embedding_folder",
    "load_labels",
    "load_labels_file",
    "load_recording_folder",
    "make_splits",
    "mean_squared_error",
    "motion_features",
    "probe_embeddings",
    "probe_table",
    "read_labels_csv",
    "recording_probe_inputs",
    "ridge_path",
    "split_sequences",
    "write_labels_file",
    "write_table_csv",
    "write_table_markdown",
]
