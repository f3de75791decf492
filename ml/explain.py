"""SHAP explanations of the booking-propensity model (the shap package's TreeExplainer).

The saved model is `CalibratedClassifierCV(FrozenEstimator(Pipeline(derive, encode, trees)))`.
SHAP explains the tree model on its encoded inputs, in the tree model's own output: log-odds for
gradient boosting, probability for the random forest. The isotonic calibration on top is a
monotone map of that output, so a feature pushing the raw output up pushes the calibrated
probability up too (or leaves it on the same isotonic step). Encoded columns are summed back to
the feature they came from (a station's one-hot columns give one contribution; SHAP values are
additive), so every contribution is named for a model input or a derived feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shap

from ml.artifacts import ArtifactError

UNITS = {"hist_gradient_boosting": "log_odds", "random_forest": "probability"}


@dataclass
class Contributions:
    """SHAP values of n rows, one column per feature (`names`), in `unit`."""

    base_value: float
    values: np.ndarray  # n x len(names)
    names: list[str]
    unit: str
    inputs: pd.DataFrame  # the features explained, derived ones included (same row order)

    def top(self, row: int, k: int) -> list[tuple[str, float]]:
        """The k largest contributions of one row by magnitude, largest first."""
        order = np.argsort(-np.abs(self.values[row]), kind="stable")[:k]
        return [(self.names[i], float(self.values[row, i])) for i in order]

    def mean_abs(self) -> dict[str, float]:
        """Global importance: mean |SHAP| per feature, largest first."""
        means = np.abs(self.values).mean(axis=0)
        return {self.names[i]: float(means[i]) for i in np.argsort(-means, kind="stable")}


class Explainer:
    """A TreeExplainer for one fitted (calibrated) propensity model."""

    def __init__(self, calibrated: Any, estimator: str) -> None:
        try:
            pipeline = calibrated.estimator.estimator  # CalibratedClassifierCV -> FrozenEstimator
        except AttributeError:
            raise ArtifactError(
                "the propensity artifact is not a calibrated pipeline this code can explain; "
                "retrain with `python -m ml train`"
            ) from None
        self._encode = pipeline[:-1]
        trees = pipeline[-1]
        self._explainer = shap.TreeExplainer(trees)
        # the forest explains both classes (the positive one is last), boosting one log-odds
        self._positive = len(np.atleast_1d(self._explainer.expected_value)) - 1
        self.unit = UNITS.get(estimator, "raw")
        encoded = list(self._encode.get_feature_names_out())
        sources = list(self._encode[-1].feature_names_in_)
        self.names = sources
        # each encoded column -> the input it came from ("categorical__origin_station_id_FRPLY")
        group = np.empty(len(encoded), dtype=int)
        for j, name in enumerate(encoded):
            bare = name.split("__", 1)[-1]
            matches = [i for i, s in enumerate(sources) if bare == s or bare.startswith(f"{s}_")]
            group[j] = max(matches, key=lambda i: len(sources[i]))
        self._group = np.zeros((len(encoded), len(sources)))
        self._group[np.arange(len(encoded)), group] = 1.0

    def explain(self, x: pd.DataFrame) -> Contributions:
        """SHAP contributions of each row of `x` (the model's input columns)."""
        derive, encode = self._encode[0], self._encode[1:]
        inputs = derive.transform(x)
        encoded = np.asarray(encode.transform(inputs), dtype=float)
        raw = self._explainer.shap_values(encoded, check_additivity=False)
        values = np.asarray(raw)
        if values.ndim == 3:  # (rows, columns, classes): the forest explains both classes
            values = values[:, :, self._positive]
        base = np.atleast_1d(self._explainer.expected_value)[self._positive]
        return Contributions(float(base), values @ self._group, self.names, self.unit, inputs)
