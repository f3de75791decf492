"""Pricing simulator: booking probability for a search and the discount decision.

The decision follows its economics: offer the discount when the expected revenue with it beats
the expected revenue without it (ml/scoring.decide), for searches inside the policy band. The
discount's effect on one search is the search-level estimate of the discount experiment's
readout (docs/experiments.md), rescaled to the chosen rate; the fare rule (railflow/fares.py)
quotes the price unless the product manager types one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import streamlit as st
from threadpoolctl import ThreadpoolController

import app_data as data
from ml import propensity, scoring
from ml.artifacts import CARD_JSON, ArtifactError
from ml.explain import Contributions

st.title("Pricing simulator")
st.caption(
    "Should we discount this search? The booking-propensity model scores the search (the same "
    "code as the scoring API). The discount is offered when the search's probability is inside "
    "the policy band **and** the expected revenue with the discount beats the expected revenue "
    "without it."
)

LEAD_DAYS = 90
ONE_ROW = {"values": [{}]}
WATERFALL_STEPS = 8


def lead_time_chart(lead: int, band: tuple[float, float]) -> dict:
    """The probability curve, the policy band as a shaded strip and today's lead time as a rule."""
    lo, hi = band
    return {
        "layer": [
            {
                "data": ONE_ROW,  # drawn once, not once per row of the curve
                "mark": {"type": "rect", "opacity": 0.15, "color": "#2ca02c"},
                "encoding": {"y": {"datum": lo}, "y2": {"datum": hi}},
            },
            {
                "mark": {"type": "line", "tooltip": True},
                "encoding": {
                    "x": {"field": "lead_time_days", "type": "quantitative",
                          "title": "lead time (days between search and travel)"},
                    "y": {"field": "probability", "type": "quantitative",
                          "title": "booking probability", "axis": {"format": ".0%"},
                          "scale": {"domain": [0, 1]}},
                },
            },
            {
                "data": ONE_ROW,
                "mark": {"type": "rule", "color": "#d62728", "strokeDash": [4, 3]},
                "encoding": {"x": {"datum": lead}},
            },
            {
                "data": ONE_ROW,
                "mark": {"type": "text", "align": "left", "dx": 4, "dy": -6, "color": "#d62728"},
                "encoding": {"x": {"datum": lead}, "y": {"datum": 0.97},
                             "text": {"value": f"this search ({lead} d)"}},
            },
            {
                "data": ONE_ROW,
                "mark": {"type": "text", "align": "right", "dx": -4, "dy": -4,
                         "color": "#2ca02c"},
                "encoding": {"x": {"datum": LEAD_DAYS}, "y": {"datum": hi},
                             "text": {"value": f"policy band {lo:.0%}–{hi:.0%}"}},
            },
        ],
    }  # fmt: skip


