"""Load data/raw/ into the warehouse `raw` layer, validating every row against the tracking plan.

    python -m scripts.load [--raw-dir data/raw] [--tables search_route users] [--reload] [--prune]

- Each file is a batch (`<table>/<file name>`). Loading a batch replaces the rows of the same
  batch id, so loading twice leaves the same rows (idempotent). A batch whose file has not
  changed since its last load (same SHA-256 in `audit.load_batches`) is skipped and reported as
  unchanged: a daily run reads only new or changed files. `--reload` loads every file again.
- `--prune` removes the batches whose files are gone from the raw folder (rows, quarantine
  entries and accounting). The pipeline prunes, since each generated world replaces the last
  one whole; a landing folder that is emptied after loading must not be pruned. A table that
  has loaded batches but no file at all (an emptied raw folder, or --raw-dir pointing at the
  wrong folder) stops the load before anything is deleted: a smaller world still has a part
  file per table.
- A batch replaced by different content, or pruned, rewrites history that incremental dbt
  models have already built on: it is recorded in `audit.history_rewrites`, and the pipeline's
  next dbt build is a full refresh (which then clears the record). So is a new batch of events
  older than dbt's `lookback_days` before the latest event already in raw (a backfill), which
  incremental models would otherwise never rebuild.
- Rows that break the plan (missing required column, wrong type, null key, unparseable or future
  timestamp, unknown station, value outside its enum, range or format) go to `audit.quarantine`
  with the reason; extra columns are not loaded and are reported. A type that cannot hold the
  plan's is wrong for every row (an epoch number for a timestamp, "true" for a boolean, a list);
  a float is an integer only when it is whole. Every input row is accounted for:
  loaded + quarantined = read, per batch, in `audit.load_batches`.
- Clear-text PII never reaches the warehouse: a row with an email-like value (also disguised:
  %40, a full-width '＠', "name at domain dot com") or a tel: link in a string column, or a phone
  number or a full name in a free-text value (a string no enum, reference, format or key
  constrains), is quarantined, and its `row_json` in the quarantine has such values redacted.
- Rows that would load and then fail the dbt build are quarantined: an empty key, received_at
  before occurred_at, an event id sent again with another occurred_at (the first delivery wins).
- With the generator's manifest.json in the raw folder, a file it does not list or whose SHA-256
  differs stops the load before any write, in one line naming the file.
- Each batch is written in one transaction (DuckDB): a killed load leaves it as it was.
- Files the load does not read (not .parquet, or outside the plan's table folders) are logged
  one warning each and counted in the summary.
- A file that cannot be read at all stops the load with a one-line error naming the file.
- Duplicate deliveries of an event id are not bad input: raw keeps them, staging dedupes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import polars as pl

from railflow.checksums import sha256_file
from railflow.dbt import project_var
from railflow.errors import RailflowError, SettingsError, cli_entrypoint
from railflow.settings import Settings, get_settings
from railflow.stage import StageResult
from railflow.warehouse import WRITER_WAIT_SECONDS, Warehouse, connect
from scripts.privacy import (
    contains_full_name,
    contains_phone,
    looks_like_email,
    looks_like_tel_link,
)
from scripts.reference import load_reference
from scripts.tracking_plan import FORMATS, Column, TableSpec, load_plan

log = logging.getLogger("railflow.load")
FUTURE_TOLERANCE = timedelta(minutes=5)
TS = pl.Datetime("us", "UTC")
PII_HINT = "clear-text PII: hash or drop it before writing data/raw"
PHONE_IN_TEXT = r"\+?[\d(][\d\s./()-]{7,}\d"  # inside a longer text (lists in row_json)
REDACTED, REDACTED_EMAIL, REDACTED_PHONE = "[redacted]", "[redacted email]", "[redacted phone]"
REDACTED_NAME = "[redacted name]"
# working columns of validate(), named so that no file column collides with them
ROW, REASON, CAST = "__railflow_row", "__railflow_reason", "__railflow_cast_"
# BigQuery layout of raw tables: day partitions on the event time, clustered by common filters.
CLUSTER_BY = {"events": ["event_name", "user_id"], "users": ["country_code", "user_id"]}
# What the generator writes beside the table folders: each file's SHA-256 and row count
MANIFEST = "manifest.json"


class LoadError(RailflowError):
    """A raw file cannot be loaded at all."""


@dataclass
class BatchReport:
    batch_id: str
    table: str
    file: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    extra_columns: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    unchanged: bool = False  # loaded before from the same file: skipped
    rows_removed: int | None = None  # pruned: its file is gone, and so are its rows
    rows_backfilled: int = 0  # events older than the dbt lookback, in a batch new to raw

    def check(self) -> None:
        if self.rows_loaded + self.rows_quarantined != self.rows_read:
            raise LoadError(
                f"accounting mismatch for {self.file}: read {self.rows_read}, loaded "
                f"{self.rows_loaded}, quarantined {self.rows_quarantined}"
            )


def unreadable(path: Path, exc: BaseException) -> LoadError:
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    return LoadError(
        f"cannot read {path}: {first}; regenerate it (`python -m scripts.generate`) or "
        "remove it from data/raw"
    )


def read_batch(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    # polars/arrow raise many types for corrupt files; a panic (a BaseException) among them
    except (Exception, pl.exceptions.PanicException) as exc:
        raise unreadable(path, exc) from None


# Timestamps outside the years Python and DuckDB hold: polars cannot even convert some of them
TS_YEARS = (1, 9999)


def in_timestamp_range(source: pl.Expr, dtype: pl.Datetime) -> pl.Expr:
    """Whether a datetime of the file is within TS_YEARS, read from its stored integer (which
    never fails, unlike converting an out-of-range value)."""
    unit = {"ns": 1_000_000_000, "us": 1_000_000, "ms": 1_000}[dtype.time_unit or "us"]
    lo, hi = (int((datetime(y, 1, 1, tzinfo=UTC)).timestamp()) * unit for y in TS_YEARS)
    return source.to_physical().is_between(lo, hi)


def _is_text(dtype: pl.DataType) -> bool:
    return dtype == pl.Utf8 or isinstance(dtype, pl.Categorical | pl.Enum)


def to_plan_type(source: pl.Expr, dtype: pl.DataType, col: Column) -> pl.Expr | None:
    """`source`, a column of the file's `dtype`, as the plan's type: null where a value does not
    convert. None when the file's type cannot hold the plan's at all (every value is bad): a
    plain cast would turn epoch numbers into 1970 timestamps, 1.5 into 1, and raise on
    "true"/"false" strings or lists."""
    if dtype == pl.Null:
        return source.cast(col.dtype)
    text = _is_text(dtype)
    if text:
        source = source.cast(pl.Utf8)
    if col.type == "string" and (text or dtype.is_integer()):
        return source.cast(pl.Utf8)
    if col.type == "integer" and (text or dtype.is_integer()):
        return source.cast(pl.Int64, strict=False)
    if col.type == "integer" and (dtype.is_float() or dtype.is_decimal()):
        number = source.cast(pl.Float64)
        return pl.when(number == number.floor()).then(number.cast(pl.Int64, strict=False))
    if col.type == "number" and (text or dtype.is_numeric()):
        number = source.cast(pl.Float64, strict=False)
        return pl.when(number.is_finite()).then(number)  # NaN and inf are no amount
    if col.type == "boolean" and dtype == pl.Boolean:
        return source
    if col.type == "date" and dtype == pl.Date:
        return source
    if col.type == "date" and text:
        return source.str.to_date(strict=False)
    if col.type == "timestamp" and isinstance(dtype, pl.Datetime):
        source = pl.when(in_timestamp_range(source, dtype)).then(source)
        zoned = source.dt.replace_time_zone("UTC") if dtype.time_zone is None else source
        return zoned.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if col.type == "timestamp" and text:
        return source.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    return None


def as_text(df: pl.DataFrame, name: str) -> pl.Expr:
    """A column as text for audit.quarantine.row_json (lists and structs as their JSON, with
    any run of digits long enough to be a phone number redacted)."""
    if df.schema[name].is_nested():
        wrapper = "{" + json.dumps(name, ensure_ascii=False) + ":"
        encoded = pl.struct(name).struct.json_encode().str.strip_prefix(wrapper)
        encoded = encoded.str.strip_suffix("}").str.replace_all(PHONE_IN_TEXT, REDACTED_PHONE)
        return pl.when(pl.col(name).is_not_null()).then(encoded)
    dtype = df.schema[name]
    if isinstance(dtype, pl.Datetime):  # out of range: its stored number, never formatted
        stored = pl.col(name).to_physical().cast(pl.Utf8)
        return (
            pl.when(in_timestamp_range(pl.col(name), dtype))
            .then(pl.col(name).cast(pl.Utf8, strict=False))
            .otherwise(stored)
        )
    return pl.col(name).cast(pl.Utf8, strict=False)


def redacted_row_json(df: pl.DataFrame, spec: TableSpec) -> pl.Expr:
    """Each row as JSON, every column of the file kept for debugging, except values that look
    like personal data: the quarantine must not become the place clear-text PII lands. Such a
    value is replaced whole, whatever its disguise."""
    if not df.columns:
        return pl.lit("{}")
    columns = {c.name: c for c in spec.columns}
    fields: list[pl.Expr] = []
    for name in df.columns:
        text = as_text(df, name)
        col = columns.get(name)
        value = (
            pl.when(looks_like_email(text))
            .then(pl.lit(REDACTED_EMAIL))
            # any column: a quarantined row may hold a phone where an enum value belongs
            .when(contains_phone(text) | looks_like_tel_link(text))
            .then(pl.lit(REDACTED_PHONE))
            .when(contains_full_name(text))
            .then(pl.lit(REDACTED_NAME))
            .otherwise(text)
        )
        if col is not None and col.format:
            valid = text.str.contains(FORMATS[col.format][0])
            value = pl.when(~valid).then(pl.lit(REDACTED)).otherwise(value)
        fields.append(value.alias(name))
    return pl.struct(fields).struct.json_encode()


def event_time_rules(
    casts: Mapping[str, pl.Expr], earlier: Mapping[str, datetime]
) -> list[pl.Expr]:
    """Rules on an event's times, so that every row loaded builds in dbt (staging keeps one row
    per event id and occurrence time):
    - received before it occurred: impossible, a clock or a writer is wrong;
    - one event id with two occurrence times. A re-send of an event is the same event: the
      first delivery wins. Within a batch that is the earliest received (then the first row);
      across batches, the one already loaded (`earlier`: event id -> its occurred_at in raw).
    """
    event_id, occurred, received = casts["event_id"], casts["occurred_at"], casts["received_at"]
    # a stable sort: among deliveries received at the same time, the first row wins
    first = occurred.sort_by(received, maintain_order=True).first().over(event_id)
    before = (
        event_id.replace_strict(dict(earlier), default=None, return_dtype=TS)
        if earlier
        else pl.lit(None, dtype=TS)
    )
    return [
        pl.when(received < occurred).then(pl.lit("received_at: before occurred_at")),
        pl.when(event_id.is_not_null() & (occurred != first)).then(
            pl.lit("event_id: sent again with another occurred_at (the first delivery is kept)")
        ),
        pl.when(before.is_not_null() & (occurred != before)).then(
            pl.lit("event_id: loaded before with another occurred_at (the first delivery is kept)")
        ),
    ]


def validate(
    df: pl.DataFrame,
    spec: TableSpec,
    now: datetime,
    earlier: Mapping[str, datetime] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a batch into (valid rows in the plan's schema, quarantined rows with a reason).
    `earlier`: the occurred_at already loaded from other batches, of event ids this batch
    sends with another time (see event_time_rules).

    Columns of the file outside the plan are not loaded, but are kept in a quarantined row's
    row_json."""
    stations = set(load_reference().stations["station_id"].to_list())
    reasons: list[pl.Expr] = []
    casts: dict[str, pl.Expr] = {}
    known = [c for c in spec.columns if c.name in df.columns]
    if not known:  # e.g. upper-cased names: one reason, not one per column
        reasons.append(
            pl.lit(
                f"missing columns: the file has none of the {len(spec.columns)} columns of "
                f"{spec.name} in the tracking plan (names are case-sensitive)"
            )
        )
    for col in spec.columns:
        if col.name not in df.columns:
            if known:
                reasons.append(pl.lit(f"missing column {col.name}"))
            casts[col.name] = pl.lit(None, dtype=col.dtype)
            continue
        source = pl.col(col.name)
        dtype = df.schema[col.name]
        cast = to_plan_type(source, dtype, col)
        if cast is None:
            cast = pl.lit(None, dtype=col.dtype)
            wrong = f"{col.name}: not a valid {col.type} (the file's column is {dtype})"
            reasons.append(pl.when(source.is_not_null()).then(pl.lit(wrong)))
        else:
            bad_cast = source.is_not_null() & cast.is_null()
            reasons.append(pl.when(bad_cast).then(pl.lit(f"{col.name}: not a valid {col.type}")))
        casts[col.name] = cast
        if col.required:
            reasons.append(pl.when(source.is_null()).then(pl.lit(f"{col.name}: null")))
        # Clear-text PII never reaches the warehouse. A column confined to known values needs
        # no scan: anything else in it is quarantined anyway (and redacted in row_json).
        confined = col.enum or col.references or (spec.kind == "event" and col.name == "event_name")
        if _is_text(dtype) and not confined:
            text = source.cast(pl.Utf8)
            reasons.append(
                pl.when(looks_like_email(text)).then(
                    pl.lit(f"{col.name}: looks like an email address ({PII_HINT})")
                )
            )
            reasons.append(
                pl.when(looks_like_tel_link(text)).then(
                    pl.lit(f"{col.name}: holds a tel: link ({PII_HINT})")
                )
            )
            if col.free_text:
                reasons.append(
                    pl.when(contains_phone(text)).then(
                        pl.lit(f"{col.name}: holds a phone number ({PII_HINT})")
                    )
                )
                reasons.append(
                    pl.when(contains_full_name(text)).then(
                        pl.lit(f"{col.name}: holds a person's full name ({PII_HINT})")
                    )
                )
        if col.key and col.type == "string":
            reasons.append(pl.when(cast.str.strip_chars() == "").then(pl.lit(f"{col.name}: empty")))
        if col.format:
            pattern, meaning = FORMATS[col.format]
            reasons.append(
                pl.when(cast.is_not_null() & ~cast.str.contains(pattern)).then(
                    pl.lit(f"{col.name}: not {meaning}")
                )
            )
        if col.enum:
            reasons.append(
                pl.when(cast.is_not_null() & ~cast.cast(pl.Utf8).is_in(list(col.enum))).then(
                    pl.lit(f"{col.name}: not one of {', '.join(col.enum)}")
                )
            )
        if col.minimum is not None:
            reasons.append(
                pl.when(cast < col.minimum).then(pl.lit(f"{col.name}: below {col.minimum}"))
            )
        if col.maximum is not None:
            reasons.append(
                pl.when(cast > col.maximum).then(pl.lit(f"{col.name}: above {col.maximum}"))
            )
        if col.references == "stations":
            reasons.append(
                pl.when(cast.is_not_null() & ~cast.is_in(list(stations))).then(
                    pl.lit(f"{col.name}: unknown station")
                )
            )
        if col.type == "timestamp":
            reasons.append(
                pl.when(cast > pl.lit(now + FUTURE_TOLERANCE, dtype=TS)).then(
                    pl.lit(f"{col.name}: in the future")
                )
            )
    if spec.kind == "event" and "event_name" in df.columns:
        reasons.append(
            pl.when(casts["event_name"] != spec.name).then(pl.lit(f"event_name is not {spec.name}"))
        )
    checked = df.with_row_index(ROW).with_columns(
        *[cast.alias(f"{CAST}{i}") for i, cast in enumerate(casts.values())],
    )
    if spec.kind == "event":  # on the converted columns, as dbt will see them
        converted = {name: pl.col(f"{CAST}{i}") for i, name in enumerate(casts)}
        reasons += event_time_rules(converted, earlier or {})
    checked = checked.with_columns(
        pl.concat_str(reasons, separator="; ", ignore_nulls=True).alias(REASON),
    )
    checked = checked.with_columns(
        pl.when(pl.col(REASON) == "").then(None).otherwise(pl.col(REASON)).alias(REASON)
    )
    good = checked.filter(pl.col(REASON).is_null()).select(
        [pl.col(f"{CAST}{i}").alias(name) for i, name in enumerate(casts)]
    )
    bad = checked.filter(pl.col(REASON).is_not_null()).select(
        pl.col(ROW).cast(pl.Int64).alias("row_number"),
        pl.col(REASON).alias("reason"),
        redacted_row_json(df, spec).alias("row_json"),
    )
    return good, bad


