"""The loader against a bad-input corpus: every row is loaded or quarantined, nothing is lost."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import NamedTuple

import polars as pl
import pytest

from railflow.checksums import sha256_file
from railflow.settings import REPO_ROOT, Settings
from railflow.warehouse import connect
from scripts.generate import generate
from scripts.load import LoadError, format_summary, load, pending_rewrites, summarise
from scripts.load import stage as load_stage
from scripts.reference import SeedError, read_seed

TABLE = "search_route"


@pytest.fixture(scope="module")
def world_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loader_world")
    generate(folder, 150, 10, date(2026, 3, 1), 11, "salt", progress=False)
    return folder / "raw"


@pytest.fixture
def raw(world_files: Path, tmp_path: Path) -> Path:
    """A copy of the world's raw files, as another producer would land them: without the
    generator's manifest, so tests can change files (the manifest's own tests keep it)."""
    target = tmp_path / "raw"
    shutil.copytree(world_files, target)
    (target / "manifest.json").unlink()
    return target


@pytest.fixture
def settings(empty_settings: Settings, raw: Path) -> Settings:
    return empty_settings.with_overrides(data_dir=raw.parent)


def part(raw: Path, table: str = TABLE) -> Path:
    return raw / table / "part-00000.parquet"


def searches(raw: Path) -> pl.DataFrame:
    return pl.read_parquet(part(raw))


def replace_file(raw: Path, df: pl.DataFrame, table: str = TABLE) -> None:
    df.write_parquet(part(raw, table))


def load_searches(settings: Settings, reload: bool = False) -> tuple[int, int, int, pl.DataFrame]:
    reports = load(settings, [TABLE], reload=reload)
    read, loaded, quarantined = summarise(reports)[TABLE]
    with connect(settings) as wh:
        quarantine = (
            wh.read("audit", "quarantine")
            if wh.table_exists("audit", "quarantine")
            else pl.DataFrame()
        )
        in_raw = wh.query(f"select count(*) as n from {wh.table('raw', TABLE)}")["n"][0]
    assert read == loaded + quarantined
    assert in_raw == loaded
    return read, loaded, quarantined, quarantine


def test_clean_world_loads_everything_and_keeps_duplicates(settings: Settings, raw: Path) -> None:
    read, loaded, quarantined, _ = load_searches(settings)
    df = searches(raw)
    assert (read, loaded, quarantined) == (df.height, df.height, 0)
    assert df.height > df["event_id"].n_unique()  # duplicates are not bad input


def first_rows(column: str, n: int, value: object) -> pl.Expr:
    """`column` with its first n values replaced by `value`."""
    return (
        pl.when(pl.int_range(pl.len()) < n)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )


def first_values(column: str, values: list[str]) -> pl.Expr:
    """`column` with its first len(values) values replaced by `values`, in order."""
    n = len(values)
    return (
        pl.when(pl.int_range(pl.len()) < n)
        .then(pl.lit(pl.Series(values)).gather(pl.int_range(pl.len()).clip(0, n - 1)))
        .otherwise(pl.col(column))
        .alias(column)
    )


def as_text(column: str) -> pl.Expr:
    if column == "occurred_at":
        return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
    return pl.col(column).cast(pl.Utf8)


FUTURE = pl.datetime(2999, 1, 1, time_zone="UTC")


class Case(NamedTuple):
    """One bad input of the corpus: what was tried, how, and what the loader must answer.
    docs/bad_inputs.md is generated from these (test_the_bad_input_table_is_generated)."""

    tried: str
    corrupt: Callable[[pl.DataFrame], pl.DataFrame]
    reason: str
    bad_rows: int | str  # "all", or how many rows are quarantined


def resent_later(df: pl.DataFrame, seconds: int) -> pl.DataFrame:
    """The file with its first event sent again, occurred_at `seconds` later, received last."""
    first = df.head(1).with_columns(
        pl.col("occurred_at") + pl.duration(seconds=seconds),
        pl.col("received_at").max().alias("received_at") + pl.duration(seconds=1),
    )
    return pl.concat([df, first])


CORPUS = {
    "missing-column": Case(
        "a required column (travel_date) dropped from the file",
        lambda df: df.drop("travel_date"),
        "missing column travel_date",
        "all",
    ),
    "wrong-type": Case(
        "an integer column as text, with 'two' in 3 rows",
        lambda df: df.with_columns(as_text("passengers")).with_columns(
            first_rows("passengers", 3, "two")
        ),
        "passengers: not a valid integer",
        3,
    ),
    "null-id": Case(
        "user_id null in 4 rows",
        lambda df: df.with_columns(first_rows("user_id", 4, None)),
        "user_id: null",
        4,
    ),
    "future-timestamp": Case(
        "occurred_at in the year 2999",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < 2)
            .then(FUTURE)
            .otherwise(pl.col("occurred_at"))
            .alias("occurred_at")
        ),
        "occurred_at: in the future",
        2,
    ),
    "unknown-station": Case(
        "a station id not in the stations seed",
        lambda df: df.with_columns(first_rows("origin_station_id", 5, "XXATL")),
        "origin_station_id: unknown station",
        5,
    ),
    "unparseable-timestamp": Case(
        "occurred_at as text, 'last tuesday' in 2 rows",
        lambda df: df.with_columns(as_text("occurred_at")).with_columns(
            first_rows("occurred_at", 2, "last tuesday")
        ),
        "occurred_at: not a valid timestamp",
        2,
    ),
    "bad-enum": Case(
        "fare_class 'business' (not in the plan's enum)",
        lambda df: df.with_columns(first_rows("fare_class", 3, "business")),
        "fare_class: not one of standard, first",
        3,
    ),
    "out-of-range": Case(
        "passengers 0 (below the plan's minimum)",
        lambda df: df.with_columns(first_rows("passengers", 1, 0)),
        "passengers: below 1",
        1,
    ),
    # wrong types that used to crash the loader (traceback, no accounting row)
    "boolean-as-text": Case(
        "a boolean column as 'true'/'false' strings",
        lambda df: df.with_columns(pl.col("is_round_trip").cast(pl.Utf8)),
        "is_round_trip: not a valid boolean",
        "all",
    ),
    "list-column": Case(
        "an integer column holding lists",
        lambda df: df.with_columns(pl.concat_list("passengers").alias("passengers")),
        "passengers: not a valid integer",
        "all",
    ),
    "no-known-column": Case(
        "every column name upper-cased",
        lambda df: df.rename(str.upper),
        "missing column",
        "all",
    ),
    # wrong types that used to load as wrong values
    "epoch-seconds-timestamp": Case(
        "occurred_at as epoch seconds (integers)",
        lambda df: df.with_columns(pl.col("occurred_at").dt.epoch("s")),
        "occurred_at: not a valid timestamp",
        "all",
    ),
    "fractional-integer": Case(
        "passengers 1.5 in a float column",
        lambda df: df.with_columns(first_rows("passengers", 3, 1.5)),
        "passengers: not a valid integer",
        3,
    ),
    # accepted rows that used to fail the dbt build (issue 17)
    "empty-event-id": Case(
        "event_id '' in 3 rows",
        lambda df: df.with_columns(first_rows("event_id", 3, "")),
        "event_id: empty",
        3,
    ),
    "blank-key": Case(
        "search_id of spaces in 2 rows",
        lambda df: df.with_columns(first_rows("search_id", 2, "   ")),
        "search_id: empty",
        2,
    ),
    "resent-one-second-later": Case(
        "an event id sent again with occurred_at 1 s later",
        lambda df: resent_later(df, 1),
        "event_id: sent again with another occurred_at (the first delivery is kept)",
        1,
    ),
    "received-before-occurred": Case(
        "received_at one hour before occurred_at",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < 2)
            .then(pl.col("occurred_at") - pl.duration(hours=1))
            .otherwise(pl.col("received_at"))
            .alias("received_at")
        ),
        "received_at: before occurred_at",
        2,
    ),
    # a corrupted file used to crash the loader with a polars panic (70-line traceback)
    "out-of-range-timestamp": Case(
        "occurred_at stored as 9e18 microseconds (year 287,000)",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < 4)
            .then(pl.lit(9_000_000_000_000_000_000, dtype=pl.Int64))
            .otherwise(pl.col("occurred_at").dt.epoch("us"))
            .cast(pl.Datetime("us", "UTC"))
            .alias("occurred_at")
        ),
        "occurred_at: not a valid timestamp",
        4,
    ),
}


@pytest.mark.parametrize("case", CORPUS.values(), ids=CORPUS.keys())
def test_bad_rows_are_quarantined_with_a_reason(settings: Settings, raw: Path, case: Case) -> None:
    corrupted = case.corrupt(searches(raw))
    replace_file(raw, corrupted)
    read, loaded, quarantined, quarantine = load_searches(settings)
    expected_bad = corrupted.height if case.bad_rows == "all" else case.bad_rows
    assert read == corrupted.height
    assert quarantined == expected_bad
    assert loaded == corrupted.height - expected_bad
    assert quarantine.height == expected_bad
    assert quarantine["reason"].str.contains(case.reason, literal=True).all()
    assert (quarantine["table_name"] == TABLE).all()
    with connect(settings) as wh:  # what staging needs: one occurred_at per event id
        times = wh.query(
            f"select count(distinct occurred_at) as n from {wh.table('raw', TABLE)} "
            "group by event_id order by n desc limit 1"
        )
    assert times.is_empty() or times["n"][0] == 1


def test_an_event_id_loaded_before_with_another_time_is_quarantined(
    settings: Settings, raw: Path
) -> None:
    """Across batches the first delivery loaded wins: the re-send is quarantined, and counted."""
    load_searches(settings)
    first = searches(raw).head(2)
    resent = first.with_columns(pl.col("occurred_at") + pl.duration(seconds=1))
    resent.write_parquet(raw / TABLE / "part-00001.parquet")
    reports = load(settings, [TABLE])
    batch = next(r for r in reports if r.file.endswith("part-00001.parquet"))
    assert (batch.rows_read, batch.rows_loaded, batch.rows_quarantined) == (2, 0, 2)
    reason = "event_id: loaded before with another occurred_at (the first delivery is kept)"
    assert batch.reasons == {reason: 2}
    with connect(settings) as wh:
        kept = wh.query(
            f"select occurred_at from {wh.table('raw', TABLE)} where event_id = $e",
            {"e": first["event_id"][0]},
        )
    assert kept["occurred_at"].unique().to_list() == [first["occurred_at"][0]]


def test_extra_columns_are_dropped_and_reported(settings: Settings, raw: Path) -> None:
    replace_file(raw, searches(raw).with_columns(pl.lit("x").alias("debug_flag")))
    reports = load(settings, [TABLE])
    assert reports[0].extra_columns == ["debug_flag"]
    assert reports[0].rows_quarantined == 0


def test_truncated_file_stops_with_one_line_naming_it(settings: Settings, raw: Path) -> None:
    path = raw / TABLE / "part-00000.parquet"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(LoadError) as info:
        load(settings, [TABLE])
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_zero_byte_file_is_unreadable_and_empty_file_is_a_no_op(
    settings: Settings, raw: Path
) -> None:
    path = raw / TABLE / "part-00000.parquet"
    path.write_bytes(b"")
    with pytest.raises(LoadError, match="cannot read"):
        load(settings, [TABLE])
    replace_file(raw, searches_schema_only(raw))
    read, loaded, quarantined, _ = load_searches(settings)
    assert (read, loaded, quarantined) == (0, 0, 0)


def searches_schema_only(raw: Path) -> pl.DataFrame:
    from scripts.tracking_plan import load_plan

    return pl.DataFrame(schema=load_plan()[TABLE].schema)


def test_loading_the_same_batch_twice_is_idempotent(settings: Settings, raw: Path) -> None:
    first = load_searches(settings)
    # unchanged since its last load: skipped, and the summary says how to load it anyway
    again = load(settings, [TABLE])
    assert [r.unchanged for r in again] == [True]
    assert "skipped 1 batch(es) unchanged" in format_summary(again)
    # loaded again on request: the batch's rows are replaced, not added
    reloaded = load_searches(settings, reload=True)
    assert first[:3] == reloaded[:3]
    assert rewrites(settings) == 0  # same content: the history the models built on stands
    with connect(settings) as wh:
        batches = wh.read("audit", "load_batches")
    assert batches.height == 1 and batches["rows_loaded"][0] == first[1]


def test_a_changed_file_replaces_its_batch(settings: Settings, raw: Path) -> None:
    load_searches(settings)
    assert rewrites(settings) == 0
    replace_file(raw, searches(raw).head(25))
    read, loaded, quarantined, _ = load_searches(settings)  # in_raw == loaded is checked
    assert (read, loaded, quarantined) == (25, 25, 0)
    assert rewrites(settings) == 1  # the next pipeline build is a full refresh


def rewrites(settings: Settings) -> int:
    with connect(settings) as wh:
        return sum(pending_rewrites(wh).values())


def raw_rows(settings: Settings) -> int:
    with connect(settings) as wh:
        return wh.query(f"select count(*) as n from {wh.table('raw', TABLE)}")["n"][0]


def test_the_pipeline_prunes_batches_whose_files_are_gone(settings: Settings, raw: Path) -> None:
    """A smaller world has fewer part files: the rows of the larger one's extra parts must go."""
    whole = searches(raw).height
    extra = raw / TABLE / "part-00001.parquet"
    searches(raw).head(40).write_parquet(extra)
    load(settings, [TABLE])
    extra.unlink()
    # the CLI's default keeps them (a landing folder may be emptied after loading)
    load(settings, [TABLE])
    assert raw_rows(settings) == whole + 40
    stage_result = load_stage(settings)
    assert stage_result.metrics["batches removed"] == 1
    assert raw_rows(settings) == whole
    with connect(settings) as wh:
        batches = wh.read("audit", "load_batches").filter(pl.col("table_name") == TABLE)
    assert batches["_batch_id"].to_list() == [f"{TABLE}/part-00000.parquet"]
    pruned = load(settings, [TABLE], prune=True)  # nothing left to remove
    assert [r.rows_removed for r in pruned] == [None]


