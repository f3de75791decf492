"""Churn: P(no activity in the next `churn_horizon_days`) per user and weekly cutoff.

Same discipline as propensity: HistGradientBoosting in one Pipeline, time-based split on the
cutoff date (the last labelled cutoff is the test window, the one before calibrates), isotonic
calibration, and an oracle from the generator's truth: the true probability of no activity in
the horizon under the planted session process.
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
from ml.features import FeatureError, GeneratorTruth, require_columns, to_pandas
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
ORACLE_AUC_RATIO_GOAL = 0.97  # issue 24: the model's AUC at least 0.97 x the fair oracle's


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


def latent_oracle_scores(rows: pl.DataFrame, truth: GeneratorTruth) -> np.ndarray:
    """P(no session in the horizon) given every latent draw, the realised churn and
    reactivation times included: exp(-the planted session rates of the horizon's active days).
    No predictor can know those times at the cutoff, so this is an upper bound, not a target."""
    keys = rows.select("user_id", "cutoff_date").with_row_index("row")
    expected = (
        keys.join(truth.activity.filter(pl.col("is_active")), on="user_id", how="inner")
        .filter(
            pl.col("activity_date").is_between(
                pl.col("cutoff_date"),
                pl.col("cutoff_date") + pl.duration(days=HORIZON_DAYS),
                closed="left",
            )
        )
        .group_by("row")
        .agg(pl.col("session_rate").sum())
    )
    score = keys.join(expected, on="row", how="left").sort("row")
    return np.exp(-score["session_rate"].fill_null(0.0).to_numpy())


# A session on a day the planted process calls inactive (one drawn in the first local hours
# lands on the previous UTC day) gets this likelihood instead of 0, so no history is impossible.
_INACTIVE_SESSION_LIKELIHOOD = 1e-6


def oracle_scores(rows: pl.DataFrame, truth: GeneratorTruth) -> np.ndarray:
    """The fair oracle: the true probability of no activity in the horizon under the planted
    process, given what can be known at the cutoff.

    It knows what the generator planted (PARAMS: each persona's mean lifetime, the reactivation
    share, gap and length; each user's daily session rates) and sees the user's sessions before
    the cutoff, but not the latent churn and reactivation times the generator drew. A forward
    filter over four daily states (in the lifetime, churned awaiting a reactivation, reactivated,
    done) gives the state at the cutoff; the probability that the next HORIZON_DAYS have no
    session is then summed over the paths that draw none. Lifetimes, gaps and reactivations
    are exponential, so each state keeps a daily survival probability (the day-level
    discretisation is the only approximation). Being Bayes-optimal on the information a model
    has, no model beats it but by chance."""
    planted = truth.planted
    persona_lifetime = dict(
        zip(
            ("commuter", "business", "leisure", "student", "family"),
            planted["mean_lifetime_days"],
            strict=True,
        )
    )
    rho = planted["reactivation_share"]
    b = np.exp(-1.0 / planted["reactivation_gap_mean_days"])
    g = np.exp(-1.0 / planted["reactivation_mean_days"])
    out = np.empty(rows.height)
    keyed = rows.select("user_id", "cutoff_date").with_row_index("row")
    for (cutoff,), group in keyed.group_by("cutoff_date", maintain_order=True):
        c = (cutoff - truth.start_date).days
        users = (
            group.select("row", "user_id")
            .join(truth.users.select("user_id", "persona", "signup_at"), on="user_id", how="left")
            .with_columns(
                signup_day=(
                    (pl.col("signup_at").dt.epoch("us") // 86_400_000_000)
                    - (pl.lit(truth.start_date).cast(pl.Date).dt.epoch("d"))
                ).cast(pl.Int64)
            )
            .with_row_index("i")
        )
        n_users, days = users.height, c + HORIZON_DAYS
        days_seen = truth.activity.join(users.select("user_id", "i"), on="user_id").with_columns(
            d=(pl.col("activity_date") - pl.lit(truth.start_date)).dt.total_days()
        )
        days_seen = days_seen.filter(pl.col("d") < days)
        lam = np.zeros((n_users, days))
        seen = np.zeros((n_users, days))
        i, d = days_seen["i"].to_numpy(), days_seen["d"].to_numpy()
        lam[i, d] = days_seen["session_rate"].to_numpy()
        seen[i, d] = days_seen["sessions"].to_numpy()
        signup = users["signup_day"].to_numpy()
        a = np.exp(-1.0 / users["persona"].replace_strict(persona_lifetime).to_numpy())
        state = np.zeros((n_users, 4))  # lifetime, awaiting reactivation, reactivated, done
        mass = np.ones(n_users)
        for day in range(min(int(signup.min()), 0), days):
            lt, wt, rt, dn = state.T
            state = np.stack(
                [
                    lt * a,
                    lt * (1 - a) * rho + wt * b,
                    wt * (1 - b) + rt * g,
                    lt * (1 - a) * (1 - rho) + rt * (1 - g) + dn,
                ],
                axis=1,
            )
            state[signup == day] = (1.0, 0.0, 0.0, 0.0)
            if day < 0:
                continue
            rate = lam[:, day]
            n = seen[:, day] if day < c else np.zeros(n_users)
            active = np.exp(-rate) * rate**n
            inactive = np.where(n == 0, 1.0, _INACTIVE_SESSION_LIKELIHOOD)
            signed = signup <= day
            state[signed] *= np.stack([active, inactive, active, inactive], axis=1)[signed]
            if day < c:  # filtering: keep the state a distribution
                total = state.sum(axis=1, keepdims=True)
                state = np.where(total > 0, state / np.where(total > 0, total, 1.0), state)
            if day == c - 1:
                mass = state.sum(axis=1)
        out[users["row"].to_numpy()] = state.sum(axis=1) / mass
    return out


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
    truth: GeneratorTruth | None,
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
    if truth is not None:
        fair = binary_metrics(y_test, oracle_scores(test, truth))
        latent = binary_metrics(y_test, latent_oracle_scores(test, truth))
        oracle = {
            "auc": fair["auc"],
            "brier": fair["brier"],
            "auc_ratio": metrics["auc"] / fair["auc"],
            "auc_ratio_goal": ORACLE_AUC_RATIO_GOAL,
            "latent_auc": latent["auc"],
        }
    info = {
        "training_window": f"cutoffs {cutoffs[0]} to {train['cutoff_date'].max()}, labels to "
        f"{train['cutoff_date'].max() + horizon}",
        "training_dates": [str(train["cutoff_date"].min()), str(train["cutoff_date"].max())],
        "validation_window": str(valid_cut),
        "test_window": str(test_cut),
        "rows": {"train": train.height, "valid": valid.height, "test": test.height},
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "oracle": {k: round(v, 4) for k, v in oracle.items()},
        "notes": "Oracle: the true probability of no activity in the horizon under the planted "
        "process given what is knowable at the cutoff (the planted parameters, the user's "
        "session rates and sessions before it; not the latent churn and reactivation times): a "
        "forward filter over the generator's churn and reactivation states (ml/churn.py "
        "oracle_scores), scored against the observed label. auc_ratio = model AUC / oracle AUC "
        f"(goal >= {ORACLE_AUC_RATIO_GOAL}). latent_auc: the same probability given the "
        "realised churn and reactivation times too, an upper bound no predictor can reach.",
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
