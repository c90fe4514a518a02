"""Probe metrics: binary and macro F1, mean squared error.

Example:

>>> f1_macro([0, 1, 1, 2], [0, 1, 2, 2])
0.7777777777777777
"""

from __future__ import annotations

import numpy as np


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
