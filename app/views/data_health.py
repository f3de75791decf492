"""Data health: how fresh the data is (its last day, the last load and builds), the dbt results
of both builds with failures by name, row counts, quarantined rows by reason, model cards, KPI
anomalies.

One function per section (`freshness`, `dbt_builds`, `row_counts`, `quarantine`, `models`,
`anomalies_section`), run in order by `page`: a new section is a new function and one line in
`page`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import streamlit as st

import app_data as data

st.title("Data health")

ROW_HEIGHT = 35  # st.dataframe's row height in pixels: tables are sized to show every row
BUILDS = {
    "Main build": "",  # target/run_results.json
    "Post-scoring build (sync marts)": "sync",  # target/sync/run_results.json
}
BAD = ("error", "fail", "warn", "runtime error")


def full_height(rows: int, most: int = 40) -> int:
    return ROW_HEIGHT * (min(rows, most) + 1) + 3


def stamp(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.strftime("%Y-%m-%d %H:%M UTC")


def age(value: Any) -> str:
    """How long ago, for a metric ("12 min ago"); the full time goes in its help."""
    if value is None:
        return "never"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = max((datetime.now(UTC) - value).total_seconds(), 0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return "just now"


def build_results(sub: str) -> dict[str, Any] | None:
    return data.run_results(sub)


def freshness() -> None:
    """The data's last day (not the load time), the last load and both builds' times."""
    s = data.settings()
    through = data.data_through()
    last_load = None
    if data.exists("audit", "load_batches"):
        last_load = data.query(
            str(s.duckdb_path),
            f"select max(loaded_at) as t from {data.layer_table('audit', 'load_batches')}",
        )["t"][0]
    c = st.columns(2 + len(BUILDS))
    c[0].metric("Data through", through.isoformat() if through else "no data",
                help="The last local day with user activity in the marts.")  # fmt: skip
    c[1].metric("Last load", age(last_load),
                help=f"Raw files were last loaded at {stamp(last_load)}.")  # fmt: skip
    for col, (name, sub) in zip(c[2:], BUILDS.items(), strict=True):
        results = build_results(sub)
        at = results["metadata"]["generated_at"] if results else None
        col.metric(name.split(" (")[0], age(at), help=f"Finished at {stamp(at)}.")


def dbt_builds() -> None:
    """Node counts by status for each build, and every failing node by name."""
    st.subheader("dbt builds")
    for name, sub in BUILDS.items():
        results = build_results(sub)
        if results is None:
            st.info(f"{name}: no dbt run results yet: run `make run`.")
            continue
        nodes = pl.DataFrame(
            [
                {
                    "Node": r["unique_id"].split(".", 2)[-1],
                    "Kind": r["unique_id"].split(".", 1)[0],
                    "Status": r["status"],
                    "Message": r.get("message") or "",
                    "Failures": r.get("failures"),
                    "Seconds": round(r.get("execution_time") or 0.0, 2),
                }
                for r in results["results"]
            ]
        )
        args = results.get("args", {})
        scope = " ".join(f"--{k} {' '.join(args[k])}" for k in ("select", "exclude") if args.get(k))
        st.markdown(f"**{name}** — `dbt {args.get('which', '')} {scope}`, "
                    f"{stamp(results['metadata']['generated_at'])}, "
                    f"{results.get('elapsed_time', 0):.0f} s")  # fmt: skip
        summary = nodes.group_by("Status").agg(pl.len().alias("nodes")).sort("Status")
        cols = st.columns(max(summary.height, 1) + 1)
        for col, row in zip(cols, summary.iter_rows(named=True), strict=False):
            col.metric(row["Status"], f"{row['nodes']:,}")
        failed = nodes.filter(pl.col("Status").is_in(BAD))
        if failed.height:
            st.error(f"{failed.height} node(s) failed or warned in the {name.lower()}:")
            st.dataframe(failed.to_pandas(), hide_index=True, width="stretch",
                         height=full_height(failed.height))  # fmt: skip
        else:
            cols[-1].metric("failures", 0)


def row_counts() -> None:
    """Rows per table in every layer the app reads, all shown."""
    s = data.settings()
    layers = ["raw", "marts", "ml", "sync", "reports"]
    schemas = ", ".join(f"'{s.schema(layer)}'" for layer in layers)
    tables = data.query(
        str(s.duckdb_path),
        "select table_schema, table_name from information_schema.tables "
        f"where table_schema in ({schemas}) order by 1, 2",
    )
    if tables.height == 0:
        return
    union = " union all ".join(
        f"select '{schema}' as layer, '{name}' as table_name, count(*) as n "
        f'from "{schema}"."{name}"'
        for schema, name in tables.iter_rows()
    )
    counts = data.query(str(s.duckdb_path), union).rename(
        {"layer": "Layer", "table_name": "Table", "n": "Rows"}
    )
    st.subheader("Row counts")
    st.dataframe(
        counts.to_pandas(), hide_index=True, height=full_height(counts.height),
        column_config={"Rows": st.column_config.NumberColumn(format="localized")},
    )  # fmt: skip


def quarantine() -> None:
    """Rows the loader refused, by table and reason (audit.quarantine)."""
    st.subheader("Quarantined rows")
    s = data.settings()
    if not data.exists("audit", "quarantine"):
        st.success("No row has been quarantined: every row read was loaded.")
        return
    by_reason = data.query(
        str(s.duckdb_path),
        'select table_name as "Table", reason as "Reason", count(*) as "Rows", '
        'max(quarantined_at) as "Last quarantined" '
        f"from {data.layer_table('audit', 'quarantine')} group by 1, 2 order by 3 desc",
    )
    total = int(by_reason["Rows"].sum()) if by_reason.height else 0
    st.metric("Quarantined rows", f"{total:,}")
    if by_reason.height:
        st.dataframe(by_reason.to_pandas(), hide_index=True, width="stretch",
                     height=full_height(by_reason.height))  # fmt: skip


def models() -> None:
    """Each model card as tables: what, when, on which data, and how well."""
    st.subheader("Models")
    cards = data.model_cards()
    if not cards:
        st.info("No model artifacts yet: run `make run`.")
    for name, card in cards.items():
        st.markdown(f"**{name.replace('_', ' ').capitalize()}** — {card.get('description', '')}")
        about = {
            "Version": card.get("model_version"),
            "Estimator": card.get("estimator"),
            "Trained": stamp(card.get("created_at")),
            "Training window": card.get("training_window"),
            "Validation window": card.get("validation_window"),
            "Test window": card.get("test_window"),
        }
        left, right = st.columns(2)
        left.dataframe(
            pl.DataFrame(
                {"Field": list(about), "Value": [str(v) for v in about.values() if True]}
            ).filter(pl.col("Value") != "None").to_pandas(),
            hide_index=True, width="stretch",
        )  # fmt: skip
        metrics = [
            {"Metric": k, "Value": f"{v:,.4g}" if isinstance(v, float) else f"{v:,}"}
            for k, v in (card.get("metrics") or {}).items()
            if isinstance(v, int | float)
        ]
        if metrics:
            right.dataframe(pl.DataFrame(metrics).to_pandas(), hide_index=True, width="stretch")


def page() -> None:
    data.about("every loaded row (bots and test accounts included in raw and core)")
    freshness()
    dbt_builds()
    quarantine()
    row_counts()
    models()
    anomalies_section()


def anomalies_section() -> None:
    """KPI anomalies found by the anomalies stage (ml.anomalies; docs/anomalies.md)."""
    st.subheader("Anomalies")
    if not data.exists("ml", "anomalies"):
        st.info("No anomaly detection yet: run `make run` (or `railflow anomalies`).")
        return
    found = data.table("ml", "anomalies", "order by period_start_at desc, score")
    critical = found.filter(pl.col("severity") == "critical").height
    left, right = st.columns(2)
    left.metric("anomalies", found.height)
    right.metric("critical anomalies", critical)
    if found.height == 0:
        st.success("No KPI anomaly in the monitoring marts.")
        return
    st.caption(
        "One row per run of anomalous hours or days of a KPI, at its peak: observed against "
        "the seasonal expectation (STL), score in robust standard deviations."
    )
    columns = {"severity": "Severity", "metric": "KPI", "grain": "Grain", "platform": "Platform",
               "route_id": "Route", "period_start_at": "From", "period_end_at": "To",
               "observed_value": "Observed", "expected_value": "Expected",
               "score": "Score (robust SD)"}  # fmt: skip
    shown = found.select(pl.col(k).alias(v) for k, v in columns.items())
    st.dataframe(shown.to_pandas(), hide_index=True, width="stretch")


data.guard(page)
