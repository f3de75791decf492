"""The loader against a bad-input corpus: every row is loaded or quarantined, nothing is lost."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest

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
    target = tmp_path / "raw"
    shutil.copytree(world_files, target)
    return target


@pytest.fixture
def settings(empty_settings: Settings, raw: Path) -> Settings:
    return empty_settings.with_overrides(data_dir=raw.parent)


def searches(raw: Path) -> pl.DataFrame:
    return pl.read_parquet(raw / TABLE / "part-00000.parquet")


def replace_file(raw: Path, df: pl.DataFrame) -> None:
    df.write_parquet(raw / TABLE / "part-00000.parquet")


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


def as_text(column: str) -> pl.Expr:
    if column == "occurred_at":
        return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
    return pl.col(column).cast(pl.Utf8)


FUTURE = pl.datetime(2999, 1, 1, time_zone="UTC")
CORPUS = {
    "missing-column": (lambda df: df.drop("travel_date"), "missing column travel_date", "all"),
    "wrong-type": (
        lambda df: df.with_columns(as_text("passengers")).with_columns(
            first_rows("passengers", 3, "two")
        ),
        "passengers: not a valid integer",
        3,
    ),
    "null-id": (
        lambda df: df.with_columns(first_rows("user_id", 4, None)),
        "user_id: null",
        4,
    ),
    "future-timestamp": (
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < 2)
            .then(FUTURE)
            .otherwise(pl.col("occurred_at"))
            .alias("occurred_at")
        ),
        "occurred_at: in the future",
        2,
    ),
    "unknown-station": (
        lambda df: df.with_columns(first_rows("origin_station_id", 5, "XXATL")),
        "origin_station_id: unknown station",
        5,
    ),
    "unparseable-timestamp": (
        lambda df: df.with_columns(as_text("occurred_at")).with_columns(
            first_rows("occurred_at", 2, "last tuesday")
        ),
        "occurred_at: not a valid timestamp",
        2,
    ),
    "bad-enum": (
        lambda df: df.with_columns(first_rows("fare_class", 3, "business")),
        "fare_class: not one of standard, first",
        3,
    ),
    "out-of-range": (
        lambda df: df.with_columns(first_rows("passengers", 1, 0)),
        "passengers: below 1",
        1,
    ),
}


@pytest.mark.parametrize(("corrupt", "reason", "bad_rows"), CORPUS.values(), ids=CORPUS.keys())
def test_bad_rows_are_quarantined_with_a_reason(
    settings: Settings, raw: Path, corrupt, reason: str, bad_rows: int | str
) -> None:
    original = searches(raw)
    replace_file(raw, corrupt(original))
    read, loaded, quarantined, quarantine = load_searches(settings)
    expected_bad = original.height if bad_rows == "all" else bad_rows
    assert read == original.height
    assert quarantined == expected_bad
    assert loaded == original.height - expected_bad
    assert quarantine.height == expected_bad
    assert quarantine["reason"].str.contains(reason, literal=True).all()
    assert (quarantine["table_name"] == TABLE).all()


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
        return pending_rewrites(wh)


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