class LoadReports(list[BatchReport]):
    """The batch reports of one load, and the raw folder entries it did not read."""

    def __init__(self, reports: Sequence[BatchReport] = (), ignored: Sequence[Path] = ()) -> None:
        super().__init__(reports)
        self.ignored = list(ignored)


class LoadedBatch(NamedTuple):
    file_sha256: str  # of the file it was last loaded from
    rows_loaded: int  # its rows in raw (the accounting of audit.load_batches)


def loaded_batches(wh: Warehouse) -> dict[str, LoadedBatch]:
    """Every batch loaded so far, by batch id."""
    if not wh.table_exists("audit", "load_batches"):
        return {}
    rows = wh.query(
        f"select _batch_id, file_sha256, rows_loaded from {wh.table('audit', 'load_batches')}"
    )
    return {batch_id: LoadedBatch(sha, n) for batch_id, sha, n in rows.iter_rows()}


def delete_batch(wh: Warehouse, table: str, batch_id: str) -> None:
    """Delete a batch's raw rows, quarantine entries and accounting."""
    for layer, name in (("raw", table), ("audit", "quarantine"), ("audit", "load_batches")):
        if wh.table_exists(layer, name):
            wh.execute(f"delete from {wh.table(layer, name)} where _batch_id = $b", {"b": batch_id})


