"""KPI anomaly detection on the monitoring marts, and its grading against planted incidents.

Each monitored series (one metric of one scope: a platform's hours or days, a route's days) is
put on a scale where its sampling noise is known, decomposed with STL (statsmodels, robust
LOESS: trend + seasonal, period 24 for hours and 7 for days), and each point scored by its
residual over a robust scale: the larger of 1.4826 x the residuals' median absolute deviation
and the point's own sampling standard deviation, widened by the series' over-dispersion (the
median squared residual in sampling units over the median of a chi-square(1)), so a quiet
series cannot make a tiny wobble look huge and a clustered one cannot make its noise look
rare. A point whose |score| reaches the threshold is anomalous; consecutive anomalous
points of one series form one anomaly (its peak reported). Severity: `critical` from twice the
threshold, else `warning`.

The scales per kind of metric:
- count (searches, purchases): Anscombe's 2 sqrt(x + 3/8), unit variance under Poisson;
- rate (results rate, checkout completion): the rate itself, sampling sd sqrt(p (1 - p) / n)
  with p the expected rate (kept within [0.02, 0.98]);
- fare index (quoted price / the fare rule's expected quote): its log, sampling sd
  PRICE_NOISE_SD / sqrt(n) from the fare rule (railflow/fares.py).

`grade` matches anomalies to the truth's incidents by time (the anomaly's period overlaps the
incident's window) and scope (route and platform compatible: equal, or either one all).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from railflow import fares
from railflow.errors import RailflowError, cli_entrypoint
from railflow.settings import Settings, get_settings
from railflow.stage import StageResult

log = logging.getLogger("railflow.anomalies")

MODEL_NAME = "anomaly_detector"
DETECTOR_VERSION = "stl-robust-z-1"
DEFAULT_THRESHOLD = 5.0
ROBUST_MAX_PERIOD = 24  # full robust STL up to this period; two robustness passes beyond
CHI2_1_MEDIAN = 0.4549  # median of a chi-square with one degree of freedom
MIN_PERIODS = 3  # a series needs this many seasonal periods of history to be scored
MIN_FARE_DAYS = 7  # a route's fare index needs quotes on this many days for a baseline
TABLE = "anomalies"


class AnomalyError(RailflowError):
    """The monitoring marts are missing or unusable."""


@dataclass(frozen=True)
class Metric:
    """One KPI watched on one grain: its value (numerator / denominator for a rate)."""

    name: str
    grain: str  # "hour" | "day"
    scope: str  # "platform" | "route"
    kind: str  # "count" | "rate" | "fare_index"
    column: str  # the count, the rate's numerator, or the fare index
    denominator: str | None = None  # the rate's denominator, the fare index's sample size
    direction: str = "both"  # "up" | "down" | "both": which departures are anomalies
    seasonal: bool = True  # False: the expected value is the series' median (no seasonality)
    # a count of items that come in clusters (searches come in sessions): its variance is the
    # mean x the mean cluster size (compound Poisson), this column counting the clusters
    clusters: str | None = None


# What each one catches: a burst of traffic (bots, a crawler), searches answered with nothing,
# purchases that stop reaching the warehouse while checkouts still do, fares off the fare rule.
# Drops in searches or purchases are not watched on their own: holidays move them far more than
# the hour's noise, and the calendar is not the detector's business.
METRICS = (
    Metric(
        "searches", "hour", "platform", "count", "searches", direction="up",
        clusters="search_sessions",
    ),
    Metric(
        "results_rate", "hour", "platform", "rate", "searches_with_results", "searches",
        direction="down",
    ),
    Metric(
        "checkout_completion_rate", "day", "platform", "rate", "purchases", "checkouts",
        direction="down",
    ),
    Metric(
        "fare_index", "day", "route", "fare_index", "fare_index", "priced_searches",
        seasonal=False,
    ),
)  # fmt: skip
# seasonal periods: hours repeat weekly (hour of day x weekday), days weekly
PERIOD = {"hour": 168, "day": 7}
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}

ANOMALY_SCHEMA = {
    "anomaly_id": pl.Utf8,
    "metric": pl.Utf8,
    "grain": pl.Utf8,
    "route_id": pl.Utf8,
    "platform": pl.Utf8,
    "period_start_at": pl.Datetime("us", "UTC"),
    "period_end_at": pl.Datetime("us", "UTC"),
    "periods": pl.Int64,
    "observed_value": pl.Float64,
    "expected_value": pl.Float64,
    "score": pl.Float64,
    "severity": pl.Utf8,
    "detector_version": pl.Utf8,
    "detected_at": pl.Datetime("us", "UTC"),
}


# ------------------------------------------------------------------------------------------
# The series


def platform_series(hourly: pl.DataFrame, grain: str) -> pl.DataFrame:
    """Per platform and period (hour or day): the counts the platform metrics use, every
    period from the first to the last hour of the data present (absent ones are zeros)."""
    counts = ["searches", "search_sessions", "searches_with_results", "checkouts", "purchases"]
    rows = hourly.select(
        "platform", pl.col("hour_started_at").alias("period_start_at"), *counts
    ).with_columns(pl.col("period_start_at").dt.replace_time_zone("UTC"))
    if grain == "day":
        rows = rows.with_columns(pl.col("period_start_at").dt.truncate("1d"))
    rows = rows.group_by("platform", "period_start_at").agg(pl.col(c).sum() for c in counts)
    if rows.height == 0:
        return rows
    spine = pl.datetime_range(
        rows["period_start_at"].min(),
        rows["period_start_at"].max(),
        interval="1h" if grain == "hour" else "1d",
        eager=True,
        time_zone="UTC",
    ).alias("period_start_at")
    full = pl.DataFrame({"platform": rows["platform"].unique().sort()}).join(
        spine.to_frame(), how="cross"
    )
    return full.join(rows, on=["platform", "period_start_at"], how="left").with_columns(
        pl.col(c).fill_null(0) for c in counts
    )


def route_series(daily: pl.DataFrame) -> pl.DataFrame:
    """Per route and day: the fare index and its sample size, every day of the data (a day
    without a quote has a null index)."""
    rows = daily.select(
        "route_id",
        pl.col("search_date")
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
        .alias("period_start_at"),
        pl.col("fare_index").cast(pl.Float64),
        pl.col("priced_searches").cast(pl.Int64),
    )
    if rows.height == 0:
        return rows
    spine = pl.datetime_range(
        rows["period_start_at"].min(),
        rows["period_start_at"].max(),
        interval="1d",
        eager=True,
        time_zone="UTC",
    ).alias("period_start_at")
    full = pl.DataFrame({"route_id": rows["route_id"].unique().sort()}).join(
        spine.to_frame(), how="cross"
    )
    return full.join(rows, on=["route_id", "period_start_at"], how="left").with_columns(
        pl.col("priced_searches").fill_null(0)
    )


# ------------------------------------------------------------------------------------------
# Scoring one series


def _fill(y: np.ndarray) -> np.ndarray:
    """Missing points linearly interpolated (ends: nearest), for STL, which takes no gaps."""
    ok = np.isfinite(y)
    if ok.all():
        return y
    idx = np.arange(y.size)
    return np.interp(idx, idx[ok], y[ok])


def _mad(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def fit_expected(y: np.ndarray, period: int, seasonal: bool = True) -> np.ndarray:
    """Trend + seasonal of y by robust STL (missing points interpolated first). A series that
    is flat most of the time (a median absolute deviation of 0, like a results rate of 1), or
    one declared without seasonality, is expected at its median: robust STL's weights are
    undefined on it and it would bend to fit the very dips it should flag."""
    from statsmodels.tsa.seasonal import STL

    if not seasonal or _mad(y) == 0:
        return np.full(y.size, np.nanmedian(y) if np.isfinite(y).any() else 0.0)
    filled = _fill(y)
    # robust LOESS (15 reweighting passes) costs ~6x on a weekly cycle of hours (168): two
    # passes there already keep a burst at the end of the series out of the fit
    long = period > ROBUST_MAX_PERIOD
    res = STL(filled, period=period, robust=True).fit(outer_iter=2 if long else None)
    return np.asarray(res.trend + res.seasonal)


def score_series(
    metric: Metric, num: np.ndarray, den: np.ndarray | None, clusters: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Observed value, expected value and score of each point of one series (NaN where the
    point carries no information: a rate without a denominator, a day without a quote)."""
    period = PERIOD[metric.grain]

    def fit_expected_(y: np.ndarray) -> np.ndarray:
        return fit_expected(y, period, metric.seasonal)

    if metric.kind == "count":
        observed = num.astype(float)
        y = 2 * np.sqrt(observed + 3 / 8)
        fit = fit_expected_(y)
        # Anscombe's transform has unit variance under Poisson; clustered counts are wider
        size = num.sum() / clusters.sum() if clusters is not None and clusters.sum() else 1.0
        sampling = np.full_like(y, np.sqrt(max(size, 1.0)))
        expected = np.maximum((fit / 2) ** 2 - 3 / 8, 0)
    elif metric.kind == "rate":
        assert den is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            observed = np.where(den > 0, num / np.maximum(den, 1), np.nan)
        y = observed
        fit = fit_expected_(y)
        p = np.clip(fit, 0.02, 0.98)
        sampling = np.sqrt(p * (1 - p) / np.maximum(den, 1))
        expected = np.clip(fit, 0, 1)
    else:  # fare index: log scale, the fare rule's noise
        assert den is not None
        observed = num.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(den > 0, np.log(observed), np.nan)
        fit = fit_expected_(y)
        sampling = fares.PRICE_NOISE_SD / np.sqrt(np.maximum(den, 1))
        expected = np.exp(fit)
    resid = y - fit
    # over-dispersion (users' checkouts and purchases come together, ...): the robust ratio of
    # the squared residuals to their sampling variance, from the median of a chi-square(1)
    ok = np.isfinite(resid)
    ratio = np.median((resid[ok] / sampling[ok]) ** 2) / CHI2_1_MEDIAN if ok.any() else 1.0
    sampling = sampling * np.sqrt(max(ratio, 1.0))
    scale = np.maximum(1.4826 * _mad(resid), sampling)
    score = np.where(np.isfinite(resid), resid / scale, np.nan)
    return {"observed": observed, "expected": expected, "score": score}


