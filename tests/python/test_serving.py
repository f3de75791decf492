"""The scoring API: a real uvicorn process on a random loopback port, called over HTTP, on the
small world's model; its scores against the batch scores the pipeline wrote."""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import requests

from ml import propensity, scoring
from ml.artifacts import MODEL_FILE
from ml.features import to_pandas
from railflow.settings import Settings
from railflow.warehouse import connect
from serving.local import start_local
from serving.schemas import EXAMPLE_SEARCH, request_for_features

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(small_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_local(small_world.artifacts_dir, tmp_path_factory.mktemp("srv") / "log")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def scored(small_world: Settings) -> pl.DataFrame:
    """Searches of the features mart with the batch scores the ml stage wrote for them."""
    with connect(small_world) as wh:
        features = wh.read("marts", "ml_booking_propensity_features")
        batch = wh.read("ml", "search_propensity_scores")
    return features.join(batch, on="search_id").sample(300, seed=1)


def good_search() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE_SEARCH)


def test_api_scores_equal_the_batch_scores(server: str, scored: pl.DataFrame) -> None:
    rows = scored.to_dicts()
    body = {"searches": [request_for_features(r) for r in rows]}
    got = requests.post(f"{server}/v1/score/batch", json=body, timeout=60)
    assert got.status_code == 200, got.text
    scores = {s["search_id"]: s for s in got.json()["scores"]}
    for row in rows:
        s = scores[row["search_id"]]
        assert abs(s["probability"] - row["propensity"]) <= 1e-9
        assert s["intent_band"] == row["intent_band"]
        assert s["model_version"] == row["model_version"]
        assert s["price_eur"] == row["price_seen_eur"]
    for row in rows[:15]:  # the one-search endpoint: the same scores
        one = requests.post(f"{server}/v1/score", json=request_for_features(row), timeout=30).json()
        assert abs(one["probability"] - row["propensity"]) <= 1e-9


def test_a_score_carries_its_decision_and_explanation(server: str, small_world: Settings) -> None:
    got = requests.post(f"{server}/v1/score", json=good_search(), timeout=30)
    assert got.status_code == 200, got.text
    s = got.json()
    d = s["discount"]
    p, price = s["probability"], s["price_eur"]
    assert d["expected_revenue_without_eur"] == pytest.approx(p * price)
    assert d["expected_revenue_with_eur"] == pytest.approx(
        d["probability_with_discount"] * price * (1 - d["discount_rate"])
    )
    lo, hi = d["policy_band"]
    assert d["eligible"] == (lo <= p <= hi)
    assert d["offer"] == (
        d["eligible"] and d["expected_revenue_with_eur"] > d["expected_revenue_without_eur"]
    )
    # no quoted price: the fare rule's price for a week ahead on a Saturday (weekend travel)
    assert price > 0 and s["explanation"]["unit"] in {"log_odds", "probability"}
    top = s["explanation"]["top_contributions"]
    assert len(top) == 5
    assert [abs(c["shap_value"]) for c in top] == sorted(
        (abs(c["shap_value"]) for c in top), reverse=True
    )
    assert {"lead_time_days", "log_price_vs_list"} & {c["feature"] for c in top}


def test_shap_contributions_add_up_to_the_model_output(small_world: Settings) -> None:
    scorer = scoring.Scorer(small_world.artifacts_dir / propensity.MODEL_NAME)
    with connect(small_world) as wh:
        rows = wh.read("marts", "ml_booking_propensity_features").head(200)
    c = scorer.explainer.explain(to_pandas(rows, propensity.FEATURES))
    trees = scorer.model.estimator.estimator
    x = to_pandas(rows, propensity.FEATURES)
    raw = trees.decision_function(x) if c.unit == "log_odds" else trees.predict_proba(x)[:, 1]
    np.testing.assert_allclose(c.base_value + c.values.sum(axis=1), raw, atol=1e-6)
    assert set(c.names) == set(propensity.FEATURES) | set(propensity.DERIVED)


def test_the_decision_weighs_expected_revenue() -> None:
    p = np.array([0.05, 0.5, 0.95, 0.5])
    price = np.array([100.0, 100.0, 100.0, 100.0])
    effect = scoring.DiscountEffect(discount_rate=0.05, logit_shift=0.3, source="test")
    d = scoring.decide(p, price, effect, band=(0.0, 1.0))
    # a 0.3 log-odds lift pays for a 5% discount on a low or middling probability, not a high one
    assert d.offer.tolist() == [True, True, False, True]
    assert scoring.decide(p, price, effect, band=(0.3, 0.7)).offer.tolist() == [
        False, True, False, True,
    ]  # fmt: skip
    no_effect = scoring.DiscountEffect(0.05, 0.0, "test")
    assert not scoring.decide(p, price, no_effect, band=(0.0, 1.0)).offer.any()