def record_rewrite(wh: Warehouse, table: str, batch_id: str, reason: str, now: datetime) -> None:
    """Note that an already-loaded batch changed or went: incremental models need a rebuild."""
    wh.write(
        pl.DataFrame(
            {
                "_batch_id": [batch_id],
                "table_name": [table],
                "reason": [reason],
                "rewritten_at": [now],
            },
            schema_overrides={"rewritten_at": TS},
        ),
        "audit",
        "history_rewrites",
        mode="append",
    )


def pending_rewrites(wh: Warehouse) -> dict[str, int]:
    """Batches changed, removed or backfilled since the last full refresh of the dbt models,
    counted by raw table."""
    if not wh.table_exists("audit", "history_rewrites"):
        return {}
    counts = wh.query(
        f"select table_name, count(*) as n from {wh.table('audit', 'history_rewrites')} "
        "group by table_name"
    )
    return {table: int(n) for table, n in counts.iter_rows()}


def clear_rewrites(wh: Warehouse) -> None:
    """After a full refresh: the models are built from the history as it now stands."""
    if wh.table_exists("audit", "history_rewrites"):
        wh.execute(f"delete from {wh.table('audit', 'history_rewrites')}")


def hold_back_deliveries(wh: Warehouse, received_from: datetime) -> None:
    """Delete the raw events received at or after `received_from` (entities stay): the warehouse
    as it was before those deliveries arrived. Tests and benchmarks replay arrivals with it;
    a later `load(reload=True)` brings them back."""
    for name, spec in load_plan().items():
        if spec.kind == "event" and wh.table_exists("raw", name):
            wh.execute(
                f"delete from {wh.table('raw', name)} where received_at >= $t", {"t": received_from}
            )


