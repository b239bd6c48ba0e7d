"""UAR and WAR, the officially recommended SER metrics (paper §4.3, docs/design.md §3)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [true, predicted]."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def uar(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted average recall: the mean of per-class recalls over classes present."""
    m = confusion(y_true, y_pred, n_classes)
    support = m.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(m)[present] / support[present])) if present.any() else float("nan")


def war(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Weighted average recall = recall weighted by class support = accuracy."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")