def test_health_model_card_and_openapi(server: str, small_world: Settings) -> None:
    health = requests.get(f"{server}/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    card = requests.get(f"{server}/v1/model", timeout=30).json()
    assert card["model_version"] == health.json()["model_version"]
    assert set(card["permutation_importance"]) == set(propensity.FEATURES)
    assert set(card["shap_importance"]) == set(propensity.FEATURES) | set(propensity.DERIVED)
    paths = requests.get(f"{server}/openapi.json", timeout=30).json()["paths"]
    assert {"/v1/score", "/v1/score/batch", "/health", "/v1/model"} <= set(paths)
    assert requests.get(f"{server}/docs", timeout=30).status_code == 200


def _with(**changes: Any) -> dict[str, Any]:
    body = good_search()
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("path", "body", "field", "says"),
    [
        ("/v1/score", _with(passengers=0), "passengers", "greater than or equal to 1"),
        ("/v1/score", _with(fare_class="business"), "fare_class", "'standard' or 'first'"),
        ("/v1/score", _with(traveller=None), "traveller", "Field required"),
        ("/v1/score", _with(searched_at="yesterday"), "searched_at", "datetime"),
        ("/v1/score", _with(travel_date="2026-07-01"), "travel_date", "before the search date"),
        ("/v1/score", _with(origin_station_id="ZZZZZ"), "origin_station_id", "unknown station"),
        ("/v1/score", _with(destination_station_id="FRNIC"), "destination_station_id",
         "no route FRPLY -> FRNIC"),
        ("/v1/score/batch", {"searches": [good_search(), _with(destination_station_id="XX")]},
         "searches[1].destination_station_id", "unknown station 'XX'"),
        ("/v1/score/batch", {"searches": [good_search()] * 1001}, "searches",
         "at most 1000 items"),
        ("/v1/score/batch", {"searches": [_with(traveller={"prior_searches": -1,
         "prior_bookings": 0, "days_since_signup": 3})]},
         "searches[0].traveller.prior_searches", "greater than or equal to 0"),
    ],
    ids=["passengers", "class", "no-history", "bad-time", "travel-before-search",
         "unknown-station", "unknown-route", "batch-unknown-station", "batch-too-big",
         "batch-nested"],
)  # fmt: skip
def test_bad_requests_answer_422_naming_the_field(
    server: str, path: str, body: dict[str, Any], field: str, says: str
) -> None:
    got = requests.post(f"{server}{path}", json=body, timeout=30)
    assert got.status_code == 422, got.text
    error = got.json()
    assert error["error"].startswith(f"{field}:") and says in error["error"], error
    assert "\n" not in error["error"] and "Traceback" not in got.text


def test_malformed_json_is_a_422_not_a_traceback(server: str) -> None:
    got = requests.post(
        f"{server}/v1/score", data=b"{not json", headers={"content-type": "application/json"},
        timeout=30,
    )  # fmt: skip
    assert got.status_code == 422 and got.json()["error"].startswith("body: not valid JSON")
    assert "Traceback" not in got.text


def test_tampered_or_missing_artifact_fails_health_and_scoring(
    small_world: Settings, tmp_path: Path
) -> None:
    artifacts = Path(shutil.copytree(small_world.artifacts_dir, tmp_path / "artifacts"))
    model_file = artifacts / propensity.MODEL_NAME / MODEL_FILE
    proc, url = start_local(artifacts, tmp_path / "log")
    try:
        assert requests.get(f"{url}/health", timeout=30).status_code == 200
        # a byte changed in place, size and modification time kept: only the hash can tell
        stat = model_file.stat()
        data = bytearray(model_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model_file.write_bytes(bytes(data))
        os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        health = requests.get(f"{url}/health", timeout=30)
        assert health.status_code == 503 and "tampered" in health.json()["reason"]
        got = requests.post(f"{url}/v1/score", json=good_search(), timeout=30)
        assert got.status_code == 503 and "tampered" in got.json()["error"]
        # the file goes missing: every call says so
        model_file.unlink()
        got = requests.post(f"{url}/v1/score", json=good_search(), timeout=30)
        assert got.status_code == 503 and "missing" in got.json()["error"], got.text
        assert requests.get(f"{url}/health", timeout=30).status_code == 503
        for response in (got, health):
            assert "\n" not in response.text and "Traceback" not in response.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # started on a tampered file: unavailable from the first call, with the checksum's reason
    shutil.copy(small_world.artifacts_dir / propensity.MODEL_NAME / MODEL_FILE, model_file)
    with model_file.open("ab") as fh:
        fh.write(b"tampered")
    proc, url = start_local(artifacts, tmp_path / "log2")
    try:
        health = requests.get(f"{url}/health", timeout=30)
        assert health.status_code == 503 and "does not match its card" in health.json()["reason"]
        got = requests.post(f"{url}/v1/score/batch", json={"searches": [good_search()]}, timeout=30)
        assert got.status_code == 503 and "does not match its card" in got.json()["error"]
        assert requests.get(f"{url}/v1/model", timeout=30).status_code == 503
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_fare_rule_quotes_list_price_times_the_yield_markup() -> None:
    from railflow import fares

    # 2 passengers, first class, return, travelling today on a holiday weekend
    listed = 50 * 2 * 1.6 * 1.85
    assert fares.list_price(50.0, 2, True, True) == pytest.approx(listed)
    assert fares.quote(50.0, 2, True, True, 0, True, True) == pytest.approx(
        round(listed * 1.6 * 1.1 * 1.15, 2)
    )
    # far ahead on a weekday: the near-departure markup has faded
    assert fares.quote(50.0, 1, False, False, 60, False, False) == pytest.approx(50.0, abs=0.01)