def earlier_deliveries(
    wh: Warehouse, spec: TableSpec, batch_id: str, good: pl.DataFrame
) -> dict[str, datetime]:
    """Event ids of `good` that other batches already loaded with another occurred_at, and that
    time. The batch's ids go to a scratch table for the join: the warehouse compares them with
    every earlier delivery without sending raw back here."""
    if spec.kind != "event" or good.is_empty() or not wh.table_exists("raw", spec.name):
        return {}
    scratch = "_incoming_event_times"
    wh.write(good.select("event_id", "occurred_at").unique(), "audit", scratch)
    try:
        found = wh.query(
            f"select i.event_id, min(r.occurred_at) as occurred_at "
            f"from {wh.table('audit', scratch)} as i "
            f"inner join {wh.table('raw', spec.name)} as r on r.event_id = i.event_id "
            "where r._batch_id <> $b and r.occurred_at <> i.occurred_at group by i.event_id",
            {"b": batch_id},
        )
    finally:
        wh.execute(f"drop table if exists {wh.table('audit', scratch)}")
    return {
        event_id: (at if at.tzinfo else at.replace(tzinfo=UTC))
        for event_id, at in found.iter_rows()
    }


def load_file(
    wh: Warehouse,
    path: Path,
    spec: TableSpec,
    now: datetime,
    recorded: Mapping[str, LoadedBatch],
    reload: bool = False,
    backfill_before: datetime | None = None,
    digest: str | None = None,
) -> BatchReport:
    """Load one file as a batch; `recorded` holds the batches loaded before. Events of a new
    batch that occurred before `backfill_before` are a backfill (see backfill_cutoff).

    The batch's delete, insert, quarantine, accounting and history record are one transaction
    on DuckDB: a failure or a kill part-way leaves the batch as it was before, and the next load
    repairs it (it still differs from its recorded SHA-256). On BigQuery, which has no
    multi-statement transaction across load jobs here, each step is idempotent instead: the
    rewrite is recorded first and the accounting row written last, so a batch interrupted
    part-way has no accounting and the next load replaces its rows again."""
    batch_id = f"{spec.name}/{path.name}"
    report = BatchReport(batch_id, spec.name, str(path))
    digest = digest or sha256_file(path)
    previous = recorded[batch_id].file_sha256 if batch_id in recorded else None
    if previous == digest and not reload:
        report.unchanged = True
        return report
    df = read_batch(path)
    report.rows_read = df.height
    report.extra_columns = [c for c in df.columns if c not in spec.schema]
    with wh.transaction():
        try:
            good, bad = validate(df, spec, now)
            if earlier := earlier_deliveries(wh, spec, batch_id, good):
                good, bad = validate(df, spec, now, earlier)
        except pl.exceptions.PanicException as exc:  # a value polars cannot even convert
            raise unreadable(path, exc) from None
        report.rows_loaded, report.rows_quarantined = good.height, bad.height
        report.check()
        if previous is None and backfill_before is not None:
            report.rows_backfilled = good.filter(pl.col(spec.time_column) < backfill_before).height
        write_batch(wh, spec, path, report, digest, previous, now, good, bad)
    return report


