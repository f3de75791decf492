"""The warehouse module against a real DuckDB file (and BigQuery job configuration offline)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from google.cloud import bigquery
from polars.testing import assert_frame_equal

from railflow.errors import WarehouseError, WarehouseLockedError, WarehouseMissingError
from railflow.settings import Settings, get_settings
from railflow.warehouse import BigQueryWarehouse, build_then_publish, connect, load_job_config


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return get_settings({"RAILFLOW_DATA_DIR": str(tmp_path)})


def sample_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "search_id": ["s1", "s2", "s3"],
            "passengers": [1, 2, 4],
            "price_eur": [19.9, 45.0, 120.5],
            "is_round_trip": [True, False, True],
            "travel_date": [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)],
            "occurred_at": [datetime(2026, 3, 1, 8, 30, tzinfo=UTC)] * 3,
        }
    )


def test_round_trip_polars_frame(settings: Settings) -> None:
    df = sample_frame()
    with connect(settings, read_only=False) as wh:
        wh.create_schema("raw")
        assert wh.write(df, "raw", "searches") == 3
        assert wh.table_exists("raw", "searches")
        assert not wh.table_exists("raw", "bookings")
        back = wh.read("raw", "searches")
    assert_frame_equal(back.sort("search_id"), df)  # values and types, column by column
    assert back.schema["occurred_at"] == pl.Datetime("us", "UTC")


def test_append_and_replace(settings: Settings) -> None:
    df = sample_frame()
    with connect(settings, read_only=False) as wh:
        wh.write(df, "raw", "searches")
        wh.write(df.head(1), "raw", "searches", mode="append")
        appended = wh.query(f"select count(*) as n from {wh.table('raw', 'searches')}")
        wh.write(df.head(2), "raw", "searches", mode="replace")
        replaced = wh.query(f"select count(*) as n from {wh.table('raw', 'searches')}")
    assert appended["n"][0] == 4
    assert replaced["n"][0] == 2


def test_named_parameters(settings: Settings) -> None:
    with connect(settings, read_only=False) as wh:
        wh.write(sample_frame(), "marts", "searches")
        out = wh.query(
            f"select search_id from {wh.table('marts', 'searches')} where passengers >= $n",
            {"n": 2},
        )
    assert sorted(out["search_id"]) == ["s2", "s3"]


def test_read_only_reader_can_read_but_not_write(settings: Settings) -> None:
    with connect(settings, read_only=False) as wh:
        wh.write(sample_frame(), "marts", "searches")
    with connect(settings) as reader:
        assert reader.read("marts", "searches", ["search_id"]).height == 3
        with pytest.raises(WarehouseError, match="read-only"):
            reader.write(sample_frame(), "marts", "other")
        with pytest.raises(WarehouseError, match="query failed"):
            reader.query("select * from marts.no_such_table")


def test_missing_warehouse_says_what_to_run(settings: Settings) -> None:
    with pytest.raises(WarehouseMissingError, match="make run"), connect(settings):
        pass


def test_reader_gets_retryable_error_while_a_build_holds_the_lock(settings: Settings) -> None:
    with connect(settings, read_only=False) as wh:
        wh.write(sample_frame(), "marts", "searches")
    # Another process opens the file for writing and holds it, like a running `dbt build`.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys, time
                con = duckdb.connect({str(settings.duckdb_path)!r})
                print("locked", flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseLockedError) as info, connect(settings, wait_seconds=0.3):
            pass
        assert info.value.retryable
        assert "retry" in str(info.value)
    finally:
        holder.communicate("done\n", timeout=30)
    # Once the build is gone, the same read succeeds.
    with connect(settings) as reader:
        assert reader.read("marts", "searches").height == 3


def test_bigquery_load_job_config() -> None:
    config = load_job_config(
        sample_frame().schema, "replace", partition_by="occurred_at", cluster_by=["search_id"]
    )
    assert config.source_format == bigquery.SourceFormat.PARQUET
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_TRUNCATE
    assert config.time_partitioning.field == "occurred_at"
    assert config.time_partitioning.type_ == bigquery.TimePartitioningType.DAY
    assert config.clustering_fields == ["search_id"]
    assert [(f.name, f.field_type) for f in config.schema] == [
        ("search_id", "STRING"),
        ("passengers", "INT64"),
        ("price_eur", "FLOAT64"),
        ("is_round_trip", "BOOL"),
        ("travel_date", "DATE"),
        ("occurred_at", "TIMESTAMP"),
    ]
    append = load_job_config(sample_frame().schema, "append")
    assert append.write_disposition == bigquery.WriteDisposition.WRITE_APPEND
    assert append.time_partitioning is None


def test_bigquery_names_tables_by_dataset_layer() -> None:
    s = get_settings(
        {
            "RAILFLOW_TARGET": "bigquery",
            "RAILFLOW_PII_SALT": "salt-of-sixteen-chars",
            "RAILFLOW_BQ_PROJECT": "acme",
            "RAILFLOW_BQ_DATASET": "railflow",
        }
    )
    wh = BigQueryWarehouse(s, read_only=True, client=object())
    assert wh.table("marts", "fct_bookings") == "`acme.railflow_marts.fct_bookings`"
    with pytest.raises(WarehouseError, match="invalid table"):
        wh.table("marts", "x; drop table y")


READER = """
import sys, time
from railflow.settings import get_settings
from railflow.warehouse import connect
settings = get_settings({"RAILFLOW_DATA_DIR": sys.argv[1]})
with connect(settings, read_only=True) as wh:
    wh.query("select 1")
    print("reading", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_writer_waits_for_a_reader_instead_of_failing(settings: Settings) -> None:
    with connect(settings, read_only=False) as wh:
        wh.write(sample_frame(), "marts", "searches")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(settings.data_dir), "4"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        with connect(settings, read_only=False) as wh:  # the reader holds the file for 4 s
            wh.write(sample_frame(), "marts", "searches", mode="append")
    finally:
        reader.wait(timeout=30)
    with connect(settings) as wh:
        assert wh.read("marts", "searches").height == 6


def test_a_transaction_commits_together_or_not_at_all(settings: Settings) -> None:
    with connect(settings, read_only=False) as wh:
        wh.write(sample_frame(), "raw", "searches")
        with pytest.raises(RuntimeError), wh.transaction():
            wh.execute(f"delete from {wh.table('raw', 'searches')}")
            wh.write(sample_frame().head(1), "audit", "load_batches", mode="append")
            raise RuntimeError("killed between two steps")
        assert wh.read("raw", "searches").height == 3
        assert not wh.table_exists("audit", "load_batches")


def test_a_build_is_published_whole_or_not_at_all(settings: Settings) -> None:
    with connect(settings, read_only=False) as wh:
        wh.write(sample_frame(), "marts", "searches")
    with build_then_publish(settings) as building:
        assert building.duckdb_path != settings.duckdb_path
        with connect(building, read_only=False) as wh:
            wh.write(sample_frame().head(1), "marts", "searches")
        with connect(settings) as reader:  # readers see the last published warehouse
            assert reader.read("marts", "searches").height == 3
    with connect(settings) as reader:
        assert reader.read("marts", "searches").height == 1
    with pytest.raises(RuntimeError), build_then_publish(settings) as building:
        with connect(building, read_only=False) as wh:
            wh.execute(f"drop table {wh.table('marts', 'searches')}")
        raise RuntimeError("a stage failed")
    with connect(settings) as reader:
        assert reader.read("marts", "searches").height == 1
    assert sorted(p.name for p in settings.data_dir.iterdir()) == [
        "warehouse.duckdb",
        "warehouse.duckdb.build-lock",
    ]


def test_a_full_disk_is_one_line(small_disk: Callable[..., Path]) -> None:
    settings = get_settings({"RAILFLOW_DATA_DIR": str(small_disk("1m"))})
    big = pl.DataFrame({"x": pl.int_range(3_000_000, eager=True).cast(pl.Utf8)})
    with pytest.raises(WarehouseError) as info, connect(settings, read_only=False) as wh:
        wh.write(big, "raw", "big")
    assert str(info.value).startswith("no space left on the device holding")
