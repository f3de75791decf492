"""Lifetime value: each user's net revenue in the next `HORIZON_DAYS` days, per weekly cutoff.

HistGradientBoostingRegressor (Poisson deviance: it estimates the conditional mean, the
expected revenue, of a skewed non-negative amount) in one Pipeline on the point-in-time mart
`ml_ltv_features`. The horizon is long (90 days) against a world of 180, so a time split with
label windows that never overlap is impossible; the split is by user instead: a fixed fifth of
the users (by a hash of their id) is held out, the model trains on the other users' labelled
cutoffs and is tested on the held-out users at the last labelled cutoff. Graded against the
observed label (error, calibration by decile) and against the generator's truth: each user's
expected net revenue in the horizon under the planted process (`expected_revenue`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import spearmanr
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline

from ml.churn import FEATURES as CHURN_FEATURES
from ml.features import FeatureError, GeneratorTruth, require_columns, to_pandas
from railflow.dbt import project_var

MODEL_NAME = "ltv"
FEATURES = [*CHURN_FEATURES, "observed_history_days", "net_revenue_to_date_eur"]
LABEL = "net_revenue_next_90d_eur"
# The label and the feature mart share it through dbt's vars (dbt_project.yml), its one home.
HORIZON_DAYS = int(project_var("ltv_horizon_days"))
TEST_SHARE = 0.2  # of users, held out for the test
DECILES = 10
# Value bands of the scored users: high = the top decile of predicted value (the CRM's
# high-value audience), medium = deciles 6-9, low = the rest.
HIGH_DECILE, MEDIUM_DECILE = 10, 6
# Prior weight (in expected sessions) pulling a user's value per session to their persona's in
# expected_revenue: a user with few sessions has a noisy average.
PRIOR_SESSIONS = 3.0


def pipeline() -> Pipeline:
    return Pipeline(
        [
            (
                "model",
                HistGradientBoostingRegressor(
                    loss="poisson",
                    learning_rate=0.03,
                    max_iter=300,
                    min_samples_leaf=60,
                    l2_regularization=1.0,
                    random_state=0,
                ),
            )
        ]
    )


def is_test_user(user_ids: pl.Series) -> np.ndarray:
    """The held-out users: a stable hash of the id (the same users in every run)."""
    return np.array(
        [
            int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") / 2**64 < TEST_SHARE
            for uid in user_ids.to_list()
        ]
    )


def predict(model: Any, rows: pl.DataFrame) -> np.ndarray:
    """Expected net revenue in the horizon (EUR), never below zero."""
    return np.clip(model.predict(to_pandas(rows, FEATURES)), 0.0, None)


def naive_baseline(rows: pl.DataFrame) -> np.ndarray:
    """What a spreadsheet would say: the last 90 days' net revenue again, scaled to the horizon."""
    past = rows["net_revenue_90d_eur"].fill_null(0.0).to_numpy()
    return np.clip(past * HORIZON_DAYS / 90, 0.0, None)


