"""Route performance: searches, bookings, conversion and revenue by route and day, against the
previous period of the same length."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import streamlit as st

import app_data as data

st.title("Route performance")

TOP_ROUTES = 15
DEFAULT_DAYS = 28


def bar_chart(value: str, title: str, fmt: str) -> dict:
    """Horizontal bars sorted by value, largest on top."""
    return {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "Route", "type": "nominal", "sort": "-x", "title": None,
                  "axis": {"labelLimit": 260}},
            "x": {"field": value, "type": "quantitative", "title": title,
                  "axis": {"format": fmt}},
        },
    }  # fmt: skip


DAILY_CHART = {
    "mark": {"type": "line", "tooltip": True},
    "encoding": {
        "x": {"field": "Day", "type": "temporal", "title": None},
        "y": {"field": "value", "type": "quantitative", "title": None,
              "axis": {"format": ",.0f"}},
        "color": {"field": "Measure", "type": "nominal", "sort": ["Searches", "Bookings"],
                  "legend": {"orient": "bottom", "title": None}},
    },
}  # fmt: skip


def complete_days(daily: pl.DataFrame) -> tuple[object, object]:
    """First and last complete day: a first or last day with under half the median day's
    searches is a partial day of the simulated window (it would start the line near 0)."""
    per_day = (
        daily.group_by("performance_date").agg(pl.col("searches").sum()).sort("performance_date")
    )
    half = per_day["searches"].median() / 2
    full = per_day.filter(pl.col("searches") >= half)["performance_date"]
    return full.min(), full.max()


def totals(daily: pl.DataFrame) -> dict[str, float]:
    searches = int(daily["searches"].sum())
    return {
        "searches": searches,
        "bookings": int(daily["bookings"].sum()),
        "conversion": daily["converted_searches"].sum() / searches if searches else None,
        "net": float(daily["net_revenue_eur"].sum()),
    }


def change(now: float | None, before: float | None, ratio: bool = True) -> str | None:
    if now is None or before is None or before == 0:
        return None
    if ratio:
        return f"{now / before - 1:+.1%} vs previous period"
    return f"{(now - before) * 100:+.1f} pp vs previous period"


def page() -> None:
    daily = data.table("marts", "fct_daily_performance")
    routes = data.table("marts", "dim_routes")
    data.about(
        data.REAL_USERS,
        "Searches on the search date, bookings and revenue on the booking date, refunds on "
        "the refund date (UTC days); net revenue = gross − discount − refunds.",
    )
    if daily.height == 0:
        st.info("No performance data yet: run `make run`.")
        return
    daily = daily.join(routes, on="route_id", how="left").with_columns(
        Route=pl.concat_str(["origin_city", pl.lit(" → "), "destination_city"])
    )
    first, last = complete_days(daily)
    default_start = max(first, last - timedelta(days=DEFAULT_DAYS - 1))
    left, right = st.columns(2)
    with left:
        codes = sorted(
            daily["origin_country_code"].drop_nulls().unique().to_list(), key=data.country
        )
        chosen = st.multiselect("Origin country", codes, format_func=data.country, key="countries")
    with right:
        period = st.date_input(
            "Period", value=(default_start, last), min_value=daily["performance_date"].min(),
            max_value=daily["performance_date"].max(), key="period",
            help=f"Defaults to the last {DEFAULT_DAYS} complete days (a partial first or last "
            "day of the data is left out), compared with the same number of days before.",
        )  # fmt: skip
    if not (isinstance(period, tuple) and len(period) == 2):
        st.info("Pick the last day of the period.")
        return
    if chosen:
        daily = daily.filter(pl.col("origin_country_code").is_in(chosen))
    start, end = period
    length = (end - start).days + 1
    # the previous period of the same length, only when the data covers all of it
    before = daily.filter(
        pl.col("performance_date").is_between(start - timedelta(days=length), start - timedelta(1))
    )
    if start - timedelta(days=length) < first:
        before = before.clear()
    daily = daily.filter(pl.col("performance_date").is_between(start, end))
    if daily.height == 0:
        st.warning("No route matches these filters.")
        return
    now, prev = totals(daily), totals(before) if before.height else {}
    k1, k2, k3, k4 = st.columns(4)
    k1.metric("Searches", f"{now['searches']:,}", change(now["searches"], prev.get("searches")))
    k2.metric("Bookings", f"{now['bookings']:,}", change(now["bookings"], prev.get("bookings")))
    k3.metric(
        "Search conversion", data.pct(now["conversion"]),
        change(now["conversion"], prev.get("conversion"), ratio=False),
    )  # fmt: skip
    k4.metric("Net revenue", data.eur(now["net"], 0), change(now["net"], prev.get("net")))
    st.caption(
        f"{start} to {end} ({length} days)"
        + (
            f"; compared with the {length} days before ({start - timedelta(days=length)} to "
            f"{start - timedelta(1)})."
            if before.height
            else "; the data does not cover the same number of days before, so there is no "
            "comparison."
        )
    )
    by_day = (
        daily.group_by("performance_date")
        .agg(pl.col("searches").sum().alias("Searches"), pl.col("bookings").sum().alias("Bookings"))
        .rename({"performance_date": "Day"})
        .unpivot(index="Day", variable_name="Measure")
        .with_columns(pl.col("value").cast(pl.Float64))
    )
    st.subheader("Searches and bookings by day")
    st.vega_lite_chart(by_day.to_pandas(), DAILY_CHART, width="stretch")
    by_route = (
        daily.group_by("Route", "origin_country_code", "destination_country_code")
        .agg(
            pl.col("searches").sum().alias("Searches"),
            pl.col("bookings").sum().alias("Bookings"),
            (pl.col("converted_searches").sum() / pl.col("searches").sum()).alias("Conversion"),
            pl.col("net_revenue_eur").sum().alias("Net revenue"),
            pl.col("avg_lead_time_days").mean().alias("Mean lead time (days)"),
        )
        .with_columns(
            pl.col("origin_country_code").map_elements(data.country, pl.String).alias("From"),
            pl.col("destination_country_code").map_elements(data.country, pl.String).alias("To"),
        )
        .drop("origin_country_code", "destination_country_code")
        .sort("Net revenue", descending=True)
        .select("Route", "From", "To", "Searches", "Bookings", "Conversion", "Net revenue",
                "Mean lead time (days)")
    )  # fmt: skip
    st.subheader(f"Top {TOP_ROUTES} routes by net revenue")
    st.vega_lite_chart(
        by_route.head(TOP_ROUTES).to_pandas(), bar_chart("Net revenue", "net revenue (€)", ",.0f"),
        width="stretch",
    )  # fmt: skip
    st.subheader("Every route")
    st.dataframe(
        by_route.to_pandas(), hide_index=True, width="stretch",
        column_config={
            "Searches": st.column_config.NumberColumn(format="localized"),
            "Bookings": st.column_config.NumberColumn(format="localized"),
            "Conversion": st.column_config.NumberColumn(format="percent"),
            "Net revenue": st.column_config.NumberColumn(format="euro"),
            "Mean lead time (days)": st.column_config.NumberColumn(format="%.1f"),
        },
    )  # fmt: skip


data.guard(page)
