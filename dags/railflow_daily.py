"""RailFlow's daily pipeline as an Apache Airflow 3 DAG, dbt models as tasks (astronomer-cosmos).

One DAG run per data interval (a day of the simulated world):

    world -> release -> load -> refresh_if_rewritten -> dbt (a task per model, seed, snapshot
    and test, rendered by Cosmos) -> ml (score daily, retrain on Mondays) -> dbt_sync ->
    readouts -> export

Airflow lives in its own virtualenv (.venv-airflow, `make airflow-setup`); every RailFlow step runs
in the project's (.venv) as a subprocess, and so does dbt (Cosmos' subprocess invocation mode).
The settings are the pipeline's own (railflow/settings.py, RAILFLOW_* variables): the same DAG
builds DuckDB or, with RAILFLOW_TARGET=bigquery, BigQuery. See README "Run it daily with Airflow".
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # railflow.settings: stdlib only, the one reader of RAILFLOW_*

from railflow.settings import get_settings  # noqa: E402

DAG_ID = "railflow_daily"
# The project's virtualenv runs every stage and dbt; Airflow's own has neither
PROJECT_VENV = Path(os.environ.get("RAILFLOW_PROJECT_VENV", REPO / ".venv"))
PYTHON = PROJECT_VENV / "bin" / "python"
DBT = PROJECT_VENV / "bin" / "dbt"
# What Cosmos renders the task graph from: the manifest `dbt parse` writes (parsed again when a
# dbt file is newer), so parsing the DAG neither runs dbt nor fingerprints .venv and data/
MANIFEST_DIR = Path(os.environ.get("RAILFLOW_AIRFLOW_MANIFEST_DIR", REPO / ".airflow" / "manifest"))
DBT_SOURCES = ("dbt_project.yml", "models", "macros", "seeds", "snapshots", "tests/dbt")

settings = get_settings()
# absolute paths: Cosmos runs dbt from a copy of the project, tasks from Airflow's folder
ENV = {
    **settings.dbt_env(),
    "RAILFLOW_DATA_DIR": str(settings.data_dir.resolve()),
    "RAILFLOW_DUCKDB_PATH": str(settings.duckdb_path.resolve()),
    "RAILFLOW_ARTIFACTS_DIR": str(settings.artifacts_dir.resolve()),
    "DBT_TARGET_PATH": str(settings.dbt_target_path.resolve()),
}
NETWORK = settings.target == "bigquery"  # every warehouse step reaches BigQuery
RETRY = {"retries": 3, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True,
         "max_retry_delay": timedelta(minutes=10)}  # fmt: skip


def manifest_path() -> Path:
    """target/manifest.json of `dbt parse` for this target, parsed again when stale."""
    folder = MANIFEST_DIR / settings.target
    manifest = folder / "manifest.json"
    newest = max(
        (p.stat().st_mtime for s in DBT_SOURCES for p in [REPO / s, *(REPO / s).rglob("*")]
         if p.exists()),
        default=0.0,
    )  # fmt: skip
    if not manifest.exists() or manifest.stat().st_mtime < newest:
        subprocess.run(
            [str(DBT), "parse", "--project-dir", str(REPO), "--target-path", str(folder),
             "--profiles-dir", str(settings.dbt_profiles_dir), "--quiet"],
            cwd=REPO, env={**os.environ, **ENV, "DBT_TARGET_PATH": str(folder),
                           "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
            check=True,
        )  # fmt: skip
    return manifest


def step(task_id: str, command: str, network: bool = NETWORK, **kwargs: object) -> BashOperator:
    """A RailFlow command in the project's virtualenv, with the pipeline's settings."""
    return BashOperator(
        task_id=task_id,
        bash_command=f"cd {REPO} && {command}",
        env=ENV,
        append_env=True,
        **(RETRY if network else {}),
        **kwargs,
    )


def day_args(command: str) -> str:
    return f"{PYTHON} -m railflow.daily {command} --day {{{{ data_interval_start | ds }}}}"


with DAG(
    dag_id=DAG_ID,
    description="RailFlow: release a day of the world, load, dbt, ml, sync, readouts, export",
    schedule="@daily",
    start_date=datetime.combine(settings.start_date, datetime.min.time(), UTC),
    end_date=datetime.combine(settings.start_date, datetime.min.time(), UTC)
    + timedelta(days=settings.days - 1),
    catchup=True,  # every day of the world, in order
    max_active_runs=1,  # the days build on each other (incremental models, one DuckDB writer)
    max_active_tasks=4,  # the dbt producer and the sensors that report each model from it
    default_args={"owner": "railflow"},
    tags=["railflow", settings.target],
    doc_md=__doc__,
) as dag:
    world = step("world", f"{PYTHON} -m railflow.daily world", network=False)
    release = step("release", day_args("release"), network=False)
    load = step("load", f"{PYTHON} -m railflow.pipeline --only load")
    refresh = step("refresh_if_rewritten", f"{PYTHON} -m railflow.daily refresh-if-rewritten")
    dbt = DbtTaskGroup(
        group_id="dbt",
        # no partial parse: Cosmos runs dbt from a fresh temporary copy each time, and a cached
        # parse keeps the previous copy's seed paths (dbt-duckdb then finds no seed file)
        project_config=ProjectConfig(
            dbt_project_path=REPO,
            manifest_path=manifest_path(),
            project_name="railflow",
            env_vars=ENV,
            partial_parse=False,
        ),
        profile_config=ProfileConfig(
            profile_name="railflow",
            target_name=settings.target,
            profiles_yml_filepath=settings.dbt_profiles_dir / "profiles.yml",
        ),
        execution_config=ExecutionConfig(
            # one `dbt build` per day (a single writer for DuckDB); a sensor per model, seed,
            # snapshot and test reports its status from that build's log
            execution_mode=ExecutionMode.WATCHER,
            invocation_mode=InvocationMode.SUBPROCESS,
            dbt_executable_path=DBT,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            exclude=["tag:post_scoring"],  # the sync models read the ML scores: built after
            test_behavior=TestBehavior.AFTER_ALL,  # one `dbt test` after the build
        ),
        operator_args={
            "install_deps": False,
            "deferrable": False,
            "poke_interval": 2,
            "timeout": 1800,
            **(RETRY if NETWORK else {}),
        },
        default_args={},
    )
    # The producer runs first, then each model's task reads its outcome: in `airflow dags test`
    # (one task at a time) a sensor started before the producer would wait forever. A model or
    # test that failed fails its own task, by name; the rest still report (all_done).
    producer = dag.get_task("dbt.dbt_producer_watcher")
    for task in dag.tasks:
        if task.task_id.startswith("dbt.") and task.task_id not in (
            producer.task_id,
            "dbt.dbt_producer_watcher_done",
        ):
            task.trigger_rule = "all_done"
            if producer not in task.upstream_list:
                producer >> task
    ml = step("ml", day_args("ml"))  # exit 99 (too few days for the models): skipped
    sync = step("dbt_sync", f"{PYTHON} -m railflow.pipeline --only dbt_sync")
    readouts = step("readouts", f"{PYTHON} -m railflow.pipeline --only readouts")
    export = step("export", f"{PYTHON} -m railflow.pipeline --only export", network=True)

    world >> release >> load >> refresh >> dbt >> ml >> sync >> readouts >> export