WATERFALL_CHART = {
    "mark": {"type": "bar", "tooltip": True},
    "encoding": {
        "y": {"field": "step", "type": "nominal", "sort": None, "title": None,
              "axis": {"labelLimit": 260}},
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


@st.cache_resource(show_spinner=False)
def scorer(folder: str, card_stamp: int) -> scoring.Scorer:
    """The shared scorer (model, explainer, reference data), reloaded when the card changes."""
    return scoring.Scorer(Path(folder))


@st.cache_resource(show_spinner=False)
def threadpools() -> ThreadpoolController:
    return ThreadpoolController()


@st.cache_data(show_spinner=False)
def measured_effect(reports_dir: str, stamp: int) -> scoring.DiscountEffect | None:
    return scoring.estimated_discount_effect(Path(reports_dir))


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


def reset_price() -> None:
    st.session_state["price"] = None


def trained_period(card: dict) -> tuple[date, date] | None:
    """First training day to last test day: the search dates the model has seen."""
    try:
        first = date.fromisoformat(card["training_dates"][0])
        last = date.fromisoformat(card["test_window"].split(" to ")[1])
    except (KeyError, IndexError, ValueError):
        return None
    return first, last


def band_name(p: float, band: tuple[float, float]) -> str:
    lo, hi = band
    return "below the band" if p < lo else "above the band" if p > hi else "inside the band"


def page() -> None:
    s = data.settings()
    routes = data.table("marts", "dim_routes")
    stations = data.table("marts", "dim_stations").sort("city")
    model_dir = s.artifacts_dir / propensity.MODEL_NAME
    try:
        card_file = model_dir / CARD_JSON
        shared = scorer(str(model_dir), card_file.stat().st_mtime_ns if card_file.exists() else 0)
    except ArtifactError as exc:
        st.error(f"{exc}")
        return
    card = shared.card
    period = trained_period(card)
    readout = s.reports_dir / "experiments" / f"{scoring.DISCOUNT_EXPERIMENT}.json"
    measured = measured_effect(
        str(s.reports_dir), readout.stat().st_mtime_ns if readout.exists() else 0
    )
    base_effect = measured or scoring.discount_effect()
    data.about(
        "one search, scored by the model trained on " + data.REAL_USERS,
        f"Model trained on searches of {card.get('training_window', 'unknown dates')}.",
    )

    labels = {
        r["station_id"]: f"{r['city']} — {r['station_name']}"
        for r in stations.iter_rows(named=True)
    }
    served = sorted(set(routes["origin_station_id"]), key=lambda x: labels.get(x, x))
    # defaults: a returning traveller searching on the last day the model was tested on, two
    # days before travel, a medium-intent search (the band the experiment tested)
    default_search = period[1] if period else date(2026, 8, 1)
    left, right = st.columns(2)
    with left:
        origin = st.selectbox("Origin", served, format_func=labels.get, key="origin")
        reachable = set(
            routes.filter(pl.col("origin_station_id") == origin)["destination_station_id"]
        )
        choices = [x for x in served if x != origin and x in reachable] + [
            x for x in served if x == origin or x not in reachable
        ]
        destination = st.selectbox(
            "Destination", choices, format_func=labels.get, key="destination"
        )
        fare_class = st.radio(
            "Class", ["standard", "first"], horizontal=True, key="fare_class",
            format_func=str.capitalize,
        )  # fmt: skip
        round_trip = st.checkbox("Return journey", key="round_trip")
        platform = st.selectbox(
            "Platform", ["web", "ios", "android"], key="platform", format_func=data.PLATFORMS.get
        )
    with right:
        search_date = st.date_input("Search date", value=default_search, key="search_date")
        travel_date = st.date_input(
            "Travel date", value=default_search + timedelta(days=2), key="travel_date"
        )
        hour = st.slider("Search hour (UTC)", 0, 23, 18, key="hour")
        # wide widget bounds, checked below: an out-of-range entry gets a message, not a
        # silently kept old result
        passengers = st.number_input("Passengers", 0, 99, 1, key="passengers")

    st.subheader("Discount policy")
    p1, p2, p3 = st.columns([2, 1, 1])
    with p1:
        band_pct = st.slider(
            "Offer only when the booking probability is between (%)", 0, 100, (30, 70),
            key="band",
            help="The policy band (the experiment showed the discount on medium-intent "
            "searches, 30–70%). Inside it, the discount is offered only if it pays.",
        )  # fmt: skip
    with p2:
        discount = st.number_input("Discount (%)", 0.0, 100.0, 5.0, step=0.5, key="discount")
    with p3:
        price_typed = st.number_input(
            "Price (EUR)", min_value=0.0, value=None, step=1.0, key="price",
            placeholder="fare rule quote",
            help="Empty: the fare rule's quote for this search. A typed price is kept while "
            "the other inputs change, until you reset it.",
        )  # fmt: skip
        st.button(
            "Reset to the fare rule", on_click=reset_price, disabled=price_typed is None,
            key="reset_price",
        )  # fmt: skip

    with st.expander("Traveller history and the discount's effect"):
        h1, h2, h3, h4 = st.columns(4)
        prior_searches = h1.number_input("Previous searches", 0, 10_000, 10, key="prior_searches")
        prior_bookings = h2.number_input("Previous bookings", 0, 1_000, 8, key="prior_bookings")
        tenure = h3.number_input("Days since signup", 0, 5_000, 60, key="tenure")
        effect_shift = h4.number_input(
            f"Effect of a {base_effect.discount_rate:.0%} discount (log-odds)",
            -2.0, 5.0, round(base_effect.logit_shift, 2), step=0.05, key="effect",
            help=f"Default: {base_effect.source}.",
        )  # fmt: skip

    problems = []
    if origin == destination:
        problems.append("Origin and destination are the same station: pick two different stations.")
    elif destination not in reachable:
        problems.append(f"There is no direct route from {labels[origin]} to {labels[destination]}.")
    if travel_date < search_date:
        problems.append("The travel date is before the search date: travel must be on or after it.")
    if not 1 <= passengers <= 9:
        problems.append("Passengers must be between 1 and 9 (at least one passenger is needed).")
    if discount > 50:
        problems.append("The discount must be at most 50%.")
    if price_typed is not None and price_typed <= 0:
        problems.append("The price must be above €0: type a price, or reset to the fare rule.")
    band = (band_pct[0] / 100, band_pct[1] / 100)
    if band[0] >= band[1]:
        problems.append("The policy band is empty: its lower end must be below its upper end.")
    for message in problems:
        st.error(message)
    if problems:
        return  # an invalid input clears the result: nothing below is shown
    if period and not period[0] <= search_date <= period[1]:
        st.warning(
            f"The search date {search_date} is outside the period the model learned from and "
            f"was tested on ({period[0]} to {period[1]}): the probability is an extrapolation."
        )

    route = routes.filter(
        (pl.col("origin_station_id") == origin) & (pl.col("destination_station_id") == destination)
    ).row(0, named=True)
    search = scoring.Search(
        origin_station_id=origin, destination_station_id=destination,
        searched_at=datetime.combine(search_date, time(hour), tzinfo=UTC),
        travel_date=travel_date, passengers=int(passengers), fare_class=fare_class,
        is_round_trip=round_trip, platform=platform,
        user_prior_searches=int(prior_searches), user_prior_bookings=int(prior_bookings),
        days_since_signup=int(tenure), quoted_price_eur=price_typed,
    )  # fmt: skip
    lead = (travel_date - search_date).days
    leads = np.arange(0, LEAD_DAYS + 1)
    # row 0: this search; then the same search on other travel dates, priced by the fare rule
    features = scoring.search_features(
        [search]
        + [
            replace(search, travel_date=search_date + timedelta(days=int(x)), quoted_price_eur=None)
            for x in leads
        ],
        shared.book,
    )
    rate = discount / 100
    effect = scoring.at_rate(
        scoring.DiscountEffect(base_effect.discount_rate, effect_shift, base_effect.source), rate
    )
    # One thread: the gradient-boosting model scores ~90 rows, for which OpenMP's thread
    # start-up and spin-waiting cost more than the work (seconds on a busy 2-core machine).
    with threadpools().limit(limits=1, user_api="openmp"):
        the_search = shared.score(features.head(1), effect=effect, band=band)
        curve = propensity.predict(shared.model, features.slice(1))
    p = float(the_search.probability[0])
    price = float(the_search.price_eur[0])
    decision = the_search.decisions
    offer = bool(decision.offer[0])
    eligible = bool(decision.eligible[0])
    without = float(decision.expected_revenue_without_eur[0])
    with_discount = float(decision.expected_revenue_with_eur[0])
    gain = with_discount - without
    uplift = float(decision.probability_with_discount[0]) / p - 1 if p > 0 else 0.0
    break_even = scoring.break_even_uplift(rate)

    a, b, c = st.columns(3)
    a.metric("Booking probability", data.pct(p))
    b.metric("Intent band", f"{str(the_search.intent_band[0]).capitalize()} intent",
             help=f"{band_name(p, band).capitalize()} of {band[0]:.0%}–{band[1]:.0%} (policy); "
             "the model's bands: low < 30% ≤ medium ≤ 70% < high.")  # fmt: skip
    c.metric("Decision", f"Offer {discount:g}% discount" if offer else "No discount")
    d, e, f = st.columns(3)
    d.metric("Expected revenue without discount", data.eur(without))
    e.metric(
        "Expected revenue with discount", data.eur(with_discount),
        delta=data.signed_eur(gain), delta_color="normal" if rate > 0 else "off",
    )  # fmt: skip
    f.metric(
        "Uplift in booking probability", data.pct(uplift, signed=True),
        delta=f"break-even {data.pct(break_even, signed=True)}", delta_color="off",
        delta_arrow="off",
        help="The discount pays when the uplift beats the break-even uplift, "
        "discount / (1 − discount).",
    )  # fmt: skip
    quote_note = "typed price" if price_typed is not None else "fare rule quote"
    if rate == 0:
        st.info(
            f"A 0% discount changes nothing: no uplift, no cost ({quote_note} {data.eur(price)})."
        )
    elif gain < 0:
        st.warning(
            f"**The discount loses {data.eur(-gain)}** of expected revenue on this search "
            f"({quote_note} {data.eur(price)}): its uplift {data.pct(uplift, signed=True)} is "
            f"below the break-even {data.pct(break_even, signed=True)}."
        )
    elif not eligible:
        st.info(
            f"The discount would add {data.eur(gain)} ({quote_note} {data.eur(price)}), but "
            f"the probability {data.pct(p)} is {band_name(p, band)} {band[0]:.0%}–{band[1]:.0%}: "
            "the policy does not offer it."
        )
    else:
        st.success(
            f"**The discount adds {data.eur(gain)}** of expected revenue on this search "
            f"({quote_note} {data.eur(price)}): uplift {data.pct(uplift, signed=True)} against "
            f"a break-even of {data.pct(break_even, signed=True)}."
        )
    source = "estimated by" if measured else "assumed until"
    st.caption(
        f"Effect of the discount: {effect_shift:+.2f} log-odds at "
        f"{base_effect.discount_rate:.0%}, {source} {base_effect.source}. Only the experiment's "
        f"rate on medium-intent searches was measured: other rates are scaled in proportion "
        f"({rate:.1%} → {effect.logit_shift:+.2f} log-odds), and low- or high-intent searches "
        f"are assumed to shift as much. Model {card['model_version']} ({card['estimator']}), "
        f"held-out AUC {card['metrics']['auc']:.3f}."
    )

    st.subheader(
        f"Probability against lead time — {route['origin_city']} → {route['destination_city']}"
    )
    # A plain Vega-Lite spec: st.line_chart builds it through Altair, whose schema validation
    # took most of a rerun (~60 of ~100 ms) on this page.
    st.vega_lite_chart(
        pl.DataFrame({"lead_time_days": leads, "probability": curve}).to_pandas(),
        lead_time_chart(min(lead, LEAD_DAYS), band),
        width="stretch",
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


data.guard(page)
