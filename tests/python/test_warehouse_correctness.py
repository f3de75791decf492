"""Warehouse correctness (issue 20): consent from events and one CRM audience per user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from analysis.crm_export import MARTS
from railflow.dbt import run_dbt
from railflow.settings import REPO_ROOT, Settings
from railflow.warehouse import connect

SYNC_MARTS = MARTS  # every CRM audience the export reads


def audiences(settings: Settings) -> pl.DataFrame:
    with connect(settings) as wh:
        return pl.concat([wh.read("sync", m).select("external_id", "audience") for m in SYNC_MARTS])


def json_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object nested in `value` (the export's file layout is the export's business)."""
    if isinstance(value, dict):
        yield value
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from json_objects(item)


def test_one_audience_per_user(small_world: Settings) -> None:
    audience = audiences(small_world)
    assert audience.height > 0
    assert audience["external_id"].is_unique().all()


@pytest.mark.slow
def test_a_withdrawal_event_after_the_last_extract_stops_the_export(
    small_world: Settings, tmp_path: Path
) -> None:
    """The users extract still says yes; a consent_updated event after it says no. The user
    leaves the sync marts, and the next export run unsubscribes them."""
    settings = small_world.with_overrides(
        data_dir=tmp_path / "data",
        duckdb_path=tmp_path / "warehouse.duckdb",
        dbt_target_path=tmp_path / "target",
    )
    shutil.copy(small_world.duckdb_path, settings.duckdb_path)
    user = audiences(settings)["external_id"].sort()[0]
    with connect(settings, read_only=False) as wh:
        extract = wh.query("select max(updated_at) as t from raw.users")["t"][0]
        consent = "select marketing_consent from raw.users where user_id = $u"
        assert wh.query(consent, {"u": user})["marketing_consent"].to_list() == [True]
        wh.execute(
            "insert into raw.consent_updated (event_id, event_name, user_id, session_id, "
            "platform, occurred_at, received_at, marketing_consent, _batch_id, _loaded_at) "
            "values ('ev_test_withdrawal', 'consent_updated', $u, 'ss_test', 'web', "
            "$t + interval 1 hour, $t + interval 2 hour, false, 'test', now())",
            {"u": user, "t": extract},
        )
    run_dbt(settings, ["build", "--exclude", "tag:post_scoring"], capture=True)
    run_dbt(settings, ["build", "--select", "tag:post_scoring"], capture=True)
    assert user not in audiences(settings)["external_id"].to_list()
    with connect(settings) as wh:
        current = wh.query(
            "select has_marketing_consent from snapshots.users_snapshot "
            "where user_id = $u and dbt_valid_to is null",
            {"u": user},
        )
        assert current["has_marketing_consent"].to_list() == [False]
    # the public command, as a user runs it; the small world's export already synced the user
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")}
    env |= {"RAILFLOW_DATA_DIR": str(settings.data_dir),
            "RAILFLOW_DUCKDB_PATH": str(settings.duckdb_path)}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.crm_export"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sent = [
        obj
        for path in settings.data_dir.rglob("*.json")
        for obj in json_objects(json.loads(path.read_text()))
        if obj.get("external_id") == user
    ]
    assert sent and all(obj.get("email_subscribe") == "unsubscribed" for obj in sent)


def test_the_funnel_counts_daily_users_once_over_platforms(small_world: Settings) -> None:
    with connect(small_world) as wh:
        funnel = wh.read("marts", "product_funnel_daily")
        daily = wh.query(
            "select s.search_local_date as funnel_date, count(distinct s.user_id) as users "
            "from marts.fct_searches s join marts.dim_users u using (user_id) "
            "where not u.is_excluded_traffic group by 1"
        )
    every = funnel.filter(pl.col("platform") == "all").join(daily, on="funnel_date")
    assert every.height == daily.height > 0
    assert (every["searched_users"] == every["users"]).all()
    summed = funnel.filter(pl.col("platform") != "all")["searched_users"].sum()
    assert summed > every["searched_users"].sum()  # someone used two platforms on a day


def test_censored_cohorts_and_partial_weeks_are_flagged(small_world: Settings) -> None:
    with connect(small_world) as wh:
        retention = wh.read("marts", "product_cohort_retention")
        bounds = wh.query(
            "select min(activity_date) as first, max(activity_date) as last "
            "from intermediate.int_user_activity_daily"
        ).row(0, named=True)
    week_end = pl.col("cohort_week") + pl.duration(days=7 * pl.col("weeks_since_signup") + 6)
    expected = retention.select(
        (pl.col("cohort_week") < bounds["first"]).alias("left"),
        (week_end > bounds["last"]).alias("partial"),
    )
    assert (retention["is_left_censored"] == expected["left"]).all()
    assert (retention["is_partial_week"] == expected["partial"]).all()
    assert retention["is_left_censored"].any() and not retention["is_left_censored"].all()
    assert not retention["is_partial_week"].all()  # none when the data ends on a Sunday


def test_partial_active_user_windows_are_flagged(small_world: Settings) -> None:
    with connect(small_world) as wh:
        active = wh.read("marts", "product_active_users").sort("activity_date")
    day = (pl.col("activity_date") - pl.col("activity_date").min()).dt.total_days()
    expected = active.select((day >= 6).alias("wau"), (day >= 29).alias("mau"))
    assert (active["is_wau_complete"] == expected["wau"]).all()
    assert (active["is_mau_complete"] == expected["mau"]).all()


def test_searches_and_bookings_carry_the_local_time_at_their_origin(small_world: Settings) -> None:
    """Local date and hour at the origin station, checked against Python's zoneinfo."""
    with connect(small_world) as wh:
        searches = wh.query(
            "select s.searched_at, s.search_local_date, s.search_local_hour, st.timezone "
            "from marts.fct_searches s join marts.dim_stations st "
            "on s.origin_station_id = st.station_id order by s.search_id limit 2000"
        )
        bookings = wh.query(
            "select count(*) as n, count(distinct booking_local_date) as days, "
            "sum(case when booking_local_date <> booking_date then 1 else 0 end) as shifted "
            "from marts.fct_bookings"
        )
    assert searches.height == 2000
    for at, local_date, local_hour, zone in searches.iter_rows():
        local = at.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
        assert (local.date(), local.hour) == (local_date, local_hour)
    # continental stations run one or two hours ahead of UTC
    assert (searches["search_local_hour"] != searches["searched_at"].dt.hour()).mean() > 0.5
    assert bookings["shifted"][0] > 0  # late-evening UTC bookings fall on the next local day