def expected_revenue(rows: pl.DataFrame, truth: GeneratorTruth) -> np.ndarray:
    """Each row's expected net revenue in [cutoff, cutoff + horizon) under the planted process.

    Sessions are Poisson with the daily rates in the truth (`activity.parquet`), so the expected
    sessions in the horizon are the sum of the rates of its active days (the user's realised
    lifetime and reactivation window: the truth, not a forecast). What a session is worth is
    the user's: the expected net value of their searches (true booking probability x price
    paid, less the planted cancellation rate x mean refund share) per expected session over the
    whole simulated period, shrunk towards their persona's by PRIOR_SESSIONS sessions. Refunds
    fall on their own day, so in a steady state the horizon loses that share to refunds."""
    planted = truth.planted
    truth_activity = truth.activity.filter(pl.col("is_active")).select(
        "user_id", "activity_date", pl.col("session_rate").alias("expected_sessions")
    )
    lo, hi = planted["refund_share_range"]
    kept = 1.0 - planted["cancellation_rate"] * (lo + hi) / 2
    discount = planted["experiments"]["medium_intent_discount"]["discount_rate"]
    value = truth.searches.group_by("user_id").agg(
        (
            pl.col("true_probability")
            * pl.col("price_eur")
            * pl.when(pl.col("is_treated")).then(1.0 - discount).otherwise(1.0)
        )
        .sum()
        .alias("value_eur")
    )
    sessions = truth_activity.group_by("user_id").agg(
        pl.col("expected_sessions").sum().alias("sessions")
    )
    per_user = sessions.join(value, on="user_id", how="left").with_columns(
        pl.col("value_eur").fill_null(0.0) * kept
    )
    keys = rows.select("user_id", "cutoff_date").with_row_index("row")
    in_horizon = (
        keys.join(truth_activity, on="user_id", how="inner")
        .filter(
            pl.col("activity_date").is_between(
                pl.col("cutoff_date"),
                pl.col("cutoff_date") + pl.duration(days=HORIZON_DAYS),
                closed="left",
            )
        )
        .group_by("row")
        .agg(pl.col("expected_sessions").sum().alias("horizon_sessions"))
    )
    per_user = per_user.join(truth.users.select("user_id", "persona"), on="user_id", how="left")
    pooled = per_user.group_by("persona").agg(
        (pl.col("value_eur").sum() / pl.col("sessions").sum()).alias("persona_rate")
    )
    per_user = per_user.join(pooled, on="persona", how="left").with_columns(
        rate=(pl.col("value_eur") + PRIOR_SESSIONS * pl.col("persona_rate"))
        / (pl.col("sessions") + PRIOR_SESSIONS)
    )
    out = (
        keys.join(in_horizon, on="row", how="left")
        .join(per_user.select("user_id", "rate"), on="user_id", how="left")
        .sort("row")
        .select(pl.col("horizon_sessions").fill_null(0.0) * pl.col("rate").fill_null(0.0))
    )
    return out.to_series().to_numpy()


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return {
        "mae": float(np.mean(np.abs(y - p))),
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
        "spearman": float(spearmanr(y, p).statistic) if np.ptp(p) > 0 else float("nan"),
        "mean_predicted": float(p.mean()),
        "mean_actual": float(y.mean()),
    }


