"""Active users: DAU, WAU, MAU and stickiness (DAU / MAU) per day
(marts.product_active_users)."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Active users")

SERIES = {
    "daily_active_users": "DAU",
    "weekly_active_users": "WAU (7 days)",
    "monthly_active_users": "MAU (30 days)",
}


def line(y_title: str, y_format: str, partial: bool) -> dict:
    return {
        "mark": {"type": "line", "tooltip": True},
        "encoding": {
            "x": {"field": "Day", "type": "temporal", "title": None},
            "y": {"field": "value", "type": "quantitative", "title": y_title,
                  "axis": {"format": y_format}},
            "color": {"field": "Measure", "type": "nominal", "sort": list(SERIES.values()),
                      "legend": {"orient": "bottom", "title": None}},
            "strokeDash": (
                {"field": "Window", "type": "nominal", "sort": ["complete", "partial"],
                 "legend": {"orient": "bottom", "title": None}}
                if partial else {"value": [1, 0]}
            ),
        },
    }  # fmt: skip


def page() -> None:
    active = data.table("marts", "product_active_users").sort("activity_date")
    data.about(data.REAL_USERS, "Active: at least one session in the day, 7 or 30 days.")
    if active.height == 0:
        st.info("No activity yet: run `make run`.")
        return
    first, last = active["activity_date"].min(), active["activity_date"].max()
    left, right = st.columns(2)
    with left:
        period = st.date_input(
            "Period", value=(first, last), min_value=first, max_value=last, key="active_period"
        )
    with right:
        show_partial = st.toggle(
            "Show partial windows", key="show_partial",
            help="WAU and MAU of the first 6 and 29 observed days count fewer days than their "
            "window; they are hidden unless you show them.",
        )  # fmt: skip
    if not (isinstance(period, tuple) and len(period) == 2):
        st.info("Pick the last day of the period.")
        return
    active = active.filter(pl.col("activity_date").is_between(period[0], period[1]))
    if active.height == 0:
        st.warning("No day matches this period.")
        return
    latest = active.row(-1, named=True)
    cols = st.columns(4)
    for col, (column, label) in zip(cols, SERIES.items(), strict=False):
        col.metric(f"{label} on {latest['activity_date']}", f"{latest[column]:,}")
    cols[3].metric(
        "Stickiness (DAU / MAU)",
        data.pct(latest["stickiness"]) if latest["is_mau_complete"] else "n/a (partial MAU)",
    )
    complete = {
        "daily_active_users": pl.lit(True),
        "weekly_active_users": pl.col("is_wau_complete"),
        "monthly_active_users": pl.col("is_mau_complete"),
    }
    long = pl.concat(
        [
            active.select(
                pl.col("activity_date").alias("Day"),
                pl.lit(label).alias("Measure"),
                pl.col(column).cast(pl.Float64).alias("value"),
                pl.when(complete[column]).then(pl.lit("complete")).otherwise(pl.lit("partial"))
                .alias("Window"),
            )
            for column, label in SERIES.items()
        ]
    )  # fmt: skip
    if not show_partial:
        long = long.filter(pl.col("Window") == "complete")
    st.subheader("Daily, weekly and monthly active users")
    st.vega_lite_chart(long.to_pandas(), line("users", ",.0f", show_partial), width="stretch")
    sticky = active.filter(pl.col("is_mau_complete") | show_partial).select(
        pl.col("activity_date").alias("Day"),
        pl.lit("Stickiness").alias("Measure"),
        pl.col("stickiness").alias("value"),
        pl.when(pl.col("is_mau_complete")).then(pl.lit("complete")).otherwise(pl.lit("partial"))
        .alias("Window"),
    )  # fmt: skip
    st.subheader("Stickiness (DAU / MAU)")
    st.vega_lite_chart(sticky.to_pandas(), line("DAU / MAU", ".0%", show_partial), width="stretch")


data.guard(page)