def write_batch(
    wh: Warehouse,
    spec: TableSpec,
    path: Path,
    report: BatchReport,
    digest: str,
    previous: str | None,
    now: datetime,
    good: pl.DataFrame,
    bad: pl.DataFrame,
) -> None:
    """Replace a batch's rows, quarantine entries and accounting (in load_file's transaction)."""
    batch_id = report.batch_id
    loaded_at = pl.lit(now, dtype=TS)
    good = good.with_columns(pl.lit(batch_id).alias("_batch_id"), loaded_at.alias("_loaded_at"))
    # The rewrite is recorded before anything is deleted: where there is no transaction
    # (BigQuery), a run stopped after the delete still leaves the record for the next build.
    if previous is not None and previous != digest:
        record_rewrite(wh, spec.name, batch_id, "changed", now)
    if report.rows_backfilled:
        reason = f"backfill: {report.rows_backfilled} rows older than the lookback"
        record_rewrite(wh, spec.name, batch_id, reason, now)
    delete_batch(wh, spec.name, batch_id)  # idempotent: its earlier rows are replaced
    kind = "events" if spec.kind == "event" else "users"
    wh.write(
        good,
        "raw",
        spec.name,
        mode="append",
        partition_by=spec.time_column,
        cluster_by=CLUSTER_BY[kind],
    )
    if bad.height:
        for reason in bad["reason"].to_list():
            for part in reason.split("; "):
                report.reasons[part] = report.reasons.get(part, 0) + 1
        wh.write(
            bad.with_columns(
                pl.lit(batch_id).alias("_batch_id"),
                pl.lit(spec.name).alias("table_name"),
                loaded_at.alias("quarantined_at"),
            ),
            "audit",
            "quarantine",
            mode="append",
        )
    wh.write(
        pl.DataFrame(
            {
                "_batch_id": [batch_id],
                "table_name": [spec.name],
                "file_name": [path.name],
                "file_sha256": [digest],
                "rows_read": [report.rows_read],
                "rows_loaded": [report.rows_loaded],
                "rows_quarantined": [report.rows_quarantined],
                "extra_columns": [", ".join(report.extra_columns)],
                "loaded_at": [now],
            },
            schema_overrides={"loaded_at": TS},
        ),
        "audit",
        "load_batches",
        mode="append",
    )


