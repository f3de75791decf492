"""The daily pipeline as an Airflow 3 DAG (dags/railflow_daily.py), run for real.

Airflow and Cosmos live in .venv-airflow (`make airflow-setup`, which `make test` runs first); the
tests drive its `airflow` command on a SQLite metadata database in a temporary AIRFLOW_HOME. One
module-scoped backfill (three days of a tiny world) serves the equality, re-run and failing-test
cases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from railflow.daily import release
from railflow.pipeline import run_pipeline, select_stages
from railflow.settings import REPO_ROOT, Settings, get_settings
from railflow.warehouse import connect

pytestmark = pytest.mark.slow

AIRFLOW = REPO_ROOT / ".venv-airflow" / "bin" / "airflow"
WORLD = {"RAILFLOW_USERS": "1000", "RAILFLOW_DAYS": "3", "RAILFLOW_SEED": "7",
         "RAILFLOW_START_DATE": "2026-03-01"}  # fmt: skip
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(3)]

needs_airflow = pytest.mark.skipif(
    not AIRFLOW.exists(), reason="Airflow is not installed: run `make airflow-setup`"
)


def airflow_env(home: Path, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAILFLOW_", "AIRFLOW"))}
    return {
        **env,
        **WORLD,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "1",
        "RAILFLOW_DATA_DIR": str(data),
        "RAILFLOW_ARTIFACTS_DIR": str(data / "artifacts"),
        "DBT_TARGET_PATH": str(data / "target"),
        "RAILFLOW_AIRFLOW_MANIFEST_DIR": str(home / "manifest"),
        **extra,
    }


def airflow(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIRFLOW), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def marts(settings: Settings) -> dict[str, pl.DataFrame]:
    """Every table of the marts layer, rows sorted by every column."""
    with connect(settings) as wh:
        names = wh.query(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "order by 1"
        )["table_name"].to_list()
        tables = {n: wh.query(f"select * from {wh.table('marts', n)}") for n in names}
    return {n: df.sort(df.columns, nulls_last=True) for n, df in tables.items()}


def assert_same_marts(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        # DuckDB's parallel float sums differ in the last bits between builds
        try:
            assert_frame_equal(got[name], want[name], check_exact=False, rel_tol=1e-9,
                               abs_tol=1e-12)  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"marts.{name}: {exc}") from None


@pytest.fixture(scope="module")
def backfill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """Three DAG runs, one per day of a 3-day world, each `airflow dags test` as a user would."""
    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(home / "home", home / "data")
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    for day in DAYS:
        run = airflow(env, "dags", "test", "railflow_daily", day.isoformat())
        assert run.returncode == 0, f"{day}: {run.stdout[-3000:]}{run.stderr[-3000:]}"
    yield env, home


@needs_airflow
def test_the_dag_imports_without_errors(backfill: tuple[dict[str, str], Path]) -> None:
    env, _ = backfill
    listed = airflow(env, "dags", "list-import-errors", "--local", "--output", "json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "railflow_daily.py" not in listed.stdout, listed.stdout
    dags = airflow(env, "dags", "list", "--local", "--output", "plain")
    assert "railflow_daily" in dags.stdout, dags.stdout + dags.stderr


@needs_airflow
def test_a_three_day_backfill_equals_a_full_build(
    backfill: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, home = backfill
    daily = get_settings(env)
    # the same three days, landed at once and built in one go by the pipeline
    full = get_settings(airflow_env(home / "home", tmp_path / "data"))
    shutil.copytree(daily.data_dir / "world", full.data_dir / "world")
    for day in DAYS:
        release(full, day)
    run_pipeline(full, select_stages(["load", "dbt_build"]))
    got, want = marts(daily), marts(full)
    assert want["fct_bookings"].height > 0, "the test world has no bookings"
    assert_same_marts(got, want)


@needs_airflow
def test_re_running_a_finished_interval_changes_nothing(
    backfill: tuple[dict[str, str], Path],
) -> None:
    env, _ = backfill
    settings = get_settings(env)
    before = marts(settings)
    run = airflow(env, "dags", "test", "railflow_daily", DAYS[1].isoformat())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "skipped" in run.stdout + run.stderr  # the loader found the day's files unchanged
    assert_same_marts(marts(settings), before)


@needs_airflow
def test_a_failing_dbt_test_fails_the_run_and_names_the_model(
    backfill: tuple[dict[str, str], Path],
) -> None:
    env, _ = backfill
    settings = get_settings(env)
    # a platform the tracking plan does not know, slipped into raw behind the loader's back
    with connect(settings, read_only=False) as wh:
        wh.execute(f"update {wh.table('raw', 'session_started')} set platform = 'fax'")
    run = airflow(env, "dags", "test", "railflow_daily", DAYS[2].isoformat())
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert "accepted_values_stg_app__sessions_platform" in out


@needs_airflow
def test_the_bigquery_target_renders_offline(tmp_path: Path) -> None:
    """RAILFLOW_TARGET=bigquery: the same task graph, Cosmos on the profile's bigquery output,
    retries with backoff on the steps that reach the network. Nothing connects."""
    probe = textwrap.dedent("""
        import importlib.util, json
        spec = importlib.util.spec_from_file_location("railflow_daily", "dags/railflow_daily.py")
        dag_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dag_module)
        dag = dag_module.dag
        producer = dag.get_task("dbt.dbt_producer_watcher")
        print(json.dumps({
            "tasks": sorted(t.task_id for t in dag.tasks),
            "target": producer.profile_config.target_name,
            "profile": producer.profile_config.profile_name,
            "profiles_yml": str(producer.profile_config.profiles_yml_filepath),
            "retries": {t.task_id: t.retries for t in dag.tasks},
            "backoff": dag.get_task("load").retry_exponential_backoff,
        }))
    """)
    python = AIRFLOW.with_name("python")
    graphs = {}
    for target, extra in {
        "duckdb": {},
        "bigquery": {"RAILFLOW_TARGET": "bigquery", "RAILFLOW_BQ_PROJECT": "railflow-offline",
                     "RAILFLOW_PII_SALT": "an-offline-test-salt-0123"},
    }.items():  # fmt: skip
        env = airflow_env(tmp_path / "home", tmp_path / "data", **extra)
        env["RAILFLOW_AIRFLOW_MANIFEST_DIR"] = str(tmp_path / "manifest")
        done = subprocess.run([str(python), "-c", probe], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        graphs[target] = json.loads(done.stdout.strip().splitlines()[-1])
    duck, bq = graphs["duckdb"], graphs["bigquery"]
    assert bq["tasks"] == duck["tasks"]
    assert "dbt.fct_bookings_run" in bq["tasks"]
    assert (bq["target"], bq["profile"]) == ("bigquery", "railflow")
    assert bq["profiles_yml"].endswith("profiles.yml")
    assert duck["target"] == "duckdb"
    assert bq["retries"]["load"] == 3 and bq["retries"]["dbt.dbt_producer_watcher"] == 3
    assert bq["backoff"] is True
    assert duck["retries"]["load"] == 0 and duck["retries"]["export"] == 3
