"""Scoring a search: the one path shared by the scoring API, the pricing simulator and batch
scoring.

- `search_features` turns searches as a caller knows them (route, when searched, travel date,
  passengers, class, return, platform, traveller history, optionally the price shown) into the
  model's feature rows, with the same definitions as the `ml_booking_propensity_features` mart;
- `Scorer.score` scores feature rows: probability (`propensity.predict`, which batch scoring
  calls on the mart), intent band, the discount decision (`decide`) and SHAP contributions;
- `decide` is the discount decision: offer the discount when the expected revenue with it
  exceeds the expected revenue without it, given the discount's estimated effect on the search.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml import propensity
from ml.artifacts import load_model
from ml.explain import Contributions, Explainer
from ml.features import to_pandas
from railflow import fares
from railflow.errors import RailflowError
from scripts.reference import load_reference


@dataclass(frozen=True)
class DiscountEffect:
    """What a discount does to one search: its rate, and the shift it gives the booking log-odds.

    The effect is a log-odds shift, so it lifts a low probability by a larger share than a high
    one: discounting a search that books anyway loses the discount and gains little.
    """

    discount_rate: float
    logit_shift: float
    source: str


# The one place the discount's search-level effect is read from. Until the experiment readout
# publishes its search-level estimate (issue 19), this is a documented assumption: a 5% discount
# (the medium_intent_discount experiment's rate) adds 0.3 to a search's booking log-odds. Callers
# may pass their own effect (the simulator lets a PM try others).
ASSUMED_DISCOUNT_EFFECT = DiscountEffect(
    discount_rate=0.05,
    logit_shift=0.3,
    source="assumption (ml/scoring.py ASSUMED_DISCOUNT_EFFECT) until the experiment readout "
    "estimates the search-level effect",
)
# Policy: only searches whose probability falls in this band may be offered the discount (the
# medium-intent band, as in the experiment). The band is an input to the decision, not the decision.
DEFAULT_DISCOUNT_BAND = propensity.INTENT_BANDS


def discount_effect() -> DiscountEffect:
    """The discount effect decisions use by default."""
    return ASSUMED_DISCOUNT_EFFECT


DISCOUNT_EXPERIMENT = "medium_intent_discount"  # seeds/experiment_registry.csv


def estimated_discount_effect(reports_dir: Path) -> DiscountEffect | None:
    """The search-level effect the discount experiment's readout estimates (docs/experiments.md:
    the search that fired the medium-intent trigger, treated vs control), or None when there is
    no readout or no estimate yet. Its rate is the experiment's (5%); `at_rate` rescales it."""
    path = reports_dir / "experiments" / f"{DISCOUNT_EXPERIMENT}.json"
    if not path.exists():
        return None
    effect = json.loads(path.read_text()).get("search_level_effect") or {}
    shift = effect.get("log_odds_ratio")
    if shift is None:
        return None
    low, high = effect.get("log_odds_ci_low"), effect.get("log_odds_ci_high")
    searches = effect.get("searches_control", 0) + effect.get("searches_treatment", 0)
    interval = f" [95% CI {low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return DiscountEffect(
        discount_rate=ASSUMED_DISCOUNT_EFFECT.discount_rate,
        logit_shift=float(shift),
        source=f"the {DISCOUNT_EXPERIMENT} readout: {shift:+.2f} log-odds{interval} on "
        f"medium-intent searches ({searches:,} trigger searches)",
    )


def at_rate(effect: DiscountEffect, rate: float) -> DiscountEffect:
    """The effect of another discount rate, assuming the log-odds shift grows in proportion to
    the rate (only the experiment's rate was measured; 0% shifts nothing)."""
    scale = rate / effect.discount_rate if effect.discount_rate else 0.0
    return DiscountEffect(rate, effect.logit_shift * scale, effect.source)


def break_even_uplift(rate: float) -> float:
    """The relative rise in booking probability at which a discount of `rate` pays for itself:
    p_with x price x (1 - rate) = p x price, so p_with / p - 1 = rate / (1 - rate)."""
    return rate / (1.0 - rate) if rate < 1 else float("inf")


@dataclass
class Decisions:
    """The discount decision of n searches (arrays of length n)."""

    eligible: np.ndarray  # probability inside the policy band
    offer: np.ndarray  # eligible and expected revenue with > without
    probability_with_discount: np.ndarray
    expected_revenue_without_eur: np.ndarray
    expected_revenue_with_eur: np.ndarray


def decide(
    probability: np.ndarray,
    price_eur: np.ndarray,
    effect: DiscountEffect,
    band: tuple[float, float] = DEFAULT_DISCOUNT_BAND,
) -> Decisions:
    """Offer the discount when expected revenue with it beats expected revenue without it."""
    p = np.asarray(probability, dtype=float)
    price = np.asarray(price_eur, dtype=float)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    # no shift, no uplift (exactly: the logit round trip would leave rounding noise)
    p_with = p if effect.logit_shift == 0 else 1.0 / (1.0 + np.exp(-(logit + effect.logit_shift)))
    without = p * price
    with_discount = p_with * price * (1.0 - effect.discount_rate)
    lo, hi = band
    eligible = (p >= lo) & (p <= hi)
    return Decisions(
        eligible=eligible,
        # a gain below a millionth of a cent is rounding, not a reason to discount
        offer=eligible & (with_discount - without > 1e-8),
        probability_with_discount=p_with,
        expected_revenue_without_eur=without,
        expected_revenue_with_eur=with_discount,
    )