def ignored_entries(
    raw_dir: Path, plan: Mapping[str, TableSpec], files: Mapping[str, list[Path]]
) -> list[Path]:
    """What the raw folder holds that this load does not read (`files`: the files it reads, by
    table), each logged on one line. Hidden entries (.DS_Store, .gitkeep) are tool metadata
    and pass silently."""
    ignored: list[tuple[Path, str]] = []
    for entry in sorted(raw_dir.iterdir()):
        if entry.name.startswith(".") or entry.name == MANIFEST:
            continue
        if entry.name in plan and entry.is_dir():
            if entry.name in files:  # a table this load reads
                read = set(files[entry.name])
                ignored += [
                    (p, "not a .parquet file of the table")
                    for p in sorted(entry.iterdir())
                    if p not in read and not p.name.startswith(".")
                ]
        elif entry.is_dir():
            ignored.append((entry, "not a table of the tracking plan"))
        else:
            ignored.append((entry, f"raw files go in table folders, {raw_dir}/<table>/*.parquet"))
    for path, why in ignored:
        log.warning("ignored %s: %s", path, why)
    return [path for path, _ in ignored]


def refuse_to_prune_everything(
    raw_dir: Path, files: Mapping[str, list[Path]], recorded: Mapping[str, LoadedBatch]
) -> None:
    """Pruning removes the batches whose files are gone. A table with loaded batches and no
    file at all is an emptied or wrong raw folder, not a smaller world (which always keeps a
    part per table): stop before deleting anything."""
    loaded = {batch_id.split("/", 1)[0] for batch_id in recorded}
    empty = [name for name, paths in files.items() if not paths and name in loaded]
    if not empty:
        return
    more = f" (nor do {len(empty) - 1} other table folder(s))" if len(empty) > 1 else ""
    nested = raw_dir / "raw"
    where = (
        f"pass --raw-dir {nested}"
        if nested.is_dir()
        else "point --raw-dir (or RAILFLOW_DATA_DIR) at the folder that holds the table folders"
    )
    raise LoadError(
        f"{raw_dir / empty[0]} has no .parquet file{more}, yet the warehouse holds batches "
        f"loaded from it: pruning would delete them all, so nothing was loaded or removed; "
        f"generate the world (`python -m scripts.generate`) or {where}"
    )