def test_pruning_reports_what_it_removed(settings: Settings, raw: Path) -> None:
    extra = raw / TABLE / "part-00001.parquet"
    searches(raw).head(40).write_parquet(extra)
    load(settings, [TABLE])
    extra.unlink()
    reports = load(settings, [TABLE], prune=True)
    removed = [(r.batch_id, r.rows_removed) for r in reports if r.rows_removed is not None]
    assert removed == [(f"{TABLE}/part-00001.parquet", 40)]
    assert "removed 1 batch(es), 40 row(s)" in format_summary(reports)
    assert rewrites(settings) == 1


EMAIL = "alice.martin@gmail.com"


def raw_strings(settings: Settings, table: str) -> list[str]:
    """Every string value of raw.<table>."""
    with connect(settings) as wh:
        df = wh.read("raw", table)
    return [v for c in df.columns if df.schema[c] == pl.Utf8 for v in df[c].drop_nulls()]


def quarantined_rows(settings: Settings, table: str) -> pl.DataFrame:
    with connect(settings) as wh:
        return wh.read("audit", "quarantine").filter(pl.col("table_name") == table)


@pytest.mark.parametrize(
    ("table", "column", "kept"),
    [
        ("users", "email_sha256", "country_code"),
        ("users", "email_domain", "country_code"),
        ("users", "user_id", "country_code"),
        (TABLE, "session_id", "origin_station_id"),
    ],
)
def test_clear_text_email_is_quarantined_and_redacted(
    settings: Settings, raw: Path, table: str, column: str, kept: str
) -> None:
    original = pl.read_parquet(part(raw, table))
    corrupted = original.with_columns(
        first_values(column, [EMAIL, f" {EMAIL.upper()} ", f"mailto:{EMAIL}"]),
        pl.lit(f"contact {EMAIL}").alias("contact"),  # extra columns: never loaded, but kept
        pl.concat_list(pl.lit(EMAIL), pl.lit("+33 6 12 34 56 78")).alias("aliases"),  # row_json
    )
    replace_file(raw, corrupted, table)
    read, loaded, quarantined = summarise(load(settings, [table]))[table]
    assert (read, loaded, quarantined) == (original.height, original.height - 3, 3)
    assert not any("@" in v or "alice" in v.lower() for v in raw_strings(settings, table))
    bad = quarantined_rows(settings, table)
    assert bad["reason"].str.contains(f"{column}: looks like an email address").all()
    # the row is kept for debugging, without the PII-looking values
    assert not bad["row_json"].str.to_lowercase().str.contains("alice|56 78").any()
    for row_json, row in zip(bad["row_json"], bad["row_number"], strict=True):
        kept_row = json.loads(row_json)
        assert set(kept_row) == set(corrupted.columns)
        assert kept_row[kept] == original[kept][row]
        assert "[redacted" in kept_row[column] and "[redacted" in kept_row["contact"]


