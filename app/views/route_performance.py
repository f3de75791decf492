"""Route performance: searches, bookings, conversion and revenue by route and day."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Route performance")


def page() -> None:
    daily = data.table("marts", "fct_daily_performance")
    routes = data.table("marts", "dim_routes")
    if daily.height == 0:
        st.info("No performance data yet: run `make run`.")
        return
    daily = daily.join(routes, on="route_id", how="left").with_columns(
        route=pl.concat_str(["origin_city", pl.lit(" → "), "destination_city"])
    )
    first, last = daily["performance_date"].min(), daily["performance_date"].max()
    left, right = st.columns(2)
    with left:
        countries = sorted(daily["origin_country_code"].drop_nulls().unique().to_list())
        chosen = st.multiselect("Origin country", countries, key="countries")
    with right:
        period = st.date_input(
            "Period", value=(first, last), min_value=first, max_value=last, key="period"
        )
    if chosen:
        daily = daily.filter(pl.col("origin_country_code").is_in(chosen))
    if isinstance(period, tuple) and len(period) == 2:
        daily = daily.filter(pl.col("performance_date").is_between(period[0], period[1]))
    if daily.height == 0:
        st.warning("No route matches these filters.")
        return
    searches, converted = int(daily["searches"].sum()), int(daily["converted_searches"].sum())
    k1, k2, k3, k4 = st.columns(4)
    k1.metric("Searches", f"{searches:,}")
    k2.metric("Bookings", f"{int(daily['bookings'].sum()):,}")
    k3.metric("Conversion", f"{converted / searches:.1%}" if searches else "n/a")
    k4.metric("Net revenue", f"€{daily['net_revenue_eur'].sum():,.0f}")
    by_day = (
        daily.group_by("performance_date")
        .agg(pl.col("searches").sum(), pl.col("bookings").sum(), pl.col("net_revenue_eur").sum())
        .sort("performance_date")
    )
    st.subheader("By day")
    st.line_chart(by_day.to_pandas(), x="performance_date", y=["searches", "bookings"])
    by_route = (
        daily.group_by("route")
        .agg(
            pl.col("searches").sum(), pl.col("bookings").sum(),
            pl.col("converted_searches").sum(), pl.col("net_revenue_eur").sum().round(2),
            pl.col("avg_lead_time_days").mean().round(1),
        )
        .with_columns(conversion_rate=(pl.col("converted_searches") / pl.col("searches")).round(3))
        .sort("net_revenue_eur", descending=True)
    )  # fmt: skip
    st.subheader("Top routes by net revenue")
    st.bar_chart(by_route.head(15).to_pandas(), x="route", y="net_revenue_eur")
    st.dataframe(by_route.to_pandas(), hide_index=True)


data.guard(page)
