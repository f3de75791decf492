"""Retention cohorts: the share of each signup week's users active N weeks later, as a heatmap
with censored cells marked (marts.product_cohort_retention)."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Retention cohorts")

MAX_LABELLED_CELLS = 500  # more cells than this: colour only, the rate in the tooltip

HEATMAP = {
    "layer": [
        {
            "mark": {"type": "rect", "tooltip": True},
            "encoding": {
                "x": {"field": "Weeks since signup", "type": "ordinal"},
                "y": {"field": "Cohort week", "type": "ordinal", "sort": "ascending"},
                "color": {
                    "field": "Retention", "type": "quantitative",
                    "scale": {"scheme": "blues", "domain": [0, 1]},
                    "legend": {"format": ".0%"},
                },
                "opacity": {
                    "condition": {"test": "datum['Complete']", "value": 1}, "value": 0.35,
                },
                "tooltip": [
                    {"field": "Cohort week"}, {"field": "Weeks since signup"},
                    {"field": "Retention", "format": ".1%"}, {"field": "Active users"},
                    {"field": "Cohort users"}, {"field": "Status"},
                ],
            },
        },
        {
            "mark": {"type": "text", "fontSize": 9},
            "encoding": {
                "x": {"field": "Weeks since signup", "type": "ordinal"},
                "y": {"field": "Cohort week", "type": "ordinal", "sort": "ascending"},
                "text": {"field": "Label"},
                "color": {"condition": {"test": "datum['Retention'] > 0.5", "value": "white"},
                          "value": "black"},
            },
        },
    ],
}  # fmt: skip


def cells(retention: pl.DataFrame) -> pl.DataFrame:
    """Heatmap cells: the rate, and whether the cell is complete or censored (and why)."""
    return retention.select(
        pl.col("cohort_week").cast(pl.String).alias("Cohort week"),
        pl.col("weeks_since_signup").alias("Weeks since signup"),
        pl.col("retention_rate").alias("Retention"),
        pl.col("active_users").alias("Active users"),
        pl.col("cohort_users").alias("Cohort users"),
        (~pl.col("is_left_censored") & ~pl.col("is_partial_week")).alias("Complete"),
        pl.when(pl.col("is_partial_week"))
        .then(pl.lit("partial week (still counting)"))
        .when(pl.col("is_left_censored"))
        .then(pl.lit("left-censored cohort (signed up before the data starts)"))
        .otherwise(pl.lit("complete"))
        .alias("Status"),
        pl.when(pl.col("is_partial_week") | pl.col("is_left_censored"))
        .then(pl.format("{}%*", (pl.col("retention_rate") * 100).round(0).cast(pl.Int64)))
        .otherwise(pl.format("{}%", (pl.col("retention_rate") * 100).round(0).cast(pl.Int64)))
        .alias("Label"),
    )


def page() -> None:
    retention = data.table("marts", "product_cohort_retention")
    data.about(data.REAL_USERS, "A user is active in a week when they have a session in it.")
    if retention.height == 0:
        st.info("No retention data yet: run `make run`.")
        return
    first, last = retention["cohort_week"].min(), retention["cohort_week"].max()
    # by default the cohorts whose whole life is observed: users who signed up before the data
    # starts (left-censored cohorts) would fill the chart with rows of unobserved early weeks
    observed = retention.filter(~pl.col("is_left_censored"))["cohort_week"].min() or first
    left, right = st.columns(2)
    with left:
        period = st.date_input(
            "Cohort weeks between", value=(observed, last), min_value=first, max_value=last,
            help="Defaults to the cohorts that signed up after the data starts; widen it to "
            "see the left-censored ones.",
            key="cohort_period",
        )  # fmt: skip
    with right:
        hide = st.toggle("Hide censored cells", key="hide_censored")
    if not (isinstance(period, tuple) and len(period) == 2):
        st.info("Pick the last cohort week of the period.")
        return
    retention = retention.filter(pl.col("cohort_week").is_between(period[0], period[1]))
    shown = cells(retention)
    if hide:
        shown = shown.filter(pl.col("Complete"))
    if shown.height == 0:
        st.warning("No cohort matches these filters.")
        return
    complete = shown.filter(pl.col("Complete"))
    week = {
        w: complete.filter(pl.col("Weeks since signup") == w) for w in (1, 4)
    }  # user-weighted: sum of actives over sum of cohort users
    cols = st.columns(3)
    cols[0].metric("Cohorts", f"{shown['Cohort week'].n_unique():,}")
    for col, w in zip(cols[1:], (1, 4), strict=True):
        rows = week[w]
        rate = rows["Active users"].sum() / rows["Cohort users"].sum() if rows.height else None
        col.metric(f"Week-{w} retention (complete cohorts)", data.pct(rate))
    spec = HEATMAP if shown.height <= MAX_LABELLED_CELLS else {"layer": HEATMAP["layer"][:1]}
    st.vega_lite_chart(shown.to_pandas(), spec, width="stretch", height=520)
    st.caption(
        "Faded cells marked * are censored: a partial week runs past the last observed day "
        "(its users are still counting), and a left-censored cohort signed up before the data "
        "starts. Read retention from complete cells only."
    )


data.guard(page)
