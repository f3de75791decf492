"""The booking-intent scoring API (FastAPI): `make serve` runs it on http://127.0.0.1:8000.

Every score goes through ml.scoring, the code the pricing simulator and batch scoring use. The
model is loaded (checksum verified) at start-up; each request compares the artifact files' size
and modification time with the loaded ones and reloads on a change, and /health re-hashes the
file. A missing or tampered artifact makes /health and scoring answer 503 with a one-line reason;
no response carries a traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ml import propensity
from ml.artifacts import CARD_JSON, MODEL_FILE
from ml.scoring import Scorer, Scores, Search, UnknownReferenceError, search_features
from railflow.checksums import sha256_file
from railflow.errors import RailflowError
from railflow.settings import get_settings
from serving.schemas import (
    BatchIn,
    BatchOut,
    ErrorOut,
    Health,
    ModelSummary,
    ScoreOut,
    SearchIn,
)

log = logging.getLogger("railflow.serving")
TOP_CONTRIBUTIONS = 5


class ModelUnavailableError(RailflowError):
    """The model cannot serve: its artifact is missing, tampered with or unreadable."""


class ModelState:
    """The loaded Scorer, reloaded when the artifact files change on disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] | None = None
        self._scorer: Scorer | None = None
        self._error = "not loaded yet"
        self._load(self._files_stamp())

    def _files_stamp(self) -> tuple[Any, ...]:
        stamp: list[Any] = []
        for name in (CARD_JSON, MODEL_FILE):
            try:
                st = (self.folder / name).stat()
                stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stamp.append(None)
        return tuple(stamp)

    def _load(self, stamp: tuple[Any, ...]) -> None:
        try:
            self._scorer, self._error = Scorer(self.folder), ""
            log.info("model %s loaded from %s", self._scorer.version, self.folder)
        except RailflowError as exc:
            self._scorer, self._error = None, str(exc)
            log.error("model unavailable: %s", exc)
        self._stamp = stamp

    def scorer(self) -> Scorer:
        """The scorer, or ModelUnavailableError saying why not (a cheap stat per call)."""
        stamp = self._files_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._load(stamp)
        if self._scorer is None:
            raise ModelUnavailableError(f"model unavailable: {self._error}")
        return self._scorer

    def verify(self) -> Scorer:
        """The scorer after re-hashing its artifact (a tampered file makes it unavailable)."""
        scorer = self.scorer()
        try:
            actual = sha256_file(self.folder / scorer.card.get("artifact", MODEL_FILE))
        except OSError as exc:
            actual = f"unreadable ({exc.strerror})"
        if actual != scorer.card["sha256"]:
            with self._lock:
                self._scorer = None
                self._error = (
                    f"model file in {self.folder} no longer matches its card's sha256; "
                    "refusing to serve a tampered artifact — retrain it (`make run`)"
                )
            raise ModelUnavailableError(f"model unavailable: {self._error}")
        return scorer