def test_email_sha256_must_be_a_digest_and_email_domain_a_bare_domain(
    settings: Settings, raw: Path
) -> None:
    original = pl.read_parquet(part(raw, "users"))
    replace_file(
        raw,
        original.with_columns(
            first_rows("email_sha256", 2, "Alice Martin"),  # a name where a hash belongs
        ).with_columns(
            pl.when(pl.int_range(pl.len()) == 2)
            .then(pl.col("email_sha256").str.to_uppercase())
            .otherwise(pl.col("email_sha256")),
            pl.when(pl.int_range(pl.len()).is_between(3, 4))
            .then(pl.lit("@gmail.com"))
            .otherwise(pl.col("email_domain"))
            .alias("email_domain"),
        ),
        "users",
    )
    read, loaded, quarantined = summarise(load(settings, ["users"]))["users"]
    assert (read, loaded, quarantined) == (original.height, original.height - 5, 5)
    bad = quarantined_rows(settings, "users").sort("row_number")
    assert bad["row_number"].to_list() == [0, 1, 2, 3, 4]
    assert bad["reason"].head(3).str.contains("email_sha256: not 64 lowercase hex").all()
    assert bad["reason"].tail(2).str.contains("email_domain: not a bare domain").all()
    assert not bad["row_json"].str.contains("Alice Martin|@gmail").any()
    assert not any("Alice" in v or "@" in v for v in raw_strings(settings, "users"))