def episodes(flags: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive True values as (first, last) index pairs."""
    out: list[tuple[int, int]] = []
    start = None
    for i, flag in enumerate(flags):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(flags) - 1))
    return out


# ------------------------------------------------------------------------------------------
# Detection


def detect(
    hourly: pl.DataFrame,
    route_daily: pl.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    metrics: Sequence[Metric] = METRICS,
    now: datetime | None = None,
) -> pl.DataFrame:
    """Every anomaly in the monitoring marts' series: one row per run of consecutive anomalous
    periods of one metric and scope, at its peak."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    frames = {
        ("platform", "hour"): platform_series(hourly, "hour"),
        ("platform", "day"): platform_series(hourly, "day"),
        ("route", "day"): route_series(route_daily),
    }
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        frame = frames[(metric.scope, metric.grain)]
        key = "platform" if metric.scope == "platform" else "route_id"
        if frame.height == 0:
            continue
        for (scope_value,), part in frame.sort(key, "period_start_at").group_by(
            key, maintain_order=True
        ):
            if part.height < MIN_PERIODS * PERIOD[metric.grain]:
                continue
            num = part[metric.column].cast(pl.Float64).to_numpy()
            den = (
                part[metric.denominator].cast(pl.Float64).to_numpy() if metric.denominator else None
            )
            if metric.kind == "fare_index" and np.isfinite(num).sum() < MIN_FARE_DAYS:
                continue  # a route quoted too rarely has no baseline
            clusters = (
                part[metric.clusters].cast(pl.Float64).to_numpy() if metric.clusters else None
            )
            scored = score_series(metric, num, den, clusters)
            score = scored["score"]
            signed = np.nan_to_num(score, nan=0.0)
            if metric.direction == "up":
                flags = signed >= threshold
            elif metric.direction == "down":
                flags = signed <= -threshold
            else:
                flags = np.abs(signed) >= threshold
            starts = part["period_start_at"].to_list()
            for first, last in episodes(flags):
                peak = first + int(np.nanargmax(np.abs(score[first : last + 1])))
                rows.append(
                    {
                        "metric": metric.name,
                        "grain": metric.grain,
                        "route_id": scope_value if key == "route_id" else None,
                        "platform": scope_value if key == "platform" else None,
                        "period_start_at": starts[first],
                        "period_end_at": starts[last] + STEP[metric.grain],
                        "periods": last - first + 1,
                        "observed_value": float(scored["observed"][peak]),
                        "expected_value": float(scored["expected"][peak]),
                        "score": float(score[peak]),
                        "severity": "critical" if abs(score[peak]) >= 2 * threshold else "warning",
                    }
                )
    stamped = ("anomaly_id", "detector_version", "detected_at")
    out = pl.DataFrame(rows, schema={k: v for k, v in ANOMALY_SCHEMA.items() if k not in stamped})
    out = out.sort("period_start_at", "metric", "grain", "platform", "route_id", nulls_last=True)
    return out.select(
        pl.format("an_{}", pl.int_range(1, pl.len() + 1).cast(pl.Utf8).str.zfill(5)).alias(
            "anomaly_id"
        ),
        pl.all(),
        pl.lit(DETECTOR_VERSION).alias("detector_version"),
        pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("detected_at"),
    )


