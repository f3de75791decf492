"""Customers: rule-based RFM segments, the model's K-Means clusters and churn risk."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Customers")

CHURN_BANDS = ["low", "medium", "high"]


def bars(category: str, value: str, title: str, fmt: str, order: list[str] | str) -> dict:
    """Horizontal bars: sorted by value ("-x") or in a given category order."""
    return {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": category, "type": "nominal", "sort": order, "title": None,
                  "axis": {"labelLimit": 260}},
            "x": {"field": value, "type": "quantitative", "title": title,
                  "axis": {"format": fmt}},
        },
    }  # fmt: skip


MONEY = {
    "Users": st.column_config.NumberColumn(format="localized"),
    "Net revenue": st.column_config.NumberColumn(format="euro"),
    "Mean value per user": st.column_config.NumberColumn(format="euro"),
    "Mean recency (days)": st.column_config.NumberColumn(format="%.0f"),
    "Mean bookings": st.column_config.NumberColumn(format="%.1f"),
}


def page() -> None:
    rfm = data.table("marts", "customer_rfm")
    as_of = rfm["as_of_date"].max() if rfm.height else None
    data.about(
        "buyers among " + data.REAL_USERS,
        f"Recency, frequency and value as of {as_of}." if as_of else "",
    )
    if rfm.height == 0:
        st.info("No customers yet: run `make run`.")
        return
    st.subheader("Rule-based RFM segments")
    st.caption("Quintile scores of recency, frequency and value, mapped to named segments.")
    seg = (
        rfm.group_by("rfm_segment")
        .agg(
            pl.len().alias("Users"),
            pl.col("monetary_eur").sum().alias("Net revenue"),
            pl.col("monetary_eur").mean().alias("Mean value per user"),
        )
        .rename({"rfm_segment": "Segment"})
        .sort("Net revenue", descending=True)
    )
    left, right = st.columns(2)
    left.vega_lite_chart(
        seg.to_pandas(), bars("Segment", "Users", "users", ",.0f", "-x"), width="stretch"
    )
    right.vega_lite_chart(
        seg.to_pandas(), bars("Segment", "Net revenue", "net revenue (€)", ",.0f", "-x"),
        width="stretch",
    )  # fmt: skip
    st.dataframe(seg.to_pandas(), hide_index=True, width="stretch", column_config=MONEY)
    if not data.exists("ml", "user_segments"):
        st.info("Model clusters and churn scores appear after the ml stage (`make run`).")
        return
    clusters = data.table("ml", "user_segments").join(
        rfm.select("user_id", "recency_days", "frequency", "monetary_eur"), on="user_id",
        how="inner",
    )  # fmt: skip
    st.subheader("Model clusters (K-Means on recency, frequency and value)")
    st.caption(
        "A different method from the rule-based segments above: each cluster is named after "
        "where its centre lies against the median centre, so a cluster called “Champions” is "
        "not the same set of users as the RFM segment of that name."
    )
    table = (
        clusters.group_by("rfm_cluster", "segment_name")
        .agg(
            pl.len().alias("Users"),
            pl.col("recency_days").mean().alias("Mean recency (days)"),
            pl.col("frequency").mean().alias("Mean bookings"),
            pl.col("monetary_eur").mean().alias("Mean value per user"),
        )
        .sort("Mean value per user", descending=True)
        .with_columns(
            pl.format("Cluster {} — {}-like", pl.col("rfm_cluster"), pl.col("segment_name"))
            .alias("Cluster")
        )
        .select("Cluster", "Users", "Mean recency (days)", "Mean bookings", "Mean value per user")
    )  # fmt: skip
    st.dataframe(table.to_pandas(), hide_index=True, width="stretch", column_config=MONEY)
    churn = data.table("ml", "churn_scores")
    st.subheader("Churn risk")
    bands = (
        churn.group_by("churn_band")
        .agg(pl.len().alias("Users"))
        .with_columns(
            pl.col("churn_band").str.to_titlecase().alias("Churn risk"),
            pl.col("churn_band").replace_strict({b: i for i, b in enumerate(CHURN_BANDS)},
                                                default=9).alias("order"),
        )
        .sort("order")
    )  # fmt: skip
    st.caption(
        "Every real user the churn model scores (not only buyers): the probability of no "
        "activity in the next period, banded low, medium and high."
    )
    c1, c2, c3 = st.columns(3)
    c1.metric("Users scored", f"{churn.height:,}")
    c2.metric("High churn risk", f"{churn.filter(pl.col('churn_band') == 'high').height:,}")
    c3.metric("Mean churn probability", data.pct(churn["churn_probability"].mean()))
    st.vega_lite_chart(
        bands.to_pandas(),
        bars("Churn risk", "Users", "users", ",.0f", [b.title() for b in CHURN_BANDS]),
        width="stretch",
    )


data.guard(page)