def test_phone_numbers_in_free_text_are_quarantined_and_redacted(
    settings: Settings, raw: Path
) -> None:
    table = "session_started"
    original = pl.read_parquet(part(raw, table))
    phones = ["+33 6 12 34 56 78", "06 12 34 56 78", "(0141) 496 0424"]
    replace_file(raw, original.with_columns(first_values("utm_source", phones)), table)
    read, _, quarantined = summarise(load(settings, [table]))[table]
    assert (read, quarantined) == (original.height, 3)
    bad = quarantined_rows(settings, table)
    assert bad["reason"].str.contains("utm_source: holds a phone number").all()
    assert not bad["row_json"].str.contains("56 78|496 0424").any()


def test_the_clean_world_loads_without_false_positives(settings: Settings) -> None:
    """Ids, timestamps, hashes and domains of a generated world are not taken for PII."""
    totals = summarise(load(settings))
    assert totals and all(quarantined == 0 for _, _, quarantined in totals.values())


def test_whole_numbers_stored_as_floats_load_as_integers(settings: Settings, raw: Path) -> None:
    original = searches(raw)
    replace_file(raw, original.with_columns(pl.col("passengers").cast(pl.Float64)))
    _, loaded, quarantined, _ = load_searches(settings)
    assert (loaded, quarantined) == (original.height, 0)
    with connect(settings) as wh:
        passengers = wh.read("raw", TABLE)["passengers"]
    assert passengers.dtype == pl.Int64 and passengers.sum() == original["passengers"].sum()


