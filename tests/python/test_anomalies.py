"""Planted incidents, the monitoring marts' fare rule, the anomaly detector and its grade."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml import anomalies
from railflow import fares
from railflow.dbt import project_var
from railflow.errors import SettingsError
from railflow.settings import Settings, get_settings
from scripts.world import INCIDENT_KINDS, PARAMS, plan_incidents

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_dbt_fare_rule_mirrors_the_fare_module() -> None:
    rule = project_var("fare_rule")
    assert rule == {
        "first_class_multiplier": fares.FIRST_CLASS_MULTIPLIER,
        "round_trip_multiplier": fares.ROUND_TRIP_MULTIPLIER,
        "near_departure_markup": fares.NEAR_DEPARTURE_MARKUP,
        "near_departure_scale_days": fares.NEAR_DEPARTURE_SCALE_DAYS,
        "weekend_travel_markup": fares.WEEKEND_TRAVEL_MARKUP,
        "holiday_travel_markup": fares.HOLIDAY_TRAVEL_MARKUP,
        "price_noise_sd": fares.PRICE_NOISE_SD,
    }


def test_incident_plan_is_one_of_each_kind_on_spaced_days() -> None:
    plan = plan_incidents(date(2026, 3, 1), 120, seed=3)
    assert sorted(plan["kind"]) == sorted(INCIDENT_KINDS)
    assert plan.equals(plan_incidents(date(2026, 3, 1), 120, seed=3))  # the seed decides
    days = sorted((d - T0.date()).days for d in plan["started_at"].dt.date())
    cfg = PARAMS["incidents"]
    assert days[0] >= cfg["first_day"] and min(np.diff(days)) >= cfg["min_gap_days"]
    assert (plan["ended_at"] > plan["started_at"]).all()
    assert not plan_incidents(date(2026, 3, 1), 120, seed=4).equals(plan)


def test_incidents_setting_is_on_off_with_a_one_line_error() -> None:
    assert get_settings({"RAILFLOW_INCIDENTS": "off"}).incidents is False
    assert get_settings({}).incidents is True
    with pytest.raises(SettingsError, match="RAILFLOW_INCIDENTS='maybe' is not on or off"):
        get_settings({"RAILFLOW_INCIDENTS": "maybe"})


def test_a_clean_world_has_no_incident_effects(tmp_path: Path) -> None:
    from scripts.generate import generate

    generate(tmp_path, 300, 40, date(2026, 3, 1), 5, "x" * 16, progress=False, incidents=False)
    truth, raw = tmp_path / "truth", tmp_path / "raw"
    assert pl.read_parquet(truth / "incidents.parquet").height == 0
    assert pl.read_parquet(truth / "bookings.parquet")["is_logged"].all()
    assert not pl.read_parquet(truth / "users.parquet")["is_wave_bot"].any()
    assert (pl.read_parquet(raw / "results_viewed")["results_count"] > 0).all()


def _hourly(searches: np.ndarray, with_results: np.ndarray | None = None) -> pl.DataFrame:
    n = searches.size
    hours = [T0 + timedelta(hours=h) for h in range(n)]
    with_results = searches if with_results is None else with_results
    return pl.DataFrame(
        {
            "platform": ["web"] * n,
            "hour_started_at": hours,
            "searches": searches,
            "search_sessions": searches,
            "searches_with_results": with_results,
            "checkouts": np.full(n, 10),
            "purchases": np.full(n, 5),
        }
    )


NO_ROUTES = pl.DataFrame(
    schema={
        "route_id": pl.Utf8,
        "search_date": pl.Date,
        "fare_index": pl.Float64,
        "priced_searches": pl.Int64,
    }
)


def _seasonal_counts(rng: np.random.Generator, weeks: int = 8) -> np.ndarray:
    hour = np.arange(weeks * 168)
    rate = 20 + 15 * np.sin(2 * np.pi * (hour % 24) / 24) + 5 * ((hour // 24) % 7 < 5)
    return rng.poisson(rate)


def test_detector_finds_a_burst_and_an_outage_and_nothing_in_a_clean_series() -> None:
    rng = np.random.default_rng(0)
    clean = _seasonal_counts(rng)
    assert anomalies.detect(_hourly(clean), NO_ROUTES).height == 0
    burst = clean.copy()
    burst[600:603] += 120  # three hours of bots (they get results)
    results = burst.copy()
    results[900:904] = 0  # four hours answered with nothing
    found = anomalies.detect(_hourly(burst, results), NO_ROUTES)
    assert found.select("metric", "period_start_at", "periods").rows() == [
        ("searches", T0 + timedelta(hours=600), 3),
        ("results_rate", T0 + timedelta(hours=900), 4),
    ]
    assert (found["severity"] == "critical").all() and found["score"].abs().min() >= 10


def test_fare_index_flags_a_halved_day_on_a_quiet_route() -> None:
    rng = np.random.default_rng(1)
    days = 60
    n = rng.integers(0, 4, size=days)  # a quiet route: 0-3 quotes a day
    index = np.exp(rng.normal(0, fares.PRICE_NOISE_SD, size=days) / np.sqrt(np.maximum(n, 1)))
    index[40], n[40] = 0.5, 2
    routes = pl.DataFrame(
        {
            "route_id": ["A-B"] * days,
            "search_date": [T0.date() + timedelta(days=d) for d in range(days)],
            "fare_index": pl.Series(np.where(n > 0, index, np.nan)).fill_nan(None),
            "priced_searches": n,
        }
    )
    found = anomalies.detect(_hourly(np.array([1])).head(0), routes)
    assert found.select("metric", "route_id", "period_start_at").rows() == [
        ("fare_index", "A-B", T0 + timedelta(days=40))
    ]


def test_grade_matches_by_time_and_scope() -> None:
    incidents = pl.DataFrame(
        {
            "incident_id": ["i1", "i2"],
            "kind": ["pricing_bug", "tracking_outage"],
            "started_at": [T0, T0 + timedelta(days=10, hours=8)],
            "ended_at": [T0 + timedelta(days=1), T0 + timedelta(days=10, hours=16)],
            "route_id": ["A-B", None],
            "platform": [None, "ios"],
        }
    )

    def anomaly(start: datetime, hours: int, route: str | None, platform: str | None) -> dict:
        return {
            "anomaly_id": f"a{start.day}{route}{platform}", "period_start_at": start,
            "period_end_at": start + timedelta(hours=hours), "route_id": route,
            "platform": platform,
        }  # fmt: skip

    found = pl.DataFrame(
        [
            anomaly(T0, 24, "A-B", None),  # the pricing bug
            anomaly(T0, 24, "C-D", None),  # right day, wrong route
            anomaly(T0 + timedelta(days=10), 24, None, "ios"),  # the outage's day
            anomaly(T0 + timedelta(days=10, hours=17), 1, None, "ios"),  # after it ended
            anomaly(T0 + timedelta(days=10, hours=9), 1, None, "web"),  # another platform
        ]
    )
    graded = anomalies.grade(found, incidents, days=90)
    assert graded["recall"] == 1.0 and graded["missed"] == []
    assert graded["false_alarms"] == 3 and graded["precision"] == pytest.approx(2 / 5)
    assert graded["false_alarms_per_90_days"] == 3
    assert anomalies.grade(found.head(0), incidents, 90)["missed"] == [
        "pricing_bug",
        "tracking_outage",
    ]


def test_the_test_world_incidents_are_found(small_world: Settings) -> None:
    from railflow.warehouse import connect

    truth = pl.read_parquet(small_world.truth_dir / "incidents.parquet")
    assert sorted(truth["kind"]) == sorted(INCIDENT_KINDS)
    with connect(small_world) as wh:
        found = wh.read("ml", anomalies.TABLE)
        hourly = wh.read("marts", "monitoring_platform_hourly")
        daily = wh.read("marts", "monitoring_route_daily")
    graded = anomalies.grade(found, truth, small_world.days)
    assert graded["recall"] >= 0.9, graded
    assert graded["precision"] >= 0.8, graded
    # the bug's route: a normal day near 1 on the fare index, the bug's day near 0.5
    bug = truth.filter(kind="pricing_bug").row(0, named=True)
    route = daily.filter(pl.col("route_id") == bug["route_id"], pl.col("priced_searches") > 0)
    on_bug_day = pl.col("search_date") == bug["started_at"].date()
    assert route.filter(on_bug_day)["fare_index"].item() == pytest.approx(0.5, abs=0.08)
    assert route.filter(~on_bug_day)["fare_index"].median() == pytest.approx(1.0, abs=0.05)
    # the results outage: no results in its hours on any platform
    outage = truth.filter(kind="results_outage").row(0, named=True)
    hours = hourly.with_columns(pl.col("hour_started_at").dt.replace_time_zone("UTC")).filter(
        pl.col("hour_started_at").is_between(
            outage["started_at"], outage["ended_at"], closed="left"
        )
    )
    assert hours["searches"].sum() > 0 and hours["searches_with_results"].sum() == 0
    card = small_world.artifacts_dir / anomalies.MODEL_NAME / "model_card.json"
    assert card.exists()
