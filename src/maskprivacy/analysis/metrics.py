"""The metrics, each defined once (numpy only): accuracy, per-class recall, balanced accuracy,
mean absolute error and root mean squared error of predictions against true values.

Training's validation metrics (:mod:`maskprivacy.model.predict`), the evaluate stage's intervals
and the compare stage's tables all use these."""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The share of predictions equal to the true class."""
    return float((np.asarray(y_true) == np.asarray(y_pred)).mean())


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[float | None]:
    """Recall of each class ``0 .. n_classes-1``: ``None`` for a class absent from ``y_true``."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return [float((p[t == k] == k).mean()) if (t == k).any() else None for k in range(n_classes)]


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """The mean recall over the classes present in ``y_true`` (as scikit-learn's
    ``balanced_accuracy_score``); NaN when no class is present."""
    present = [r for r in per_class_recall(y_true, y_pred, n_classes) if r is not None]
    return float(np.mean(present)) if present else float("nan")


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.abs(np.asarray(y_pred) - np.asarray(y_true)).mean())


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(((np.asarray(y_pred) - np.asarray(y_true)) ** 2).mean()))