def warehouse_state(settings: Settings) -> tuple[dict[str, int], list[str]]:
    """Rows per raw table, and the loaded batch ids."""
    with connect(settings) as wh:
        rows = {
            name: wh.query(f"select count(*) as n from {wh.table('raw', name)}")["n"][0]
            for name in sorted(p.name for p in settings.raw_dir.iterdir() if p.is_dir())
            if wh.table_exists("raw", name)
        }
        batches = sorted(wh.read("audit", "load_batches")["_batch_id"])
    return rows, batches


def test_an_emptied_raw_folder_does_not_wipe_the_warehouse(settings: Settings, raw: Path) -> None:
    load(settings)
    rows, batches = warehouse_state(settings)
    assert rows and batches
    for folder in list(raw.iterdir()):
        shutil.rmtree(folder)
    with pytest.raises(LoadError) as info:
        load_stage(settings)  # the pipeline's load always prunes
    message = str(info.value)
    assert str(raw / "session_started") in message and "\n" not in message
    assert "python -m scripts.generate" in message and "--raw-dir" in message
    with connect(settings) as wh:
        assert len(wh.read("audit", "load_batches")) == len(batches)
        for name, n in rows.items():
            assert wh.query(f"select count(*) as n from {wh.table('raw', name)}")["n"][0] == n


