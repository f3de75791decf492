"""Every model compiles for BigQuery (first-run and incremental) and parses as BigQuery SQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot

from railflow.settings import REPO_ROOT
from scripts.compile_bigquery import WATERMARK


@pytest.fixture(scope="module", params=["first-run", "incremental"])
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp(f"bq-{request.param}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAILFLOW_", "DBT_TARGET"))}
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.compile_bigquery", "--form", request.param,
         "--target-path", str(target)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return target / "compiled" / "railflow"


def test_every_model_compiles_and_parses_as_bigquery(compiled: Path) -> None:
    models = sorted((compiled / "models").rglob("*.sql"))
    sources = sorted(p.stem for p in (REPO_ROOT / "models").rglob("*.sql"))
    compiled_models = sorted(p.stem for p in models if p.parent.name != "_sync__models.yml")
    assert set(sources) <= set(compiled_models)
    for path in sorted(compiled.rglob("*.sql")):
        sqlglot.parse(path.read_text(), read="bigquery")  # raises on a syntax error


def test_bigquery_specifics_are_used(compiled: Path) -> None:
    searches = (compiled / "models" / "marts" / "core" / "fct_searches.sql").read_text()
    assert "`railflow-offline`.`railflow_staging`.`stg_app__searches`" in searches
    assert "mod(extract(dayofweek from" in searches
    users = (compiled / "models" / "marts" / "core" / "dim_users.sql").read_text()
    assert "float64" in (compiled / "models" / "marts" / "ml" / "ml_rfm_features.sql").read_text()
    assert "railflow_marts" in users
    # weeks start on Monday, as on DuckDB (BigQuery's `week` starts on Sunday)
    dates = (compiled / "models" / "marts" / "core" / "dim_dates.sql").read_text()
    assert "date_trunc(cast(spine.date_day as date), isoweek)" in dates


def test_incremental_form_rebuilds_from_the_looked_up_day(compiled: Path) -> None:
    searches = (compiled / "models" / "marts" / "core" / "fct_searches.sql").read_text()
    since_filter = f"searched_at >= cast('{WATERMARK}' as timestamp)"
    lookups = [p.read_text() for p in sorted((compiled / "queries_run").glob("*.sql"))]
    if compiled.parent.parent.name.startswith("bq-incremental"):
        assert since_filter in searches
        # the first rebuilt day: lookback (7) + attribution window (7) before the latest built day
        assert any(
            "`railflow_marts`.`fct_searches`" in q and "interval -14 day" in q for q in lookups
        )
    else:
        assert since_filter not in searches
        assert not any("`railflow_marts`.`fct_searches`" in q for q in lookups)


# Type names a BigQuery load job's schema accepts (dbt-bigquery passes seed column_types as is)
BIGQUERY_TYPES = {
    "string", "bytes", "integer", "int64", "float", "float64", "numeric", "bignumeric",
    "boolean", "bool", "timestamp", "date", "time", "datetime", "geography", "json",
}  # fmt: skip


def test_seed_column_types_are_bigquery_types(compiled: Path) -> None:
    manifest = json.loads((compiled.parent.parent / "manifest.json").read_text())
    seeds = [n for n in manifest["nodes"].values() if n["resource_type"] == "seed"]
    assert {s["name"] for s in seeds} == {"stations", "routes", "holidays"}
    for seed in seeds:
        types = seed["config"]["column_types"]
        assert set(types) == set(seed["columns"]), seed["name"]  # every column typed
        assert {t.lower() for t in types.values()} <= BIGQUERY_TYPES, (seed["name"], types)
