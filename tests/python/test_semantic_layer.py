"""The dbt semantic layer (MetricFlow) on the small world: it validates, and every metric gives
exactly the figures the marts hold; mart columns are documented and the docs page is current."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from railflow.dbt import DbtError, run_dbt
from railflow.semantic import MetricFlowError, run_mf
from railflow.settings import REPO_ROOT, Settings
from railflow.warehouse import connect
from scripts import column_docs

pytestmark = pytest.mark.slow

DAILY_METRICS = [
    "searches", "converted_searches", "bookings", "refunded_bookings", "gross_revenue_eur",
    "discount_eur", "refund_eur", "net_revenue_eur", "conversion_rate", "average_lead_time_days",
]  # fmt: skip
COUNTS = {"searches", "converted_searches", "bookings", "refunded_bookings"}
MONTH = date(2026, 5, 1)  # a whole month inside the small world (2026-03-01 + 120 days)


def mf_query(settings: Settings, out: Path, *args: str) -> pl.DataFrame:
    """`mf query ... --csv out` read back with lower-case column names."""
    run_mf(settings, ["query", *args, "--csv", str(out)])
    frame = pl.read_csv(out, try_parse_dates=True)
    return frame.rename({c: c.lower() for c in frame.columns})


def assert_figures_equal(got: pl.DataFrame, want: pl.DataFrame, key: list[str]) -> None:
    """Counts exactly, money to the cent, averages and rates to float precision."""
    assert got.height == want.height > 0
    joined = want.join(got, on=key, how="left", suffix="_mf")
    for metric in (c for c in want.columns if c not in key):
        a, b = joined[metric].cast(pl.Float64), joined[f"{metric}_mf"].cast(pl.Float64)
        if metric in COUNTS:
            assert (a.fill_null(0) == b.fill_null(0)).all(), metric
        elif metric.endswith("_eur"):
            assert ((a.fill_null(0) - b.fill_null(0)).abs() < 0.005).all(), metric
        else:  # a rate or an average: null where the mart has none
            assert (a.is_null() == b.is_null()).all(), metric
            assert ((a - b).abs().fill_null(0) <= 1e-9 * a.abs().fill_null(1)).all(), metric


def test_metricflow_validates_the_semantic_layer(small_world: Settings) -> None:
    proc = run_mf(small_world, ["validate-configs"])
    assert "Successfully validated" in proc.stdout + proc.stderr


def test_every_metric_matches_fct_daily_performance_by_route_and_day(
    small_world: Settings, tmp_path: Path
) -> None:
    got = mf_query(
        small_world, tmp_path / "daily.csv",
        "--metrics", ",".join(DAILY_METRICS), "--group-by", "metric_time__day,route",
    )  # fmt: skip
    got = got.rename({"metric_time__day": "performance_date", "route": "route_id"})
    with connect(small_world) as wh:
        want = wh.query(
            "select route_id, performance_date, searches, converted_searches, bookings, "
            "refunded_bookings, gross_revenue_eur, discount_eur, refund_eur, net_revenue_eur, "
            "conversion_rate, avg_lead_time_days as average_lead_time_days "
            f"from {wh.table('marts', 'fct_daily_performance')}"
        )
    got = got.with_columns(pl.col("performance_date").cast(pl.Date))
    assert_figures_equal(got, want, ["route_id", "performance_date"])


def test_active_users_refund_rate_and_revenue_per_search_match_the_marts(
    small_world: Settings, tmp_path: Path
) -> None:
    daily = mf_query(
        small_world,
        tmp_path / "dau.csv",
        "--metrics",
        "active_users",
        "--group-by",
        "metric_time__day",
    ).select(pl.col("metric_time__day").cast(pl.Date).alias("activity_date"), "active_users")
    monthly = mf_query(
        small_world, tmp_path / "monthly.csv", "--metrics",
        "refund_rate,revenue_per_search_eur,average_days_booking_to_refund",
        "--group-by", "metric_time__month",
    ).with_columns(pl.col("metric_time__month").cast(pl.Date))  # fmt: skip
    with connect(small_world) as wh:
        dau = wh.query(
            "select activity_date, daily_active_users as active_users "
            f"from {wh.table('marts', 'product_active_users')} where daily_active_users > 0"
        )
        rates = wh.query(
            "with bookings as (select date_trunc('month', booking_date) as m, "
            "avg(case when is_refunded then 1.0 else 0.0 end) as refund_rate "
            f"from {wh.table('marts', 'fct_bookings')} where not is_excluded_traffic group by 1), "
            "perf as (select date_trunc('month', performance_date) as m, "
            "sum(net_revenue_eur) / sum(searches) as revenue_per_search_eur "
            f"from {wh.table('marts', 'fct_daily_performance')} group by 1), "
            "refunds as (select date_trunc('month', refund_date) as m, "
            "avg(days_booking_to_refund) as average_days_booking_to_refund "
            f"from {wh.table('marts', 'fct_cancellations')} "
            "where not is_excluded_traffic and is_refunded group by 1) "
            "select cast(perf.m as date) as metric_time__month, bookings.refund_rate, "
            "perf.revenue_per_search_eur, refunds.average_days_booking_to_refund "
            "from perf left join bookings on perf.m = bookings.m "
            "left join refunds on perf.m = refunds.m"
        )
    assert_frame_equal(daily.sort("activity_date"), dau.sort("activity_date"), check_dtypes=False)
    assert_figures_equal(monthly, rates, ["metric_time__month"])


def test_a_months_net_revenue_by_route_agrees_with_fct_bookings_to_the_cent(
    small_world: Settings, tmp_path: Path
) -> None:
    """Bookings revenue on the booking date, refunds on the refund date, real users only."""
    got = mf_query(
        small_world, tmp_path / "month.csv", "--metrics", "net_revenue_eur", "--group-by",
        "route,metric_time__month", "--where",
        f"{{{{ TimeDimension('metric_time', 'month') }}}} = '{MONTH.isoformat()}'",
    )  # fmt: skip
    with connect(small_world) as wh:
        bookings = wh.table("marts", "fct_bookings")
        want = wh.query(
            "select route_id as route, sum(net) as net_revenue_eur from ("
            f"select route_id, booking_revenue_eur as net from {bookings} "
            "where not is_excluded_traffic and date_trunc('month', booking_date) = $m "
            f"union all select route_id, -refund_eur from {bookings} "
            "where not is_excluded_traffic and date_trunc('month', refund_date) = $m"
            ") as month_rows group by 1",
            {"m": MONTH},
        )
    assert want.height > 20 and want["net_revenue_eur"].sum() > 0
    assert_figures_equal(got.drop("metric_time__month"), want, ["route"])


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--metrics", "no_such_metric"], "no_such_metric"),
        (
            ["--metrics", "bookings", "--group-by", "booking__no_such_dimension"],
            "no_such_dimension",
        ),
        (["--metrics", "bookings", "--group-by", "metric_time__fortnight"], "fortnight"),
    ],
)
def test_an_unknown_metric_dimension_or_grain_fails_in_one_line(
    small_world: Settings, args: list[str], named: str
) -> None:
    with pytest.raises(MetricFlowError) as failure:
        run_mf(small_world, ["query", *args])
    message = str(failure.value)
    assert "\n" not in message and named in message and "Traceback" not in message


def test_mart_columns_are_described_and_the_docs_page_is_current(small_world: Settings) -> None:
    marts = column_docs.mart_columns(small_world)
    assert column_docs.PAGE.read_text() == column_docs.render(marts), "run scripts.column_docs"
    assert column_docs.coverage(marts) >= column_docs.TARGET
    assert {m.name for m in marts} >= {"fct_bookings", "fct_cancellations", "dim_users"}
    # persist_docs: the descriptions reached the warehouse as column comments
    with connect(small_world) as wh:
        comments = wh.query(
            "select column_name, comment from duckdb_columns() "
            "where schema_name = 'marts' and table_name = 'fct_cancellations'"
        )
    assert comments.height > 10 and comments["comment"].is_not_null().all()


def test_a_model_breaking_its_contract_fails_naming_the_column(
    small_world: Settings, tmp_path: Path
) -> None:
    """A copy of the project whose dim_stations drops `timezone`: the build names it."""
    project = tmp_path / "project"
    shutil.copytree(
        REPO_ROOT, project,
        ignore=shutil.ignore_patterns(".venv", ".git", "target", "data", "logs", "*.duckdb"),
    )  # fmt: skip
    model = project / "models" / "marts" / "core" / "dim_stations.sql"
    model.write_text(model.read_text().replace("        timezone,\n", ""))
    settings = small_world.with_overrides(
        duckdb_path=tmp_path / "warehouse.duckdb", dbt_target_path=tmp_path / "target"
    )
    shutil.copy(small_world.duckdb_path, settings.duckdb_path)
    with pytest.raises(DbtError) as failure:
        run_dbt(
            settings, ["run", "--select", "dim_stations", "--project-dir", str(project)],
            capture=True,
        )  # fmt: skip
    assert "timezone" in str(failure.value) and "contract" in str(failure.value).lower()