def test_one_emptied_table_folder_stops_the_prune_before_any_delete(
    settings: Settings, raw: Path
) -> None:
    extra = raw / TABLE / "part-00001.parquet"
    searches(raw).head(40).write_parquet(extra)
    load(settings)
    rows, batches = warehouse_state(settings)
    extra.unlink()  # legitimately gone: would be pruned...
    shutil.rmtree(raw / "users")  # ...but a table with no file at all stops the load first
    with pytest.raises(LoadError, match="users"):
        load(settings, prune=True)
    (raw / "users").mkdir()
    assert warehouse_state(settings) == (rows, batches)


def test_cli_raw_dir_one_level_too_high_refuses_to_prune(settings: Settings, raw: Path) -> None:
    load(settings)
    rows, batches = warehouse_state(settings)
    line = one_error_line(load_cli(settings, "--raw-dir", str(raw.parent), "--prune"))
    assert f"--raw-dir {raw}" in line
    assert warehouse_state(settings) == (rows, batches)


def shifted(df: pl.DataFrame, days: int, prefix: str) -> pl.DataFrame:
    """The same events `days` earlier, delivered again under new event ids."""
    return df.with_columns(
        (prefix + pl.col("event_id")).alias("event_id"),
        pl.col("occurred_at") - pl.duration(days=days),
        pl.col("received_at") - pl.duration(days=days),
    )


def test_a_late_batch_beyond_the_lookback_is_a_backfill(settings: Settings, raw: Path) -> None:
    load_searches(settings)  # a first load is not a backfill, however long the world
    assert rewrites(settings) == 0
    by_time = searches(raw).sort("occurred_at")
    shifted(by_time.head(30), 90, "old_").write_parquet(raw / TABLE / "part-00001.parquet")
    shifted(by_time.tail(20), 1, "late_").write_parquet(raw / TABLE / "part-00002.parquet")
    reports = load(settings, [TABLE])
    backfilled = {Path(r.file).name: r.rows_backfilled for r in reports if not r.unchanged}
    assert backfilled == {"part-00001.parquet": 30, "part-00002.parquet": 0}
    with connect(settings) as wh:
        history = wh.read("audit", "history_rewrites")
    assert history.select("_batch_id", "reason").rows() == [
        (f"{TABLE}/part-00001.parquet", "backfill: 30 rows older than the lookback")
    ]
    assert "backfill: 30 row(s) of" in format_summary(reports)
    load(settings, [TABLE], reload=True)  # the same files again: nothing new arrived
    assert rewrites(settings) == 1


def test_a_first_load_is_not_a_backfill(settings: Settings, raw: Path) -> None:
    shifted(searches(raw), 90, "old_").write_parquet(raw / TABLE / "part-00001.parquet")
    reports = load(settings, [TABLE])
    assert [r.rows_backfilled for r in reports] == [0, 0]
    assert rewrites(settings) == 0