def _one_line(loc: Sequence[Any]) -> str:
    """('body', 'searches', 3, 'passengers') -> 'searches[3].passengers'."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _error(status: int, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse(
        ErrorOut(error=message, fields=fields or []).model_dump(), status_code=status
    )


def _to_search(s: SearchIn) -> Search:
    return Search(
        origin_station_id=s.origin_station_id,
        destination_station_id=s.destination_station_id,
        searched_at=s.searched_at,
        travel_date=s.travel_date,
        passengers=s.passengers,
        fare_class=s.fare_class,
        is_round_trip=s.is_round_trip,
        platform=s.platform,
        user_prior_searches=s.traveller.prior_searches,
        user_prior_bookings=s.traveller.prior_bookings,
        days_since_signup=s.traveller.days_since_signup,
        quoted_price_eur=s.quoted_price_eur,
    )


def _value(x: Any) -> str | float | None:
    if isinstance(x, str):
        return x
    x = float(x)
    return x if np.isfinite(x) else None


def _responses(
    ids: list[str | None], scores: Scores, scorer: Scorer, k: int = TOP_CONTRIBUTIONS
) -> list[dict[str, Any]]:
    """Plain dicts (validated once by the response model) for each scored search."""
    d, c = scores.decisions, scores.contributions
    effect = scorer.effect
    inputs = c.inputs.to_dict("records") if c is not None else []  # row access via pandas is slow
    out = []
    for i, search_id in enumerate(ids):
        explanation = None
        if c is not None:
            row = inputs[i]
            explanation = {
                "unit": c.unit,
                "base_value": c.base_value,
                "top_contributions": [
                    {"feature": name, "value": _value(row[name]), "shap_value": value}
                    for name, value in c.top(i, k)
                ],
            }
        out.append(
            {
                "search_id": search_id,
                "probability": float(scores.probability[i]),
                "intent_band": str(scores.intent_band[i]),
                "price_eur": float(scores.price_eur[i]),
                "discount": {
                    "offer": bool(d.offer[i]),
                    "eligible": bool(d.eligible[i]),
                    "policy_band": scorer.band,
                    "discount_rate": effect.discount_rate,
                    "probability_with_discount": float(d.probability_with_discount[i]),
                    "expected_revenue_without_eur": float(d.expected_revenue_without_eur[i]),
                    "expected_revenue_with_eur": float(d.expected_revenue_with_eur[i]),
                    "effect_logit_shift": effect.logit_shift,
                    "effect_source": effect.source,
                },
                "model_version": scorer.version,
                "explanation": explanation,
            }
        )
    return out


def create_app(artifacts_dir: Path | None = None) -> FastAPI:
    folder = (artifacts_dir or get_settings().artifacts_dir) / propensity.MODEL_NAME
    state = ModelState(folder)
    app = FastAPI(
        title="RailFlow booking-intent scoring",
        version="1",
        description="Scores a route search: booking probability, intent band, the discount "
        "decision with expected revenue with and without it, and the SHAP contributions that "
        "explain the score. Same scoring code as the pricing simulator and batch scoring.",
    )
    errors: dict[int | str, dict[str, Any]] = {
        422: {"model": ErrorOut, "description": "A field is malformed or names an unknown "
              "station or route."},
        503: {"model": ErrorOut, "description": "The model artifact is missing or tampered."},
    }  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": "body", "message": f"not valid JSON (at character {e['loc'][-1]})"}
            if e["type"] == "json_invalid"
            else {"field": _one_line(e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        first = fields[0] if fields else {"field": "body", "message": "invalid request"}
        more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
        return _error(422, f"{first['field']}: {first['message']}{more}", fields)

    @app.exception_handler(UnknownReferenceError)
    async def _unknown(_request: Request, exc: UnknownReferenceError) -> JSONResponse:
        return _error(422, str(exc), [{"field": exc.field, "message": str(exc)}])

    @app.exception_handler(ModelUnavailableError)
    async def _unavailable(_request: Request, exc: ModelUnavailableError) -> JSONResponse:
        return _error(503, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")  # the traceback goes to the server log only
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    def health() -> Any:
        """Ready when the model artifact loads and still matches its checksum."""
        try:
            scorer = state.verify()
        except ModelUnavailableError as exc:
            return JSONResponse(
                Health(status="unavailable", reason=str(exc)).model_dump(), status_code=503
            )
        return Health(status="ok", model_version=scorer.version)

    @app.get("/v1/model", response_model=ModelSummary, responses={503: errors[503]})
    def model() -> Any:
        """The model card's summary: version, windows, metrics and both importances."""
        card = state.scorer().card
        return {key: card[key] for key in ModelSummary.model_fields if key in card} | {
            "metrics": {k: float(v) for k, v in card["metrics"].items()},
            "shap_importance": card.get("shap_importance", {}),
        }

    @app.post("/v1/score", response_model=ScoreOut, responses=errors)
    def score(search: SearchIn) -> Any:
        """Score one search."""
        scorer = state.scorer()
        scores = scorer.score(search_features([_to_search(search)], scorer.book))
        return _responses([search.search_id], scores, scorer)[0]

    @app.post("/v1/score/batch", response_model=BatchOut, responses=errors)
    def score_batch(batch: BatchIn) -> Any:
        """Score up to 1,000 searches in one call (SHAP contributions unless explain=false)."""
        scorer = state.scorer()
        features = search_features(
            [_to_search(s) for s in batch.searches], scorer.book, prefix="searches"
        )
        scores = scorer.score(features, explain=batch.explain)
        ids = [s.search_id for s in batch.searches]
        return {"model_version": scorer.version, "scores": _responses(ids, scores, scorer)}

    app.state.model = state
    return app


def app_from_settings() -> FastAPI:
    """uvicorn's factory (`uvicorn serving.app:app_from_settings --factory`)."""
    return create_app()
