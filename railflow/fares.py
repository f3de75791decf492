"""The platform's fare rule, in one place: the generator prices searches with it, the
propensity model derives "price against list price" from it, and the scoring service and the
pricing simulator quote a search's price with it.

A leaf module (numpy only) so the generator, the ML code and the app can all import it.

list price = route base fare x passengers x class multiplier x return multiplier
quote      = list price x yield markup, where the markup rises close to departure and for
             weekend and holiday travel. The generator multiplies the quote by log-normal noise
             (`PRICE_NOISE_SD`); a quote for a new search is the noiseless (median) price.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FIRST_CLASS_MULTIPLIER = 1.6
ROUND_TRIP_MULTIPLIER = 1.85
NEAR_DEPARTURE_MARKUP = 0.6  # price x (1 + 0.6 exp(-lead / 5))
NEAR_DEPARTURE_SCALE_DAYS = 5.0
WEEKEND_TRAVEL_MARKUP = 0.10
HOLIDAY_TRAVEL_MARKUP = 0.15
PRICE_NOISE_SD = 0.10


def list_price(base_fare: Any, passengers: Any, is_first_class: Any, is_round_trip: Any) -> Any:
    """List price before yield markups (scalars or arrays)."""
    return (
        base_fare
        * passengers
        * np.where(is_first_class, FIRST_CLASS_MULTIPLIER, 1.0)
        * np.where(is_round_trip, ROUND_TRIP_MULTIPLIER, 1.0)
    )


def yield_markup(lead_time_days: Any, is_weekend_travel: Any, is_holiday_travel: Any) -> Any:
    """The factor a list price is multiplied by (scalars or arrays; before any noise)."""
    return (
        (1 + NEAR_DEPARTURE_MARKUP * np.exp(-lead_time_days / NEAR_DEPARTURE_SCALE_DAYS))
        * (1 + WEEKEND_TRAVEL_MARKUP * is_weekend_travel)
        * (1 + HOLIDAY_TRAVEL_MARKUP * is_holiday_travel)
    )


def quote(
    base_fare: Any,
    passengers: Any,
    is_first_class: Any,
    is_round_trip: Any,
    lead_time_days: Any,
    is_weekend_travel: Any,
    is_holiday_travel: Any,
) -> Any:
    """The price the platform shows for a search, in euros rounded to the cent."""
    listed = list_price(base_fare, passengers, is_first_class, is_round_trip)
    markup = yield_markup(np.maximum(lead_time_days, 0), is_weekend_travel, is_holiday_travel)
    return np.round(listed * markup, 2)
