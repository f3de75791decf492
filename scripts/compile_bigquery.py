"""Compile the dbt project for the BigQuery target without a GCP account.

    python -m scripts.compile_bigquery --form first-run|incremental --target-path DIR

dbt needs a connection to compile (relation lookups for `is_incremental()`, the row count behind
`dbt.date_spine`, the incremental models' first rebuilt day). Here the BigQuery adapter's
connection is replaced by an offline stand-in: relations are reported missing (first-run form) or
present (incremental form); a first-rebuilt-day lookup returns WATERMARK and any other query one
number. Everything else — parsing, Jinja, dispatch to `bigquery__` macros, adapter quoting — is
the real dbt-bigquery. The compiled SQL lands in DIR/compiled/, and the queries dbt ran while
compiling in DIR/compiled/railflow/queries_run/ so they can be parsed too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

from railflow.dbt import ensure_profile
from railflow.errors import RailflowError, cli_entrypoint
from railflow.settings import REPO_ROOT, get_settings

WATERMARK = "2026-06-01"


def compile_offline(form: str, target_path: str) -> None:
    import agate
    from dbt.adapters.bigquery import BigQueryAdapter
    from dbt.adapters.bigquery.connections import BigQueryConnectionManager
    from dbt.adapters.bigquery.relation import BigQueryRelation
    from dbt.adapters.contracts.connection import AdapterResponse, ConnectionState
    from dbt.cli.main import dbtRunner

    def open_offline(cls, connection):  # type: ignore[no-untyped-def]
        connection.handle = mock.MagicMock(name="offline-bigquery-client")
        connection.state = ConnectionState.OPEN
        return connection

    queries_run: list[str] = []

    def execute_offline(self, sql, auto_begin=False, fetch=False, limit=None):  # type: ignore[no-untyped-def]
        queries_run.append(sql)
        if " as since" in sql:  # macros/incremental_strategy.sql: incremental_since
            return AdapterResponse(_message="offline"), agate.Table([[WATERMARK]], ["since"])
        return AdapterResponse(_message="offline"), agate.Table([[1096]], ["n"])

    def get_relation(self, database, schema, identifier):  # type: ignore[no-untyped-def]
        if form == "incremental":
            return BigQueryRelation.create(
                database=database, schema=schema, identifier=identifier, type="table"
            )
        return None

    with (
        mock.patch.object(BigQueryConnectionManager, "open", classmethod(open_offline)),
        mock.patch.object(BigQueryConnectionManager, "execute", execute_offline),
        mock.patch.object(BigQueryAdapter, "get_relation", get_relation),
        mock.patch.object(BigQueryAdapter, "list_relations_without_caching", lambda *a: []),
        mock.patch.object(BigQueryAdapter, "get_columns_in_relation", lambda *a: []),
    ):
        result = dbtRunner().invoke(
            ["compile", "--target", "bigquery", "--project-dir", str(REPO_ROOT),
             "--target-path", target_path, "--no-populate-cache", "--threads", "1", "--quiet"]
        )  # fmt: skip
    if not result.success:
        raise RailflowError(f"dbt compile for bigquery failed: {result.exception}")
    queries_dir = Path(target_path) / "compiled" / "railflow" / "queries_run"
    queries_dir.mkdir(parents=True, exist_ok=True)
    for number, sql in enumerate(queries_run):
        (queries_dir / f"{number:04d}.sql").write_text(sql)


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.compile_bigquery", description=__doc__)
    parser.add_argument("--form", choices=("first-run", "incremental"), default="first-run")
    parser.add_argument("--target-path", required=True, help="where dbt writes compiled SQL")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAILFLOW_BQ_PROJECT", "railflow-offline")
    os.environ.setdefault("RAILFLOW_PII_SALT", "offline-compile-only")
    os.environ["RAILFLOW_TARGET"] = "bigquery"
    settings = get_settings()
    ensure_profile(settings)
    os.environ.update(settings.dbt_env())
    compile_offline(args.form, args.target_path)
    print(f"compiled for bigquery ({args.form}) into {args.target_path}/compiled")


if __name__ == "__main__":
    main(sys.argv[1:])
