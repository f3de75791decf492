"""Run the RailFlow pipeline, stage by stage, in the one direction data flows.

    generate -> load -> dbt_build -> ml -> anomalies -> dbt_sync -> readouts -> export

`make run` calls `railflow run` (the same as `python -m railflow.pipeline`). Each stage is a
function `stage(settings) -> StageResult` (railflow.stage) that this orchestrator imports and
lists in STAGES: the orchestrator sits on top, the stages import only the shared modules below
them (settings, warehouse, dbt, errors, stage), never this one.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from analysis import crm_export, experiments
from ml import anomalies, churn
from ml import pipeline as ml_pipeline
from railflow.dbt import run_dbt
from railflow.errors import RailflowError, SettingsError, cli_entrypoint, is_disk_full
from railflow.settings import Settings, get_settings
from railflow.stage import StageResult
from railflow.warehouse import build_then_publish, connect
from scripts import generate, load

log = logging.getLogger("railflow.pipeline")


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[Settings], StageResult]


@dataclass
class StageRun:
    name: str
    seconds: float
    cpu_seconds: float
    result: StageResult


def dbt_build_stage(settings: Settings) -> StageResult:
    """Seeds, snapshots, models and tests, except the post-scoring (sync) layer.

    Incremental models rebuild only their recent days, which is right while loads add data.
    When a load replaced or removed batches it had loaded before (another seed, a smaller
    world), or brought events older than the lookback (a backfill), older days changed too: the
    build is then a full refresh. If users batches were rewritten, the users snapshot's history
    was taken from an extract that no longer stands, so it starts again from the current one.
    """
    with connect(settings) as wh:
        by_table = load.pending_rewrites(wh)
    rewritten = sum(by_table.values())
    if "users" in by_table:
        with connect(settings, read_only=False) as wh:
            wh.execute(f"drop table if exists {wh.table('snapshots', 'users_snapshot')}")
    args = ["build", "--exclude", "tag:post_scoring"]
    run_dbt(settings, [*args, "--full-refresh"] if rewritten else args)
    if rewritten:
        with connect(settings, read_only=False) as wh:
            load.clear_rewrites(wh)
    refresh = (
        f"yes, {rewritten:,} loaded batch(es) changed, removed or backfilled" if rewritten else "no"
    )
    return StageResult(
        outputs=[f"{settings.duckdb_path} (staging, marts)"], metrics={"full refresh": refresh}
    )


# What the sync models read (the dbt source `ml`, models/marts/sync/_ml__sources.yml)
ML_SCORE_TABLES = ("search_propensity_scores", "churn_scores", "user_segments", "user_ltv_scores")


# Core marts that read ML scores when they exist, rebuilt by dbt_sync once they do
SCORED_CORE_MODELS = ("dim_users",)


def dbt_sync_stage(settings: Settings) -> StageResult:
    """Models that read the ML scores (tag:post_scoring), built after scoring, and dim_users
    again so it carries this run's LTV scores (it reads them when they exist: a ref would be a
    cycle, since the ml feature marts read dim_users).

    Its artifacts go to <target>/sync, so target/run_results.json stays the main build's (the
    app's data health page shows it).
    """
    with connect(settings) as wh:
        missing = [t for t in ML_SCORE_TABLES if not wh.table_exists("ml", t)]
    if missing:
        raise SettingsError(
            f"no ML scores to sync ({', '.join(missing)} missing); run the ml stage first: "
            "python -m railflow.pipeline --from ml"
        )
    target = settings.dbt_target_path / "sync"
    select = ["tag:post_scoring", *SCORED_CORE_MODELS]
    run_dbt(settings, ["build", "--select", *select, "--target-path", str(target)])
    return StageResult(outputs=[f"{settings.duckdb_path} (sync)", str(target)])


STAGES: tuple[Stage, ...] = (
    Stage("generate", "synthetic world -> data/raw, data/truth", generate.stage),
    Stage("load", "validate and load raw files into the warehouse", load.stage),
    Stage("dbt_build", "dbt seeds, snapshots, models, tests", dbt_build_stage),
    Stage("ml", "train, evaluate and score the models", ml_pipeline.stage),
    Stage("anomalies", "KPI anomalies in the monitoring marts -> ml.anomalies", anomalies.stage),
    Stage("dbt_sync", "dbt post-scoring sync models", dbt_sync_stage),
    Stage("readouts", "experiment readouts and decision memos", experiments.stage),
    Stage("export", "CRM audiences as Braze JSON (diff sync)", crm_export.stage),
)


def select_stages(only: Sequence[str] | None = None, start: str | None = None) -> list[Stage]:
    names = [s.name for s in STAGES]
    for name in [*(only or []), *([start] if start else [])]:
        if name not in names:
            raise SettingsError(f"unknown stage {name!r}; choose from: {', '.join(names)}")
    stages = list(STAGES)
    if start:
        stages = stages[names.index(start) :]
    if only:
        stages = [s for s in stages if s.name in only]
    if not stages:
        raise SettingsError(
            f"--only {' '.join(only or [])} --from {start} selects no stage: --only keeps "
            "stages at or after --from; pick them from `--list`"
        )
    return stages


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


class StageError(RailflowError):
    """A stage failed on the file system (a full disk): one line, whatever module raised it."""


def run_stage(stage: Stage, settings: Settings) -> StageResult:
    try:
        return stage.run(settings) or StageResult()
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        raise StageError(
            f"{stage.name}: no space left on the device{where}; free some space, or point "
            "RAILFLOW_DATA_DIR at a larger disk, then run again "
            f"(python -m railflow.pipeline --from {stage.name})"
        ) from None


# Stages that write nothing to the warehouse: run alone, they need no copy of it
NO_WAREHOUSE = {"generate"}


def run_pipeline(settings: Settings, stages: Sequence[Stage] | None = None) -> list[StageRun]:
    """Run stages in order; stop at the first failure (its error propagates).

    On DuckDB the stages build into a copy of the warehouse that replaces it once they have all
    succeeded (railflow.warehouse.build_then_publish): readers never block the build and never
    see it half done, and a failed run leaves the previous warehouse as it was."""
    settings.ensure_writable()
    stages = list(STAGES) if stages is None else list(stages)
    # before minutes of work, not after
    if {"generate", "ml"} <= {s.name for s in stages} and settings.days < (
        need := churn.min_days(settings.start_date)
    ):
        raise SettingsError(
            f"RAILFLOW_DAYS={settings.days} is too short for the churn model's labelled "
            f"weekly cutoffs; set RAILFLOW_DAYS to at least {need}"
        )
    if settings.target == "bigquery" and {s.name for s in stages} - {"generate"}:
        with connect(settings):  # credentials, before generate rewrites data/raw for nothing
            pass
    runs: list[StageRun] = []
    if not {s.name for s in stages} - NO_WAREHOUSE:
        return _run_stages(settings, stages, runs)
    with build_then_publish(settings) as building:
        _run_stages(building, stages, runs)
    for run in runs:  # name the warehouse readers open, not the copy it was built in
        run.result.outputs = [
            o.replace(str(building.duckdb_path), str(settings.duckdb_path))
            for o in run.result.outputs
        ]
    return runs


def _run_stages(
    settings: Settings, stages: Sequence[Stage], runs: list[StageRun]
) -> list[StageRun]:
    for index, stage in enumerate(stages, start=1):
        log.info("[%d/%d] %s: %s", index, len(stages), stage.name, stage.description)
        wall, cpu = time.perf_counter(), _cpu_seconds()
        result = run_stage(stage, settings)
        run = StageRun(stage.name, time.perf_counter() - wall, _cpu_seconds() - cpu, result)
        runs.append(run)
        rows = f", {result.rows:,} rows" if result.rows is not None else ""
        log.info("[%d/%d] %s done in %.1fs%s", index, len(stages), stage.name, run.seconds, rows)
    return runs


def summary(runs: Sequence[StageRun]) -> str:
    lines = ["", "RailFlow pipeline summary", "-" * 60]
    for run in runs:
        rows = f"{run.result.rows:>12,} rows" if run.result.rows is not None else " " * 17
        lines.append(f"{run.name:<12} {run.seconds:>7.1f}s {rows}")
        for key, value in run.result.metrics.items():
            lines.append(f"{'':<12} {key}: {value}")
        for output in run.result.outputs:
            lines.append(f"{'':<12} -> {output}")
    lines.append("-" * 60)
    lines.append(f"total        {sum(r.seconds for r in runs):>7.1f}s")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m railflow.pipeline",
        description="Run the RailFlow pipeline on the configured target (RAILFLOW_* env vars).",
    )
    parser.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages")
    parser.add_argument("--from", dest="start", metavar="STAGE", help="start at this stage")
    parser.add_argument("--list", action="store_true", help="list the stages and exit")
    return parser


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.list:
        for stage in STAGES:
            print(f"{stage.name:<12} {stage.description}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    settings = get_settings()
    stages = select_stages(args.only, args.start)
    runs = run_pipeline(settings, stages)
    print(summary(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
