"""Pricing simulator: booking probability for a search and the discount decision."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import streamlit as st

import app_data as data
from ml import propensity
from ml.artifacts import ArtifactError

st.title("Pricing simulator")
st.caption(
    "Should we discount this search? The booking-propensity model scores the search; the "
    "discount is offered when the probability falls inside the band below."
)


LEAD_TIME_CHART = {
    "mark": {"type": "line", "tooltip": True},
    "encoding": {
        "x": {"field": "lead_time_days", "type": "quantitative", "title": "lead time (days)"},
        "y": {
            "field": "probability",
            "type": "quantitative",
            "title": "booking probability",
            "axis": {"format": ".0%"},
        },
    },
}


def quote(base_fare: float, passengers: int, fare_class: str, round_trip: bool, lead: int) -> float:
    """The platform's yield rule: list price, marked up close to departure."""
    price = float(propensity.list_price(base_fare, passengers, fare_class == "first", round_trip))
    return round(price * (1 + 0.6 * math.exp(-max(lead, 0) / 5)), 2)


def measured_uplift() -> float:
    """The discount's effect on one search (the readout's search-level effect, not the
    user-level lift)."""
    for doc in data.readouts():
        effect = doc.get("search_level_effect") or {}
        if doc["experiment_id"] == "medium_intent_discount" and effect.get("rel_lift") is not None:
            return max(float(effect["rel_lift"]), 0.0)
    return 0.10


