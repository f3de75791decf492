"""Request and response bodies of the scoring API (they make its OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_BATCH = 1_000
# One search, as documented in the OpenAPI schema (and used by the tests)
EXAMPLE_SEARCH: dict[str, Any] = {
    "origin_station_id": "FRPLY",
    "destination_station_id": "FRLPD",
    "searched_at": "2026-08-01T18:30:00Z",
    "travel_date": "2026-08-08",
    "passengers": 1,
    "fare_class": "standard",
    "is_round_trip": False,
    "platform": "web",
    "traveller": {"prior_searches": 3, "prior_bookings": 0, "days_since_signup": 60},
}


class TravellerHistory(BaseModel):
    """What the platform knows about the traveller before this search."""

    model_config = ConfigDict(extra="forbid")

    prior_searches: int = Field(ge=0, description="Searches the traveller made before this one.")
    prior_bookings: int = Field(ge=0, description="Bookings the traveller made before this one.")
    days_since_signup: int = Field(ge=0, description="Days from signup to the search date.")


class SearchIn(BaseModel):
    """One route search, as the app or the CRM sees it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"search_id": "s-123", **EXAMPLE_SEARCH}]},
    )

    search_id: str | None = Field(
        default=None, max_length=64, description="Caller's id for the search, echoed back."
    )
    origin_station_id: str = Field(min_length=1, max_length=16, examples=["FRPLY"])
    destination_station_id: str = Field(min_length=1, max_length=16, examples=["FRLPD"])
    searched_at: datetime = Field(description="When the search was made; UTC if no offset.")
    travel_date: date = Field(description="Outbound travel date, on or after the search date.")
    passengers: int = Field(ge=1, le=9)
    fare_class: Literal["standard", "first"]
    is_round_trip: bool
    platform: Literal["web", "ios", "android"]
    traveller: TravellerHistory
    quoted_price_eur: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Price shown to the traveller; omitted: quoted by the fare rule.",
    )

    @field_validator("travel_date")
    @classmethod
    def _not_before_search(cls, value: date, info: ValidationInfo) -> date:
        searched = info.data.get("searched_at")
        if searched is not None:
            day = (searched.astimezone(UTC) if searched.tzinfo else searched).date()
            if value < day:
                raise ValueError(f"travel date {value} is before the search date {day}")
        return value


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    searches: list[SearchIn] = Field(min_length=1, max_length=MAX_BATCH)
    explain: bool = Field(
        default=True, description="Include SHAP contributions (the costliest part of a score)."
    )


class Contribution(BaseModel):
    feature: str = Field(description="Model input or derived feature.")
    value: str | float | None = Field(description="The feature's value for this search.")
    shap_value: float = Field(description="Its SHAP contribution, in the explanation's unit.")


class Explanation(BaseModel):
    unit: str = Field(description="log_odds (gradient boosting) or probability (forest).")
    base_value: float = Field(description="The model's average output (SHAP expected value).")
    top_contributions: list[Contribution]


class DiscountDecision(BaseModel):
    offer: bool = Field(description="Offer the discount: eligible and revenue with > without.")
    eligible: bool = Field(description="The probability is inside the policy band.")
    policy_band: tuple[float, float]
    discount_rate: float
    probability_with_discount: float
    expected_revenue_without_eur: float
    expected_revenue_with_eur: float
    effect_logit_shift: float
    effect_source: str


class ScoreOut(BaseModel):
    search_id: str | None
    probability: float = Field(description="Calibrated P(the search converts into a booking).")
    intent_band: Literal["low", "medium", "high"]
    price_eur: float = Field(description="The price scored: quoted_price_eur or the fare rule's.")
    discount: DiscountDecision
    model_version: str
    explanation: Explanation | None


class BatchOut(BaseModel):
    model_version: str
    scores: list[ScoreOut]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model_version: str | None = None
    reason: str | None = None


class ModelSummary(BaseModel):
    model_name: str
    model_version: str
    estimator: str
    description: str
    created_at: str
    training_window: str
    test_window: str
    features: list[str]
    metrics: dict[str, float]
    permutation_importance: dict[str, float]
    shap_importance: dict[str, float]
    sha256: str


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    error: str = Field(description="One line: what is wrong and how to fix it.")
    fields: list[FieldError] = Field(default_factory=list)


def request_for_features(row: dict[str, Any]) -> dict[str, Any]:
    """The /v1/score body of a `ml_booking_propensity_features` row (tests and benchmarks
    replay the mart's searches through the API)."""
    return {
        "search_id": row["search_id"],
        "origin_station_id": row["origin_station_id"],
        "destination_station_id": row["destination_station_id"],
        "searched_at": row["searched_at"].isoformat(),
        "travel_date": (row["search_date"] + timedelta(days=row["lead_time_days"])).isoformat(),
        "passengers": row["passengers"],
        "fare_class": row["fare_class"],
        "is_round_trip": row["is_round_trip"],
        "platform": row["platform"],
        "traveller": {
            "prior_searches": row["user_prior_searches"],
            "prior_bookings": row["user_prior_bookings"],
            "days_since_signup": row["days_since_signup"],
        },
        "quoted_price_eur": row["price_seen_eur"],
    }
