"""Pricing simulator: booking probability for a search and the discount decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import streamlit as st

import app_data as data
from ml import propensity, scoring
from ml.artifacts import CARD_JSON, ArtifactError
from ml.explain import Contributions

st.title("Pricing simulator")
st.caption(
    "Should we discount this search? The booking-propensity model scores the search (the same "
    "code as the scoring API); the discount is offered when the expected revenue with it beats "
    "the expected revenue without it, for searches whose probability is inside the band below."
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


WATERFALL_CHART = {
    "mark": {"type": "bar", "tooltip": True},
    "encoding": {
        "y": {"field": "step", "type": "nominal", "sort": None, "title": None},
        "x": {"field": "start", "type": "quantitative", "title": "model output"},
        "x2": {"field": "end"},
        "color": {
            "field": "direction",
            "type": "nominal",
            "scale": {"domain": ["raises", "lowers", "total"],
                      "range": ["#d62728", "#1f77b4", "#7f7f7f"]},
            "legend": {"orient": "bottom", "title": None},
        },
    },
}  # fmt: skip
WATERFALL_STEPS = 8


@st.cache_resource(show_spinner=False)
def scorer(folder: str, card_stamp: int) -> scoring.Scorer:
    """The shared scorer (model, explainer, reference data), reloaded when the card changes."""
    return scoring.Scorer(Path(folder))


def waterfall(c: Contributions) -> pl.DataFrame:
    """SHAP waterfall of the first row: base value, the largest contributions, the rest, total."""
    top = c.top(0, WATERFALL_STEPS)
    rest = float(c.values[0].sum()) - sum(v for _, v in top)
    steps = [*top, ("other features", rest)]
    rows, level = [{"step": "average (base value)", "start": 0.0, "end": c.base_value,
                    "direction": "total"}], c.base_value  # fmt: skip
    for name, value in steps:
        x = c.inputs.iloc[0].get(name)
        shown = name if x is None else f"{name} = {x if isinstance(x, str) else f'{x:.4g}'}"
        rows.append({"step": shown, "start": level, "end": level + value,
                     "direction": "raises" if value >= 0 else "lowers"})  # fmt: skip
        level += value
    rows.append({"step": "this search", "start": 0.0, "end": level, "direction": "total"})
    return pl.DataFrame(rows)


def page() -> None:
    routes = data.table("marts", "dim_routes")
    stations = data.table("marts", "dim_stations").sort("city")
    model_dir = data.settings().artifacts_dir / propensity.MODEL_NAME
    try:
        card_file = model_dir / CARD_JSON
        shared = scorer(str(model_dir), card_file.stat().st_mtime_ns if card_file.exists() else 0)
    except ArtifactError as exc:
        st.error(f"{exc}")
        return
    card = shared.card
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
        effect = st.number_input(
            "Assumed effect of the discount on the booking log-odds",
            -2.0, 5.0, scoring.discount_effect().logit_shift, step=0.05, key="effect",
            help=f"Default: {scoring.discount_effect().source}.",
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
    search = scoring.Search(
        origin_station_id=origin, destination_station_id=destination,
        searched_at=datetime.combine(search_date, time(hour), tzinfo=UTC),
        travel_date=travel_date, passengers=int(passengers), fare_class=fare_class,
        is_round_trip=round_trip, platform=platform,
        user_prior_searches=int(prior_searches), user_prior_bookings=int(prior_bookings),
        days_since_signup=int(tenure),
    )  # fmt: skip
    lead = (travel_date - search_date).days
    quoted = float(scoring.search_features([search], shared.book)["price_seen_eur"][0])
    price = st.number_input(
        "Quoted price (EUR)", 0.0, 100_000.0, quoted,
        key=f"price-{origin}-{destination}-{fare_class}-{round_trip}-{passengers}-{lead}",
    )  # fmt: skip
    # the lead-time curve: the same search on other travel dates, priced by the fare rule
    leads = np.arange(0, 91)
    features = scoring.search_features(
        [replace(search, quoted_price_eur=price)]
        + [replace(search, travel_date=search_date + timedelta(days=int(x))) for x in leads],
        shared.book,
    )
    the_search = shared.score(
        features.head(1),
        effect=scoring.DiscountEffect(discount / 100, effect, "simulator input"),
        band=band,
    )
    model_p = propensity.predict(shared.model, features.slice(1))
    p = float(the_search.probability[0])
    decision = the_search.decisions
    offer = bool(decision.offer[0])
    revenue_without = float(decision.expected_revenue_without_eur[0])
    revenue_with = float(decision.expected_revenue_with_eur[0])
    intent = str(the_search.intent_band[0])

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
        f"{card['metrics']['auc']:.3f}. With-discount revenue assumes the discount adds "
        f"{effect:g} to the booking log-odds."
    )
    if the_search.contributions is not None:
        st.subheader("Why this score")
        st.caption(
            f"SHAP contributions to the model's output ({the_search.contributions.unit}, before "
            "calibration): how each feature moves this search away from the average search."
        )
        st.vega_lite_chart(
            waterfall(the_search.contributions).to_pandas(), WATERFALL_CHART, width="stretch"
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
