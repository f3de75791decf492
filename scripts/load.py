"""Load data/raw/ into the warehouse `raw` layer, validating every row against the tracking plan.

    python -m scripts.load [--raw-dir data/raw] [--tables search_route users] [--reload] [--prune]

- Each file is a batch (`<table>/<file name>`). Loading a batch replaces the rows of the same
  batch id, so loading twice leaves the same rows (idempotent). A batch whose file has not
  changed since its last load (same SHA-256 in `audit.load_batches`) is skipped and reported as
  unchanged: a daily run reads only new or changed files. `--reload` loads every file again.
- `--prune` removes the batches whose files are gone from the raw folder (rows, quarantine
  entries and accounting). The pipeline prunes, since each generated world replaces the last
  one whole; a landing folder that is emptied after loading must not be pruned.
- A batch replaced by different content, or pruned, rewrites history that incremental dbt
  models have already built on: it is recorded in `audit.history_rewrites`, and the pipeline's
  next dbt build is a full refresh (which then clears the record).
- Rows that break the plan (missing required column, wrong type, null key, unparseable or future
  timestamp, unknown station, value outside its enum or range) go to `audit.quarantine` with the
  reason; extra columns are dropped and reported. Every input row is accounted for:
  loaded + quarantined = read, per batch, in `audit.load_batches`.
- A file that cannot be read at all stops the load with a one-line error naming the file.
- Duplicate deliveries of an event id are not bad input: raw keeps them, staging dedupes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import polars as pl

from railflow.checksums import sha256_file
from railflow.errors import RailflowError, SettingsError, cli_entrypoint
from railflow.pipeline import StageResult
from railflow.settings import Settings, get_settings
from railflow.warehouse import Warehouse, connect
from scripts.reference import load_reference
from scripts.tracking_plan import TableSpec, load_plan

log = logging.getLogger("railflow.load")
FUTURE_TOLERANCE = timedelta(minutes=5)
TS = pl.Datetime("us", "UTC")
# BigQuery layout of raw tables: day partitions on the event time, clustered by common filters.
CLUSTER_BY = {"events": ["event_name", "user_id"], "users": ["country_code", "user_id"]}


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

    def check(self) -> None:
        if self.rows_loaded + self.rows_quarantined != self.rows_read:
            raise LoadError(
                f"accounting mismatch for {self.file}: read {self.rows_read}, loaded "
                f"{self.rows_loaded}, quarantined {self.rows_quarantined}"
            )


def read_batch(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars/arrow raise many types for corrupt files
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise LoadError(
            f"cannot read {path}: {first}; regenerate it (`python -m scripts.generate`) or "
            "remove it from data/raw"
        ) from None


def validate(df: pl.DataFrame, spec: TableSpec, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a batch into (valid rows in the plan's schema, quarantined rows with a reason)."""
    stations = set(load_reference().stations["station_id"].to_list())
    reasons: list[pl.Expr] = []
    casts: list[pl.Expr] = []
    for col in spec.columns:
        if col.name not in df.columns:
            reasons.append(pl.lit(f"missing column {col.name}"))
            casts.append(pl.lit(None, dtype=col.dtype).alias(col.name))
            continue
        source = pl.col(col.name)
        if df.schema[col.name] == pl.Utf8 and col.type == "timestamp":
            cast = source.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
        elif df.schema[col.name] == pl.Utf8 and col.type == "date":
            cast = source.str.to_date(strict=False)
        elif isinstance(df.schema[col.name], pl.Datetime) and col.type == "timestamp":
            zone = df.schema[col.name].time_zone  # type: ignore[union-attr]
            cast = source.dt.replace_time_zone("UTC") if zone is None else source
            cast = cast.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        else:
            cast = source.cast(col.dtype, strict=False)
        casts.append(cast.alias(col.name))
        bad_cast = source.is_not_null() & cast.is_null()
        reasons.append(pl.when(bad_cast).then(pl.lit(f"{col.name}: not a valid {col.type}")))
        if col.required:
            reasons.append(pl.when(source.is_null()).then(pl.lit(f"{col.name}: null")))
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
    if spec.kind == "event":
        reasons.append(
            pl.when(pl.col("event_name") != spec.name).then(
                pl.lit(f"event_name is not {spec.name}")
            )
            if "event_name" in df.columns
            else pl.lit(None, dtype=pl.Utf8)
        )
    checked = df.with_row_index("_row").with_columns(
        pl.concat_str(reasons, separator="; ", ignore_nulls=True).alias("_reason"),
        *[c.alias(f"_cast_{i}") for i, c in enumerate(casts)],
    )
    checked = checked.with_columns(
        pl.when(pl.col("_reason") == "").then(None).otherwise(pl.col("_reason")).alias("_reason")
    )
    good = checked.filter(pl.col("_reason").is_null()).select(
        [pl.col(f"_cast_{i}").alias(c.name) for i, c in enumerate(spec.columns)]
    )
    original = [c for c in df.columns]
    bad = checked.filter(pl.col("_reason").is_not_null()).select(
        pl.col("_row").cast(pl.Int64).alias("row_number"),
        pl.col("_reason").alias("reason"),
        pl.struct([pl.col(c).cast(pl.Utf8) for c in original])
        .struct.json_encode()
        .alias("row_json"),
    )
    return good, bad


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