# ------------------------------------------------------------------------------------------
# Grading against the truth


def _matches(anomalies: pl.DataFrame, incidents: pl.DataFrame) -> pl.DataFrame:
    """Pairs (anomaly_id, incident_id) that overlap in time and have compatible scopes."""
    if anomalies.height == 0 or incidents.height == 0:
        return pl.DataFrame(schema={"anomaly_id": pl.Utf8, "incident_id": pl.Utf8})
    a = anomalies.select(
        "anomaly_id", "period_start_at", "period_end_at",
        pl.col("route_id").alias("a_route"), pl.col("platform").alias("a_platform"),
    )  # fmt: skip
    i = incidents.select(
        "incident_id", "started_at", "ended_at",
        pl.col("route_id").alias("i_route"), pl.col("platform").alias("i_platform"),
    )  # fmt: skip

    def compatible(x: str, y: str) -> pl.Expr:
        return pl.col(x).is_null() | pl.col(y).is_null() | (pl.col(x) == pl.col(y))

    return (
        a.join(i, how="cross")
        .filter(
            (pl.col("period_start_at") < pl.col("ended_at"))
            & (pl.col("period_end_at") > pl.col("started_at"))
            & compatible("a_route", "i_route")
            & compatible("a_platform", "i_platform")
        )
        .select("anomaly_id", "incident_id")
    )


