"""The daily pipeline's own steps, for an orchestrator running one data interval (a day) at a time.

    python -m railflow.daily world                  generate the source world once (data/world/)
    python -m railflow.daily release --day DATE     land that day's raw files in data/raw/
    python -m railflow.daily refresh-if-rewritten   a full dbt build when a load rewrote history
    python -m railflow.daily ml --day DATE          score daily, retrain on Mondays

The generator simulates a whole period at once; a daily run needs one day at a time. The Airflow
DAG (dags/railflow_daily.py) therefore generates the world once into `$RAILFLOW_DATA_DIR/world/`
and each data interval *releases* one day of it into the landing folder (`$RAILFLOW_DATA_DIR/raw`):
every event the collector received that day (by `received_at`, so late arrivals land on the day
they arrived) and the users who signed up that day (on the world's first day, also everyone who
signed up before it). A day's files are named after it (`<table>/day-YYYY-MM-DD.parquet`) and
written byte for byte the same on a re-run, so loading them again changes nothing (the loader skips
unchanged batches). The rest of the day is the ordinary pipeline: load, dbt build, ml, sync,
readouts, export.

Exit code 99 means "nothing to do for this interval" (Airflow marks the task skipped): the ml step
returns it while the warehouse holds fewer days than the churn model needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from ml import churn
from ml import pipeline as ml_pipeline
from railflow.errors import RailflowError, cli_entrypoint
from railflow.pipeline import dbt_build_stage
from railflow.settings import Settings, get_settings
from railflow.warehouse import connect
from scripts import generate, load
from scripts.tracking_plan import load_plan

log = logging.getLogger("railflow.daily")

SKIPPED = 99  # Airflow's BashOperator marks a task skipped on this exit code
RETRAIN_WEEKDAY = 0  # Monday: the models are retrained weekly, scored every day
ML_ARTIFACTS = ("booking_propensity", "rfm_segmentation", "churn")


class ReleaseError(RailflowError):
    """The landing folder or the source world is not what a daily release needs."""


def world_dir(settings: Settings) -> Path:
    return settings.data_dir / "world"


def world_params(settings: Settings) -> dict[str, object]:
    return {
        "users": settings.users,
        "days": settings.days,
        "start_date": settings.start_date.isoformat(),
        "seed": settings.seed,
    }


def ensure_world(settings: Settings) -> str:
    """Generate the source world into data/world/ unless the one there has the same parameters.

    Its truth folder is also the pipeline's (data/truth, which the ml stage's oracle reads)."""
    source = settings.with_overrides(data_dir=world_dir(settings))
    params = source.truth_dir / "params.json"
    current = json.loads(params.read_text())["generator"] if params.exists() else None
    if current == world_params(settings) and (source.raw_dir / generate.MANIFEST).exists():
        message = f"{source.data_dir} already holds this world ({current}); nothing to do"
    else:
        generate.stage(source)
        message = f"generated {world_params(settings)} into {source.data_dir}"
    truth = settings.truth_dir
    if not truth.exists() and not truth.is_symlink():
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.symlink_to(source.truth_dir.resolve(), target_is_directory=True)
    return message


def _day_file(table_dir: Path, day: date) -> Path:
    return table_dir / f"day-{day.isoformat()}.parquet"


def release(settings: Settings, day: date) -> dict[str, int]:
    """Copy one day of the source world into the landing folder; rows released per table."""
    source = world_dir(settings) / "raw"
    if not (source / generate.MANIFEST).exists():
        raise ReleaseError(
            f"no source world in {source.parent}; run `python -m railflow.daily world` first"
        )
    landing = settings.raw_dir
    whole = sorted(landing.glob("*/part-*.parquet"))
    if whole:
        raise ReleaseError(
            f"{landing} holds a whole generated world ({whole[0]}, from `make run`): daily "
            "releases would load it twice; point RAILFLOW_DATA_DIR at another folder for the DAG, "
            f"or remove {landing}"
        )
    start = settings.start_date
    if not start <= day < start + timedelta(days=settings.days):
        raise ReleaseError(
            f"{day} is outside the world ({start} + {settings.days} days); set "
            "RAILFLOW_START_DATE / RAILFLOW_DAYS, or run the DAG for dates inside it"
        )
    begin = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = begin + timedelta(days=1)
    released: dict[str, int] = {}
    for name, spec in load_plan().items():
        files = sorted((source / name).glob("*.parquet"))
        if not files:
            continue
        column = "received_at" if spec.kind == "event" else "signup_at"
        since = begin if spec.kind == "event" or day != start else None
        rows = pl.scan_parquet(files).filter(pl.col(column) < end)
        if since is not None:
            rows = rows.filter(pl.col(column) >= since)
        key = "event_id" if spec.kind == "event" else "user_id"
        # an empty day still lands a file: the raw table must exist for dbt from the first day
        df = rows.sort(key, column).collect()
        (landing / name).mkdir(parents=True, exist_ok=True)
        target = _day_file(landing / name, day)
        partial = target.with_suffix(".parquet.part")
        df.write_parquet(partial, **generate.PARQUET)
        partial.replace(target)
        released[name] = df.height
    generate.write_manifest(landing)
    return released


def refresh_if_rewritten(settings: Settings) -> str:
    """When a load replaced, removed or backfilled batches, incremental models cannot catch up:
    run the pipeline's own dbt build (a full refresh that clears the record) before the per-model
    tasks, which then find everything up to date."""
    with connect(settings) as wh:
        pending = load.pending_rewrites(wh)
    if not pending:
        return "no loaded batch was rewritten: the incremental build is right"
    dbt_build_stage(settings)
    return f"full refresh done ({sum(pending.values())} rewritten batch(es): {dict(pending)})"


def daily_ml(settings: Settings, day: date) -> tuple[int, str]:
    """Retrain on Mondays (and whenever a model file is missing), score every other day."""
    with connect(settings) as wh:
        span = wh.query(
            "select min(occurred_at)::date as first, max(occurred_at)::date as last "
            f"from {wh.table('raw', 'session_started')}"
        )
    first, last = span["first"][0], span["last"][0]
    if first is None:
        return SKIPPED, "no sessions loaded yet: nothing to train or score"
    days, need = (last - first).days + 1, churn.min_days(first)
    if days < need:
        return SKIPPED, (
            f"the warehouse holds {days} day(s) of sessions; the churn model needs {need}: "
            "ml (and the sync, readouts and export that read its scores) wait until then"
        )
    missing = [m for m in ML_ARTIFACTS if not (settings.artifacts_dir / m).exists()]
    if missing or day.weekday() == RETRAIN_WEEKDAY:
        why = f"{', '.join(missing)} missing" if missing else "weekly retrain (Monday)"
        result = ml_pipeline.stage(settings)
        return 0, f"trained and scored ({why}): {result.metrics}"
    counts = ml_pipeline.score_all(settings)
    return 0, f"scored with the saved models: {counts}"


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m railflow.daily",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("world", help="generate the source world once")
    rel = sub.add_parser("release", help="land one day of the world in the raw folder")
    rel.add_argument("--day", type=_day, required=True, help="the data interval's date")
    sub.add_parser("refresh-if-rewritten", help="full dbt build if a load rewrote history")
    ml = sub.add_parser("ml", help="score daily, retrain weekly")
    ml.add_argument("--day", type=_day, required=True, help="the data interval's date")
    return parser


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    settings = get_settings()
    settings.ensure_writable()
    if args.command == "world":
        print(ensure_world(settings))
    elif args.command == "release":
        released = release(settings, args.day)
        print(f"released {args.day}: {released or 'no rows'} into {settings.raw_dir}")
    elif args.command == "refresh-if-rewritten":
        print(refresh_if_rewritten(settings))
    else:
        code, message = daily_ml(settings, args.day)
        print(message)
        if code:
            sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