def pending_rewrites(wh: Warehouse) -> int:
    """Batches changed or removed since the last full refresh of the dbt models."""
    if not wh.table_exists("audit", "history_rewrites"):
        return 0
    return int(
        wh.query(f"select count(*) as n from {wh.table('audit', 'history_rewrites')}")["n"][0]
    )


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


def load_file(
    wh: Warehouse,
    path: Path,
    spec: TableSpec,
    now: datetime,
    recorded: Mapping[str, LoadedBatch],
    reload: bool = False,
) -> BatchReport:
    """Load one file as a batch; `recorded` holds the batches loaded before."""
    batch_id = f"{spec.name}/{path.name}"
    report = BatchReport(batch_id, spec.name, str(path))
    digest = sha256_file(path)
    previous = recorded[batch_id].file_sha256 if batch_id in recorded else None
    if previous == digest and not reload:
        report.unchanged = True
        return report
    df = read_batch(path)
    report.rows_read = df.height
    report.extra_columns = [c for c in df.columns if c not in spec.schema]
    good, bad = validate(df.drop(report.extra_columns), spec, now)
    report.rows_loaded, report.rows_quarantined = good.height, bad.height
    report.check()
    loaded_at = pl.lit(now, dtype=TS)
    good = good.with_columns(pl.lit(batch_id).alias("_batch_id"), loaded_at.alias("_loaded_at"))
    delete_batch(wh, spec.name, batch_id)  # idempotent: its earlier rows are replaced
    if previous is not None and previous != digest:
        record_rewrite(wh, spec.name, batch_id, "changed", now)
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
    return report


def load(
    settings: Settings,
    tables: Sequence[str] | None = None,
    raw_dir: Path | None = None,
    reload: bool = False,
    prune: bool = False,
) -> list[BatchReport]:
    raw_dir = raw_dir or settings.raw_dir
    plan = load_plan()
    unknown = [t for t in tables or [] if t not in plan]
    if unknown:
        raise SettingsError(f"unknown table(s) {unknown}; the tracking plan has: {', '.join(plan)}")
    if not raw_dir.is_dir():
        raise LoadError(f"{raw_dir} does not exist; run `python -m scripts.generate` first")
    now = datetime.now(UTC).replace(microsecond=0)
    reports: list[BatchReport] = []
    with connect(settings, read_only=False) as wh:
        recorded = loaded_batches(wh)
        for name in tables or list(plan):
            files = sorted((raw_dir / name).glob("*.parquet"))
            for path in files:
                reports.append(load_file(wh, path, plan[name], now, recorded, reload))
            if not files:
                log.warning("no files for raw table %s in %s", name, raw_dir / name)
            if prune:
                present = {f"{name}/{path.name}" for path in files}
                for batch_id in sorted(recorded):
                    if batch_id.split("/", 1)[0] == name and batch_id not in present:
                        report = BatchReport(batch_id, name, str(raw_dir / batch_id))
                        report.rows_removed = recorded[batch_id].rows_loaded
                        delete_batch(wh, name, batch_id)
                        record_rewrite(wh, name, batch_id, "removed", now)
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
        help="remove the batches whose files are gone from the raw folder",
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