def page() -> None:
    routes = data.table("marts", "dim_routes")
    stations = data.table("marts", "dim_stations").sort("city")
    model_dir = data.settings().artifacts_dir / propensity.MODEL_NAME
    try:
        model, card = propensity.load(model_dir)
    except ArtifactError as exc:
        st.error(f"{exc}")
        return
    labels = {
        r["station_id"]: f"{r['city']} — {r['station_name']}"
        for r in stations.iter_rows(named=True)
    }
    served = sorted(set(routes["origin_station_id"]), key=lambda s: labels.get(s, s))
    left, right = st.columns(2)
    with left:
        origin = st.selectbox("Origin", served, format_func=labels.get, key="origin")
        reachable = routes.filter(pl.col("origin_station_id") == origin)["destination_station_id"]
        choices = [s for s in served if s != origin and s in set(reachable)] + [
            s for s in served if s == origin or s not in set(reachable)
        ]
        destination = st.selectbox(
            "Destination", choices, format_func=labels.get, key="destination"
        )
        fare_class = st.radio("Class", ["standard", "first"], horizontal=True, key="fare_class")
        round_trip = st.checkbox("Return journey", key="round_trip")
        platform = st.selectbox("Platform", ["web", "ios", "android"], key="platform")
    with right:
        search_date = st.date_input("Search date", value=date(2026, 8, 1), key="search_date")
        travel_date = st.date_input("Travel date", value=date(2026, 8, 8), key="travel_date")
        hour = st.slider("Search hour (UTC)", 0, 23, 18, key="hour")
        passengers = st.number_input(
            "Passengers", min_value=0, max_value=9, value=1, key="passengers"
        )
    with st.expander("Traveller history and thresholds"):
        prior_searches = st.number_input("Previous searches", 0, 10_000, 3, key="prior_searches")
        prior_bookings = st.number_input("Previous bookings", 0, 1_000, 0, key="prior_bookings")
        tenure = st.number_input("Days since signup", 0, 5_000, 60, key="tenure")
        band = st.slider("Discount when probability is between", 0.0, 1.0, (0.3, 0.7), key="band")
        discount = st.number_input("Discount (%)", 0.0, 50.0, 5.0, step=0.5, key="discount")
        uplift = st.number_input(
            "Assumed relative uplift from the discount (%)",
            0.0, 200.0, round(measured_uplift() * 100, 1), key="uplift",
            help="Defaults to the effect on one search measured in the medium_intent_discount "
            "experiment (its readout's search-level effect).",
        )  # fmt: skip

    problems = []
    if origin == destination:
        problems.append("Origin and destination are the same station: pick two different stations.")
    elif destination not in set(reachable):
        problems.append(f"There is no direct route from {labels[origin]} to {labels[destination]}.")
    if travel_date < search_date:
        problems.append("The travel date is before the search date: travel must be on or after it.")
    if passengers < 1:
        problems.append("At least one passenger is needed.")
    for message in problems:
        st.error(message)
    if problems:
        return

    route = routes.filter(
        (pl.col("origin_station_id") == origin) & (pl.col("destination_station_id") == destination)
    ).row(0, named=True)
    lead = (travel_date - search_date).days
    holidays = data.table("seeds", "holidays")
    is_holiday = (
        holidays.filter(
            (pl.col("holiday_date") == travel_date)
            & (pl.col("country_code") == route["origin_country_code"])
        ).height
        > 0
    )
    price = st.number_input(
        "Quoted price (EUR)", 0.0, 100_000.0,
        quote(float(route["base_fare_eur"]), int(passengers), fare_class, round_trip, lead),
        key=f"price-{origin}-{destination}-{fare_class}-{round_trip}-{passengers}-{lead}",
    )  # fmt: skip
    features = {
        "origin_station_id": origin, "destination_station_id": destination,
        "platform": platform, "fare_class": fare_class, "lead_time_days": lead,
        "search_hour": hour, "search_day_of_week": search_date.isoweekday(),
        "price_seen_eur": price, "route_base_fare_eur": float(route["base_fare_eur"]),
        "passengers": int(passengers),
        "is_round_trip": float(round_trip), "is_holiday": float(is_holiday),
        "user_prior_searches": prior_searches, "user_prior_bookings": prior_bookings,
        "days_since_signup": tenure,
    }  # fmt: skip
    # the search and the lead-time curve in one model call: each call has a fixed cost
    leads = np.arange(0, 91)
    fare = float(route["base_fare_eur"])
    rows = pl.DataFrame(
        [features]
        + [
            {**features, "lead_time_days": int(x),
             "price_seen_eur": quote(fare, int(passengers), fare_class, round_trip, int(x))}
            for x in leads
        ]
    )  # fmt: skip
    scores = propensity.predict(model, rows)
    p, model_p = float(scores[0]), scores[1:]
    lo, hi = band
    offer = lo <= p <= hi
    p_discounted = min(p * (1 + uplift / 100), 1.0)
    revenue_without = p * price
    revenue_with = p_discounted * price * (1 - discount / 100)
    intent = str(propensity.intent_band(np.array([p]))[0])

    a, b, c = st.columns(3)
    a.metric("Booking probability", f"{p:.1%}")
    b.metric("Intent band", intent)
    c.metric("Decision", f"Offer {discount:g}% discount" if offer else "No discount")
    d, e = st.columns(2)
    d.metric("Expected revenue without discount", f"€{revenue_without:,.2f}")
    e.metric(
        "Expected revenue with discount", f"€{revenue_with:,.2f}",
        delta=f"€{revenue_with - revenue_without:,.2f}",
    )  # fmt: skip
    st.caption(
        f"Model {card['model_version']} ({card['estimator']}), held-out AUC "
        f"{card['metrics']['auc']:.3f}. With-discount revenue assumes a {uplift:g}% "
        "relative uplift."
    )

    st.subheader(
        f"Probability against lead time — {route['origin_city']} → {route['destination_city']}"
    )
    # A plain Vega-Lite spec: st.line_chart builds it through Altair, whose schema validation
    # took most of a rerun (~60 of ~100 ms) on this page.
    st.vega_lite_chart(
        pl.DataFrame({"lead_time_days": leads, "probability": model_p}).to_pandas(),
        LEAD_TIME_CHART,
        width="stretch",
    )


data.guard(page)