def test_files_outside_the_tracking_plan_are_reported(
    settings: Settings, raw: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (raw / "notes.txt").write_text("not a table")
    (raw / "tickets").mkdir()
    searches(raw).write_parquet(raw / "tickets" / "part-00000.parquet")
    (raw / TABLE / "part-00001.csv").write_text("event_id\nev_1\n")
    with caplog.at_level(logging.WARNING, logger="railflow.load"):
        reports = load(settings, [TABLE])
    ignored = [raw / "notes.txt", raw / "tickets", raw / TABLE / "part-00001.csv"]
    assert sorted(reports.ignored) == sorted(ignored)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignored")]
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert "ignored: 3 file(s) or folder(s) not in the tracking plan" in format_summary(reports)
    assert summarise(reports)[TABLE][1] == searches(raw).height  # the table itself loaded


def test_seed_with_wrong_encoding_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "stations.csv"
    text = (REPO_ROOT / "seeds" / "stations.csv").read_text(encoding="utf-8")
    bad.write_bytes(text.encode("latin-1", errors="replace"))
    with pytest.raises(SeedError, match="not valid UTF-8"):
        read_seed("stations", tmp_path)
    (tmp_path / "routes.csv").write_text("route_id,origin\nA-B,A\n")
    with pytest.raises(SeedError, match="expected"):
        read_seed("routes", tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tables", "tickets"], "unknown table"),
        (["--raw-dir", "/nonexistent/raw"], "does not exist"),
    ],
)
def test_cli_bad_arguments(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.load", *args],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "RAILFLOW_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr


# Disguised personal data in a free-text column (utm_source of session_started): each form is
# quarantined with its reason and never reaches raw nor the quarantine's row_json in clear.
PII_FORMS = {
    "percent-encoded-at": ("alice.martin%40gmail.com", "utm_source: looks like an email address"),
    "full-width-at": ("alice.martin＠gmail.com", "utm_source: looks like an email address"),
    "spelled-out-email": ("alice.martin at gmail dot com", "utm_source: looks like an email"),
    "bracketed-email": ("alice.martin [at] gmail (dot) com", "utm_source: looks like an email"),
    "phone-inside-text": ("call me on +33 6 12 34 56 78", "utm_source: holds a phone number"),
    "tel-link": ("tel:+33612345678", "utm_source: holds a tel: link"),
    "full-name": ("newsletter for Alice Martin", "utm_source: holds a person's full name"),
}


@pytest.mark.parametrize(("value", "reason"), PII_FORMS.values(), ids=PII_FORMS.keys())
def test_disguised_pii_is_quarantined_and_redacted(
    settings: Settings, raw: Path, value: str, reason: str
) -> None:
    table = "session_started"
    original = pl.read_parquet(part(raw, table))
    replace_file(raw, original.with_columns(first_rows("utm_source", 2, value)), table)
    read, loaded, quarantined = summarise(load(settings, [table]))[table]
    assert (read, loaded, quarantined) == (original.height, original.height - 2, 2)
    assert value not in raw_strings(settings, table)
    bad = quarantined_rows(settings, table)
    assert bad["reason"].str.contains(reason, literal=True).all()
    for row_json in bad["row_json"]:
        kept = json.loads(row_json)
        assert kept["utm_source"].startswith("[redacted")
        assert value not in row_json and "Martin" not in row_json and "56 78" not in row_json


def test_a_tel_link_in_an_id_column_is_quarantined(settings: Settings, raw: Path) -> None:
    replace_file(raw, searches(raw).with_columns(first_rows("session_id", 1, "tel:0612345678")))
    _, _, quarantined, quarantine = load_searches(settings)
    assert quarantined == 1
    assert quarantine["reason"][0].startswith("session_id: holds a tel: link")
    assert "0612345678" not in quarantine["row_json"][0]


# -- the generator's manifest: corrupted files are refused, never loaded or crashed on -----
@pytest.fixture
def manifested(world_files: Path, tmp_path: Path) -> Path:
    """A copy of the world's raw files with the generator's manifest."""
    target = tmp_path / "raw"
    shutil.copytree(world_files, target)
    return target


def flip_bytes(path: Path, at: float = 0.5, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    path.write_bytes(bytes(data))


def load_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.load", *args],
        cwd=REPO_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "RAILFLOW_DATA_DIR": str(settings.data_dir),
            "RAILFLOW_DUCKDB_PATH": str(settings.duckdb_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


FILE_CASES = {  # what was tried, how, and the file the one error line must name
    "bytes-flipped": (
        "64 bytes flipped in the middle of a Parquet file",
        flip_bytes,
        lambda p: p,
    ),
    "truncated": (
        "a Parquet file cut to half its size",
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: p,
    ),
    "not-in-manifest": (
        "a Parquet file the manifest does not list",
        lambda p: shutil.copy(p, p.with_name("part-09999.parquet")),
        lambda p: p.with_name("part-09999.parquet"),
    ),
    "manifest-not-json": (
        "a manifest.json that is not JSON",
        lambda p: (p.parent.parent / "manifest.json").write_text("{not json"),
        lambda p: p.parent.parent / "manifest.json",
    ),
}


@pytest.mark.parametrize(("tried", "corrupt", "named"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_a_file_that_does_not_match_the_manifest_is_refused(
    empty_settings: Settings,
    manifested: Path,
    tried: str,
    corrupt: Callable[[Path], object],
    named: Callable[[Path], Path],
) -> None:
    settings = empty_settings.with_overrides(data_dir=manifested.parent)
    path = part(manifested)
    corrupt(path)
    line = one_error_line(load_cli(settings))
    assert str(named(path)) in line and "manifest.json" in line
    assert not settings.duckdb_path.exists()  # refused before anything was written


def test_the_generated_manifest_lists_every_raw_file(manifested: Path) -> None:
    files = json.loads((manifested / "manifest.json").read_text())["files"]
    on_disk = sorted(p.relative_to(manifested).as_posix() for p in manifested.glob("*/*.parquet"))
    assert sorted(files) == on_disk
    for name, entry in files.items():
        path = manifested / name
        assert entry["sha256"] == sha256_file(path)
        assert entry["rows"] == pl.read_parquet(path).height


def test_an_undecodable_file_without_manifest_is_one_line(settings: Settings, raw: Path) -> None:
    flip_bytes(part(raw), at=0.3, n=4096)
    line = one_error_line(load_cli(settings, "--tables", TABLE))
    assert str(part(raw)) in line


# -- a load is atomic per batch -----------------------------------------------------------
KILLED_LOAD = """
import os, signal, sys
import scripts.load as load
deleted = load.delete_batch
def killed(*args, **kwargs):  # right after a batch's rows and accounting are deleted
    deleted(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
load.delete_batch = killed
load.main(sys.argv[1:])
"""


def run_killed_load(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The loader, killed (SIGKILL) right after deleting a changed batch's rows."""
    return subprocess.run(
        [sys.executable, "-c", KILLED_LOAD, *args],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "RAILFLOW_DATA_DIR": str(settings.data_dir),
            "RAILFLOW_DUCKDB_PATH": str(settings.duckdb_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_load_killed_mid_batch_leaves_the_batch_as_it_was(settings: Settings, raw: Path) -> None:
    before = load_searches(settings)
    with connect(settings) as wh:
        accounting = wh.read("audit", "load_batches")
    replace_file(raw, searches(raw).head(25))
    proc = run_killed_load(settings, "--tables", TABLE)
    assert proc.returncode == -signal.SIGKILL
    with connect(settings) as wh:  # the batch's delete was rolled back with the rest
        assert wh.read("audit", "load_batches").equals(accounting)
    assert raw_rows(settings) == before[1]
    assert rewrites(settings) == 0
    # the next load sees the file still differs from what was loaded, and repairs the batch
    assert load_searches(settings)[:3] == (25, 25, 0)
    assert rewrites(settings) == 1  # so the next build is a full refresh


def test_the_bad_input_table_is_generated_from_these_cases() -> None:
    """docs/bad_inputs.md is this corpus as a table. RAILFLOW_WRITE_DOCS=1 rewrites it."""
    lines = [
        "# Bad inputs the loader is tested against",
        "",
        "Generated from the test cases of `tests/python/test_load.py` (`CORPUS`, `PII_FORMS`,",
        "`FILE_CASES`); do not edit by hand: `RAILFLOW_WRITE_DOCS=1 .venv/bin/python -m pytest",
        "tests/python/test_load.py -k bad_input_table` rewrites it, and the test fails when it",
        "is stale. Every row read is loaded or quarantined and counted in `audit.load_batches`.",
        "",
        "| case | what was tried | what the loader does |",
        "|---|---|---|",
    ]
    for name, case in CORPUS.items():
        rows = "every row" if case.bad_rows == "all" else f"{case.bad_rows} row(s)"
        lines.append(f"| `{name}` | {case.tried} ({TABLE}) | quarantines {rows}: `{case.reason}` |")
    for name, (value, reason) in PII_FORMS.items():
        lines.append(
            f"| `{name}` | utm_source = `{value}` (session_started) | quarantines the row: "
            f"`{reason}`; redacted in `row_json` |"
        )
    for name, (tried, _, _) in FILE_CASES.items():
        lines.append(
            f"| `{name}` | {tried} | refuses the load before any write, one `error:` line "
            "naming the file and the manifest |"
        )
    lines.append(
        "| `undecodable-without-manifest` | bytes flipped in a file of a folder with no "
        "manifest | stops with one `error:` line naming the file (no traceback) |"
    )
    text = "\n".join(lines) + "\n"
    doc = REPO_ROOT / "docs" / "bad_inputs.md"
    if os.environ.get("RAILFLOW_WRITE_DOCS") == "1":
        doc.write_text(text)
    assert doc.read_text() == text, "docs/bad_inputs.md is stale: see this test's docstring"


def test_a_full_disk_stops_the_load_with_one_line(
    settings: Settings, small_disk: Callable[..., Path]
) -> None:
    full = settings.with_overrides(duckdb_path=small_disk("300k") / "warehouse.duckdb")
    line = one_error_line(load_cli(full))
    assert "no space left on the device" in line and str(full.duckdb_path) in line
