"""Churn: P(no activity in the next `churn_horizon_days`) per user and weekly cutoff.

Same discipline as propensity: HistGradientBoosting in one Pipeline, time-based split on the
cutoff date (the last labelled cutoff is the test window, the one before calibrates), isotonic
calibration, and an oracle from the generator's truth (the user's latent churn time).
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from ml.evaluate import binary_metrics
from ml.features import FeatureError, require_columns, to_pandas
from railflow.dbt import project_var

MODEL_NAME = "churn"
FEATURES = [
    "tenure_days",
    "days_since_last_activity",
    "sessions_30d",
    "searches_30d",
    "bookings_30d",
    "net_revenue_90d_eur",
    "lifetime_bookings",
    "has_loyalty_card",
]
LABEL = "is_churned"
# The label and the feature mart share these through dbt's vars (dbt_project.yml), their one home.
HORIZON_DAYS = int(project_var("churn_horizon_days"))
WARMUP_DAYS = int(project_var("churn_warmup_days"))  # the first cutoff is this far in
# The last labelled cutoff tests; the latest whose label window ends by it calibrates; those
# whose label windows end by that one train. Labels look HORIZON_DAYS ahead, so with weekly
# cutoffs the three sets need 2 * ceil(HORIZON_DAYS / 7) + 1 labelled cutoffs.
MIN_LABELLED_CUTOFFS = 2 * -(-HORIZON_DAYS // 7) + 1
BANDS = (0.3, 0.6)


def churn_band(p: np.ndarray) -> np.ndarray:
    lo, hi = BANDS
    return np.where(p < lo, "low", np.where(p > hi, "high", "medium"))


def pipeline() -> Pipeline:
    return Pipeline(
        [
            (
                "model",
                HistGradientBoostingClassifier(
                    learning_rate=0.08, max_iter=200, min_samples_leaf=40, random_state=0
                ),
            )
        ]
    )


def oracle_scores(rows: pl.DataFrame, truth_users: pl.DataFrame) -> np.ndarray:
    """The generator's view: the user's latent lifetime ended before the cutoff and no
    reactivation falls inside the horizon."""
    joined = rows.select("user_id", "cutoff_date").join(
        truth_users.select("user_id", "churn_at", "reactivated_at"), on="user_id", how="left"
    )
    cutoff = pl.col("cutoff_date").cast(pl.Datetime("us", "UTC"))
    ended = pl.col("churn_at") <= cutoff
    back = (pl.col("reactivated_at") > cutoff) & (
        pl.col("reactivated_at") <= cutoff + pl.duration(days=HORIZON_DAYS)
    )
    score = (ended.fill_null(False) & ~back.fill_null(False)).cast(pl.Float64)
    return joined.select(score.alias("score"))["score"].to_numpy()


def labelled_cutoffs(start: date, days: int) -> list[date]:
    """The cutoffs ml_churn_features labels in a world of `days` days from `start`: the Mondays
    at least WARMUP_DAYS after its first day whose HORIZON_DAYS end by its last day."""
    first = start + timedelta(days=WARMUP_DAYS)
    first += timedelta(days=-first.weekday() % 7)  # that day or the next Monday
    last = start + timedelta(days=days - 1) - timedelta(days=HORIZON_DAYS)
    return [first + timedelta(weeks=i) for i in range(max((last - first).days // 7 + 1, 0))]


def min_days(start: date) -> int:
    """The fewest simulated days (RAILFLOW_DAYS) that give churn enough labelled cutoffs."""
    return next(
        days
        for days in itertools.count(1)
        if len(labelled_cutoffs(start, days)) >= MIN_LABELLED_CUTOFFS
    )


def require_labelled_cutoffs(
    features: pl.DataFrame, start: date | None = None, days: int | None = None
) -> list[date]:
    """The labelled cutoffs, sorted; a FeatureError naming the days needed if too few.

    `start` and `days` are the world's RAILFLOW_START_DATE and RAILFLOW_DAYS (for the message).
    """
    require_columns(features, ["cutoff_date", LABEL], "churn", allow_empty=True)
    labelled = features.filter(pl.col(LABEL).is_not_null())
    cutoffs: list[date] = sorted(labelled["cutoff_date"].unique().to_list())
    if len(cutoffs) >= MIN_LABELLED_CUTOFFS:
        return cutoffs
    need = min_days(start) if start else None
    if need is None:
        fix = "simulate more days (RAILFLOW_DAYS) and run `make run`"
    elif days is not None and days >= need:  # the warehouse was built from another world
        fix = f"RAILFLOW_DAYS={days} is enough: rebuild the warehouse with `make run`"
    else:
        fix = f"set RAILFLOW_DAYS to at least {need} (it is {days}; starting {start})"
        fix += " and run `make run`"
    raise FeatureError(
        f"churn needs at least {MIN_LABELLED_CUTOFFS} labelled weekly cutoffs, found "
        f"{len(cutoffs)} (a Monday at least {WARMUP_DAYS} days in, labelled once "
        f"{HORIZON_DAYS} more days are simulated); {fix}"
    )


def fit(
    features: pl.DataFrame,
    truth_users: pl.DataFrame | None,
    start: date | None = None,
    days: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train, calibrate and test; `start` and `days` (the world's) name the fix if too short."""
    # no rows at all is a world too short for any cutoff: the check below says how short
    columns = ["user_id", "cutoff_date", *FEATURES, LABEL]
    require_columns(features, columns, "churn", allow_empty=True)
    cutoffs = require_labelled_cutoffs(features, start, days)
    labelled = features.filter(pl.col(LABEL).is_not_null())
    # no label of an earlier set may look past the next set's cutoff: labels looking into the
    # test period would flatter the metrics (and calibration would miss the drift scoring sees)
    horizon = timedelta(days=HORIZON_DAYS)
    test_cut = cutoffs[-1]
    valid_cut = max(c for c in cutoffs if c + horizon <= test_cut)
    train = labelled.filter(pl.col("cutoff_date") + horizon <= valid_cut)
    valid = labelled.filter(pl.col("cutoff_date") == valid_cut)
    test = labelled.filter(pl.col("cutoff_date") == test_cut)
    model = pipeline().fit(to_pandas(train, FEATURES), train[LABEL].to_numpy().astype(int))
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method="isotonic")
    calibrated.fit(to_pandas(valid, FEATURES), valid[LABEL].to_numpy().astype(int))
    y_test = test[LABEL].to_numpy().astype(int)
    metrics = binary_metrics(y_test, calibrated.predict_proba(to_pandas(test, FEATURES))[:, 1])
    oracle: dict[str, float] = {}
    if truth_users is not None:
        oracle = {"auc": binary_metrics(y_test, oracle_scores(test, truth_users))["auc"]}
    info = {
        "training_window": f"cutoffs {cutoffs[0]} to {train['cutoff_date'].max()}, labels to "
        f"{train['cutoff_date'].max() + horizon}",
        "training_dates": [str(train["cutoff_date"].min()), str(train["cutoff_date"].max())],
        "validation_window": str(valid_cut),
        "test_window": str(test_cut),
        "rows": {"train": train.height, "valid": valid.height, "test": test.height},
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "oracle": {k: round(v, 4) for k, v in oracle.items()},
        "notes": "Oracle: the generator's latent churn time (lifetime ended before the cutoff, "
        "no reactivation inside the horizon) scored against the observed label.",
    }
    return calibrated, info


def score_latest(model: Any, features: pl.DataFrame) -> pl.DataFrame:
    """Each user's churn probability at their most recent cutoff."""
    require_columns(features, ["user_id", "cutoff_date", *FEATURES], "churn scoring")
    latest = features.sort("cutoff_date").group_by("user_id").last()
    p = model.predict_proba(to_pandas(latest, FEATURES))[:, 1]
    return latest.select("user_id", "cutoff_date").with_columns(
        churn_probability=pl.Series(p), churn_band=pl.Series(churn_band(p))
    )