class UnknownReferenceError(RailflowError):
    """A search names a station or route the reference data does not have."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Search:
    """One search as the app or the CRM knows it."""

    origin_station_id: str
    destination_station_id: str
    searched_at: datetime  # UTC (naive values are read as UTC)
    travel_date: date
    passengers: int
    fare_class: str  # standard | first
    is_round_trip: bool
    platform: str  # web | ios | android
    user_prior_searches: int
    user_prior_bookings: int
    days_since_signup: int
    quoted_price_eur: float | None = None  # the price shown; None: quoted by the fare rule


@dataclass(frozen=True)
class RouteBook:
    """The reference data a search needs, from the seeds (the same files dbt loads)."""

    country_of: dict[str, str]
    base_fare: dict[tuple[str, str], float]
    holidays: frozenset[tuple[str, date]]

    @classmethod
    def from_seeds(cls) -> RouteBook:
        ref = load_reference()
        return cls(
            country_of=dict(ref.stations.select("station_id", "country_code").iter_rows()),
            base_fare={
                (o, d): float(f)
                for o, d, f in ref.routes.select(
                    "origin_station_id", "destination_station_id", "base_fare_eur"
                ).iter_rows()
            },
            holidays=frozenset(ref.holidays.select("country_code", "holiday_date").iter_rows()),
        )


def search_features(searches: Sequence[Search], book: RouteBook, prefix: str = "") -> pl.DataFrame:
    """Model feature rows (propensity.FEATURES) for searches, as the features mart defines them:
    search date, hour and ISO weekday in UTC, lead time in days, holiday travel at the origin.
    Raises UnknownReferenceError naming the field (after `prefix`) of an unknown station/route."""
    rows: dict[str, list[Any]] = {c: [] for c in propensity.FEATURES}
    for i, s in enumerate(searches):
        where = f"{prefix}[{i}]." if prefix else ""
        for field in ("origin_station_id", "destination_station_id"):
            station = getattr(s, field)
            if station not in book.country_of:
                raise UnknownReferenceError(
                    f"{where}{field}",
                    f"{where}{field}: unknown station {station!r}; use a station_id from "
                    "seeds/stations.csv",
                )
        route = (s.origin_station_id, s.destination_station_id)
        if route not in book.base_fare:
            raise UnknownReferenceError(
                f"{where}destination_station_id",
                f"{where}destination_station_id: no route {route[0]} -> {route[1]}; the routes "
                "served are in seeds/routes.csv",
            )
        at = s.searched_at if s.searched_at.tzinfo is None else s.searched_at.astimezone(UTC)
        lead = (s.travel_date - at.date()).days
        holiday = (book.country_of[s.origin_station_id], s.travel_date) in book.holidays
        price = s.quoted_price_eur
        if price is None:
            price = float(
                fares.quote(
                    book.base_fare[route], s.passengers, s.fare_class == "first",
                    s.is_round_trip, lead, s.travel_date.weekday() >= 5, holiday,
                )
            )  # fmt: skip
        values = {
            "origin_station_id": s.origin_station_id,
            "destination_station_id": s.destination_station_id,
            "platform": s.platform,
            "fare_class": s.fare_class,
            "lead_time_days": lead,
            "search_hour": at.hour,
            "search_day_of_week": at.isoweekday(),
            "price_seen_eur": float(price),
            "route_base_fare_eur": book.base_fare[route],
            "passengers": s.passengers,
            "is_round_trip": bool(s.is_round_trip),
            "is_holiday": holiday,
            "user_prior_searches": s.user_prior_searches,
            "user_prior_bookings": s.user_prior_bookings,
            "days_since_signup": s.days_since_signup,
        }
        for column, value in values.items():
            rows[column].append(value)
    return pl.DataFrame(rows, schema=FEATURE_SCHEMA)


# The features mart's column types (booleans become 0/1 for sklearn in to_pandas, as in batch)
FEATURE_SCHEMA: dict[str, Any] = {
    **{c: pl.Utf8 for c in propensity.CATEGORICAL},
    **{c: pl.Int64 for c in propensity.NUMERIC},
    "price_seen_eur": pl.Float64,
    "route_base_fare_eur": pl.Float64,
    "is_round_trip": pl.Boolean,
    "is_holiday": pl.Boolean,
}


@dataclass
class Scores:
    """Scores of n searches (arrays of length n)."""

    probability: np.ndarray
    intent_band: np.ndarray
    price_eur: np.ndarray
    decisions: Decisions
    contributions: Contributions | None


class Scorer:
    """The propensity model (checksum verified on load), its explainer and the reference data."""

    def __init__(self, folder: Path) -> None:
        self.model, self.card = load_model(folder)
        self.explainer = Explainer(self.model, self.card.get("estimator", ""))
        self.book = RouteBook.from_seeds()
        self.effect = discount_effect()
        self.band = DEFAULT_DISCOUNT_BAND

    @property
    def version(self) -> str:
        return str(self.card["model_version"])

    def score(
        self,
        features: pl.DataFrame,
        effect: DiscountEffect | None = None,
        band: tuple[float, float] | None = None,
        explain: bool = True,
    ) -> Scores:
        """Probability (the batch scorer's `propensity.predict`), band, decision, SHAP."""
        p = propensity.predict(self.model, features)
        price = features["price_seen_eur"].to_numpy()
        return Scores(
            probability=p,
            intent_band=propensity.intent_band(p),
            price_eur=price,
            decisions=decide(p, price, effect or self.effect, band or self.band),
            contributions=(
                self.explainer.explain(to_pandas(features, propensity.FEATURES))
                if explain and features.height
                else None
            ),
        )
