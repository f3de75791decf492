"""Every model compiles for BigQuery (first-run and incremental) and parses as BigQuery SQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from railflow.settings import REPO_ROOT, Settings
from railflow.warehouse import connect
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


@pytest.mark.slow  # runs dbt
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
    assert {s["name"] for s in seeds} == {"stations", "routes", "holidays", "experiment_registry"}
    for seed in seeds:
        types = seed["config"]["column_types"]
        assert set(types) == set(seed["columns"]), seed["name"]  # every column typed
        assert {t.lower() for t in types.values()} <= BIGQUERY_TYPES, (seed["name"], types)


# BigQuery's own analyzer (ZetaSQL, run as WebAssembly by the `zetasql` package) resolves every
# name and type in a statement: what sqlglot's parse above cannot see (a function BigQuery lacks,
# DATE compared with TIMESTAMP, an alias reused in the same SELECT). Tables are named
# `<layer>__<name>` in its catalog; BIGINT, which BigQuery takes as INT64, is spelled INT64.
_TABLE = re.compile(r"`railflow-offline`\.`railflow_(\w+?)`\.`(\w+)`")
_KINDS = {
    "VARCHAR": "TYPE_STRING", "STRING": "TYPE_STRING", "BIGINT": "TYPE_INT64",
    "INTEGER": "TYPE_INT64", "INT64": "TYPE_INT64", "DOUBLE": "TYPE_DOUBLE",
    "FLOAT": "TYPE_DOUBLE", "FLOAT64": "TYPE_DOUBLE", "BOOLEAN": "TYPE_BOOL", "BOOL": "TYPE_BOOL",
    "DATE": "TYPE_DATE", "TIMESTAMP": "TYPE_TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TYPE_TIMESTAMP",
}  # fmt: skip


class BigQueryAnalyzer:
    def __init__(self) -> None:
        from zetasql.types import (
            AnalyzerOptions,
            LanguageOptions,
            ProductMode,
            ZetaSQLBuiltinFunctionOptions,
        )

        language = LanguageOptions.maximum_features()
        language.product_mode = ProductMode.PRODUCT_EXTERNAL  # BigQuery's: no SQL-standard types
        self.functions = ZetaSQLBuiltinFunctionOptions(language_options=language)
        self.options = AnalyzerOptions(language_options=language)
        self.tables: dict[str, list[tuple[str, Any]]] = {}
        self.analyzer: Any = None  # built again only after a table is added

    def add(self, name: str, columns: list[tuple[str, Any]]) -> None:
        self.tables[name] = columns
        self.analyzer = None

    def analyze(self, sql: str) -> Any:
        """The resolved statement; raises with BigQuery's message when it does not resolve."""
        from zetasql.api import Analyzer, CatalogBuilder, TableBuilder

        if self.analyzer is None:
            catalog = CatalogBuilder("bigquery")
            for name, columns in self.tables.items():
                table = TableBuilder(name)
                for column, kind in columns:
                    table.add_column(column, kind)
                catalog.add_table(table.build())
            catalog = catalog.with_builtin_functions(self.functions).build()
            self.analyzer = Analyzer(self.options, catalog)
        sql = re.sub(r"\bas bigint\b", "as int64", sql, flags=re.IGNORECASE)
        return self.analyzer.analyze_statement(_TABLE.sub(lambda m: f"`{m[1]}__{m[2]}`", sql))


@pytest.fixture(scope="module")
def bigquery_analyzer(small_world: Settings) -> BigQueryAnalyzer:
    """The analyzer, with the tables dbt reads: the loaded ones and the ML scores (their types as
    in the small world's warehouse) and the users snapshot. Starting it takes ~20 s."""
    from zetasql.types import TypeKind

    analyzer = BigQueryAnalyzer()
    with connect(small_world) as wh:
        columns = wh.query(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns "
            " where table_schema in ('raw', 'ml', 'snapshots') order by all"
        )
    for (layer, name), rows in columns.group_by("table_schema", "table_name", maintain_order=True):
        analyzer.add(
            f"{layer}__{name}",
            [
                (c, getattr(TypeKind, _KINDS[t]))
                for c, t in zip(rows["column_name"], rows["data_type"], strict=True)
            ],
        )
    return analyzer


def test_every_statement_resolves_in_bigquerys_analyzer(
    compiled: Path, bigquery_analyzer: BigQueryAnalyzer
) -> None:
    from zetasql.types import TypeKind

    manifest = json.loads((compiled.parent.parent / "manifest.json").read_text())
    nodes = manifest["nodes"]
    order: list[str] = []

    def visit(uid: str) -> None:  # dependencies first: a model's columns feed the next ones
        if uid in nodes and uid not in order:
            for dependency in nodes[uid].get("depends_on", {}).get("nodes", []):
                visit(dependency)
            order.append(uid)

    for uid in sorted(nodes):
        visit(uid)
    failures, analyzed = [], 0
    for uid in order:
        node = nodes[uid]
        layer = node["schema"].removeprefix("railflow_")
        if node["resource_type"] == "seed":  # the types the seeds' YAML declares
            types = node["config"]["column_types"]
            bigquery_analyzer.add(
                f"{layer}__{node['name']}",
                [(c, getattr(TypeKind, _KINDS[t.upper()])) for c, t in types.items()],
            )
        if node["resource_type"] not in ("model", "test") or not node.get("compiled_code"):
            continue
        try:
            resolved = bigquery_analyzer.analyze(node["compiled_code"])
        except Exception as exc:  # the analyzer's own error types
            failures.append(f"{node['resource_type']} {node['name']}: {' '.join(str(exc).split())}")
            continue
        analyzed += 1
        if node["resource_type"] == "model":
            bigquery_analyzer.add(
                f"{layer}__{node['name']}",
                [(c.name, c.column.type.type_kind) for c in resolved.output_column_list],
            )
    for lookup in sorted((compiled / "queries_run").glob("*.sql")):  # the incremental look-ups
        try:
            bigquery_analyzer.analyze(lookup.read_text())
        except Exception as exc:
            failures.append(f"{lookup.name}: {' '.join(str(exc).split())}")
    assert not failures, "\n".join(failures)
    assert analyzed > 150  # every model and data test


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        # DATE = TIMESTAMP
        ("select 1 from raw__search_route where travel_date = current_timestamp()", "signature"),
        # an alias reused in its own SELECT (DuckDB allows it)
        ("select 1 as a, a + 1 as b", "Unrecognized name: a"),
        ("select epoch_ms(current_timestamp())", "Function not found: epoch_ms"),  # DuckDB's
    ],
)
def test_the_analyzer_rejects_what_bigquery_rejects(
    bigquery_analyzer: BigQueryAnalyzer, sql: str, reason: str
) -> None:
    with pytest.raises(Exception, match=reason):  # the analyzer's own error types
        bigquery_analyzer.analyze(sql)