def calibration_by_decile(
    predicted: np.ndarray, observed: np.ndarray, truth: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Mean predicted vs mean observed (and expected under the truth) per decile of predicted
    value (ties in the order of the rows: deciles are equal-sized)."""
    order = np.argsort(predicted, kind="stable")
    out = []
    for d, idx in enumerate(np.array_split(order, DECILES), start=1):
        if idx.size == 0:
            continue
        row = {
            "decile": d,
            "rows": int(idx.size),
            "mean_predicted_eur": round(float(predicted[idx].mean()), 2),
            "mean_observed_eur": round(float(observed[idx].mean()), 2),
        }
        if truth is not None:
            row["mean_expected_under_truth_eur"] = round(float(truth[idx].mean()), 2)
        out.append(row)
    return out


def fit(
    features: pl.DataFrame,
    truth: GeneratorTruth | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train on the other users' labelled cutoffs, test on the held-out users at the last one;
    graded against the generator's truth when given."""
    require_columns(features, ["user_id", "cutoff_date", *FEATURES, LABEL], "ltv", allow_empty=True)
    labelled = features.filter(pl.col(LABEL).is_not_null())
    if labelled.height == 0:
        raise FeatureError(
            f"ltv needs a cutoff whose {HORIZON_DAYS}-day horizon is observed; simulate at least "
            f"{HORIZON_DAYS} days after the first churn cutoff (RAILFLOW_DAYS) and run `make run`"
        )
    held_out = pl.Series(is_test_user(labelled["user_id"]))
    last = labelled["cutoff_date"].max()
    train = labelled.filter(~held_out)
    test = labelled.filter(held_out & (pl.col("cutoff_date") == last))
    # Poisson deviance fits a skewed, non-negative amount by its mean (and keeps the training
    # total); a horizon's refunds of earlier bookings can make a label negative: zero for the fit
    model = pipeline().fit(to_pandas(train, FEATURES), np.clip(train[LABEL].to_numpy(), 0, None))
    observed = test[LABEL].to_numpy()
    predicted = predict(model, test)
    baseline = naive_baseline(test)
    metrics = regression_metrics(observed, predicted)
    baseline_metrics = regression_metrics(observed, baseline)
    oracle: dict[str, float] = {}
    expected = None
    if truth is not None:
        expected = expected_revenue(test, truth)
        vs_truth = regression_metrics(expected, predicted)
        naive_vs_truth = regression_metrics(expected, baseline)
        oracle = {
            "mae_vs_expected_eur": vs_truth["mae"],
            "spearman_vs_expected": vs_truth["spearman"],
            "baseline_mae_vs_expected_eur": naive_vs_truth["mae"],
            "baseline_spearman_vs_expected": naive_vs_truth["spearman"],
            "truth_mae_vs_observed_eur": regression_metrics(observed, expected)["mae"],
            "mean_expected_eur": float(expected.mean()),
        }
    info = {
        "estimator": "HistGradientBoostingRegressor",
        "horizon_days": HORIZON_DAYS,
        "training_window": f"cutoffs {train['cutoff_date'].min()} to {train['cutoff_date'].max()}"
        f" (users outside the held-out {TEST_SHARE:.0%}), labels to "
        f"{train['cutoff_date'].max()} + {HORIZON_DAYS} days",
        "training_dates": [str(train["cutoff_date"].min()), str(train["cutoff_date"].max())],
        "test_window": f"{last}, held-out users",
        "rows": {"train": train.height, "test": test.height},
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "baseline": {f"naive_{k}": round(v, 4) for k, v in baseline_metrics.items()},
        "oracle": {k: round(v, 4) for k, v in oracle.items()},
        "calibration_by_decile": calibration_by_decile(predicted, observed, expected),
        "notes": f"Target: net revenue in the {HORIZON_DAYS} days from the cutoff (bookings "
        "revenue on the booking date minus refunds on the refund date). Baseline: the last 90 "
        "days' net revenue again. Oracle: each user's expected net revenue in the horizon under "
        "the planted process (expected sessions from truth/activity.parquet x the user's "
        "expected net value per session), so the *_vs_expected figures grade the model without "
        "the noise of one realised horizon; truth_mae_vs_observed_eur is that noise.",
    }
    return model, info


def value_band(decile: np.ndarray) -> np.ndarray:
    return np.where(
        decile >= HIGH_DECILE, "high", np.where(decile >= MEDIUM_DECILE, "medium", "low")
    )


def score_latest(model: Any, features: pl.DataFrame) -> pl.DataFrame:
    """Each user's predicted net revenue in the next HORIZON_DAYS days, at their latest cutoff,
    with its decile among the users scored (10 = the most valuable) and value band."""
    require_columns(features, ["user_id", "cutoff_date", *FEATURES], "ltv scoring")
    latest = features.sort("cutoff_date").group_by("user_id", maintain_order=True).last()
    latest = latest.sort("user_id")
    p = predict(model, latest)
    # deciles by rank (ties broken by user id through the sort above): equal-sized groups
    rank = np.empty(p.size, dtype=np.int64)
    rank[np.argsort(p, kind="stable")] = np.arange(p.size)
    decile = rank * DECILES // max(p.size, 1) + 1
    return latest.select("user_id", "cutoff_date").with_columns(
        predicted_net_revenue_90d_eur=pl.Series(np.round(p, 2)),
        ltv_decile=pl.Series(decile),
        ltv_band=pl.Series(value_band(decile)),
    )