def read_manifest(raw_dir: Path) -> dict[str, dict[str, object]] | None:
    """The generator's manifest: file (relative to raw_dir) -> {"sha256", "rows"}; None when the
    folder has none (files landed by another producer)."""
    path = raw_dir / MANIFEST
    if not path.exists():
        return None
    try:
        files = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        files = None
    if not isinstance(files, dict):
        raise LoadError(
            f"{path} is not a RailFlow manifest (JSON with a 'files' object); regenerate the "
            "world (`python -m scripts.generate`) or remove the file"
        )
    return files


def verify_manifest(raw_dir: Path, files: Mapping[str, list[Path]]) -> dict[Path, str]:
    """Each file's SHA-256, checked against the manifest when there is one: a file that is not
    in it, or differs from it (a flipped byte, a truncated copy), stops the load before any
    write, in one line naming it."""
    manifest = read_manifest(raw_dir)
    if manifest is None:
        log.info("no %s in %s: files are loaded without verifying their checksums", MANIFEST,
                 raw_dir)  # fmt: skip
    digests: dict[Path, str] = {}
    for path in (p for paths in files.values() for p in paths):
        digests[path] = digest = sha256_file(path)
        if manifest is None:
            continue
        entry = manifest.get(path.relative_to(raw_dir).as_posix())
        if entry is None:
            why = f"is not in {raw_dir / MANIFEST}"
        elif entry.get("sha256") != digest:
            why = f"does not match its SHA-256 in {raw_dir / MANIFEST} (corrupted or changed)"
        else:
            continue
        raise LoadError(
            f"{path} {why}; nothing was loaded: regenerate the world "
            "(`python -m scripts.generate`), or restore the file as the manifest lists it"
        )
    return digests


def backfill_cutoff(
    wh: Warehouse, spec: TableSpec, new_batches: bool, lookback: timedelta
) -> datetime | None:
    """Incremental dbt models rebuild only `lookback_days` back from their latest day: events
    of a new batch older than the latest already in raw minus the lookback would never reach
    them. None when there is nothing to compare with (no new batch, a first load)."""
    if spec.kind != "event" or not new_batches or not wh.table_exists("raw", spec.name):
        return None
    column = spec.time_column
    latest = wh.query(f"select max({column}) as latest from {wh.table('raw', spec.name)}")
    value: datetime | None = latest["latest"][0]
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)) - lookback


def load(
    settings: Settings,
    tables: Sequence[str] | None = None,
    raw_dir: Path | None = None,
    reload: bool = False,
    prune: bool = False,
) -> LoadReports:
    raw_dir = raw_dir or settings.raw_dir
    plan = load_plan()
    unknown = [t for t in tables or [] if t not in plan]
    if unknown:
        raise SettingsError(f"unknown table(s) {unknown}; the tracking plan has: {', '.join(plan)}")
    if not raw_dir.is_dir():
        raise LoadError(f"{raw_dir} does not exist; run `python -m scripts.generate` first")
    now = settings.current_time().replace(microsecond=0)
    lookback = timedelta(days=int(project_var("lookback_days")))
    names = list(tables or plan)
    files = {name: sorted((raw_dir / name).glob("*.parquet")) for name in names}
    reports = LoadReports(ignored=ignored_entries(raw_dir, plan, files))
    digests = verify_manifest(raw_dir, files)  # before anything is written
    with connect(settings, read_only=False, wait_seconds=WRITER_WAIT_SECONDS) as wh:
        recorded = loaded_batches(wh)
        if prune:
            refuse_to_prune_everything(raw_dir, files, recorded)
        for name in names:
            spec = plan[name]
            new = any(f"{name}/{path.name}" not in recorded for path in files[name])
            cutoff = backfill_cutoff(wh, spec, new, lookback)  # before this load adds rows
            for path in files[name]:
                reports.append(
                    load_file(wh, path, spec, now, recorded, reload, cutoff, digests[path])
                )
            if not files[name]:
                log.warning("no files for raw table %s in %s", name, raw_dir / name)
            if prune:
                present = {f"{name}/{path.name}" for path in files[name]}
                for batch_id in sorted(recorded):
                    if batch_id.split("/", 1)[0] == name and batch_id not in present:
                        report = BatchReport(batch_id, name, str(raw_dir / batch_id))
                        report.rows_removed = recorded[batch_id].rows_loaded
                        with wh.transaction():
                            record_rewrite(wh, name, batch_id, "removed", now)
                            delete_batch(wh, name, batch_id)
                        reports.append(report)
    return reports


