"""Booking funnel: search → results → fare → checkout → purchase, with the drop-off per step,
per platform and over all platforms (marts.product_funnel_daily)."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Booking funnel")

STEPS = [
    ("searched_users", "Searched"),
    ("results_users", "Viewed results"),
    ("fare_selected_users", "Selected a fare"),
    ("checkout_users", "Began checkout"),
    ("purchased_users", "Purchased"),
]

FUNNEL_CHART = {
    "mark": {"type": "bar", "tooltip": True},
    "encoding": {
        "y": {"field": "Step", "type": "nominal", "sort": None, "title": None},
        "x": {"field": "Users (day-sum)", "type": "quantitative"},
        "color": {
            "field": "Platform",
            "type": "nominal",
            "scale": {"domain": list(data.PLATFORMS.values())},
            "legend": {"orient": "bottom"},
        },
        "yOffset": {"field": "Platform", "sort": None},
    },
}


def funnel_table(daily: pl.DataFrame) -> pl.DataFrame:
    """One row per platform and step: users, share of searchers, drop-off from the step before.

    Users are summed over days: a user who searches on two days counts twice, as in the mart
    (one row per day and platform)."""
    rows = []
    for platform in [p for p in data.PLATFORMS if p in set(daily["platform"])]:
        sums = daily.filter(pl.col("platform") == platform).select(
            [pl.col(c).sum() for c, _ in STEPS]
        )
        first, previous = None, None
        for column, label in STEPS:
            users = int(sums[column][0])
            first = users if first is None else first
            rows.append(
                {
                    "Platform": data.PLATFORMS[platform],
                    "Step": label,
                    "Users (day-sum)": users,
                    "Of searchers": users / first if first else None,
                    "Step conversion": users / previous if previous else None,
                    "Drop-off from previous step": 1 - users / previous if previous else None,
                }
            )
            previous = users
    return pl.DataFrame(rows)


def page() -> None:
    daily = data.table("marts", "product_funnel_daily")
    data.about(
        data.REAL_USERS,
        "Distinct users per day and platform reaching each step; days are local at the origin.",
    )
    if daily.height == 0:
        st.info("No funnel data yet: run `make run`.")
        return
    first, last = daily["funnel_date"].min(), daily["funnel_date"].max()
    period = st.date_input(
        "Period", value=(first, last), min_value=first, max_value=last, key="funnel_period"
    )
    if not (isinstance(period, tuple) and len(period) == 2):
        st.info("Pick the last day of the period.")
        return
    daily = daily.filter(pl.col("funnel_date").is_between(period[0], period[1]))
    table = funnel_table(daily)
    overall = table.filter(pl.col("Platform") == data.PLATFORMS["all"])
    cols = st.columns(len(STEPS))
    for col, row in zip(cols, overall.iter_rows(named=True), strict=True):
        col.metric(
            row["Step"], f"{row['Users (day-sum)']:,}",
            delta=None if row["Step conversion"] is None
            else f"{row['Step conversion']:.1%} of the step before",
            delta_color="off", delta_arrow="off",
        )  # fmt: skip
    st.subheader("Users at each step, by platform")
    st.vega_lite_chart(table.to_pandas(), FUNNEL_CHART, width="stretch")
    st.subheader("Drop-off per step")
    st.dataframe(
        table.to_pandas(),
        hide_index=True,
        width="stretch",
        height=35 * (table.height + 1) + 3,
        column_config={
            "Users (day-sum)": st.column_config.NumberColumn(format="localized"),
            "Of searchers": st.column_config.NumberColumn(format="percent"),
            "Step conversion": st.column_config.NumberColumn(format="percent"),
            "Drop-off from previous step": st.column_config.NumberColumn(format="percent"),
        },
    )


data.guard(page)
