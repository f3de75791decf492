"""Data health: row counts and freshness, the latest dbt build, model cards, KPI anomalies."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Data health")


def page() -> None:
    s = data.settings()
    layers = ["raw", "marts", "ml", "sync", "reports"]
    schemas = ", ".join(f"'{s.schema(layer)}'" for layer in layers)
    tables = data.query(
        str(s.duckdb_path),
        "select table_schema, table_name from information_schema.tables "
        f"where table_schema in ({schemas}) order by 1, 2",
    )
    counts = []
    for schema, name in tables.iter_rows():
        n = data.query(str(s.duckdb_path), f'select count(*) as n from "{schema}"."{name}"')["n"][0]
        counts.append({"schema": schema, "table": name, "rows": int(n)})
    st.subheader("Row counts")
    st.dataframe(pl.DataFrame(counts).to_pandas(), hide_index=True)
    if data.exists("audit", "load_batches"):
        fresh = data.query(
            str(s.duckdb_path),
            "select table_name, max(loaded_at) as last_loaded_at, sum(rows_read) as rows_read, "
            "sum(rows_quarantined) as rows_quarantined "
            f"from {data.layer_table('audit', 'load_batches')} group by 1 order by 1",
        )
        st.subheader("Source freshness and quarantine")
        st.dataframe(fresh.to_pandas(), hide_index=True)
    st.subheader("Latest dbt build")
    results = data.run_results()
    if results is None:
        st.info("No dbt run results yet: run `make run`.")
    else:
        statuses = pl.DataFrame([{"status": r["status"]} for r in results["results"]])
        summary = statuses.group_by("status").agg(pl.len().alias("nodes")).sort("status")
        cols = st.columns(max(summary.height, 1))
        for col, row in zip(cols, summary.iter_rows(named=True), strict=False):
            col.metric(row["status"], row["nodes"])
        args = results.get("args", {})
        scope = " ".join(f"--{k} {' '.join(args[k])}" for k in ("select", "exclude") if args.get(k))
        st.caption(f"`dbt {args.get('which', '')} {scope}`, {results['metadata']['generated_at']}")
    st.subheader("Models")
    cards = data.model_cards()
    if not cards:
        st.info("No model artifacts yet: run `make run`.")
    for name, card in cards.items():
        metrics = card.get("metrics", {})
        st.write(f"**{name}** — {card.get('model_version')} — trained {card.get('created_at')}")
        st.json(metrics, expanded=False)
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
    columns = ["severity", "metric", "grain", "platform", "route_id", "period_start_at",
               "period_end_at", "observed_value", "expected_value", "score"]  # fmt: skip
    st.dataframe(found.select(columns).to_pandas(), hide_index=True)


data.guard(page)