def summarise(reports: Sequence[BatchReport]) -> dict[str, tuple[int, int, int]]:
    totals: dict[str, tuple[int, int, int]] = {}
    for r in reports:
        if r.unchanged or r.rows_removed is not None:
            continue
        read, loaded, quarantined = totals.get(r.table, (0, 0, 0))
        totals[r.table] = (
            read + r.rows_read,
            loaded + r.rows_loaded,
            quarantined + r.rows_quarantined,
        )
    return totals


def format_summary(reports: Sequence[BatchReport]) -> str:
    totals = summarise(reports)
    lines = [f"{'table':<22}{'read':>12}{'loaded':>12}{'quarantined':>13}"] if totals else []
    for table, (read, loaded, quarantined) in totals.items():
        lines.append(f"{table:<22}{read:>12,}{loaded:>12,}{quarantined:>13,}")
    for r in reports:
        if r.extra_columns:
            lines.append(f"note: {r.file}: extra columns ignored: {', '.join(r.extra_columns)}")
        for reason, n in sorted(r.reasons.items()):
            lines.append(f"quarantined {n:,} row(s) of {r.file}: {reason}")
    for r in reports:
        if r.rows_backfilled:
            lines.append(
                f"backfill: {r.rows_backfilled:,} row(s) of {r.file} are older than the dbt "
                "lookback: the pipeline's next dbt build is a full refresh (by hand: "
                "dbt build --full-refresh)"
            )
    removed = [r for r in reports if r.rows_removed is not None]
    if removed:
        lines.append(
            f"removed {len(removed):,} batch(es), {sum(r.rows_removed or 0 for r in removed):,} "
            "row(s), whose files are no longer in the raw folder"
        )
    if unchanged := sum(r.unchanged for r in reports):
        lines.append(
            f"skipped {unchanged:,} batch(es) unchanged since their last load "
            "(python -m scripts.load --reload loads them again)"
        )
    if isinstance(reports, LoadReports) and (ignored := reports.ignored):
        names = ", ".join(str(p) for p in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        lines.append(
            f"ignored: {len(ignored):,} file(s) or folder(s) not in the tracking plan ({names})"
        )
    return "\n".join(lines)


def stage(settings: Settings) -> StageResult:
    # the generator replaces the whole world, so batches of an earlier, larger world must go
    reports = load(settings, prune=True)
    totals = summarise(reports)
    read = sum(t[0] for t in totals.values())
    quarantined = sum(t[2] for t in totals.values())
    log.info("\n%s", format_summary(reports))
    return StageResult(
        rows=read,
        outputs=[f"{settings.duckdb_path} ({settings.schema('raw')}, {settings.schema('audit')})"],
        metrics={
            "rows loaded": f"{read - quarantined:,}",
            "rows quarantined": f"{quarantined:,}",
            "batches unchanged": sum(r.unchanged for r in reports),
            "batches removed": sum(r.rows_removed is not None for r in reports),
            "rows backfilled": f"{sum(r.rows_backfilled for r in reports):,}",
            "raw entries ignored": len(reports.ignored),
        },
    )


def build_parser(defaults: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.load",
        description="Validate data/raw/ against the tracking plan and load it into the warehouse.",
    )
    parser.add_argument("--raw-dir", type=Path, default=defaults.raw_dir, help="raw files folder")
    parser.add_argument("--tables", nargs="+", metavar="TABLE", help="only these raw tables")
    parser.add_argument(
        "--reload", action="store_true", help="load every file again, changed or not"
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="remove the batches whose files are gone from the raw folder (never every batch "
        "of a table: a table folder with no file stops the load)",
    )
    return parser


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    args = build_parser(settings).parse_args(argv)
    reports = load(settings, args.tables, args.raw_dir, reload=args.reload, prune=args.prune)
    print(format_summary(reports))


if __name__ == "__main__":
    main(sys.argv[1:])
