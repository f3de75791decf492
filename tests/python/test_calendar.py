"""Any calendar: the holidays seed covers 2020-2035, the date spine follows the data, and a world
set in another year builds end to end."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from conftest import settings_for

from railflow.errors import SettingsError
from railflow.pipeline import run_pipeline
from railflow.settings import get_settings
from railflow.warehouse import connect
from scripts import holidays_seed
from scripts.generate import check_calendar


def test_the_committed_seed_is_the_scripts_output_for_2020_to_2035() -> None:
    assert holidays_seed.SEED.read_text() == holidays_seed.render(), (
        "run python -m scripts.holidays_seed"
    )
    seed = pl.read_csv(holidays_seed.SEED, try_parse_dates=True)
    assert seed["holiday_date"].min() == date(2020, 1, 1)
    assert seed["holiday_date"].max().year == 2035  # type: ignore[union-attr]
    assert seed.select("holiday_date", "country_code").is_duplicated().sum() == 0
    per_year = seed.group_by(pl.col("holiday_date").dt.year().alias("year"), "country_code").agg(
        public=(pl.col("holiday_type") == "public").sum(),
        school=(pl.col("holiday_type") == "school").sum(),
    )
    # every country, every year: its national public holidays and a summer break at least
    assert per_year.height == 16 * len(holidays_seed.COUNTRIES)
    assert per_year["public"].min() >= 4 and per_year["school"].min() >= 40  # type: ignore[operator]
    # Easter-bound windows move with Easter (2030: 21 April), public holidays come from the package
    de_2030 = seed.filter(
        (pl.col("country_code") == "DE") & (pl.col("holiday_date").dt.year() == 2030)
    )
    assert date(2030, 4, 19) in de_2030["holiday_date"].to_list()  # Good Friday
    assert date(2030, 4, 15) in de_2030.filter(pl.col("holiday_type") == "school")["holiday_date"]


def test_a_world_outside_the_seed_is_refused_in_one_line() -> None:
    with pytest.raises(SettingsError) as refused:
        check_calendar(date(2035, 10, 1), 90)
    message = str(refused.value)
    assert "outside the holidays seed" in message and "--last-year 2036" in message
    assert "\n" not in message
    check_calendar(date(2029, 11, 1), 90)  # inside: no error


def test_a_clock_that_is_not_a_time_is_one_line() -> None:
    with pytest.raises(SettingsError, match="RAILFLOW_NOW='soon' is not a time"):
        get_settings({"RAILFLOW_NOW": "soon"})
    now = get_settings({"RAILFLOW_NOW": "2030-06-01"}).current_time()
    assert now.isoformat() == "2030-06-01T00:00:00+00:00"


@pytest.mark.slow  # builds a world
def test_a_world_starting_on_2029_11_01_builds_end_to_end(tmp_path: Path) -> None:
    """Across a new year the seed did not use to cover: the spine follows the data and the
    holidays of both years reach the marts. The clock is set after the world (RAILFLOW_NOW)."""
    settings = settings_for(
        tmp_path,
        RAILFLOW_START_DATE="2029-11-01",
        RAILFLOW_NOW="2030-06-01T00:00:00Z",
        RAILFLOW_USERS="800",
        # weekly cutoffs fall on other weekdays than the test world's: 130 days leave one
        # whose 90-day lifetime-value horizon is observed (the ml stage needs it)
        RAILFLOW_DAYS="130",
    )
    runs = run_pipeline(settings)
    assert [r.name for r in runs][-1] == "export"
    with connect(settings) as wh:
        spine = wh.query(
            "select min(date_day) as first, max(date_day) as last from marts.dim_dates"
        )
        data = wh.query(
            "select (select min(signup_date) from marts.dim_users) as first_signup, "
            "(select max(travel_date) from marts.fct_searches) as last_travel"
        )
        outside = wh.query(
            "select count(*) as n from marts.fct_searches as s "
            "left join marts.dim_dates as d on s.travel_date = d.date_day "
            "where d.date_day is null"
        )
        days = ["2029-12-25", "2030-01-01", "2030-04-19"]
        holidays = wh.query(
            "select public_holiday_countries from marts.dim_dates "
            "where date_day in (select cast(unnest($days) as date)) order by date_day",
            {"days": days},
        )
        holiday_travel = wh.query(
            "select count(*) as n from marts.fct_searches "
            "where is_holiday_travel and travel_date >= '2030-01-01'"
        )
    # whole years, from the earliest signup (a year before the start) to the latest travel
    assert spine["first"][0] == date(data["first_signup"][0].year, 1, 1)
    assert spine["last"][0] == date(data["last_travel"][0].year, 12, 31) == date(2030, 12, 31)
    assert outside["n"][0] == 0
    seed = pl.read_csv(holidays_seed.SEED, try_parse_dates=True)
    expected = [
        seed.filter(
            (pl.col("holiday_date") == date.fromisoformat(day))
            & (pl.col("holiday_type") == "public")
        ).height
        for day in days
    ]
    assert holidays["public_holiday_countries"].to_list() == expected and min(expected) > 0
    assert holiday_travel["n"][0] > 0