def grade(anomalies: pl.DataFrame, incidents: pl.DataFrame, days: int) -> dict[str, Any]:
    """Recall (incidents with a matching anomaly), precision (anomalies matching an incident),
    false alarms (anomalies matching none) per 90 days, and which incidents were missed."""
    pairs = _matches(anomalies, incidents)
    found = set(pairs["incident_id"].to_list())
    true_alarms = pairs["anomaly_id"].n_unique()
    false_alarms = anomalies.height - true_alarms
    return {
        "incidents": incidents.height,
        "detected": len(found),
        "missed": sorted(
            incidents.filter(~pl.col("incident_id").is_in(list(found)))["kind"].to_list()
        ),
        "anomalies": anomalies.height,
        "false_alarms": false_alarms,
        "recall": len(found) / incidents.height if incidents.height else float("nan"),
        "precision": true_alarms / anomalies.height if anomalies.height else float("nan"),
        "false_alarms_per_90_days": false_alarms * 90 / days,
    }


# ------------------------------------------------------------------------------------------
# The stage


def read_marts(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    from railflow.warehouse import connect

    with connect(settings) as wh:
        for name in ("monitoring_platform_hourly", "monitoring_route_daily"):
            if not wh.table_exists("marts", name):
                raise AnomalyError(
                    f"monitoring mart {wh.schema('marts')}.{name} does not exist; run "
                    "`railflow run --from dbt_build` (or `make run`)"
                )
        hourly = wh.read("marts", "monitoring_platform_hourly", order_by=["platform_hour_id"])
        daily = wh.read("marts", "monitoring_route_daily", order_by=["route_day_id"])
    return hourly, daily


def card(settings: Settings, anomalies: pl.DataFrame, threshold: float) -> dict[str, Any]:
    """The detector's model card (ml/artifacts/anomaly_detector/): its settings, what it found
    and, when the truth is there, its grade on this world."""
    from ml.artifacts import save_model

    truth = settings.truth_dir / "incidents.parquet"
    graded = grade(anomalies, pl.read_parquet(truth), settings.days) if truth.exists() else {}
    config = {
        "threshold": threshold,
        "critical_from": 2 * threshold,
        "metrics": [asdict(m) for m in METRICS],
        "periods": PERIOD,
        "min_history_periods": MIN_PERIODS,
        "price_noise_sd": fares.PRICE_NOISE_SD,
    }
    return save_model(
        config,
        settings.artifacts_dir / MODEL_NAME,
        {
            "model_name": MODEL_NAME,
            "model_version": DETECTOR_VERSION,
            "estimator": "statsmodels STL (robust) + robust z-score of the residuals",
            "description": "KPI anomalies in marts.monitoring_platform_hourly and "
            "monitoring_route_daily; written to ml.anomalies. Graded against the planted "
            "incidents (docs/anomalies.md).",
            "features": [f"{m.name} ({m.scope} x {m.grain})" for m in METRICS],
            "rows": anomalies.height,
            "metrics": {k: v for k, v in graded.items() if k != "missed"} or {"anomalies": 0},
            "notes": (
                f"missed incident kinds on this world: {', '.join(graded['missed']) or 'none'}"
                if graded
                else "no incident truth (data/truth/incidents.parquet) to grade against"
            ),
            "config": config,
        },
    )


def run(settings: Settings, threshold: float = DEFAULT_THRESHOLD) -> pl.DataFrame:
    from railflow.warehouse import connect

    hourly, daily = read_marts(settings)
    anomalies = detect(hourly, daily, threshold)
    with connect(settings, read_only=False) as wh:
        wh.write(anomalies, "ml", TABLE)
    card(settings, anomalies, threshold)
    return anomalies


def stage(settings: Settings) -> StageResult:
    anomalies = run(settings)
    critical = anomalies.filter(pl.col("severity") == "critical").height
    return StageResult(
        rows=anomalies.height,
        outputs=[f"{settings.schema('ml')}.{TABLE}", str(settings.artifacts_dir / MODEL_NAME)],
        metrics={"anomalies": f"{anomalies.height} ({critical} critical)"},
    )


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ml.anomalies",
        description="Detect KPI anomalies in the monitoring marts and write ml.anomalies.",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"robust z-score from which a point is anomalous (default {DEFAULT_THRESHOLD})",
    )
    args = parser.parse_args(argv)
    if args.threshold <= 0:
        raise AnomalyError(f"--threshold {args.threshold} must be positive")
    settings = get_settings()
    anomalies = run(settings, args.threshold)
    print(f"{anomalies.height} anomalies written to {settings.schema('ml')}.{TABLE}")
    truth = Path(settings.truth_dir) / "incidents.parquet"
    if truth.exists():
        print(grade(anomalies, pl.read_parquet(truth), settings.days))


if __name__ == "__main__":
    main(sys.argv[1:])
