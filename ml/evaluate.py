"""Evaluation metrics shared by every model: discrimination, calibration and drift."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate − mean prediction| over equal-width probability bins, weighted by
    the share of rows in each bin."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(ece)


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both classes in the evaluation window")
    return {
        "auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "rows": len(y),
        "positive_rate": float(y.mean()),
    }


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of a feature between a reference (training) sample and a new (scoring) sample.
    Numeric features use reference deciles; categoricals (strings/bools) their levels."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    if expected.dtype.kind in "OUSb":
        levels = np.unique(np.concatenate([expected, actual]).astype(str))
        e = np.array([(expected.astype(str) == lv).mean() for lv in levels])
        a = np.array([(actual.astype(str) == lv).mean() for lv in levels])
    else:
        edges = np.unique(np.quantile(expected.astype(float), np.linspace(0, 1, bins + 1)))
        if edges.size < 2:
            return 0.0
        e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / expected.size
        a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / actual.size
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))
