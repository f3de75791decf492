"""Customers: RFM segments, model clusters and churn risk."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Customers")


def page() -> None:
    rfm = data.table("marts", "customer_rfm")
    st.subheader("Rule-based RFM segments")
    seg = (
        rfm.group_by("rfm_segment")
        .agg(
            pl.len().alias("users"),
            pl.col("monetary_eur").sum().round(0).alias("net_revenue_eur"),
            pl.col("monetary_eur").mean().round(2).alias("avg_value_eur"),
        )
        .sort("net_revenue_eur", descending=True)
    )
    st.dataframe(seg.to_pandas(), hide_index=True)
    st.bar_chart(seg.to_pandas(), x="rfm_segment", y="users")
    if not data.exists("ml", "user_segments"):
        st.info("Model clusters and churn scores appear after the ml stage (`make run`).")
        return
    clusters = data.table("ml", "user_segments").join(
        rfm.select("user_id", "monetary_eur"), on="user_id", how="left"
    )
    st.subheader("Model clusters (K-Means on RFM)")
    st.dataframe(
        clusters.group_by("segment_name")
        .agg(pl.len().alias("users"), pl.col("monetary_eur").mean().round(2).alias("avg_value_eur"))
        .sort("users", descending=True)
        .to_pandas(),
        hide_index=True,
    )
    churn = data.table("ml", "churn_scores")
    st.subheader("Churn risk")
    bands = churn.group_by("churn_band").agg(pl.len().alias("users")).sort("churn_band")
    c1, c2 = st.columns(2)
    c1.metric(
        "High churn risk users", f"{int(churn.filter(pl.col('churn_band') == 'high').height):,}"
    )
    c2.metric("Mean churn probability", f"{churn['churn_probability'].mean():.1%}")
    st.bar_chart(bands.to_pandas(), x="churn_band", y="users")


data.guard(page)
