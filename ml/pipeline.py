"""The ml stage: train and evaluate the four models, save artifacts, write scores back."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from ml import churn, ltv, propensity, segmentation
from ml.artifacts import ArtifactError, data_fingerprint, model_version, save_model
from ml.evaluate import population_stability_index
from ml.features import read_generator_truth, read_mart, read_truth
from railflow.settings import Settings
from railflow.stage import StageResult
from railflow.warehouse import connect

log = logging.getLogger("railflow.ml")


def train_all(settings: Settings) -> dict[str, dict[str, Any]]:
    with connect(settings) as wh:
        searches = read_mart(wh, "ml_booking_propensity_features")
        churn_rows = read_mart(wh, "ml_churn_features")
        rfm = read_mart(wh, "ml_rfm_features")
        ltv_rows = read_mart(wh, "ml_ltv_features")
    # churn needs the most history: a world too short for it fails before any model trains
    churn.require_labelled_cutoffs(churn_rows, settings.start_date, settings.days)
    root = settings.artifacts_dir
    cards: dict[str, dict[str, Any]] = {}
    cards["propensity"] = propensity.train(
        searches, read_truth(settings, "searches"), root / propensity.MODEL_NAME
    )
    model, info = segmentation.fit(rfm)
    cards["segmentation"] = save_model(
        model,
        root / segmentation.MODEL_NAME,
        {
            "model_name": segmentation.MODEL_NAME,
            "model_version": model_version(segmentation.MODEL_NAME, rfm, segmentation),
            "description": "K-Means on log1p + standardised recency, frequency, monetary; "
            "k by silhouette; clusters named from centroids.",
            "features": segmentation.FEATURES,
            "rows": rfm.height,
            "training_window": f"as of {rfm['as_of_date'].max()}",
            "data_fingerprint": data_fingerprint(rfm),
            "metrics": {
                "k": info["k"],
                "stability_ari_across_seeds": info["stability_ari_across_seeds"],
            },
            **info,
        },
    )
    model, info = churn.fit(
        churn_rows, read_generator_truth(settings), settings.start_date, settings.days
    )
    cards["churn"] = save_model(
        model,
        root / churn.MODEL_NAME,
        {
            "model_name": churn.MODEL_NAME,
            "model_version": model_version(churn.MODEL_NAME, churn_rows, churn),
            "description": f"P(no activity in the next {churn.HORIZON_DAYS} days), calibrated.",
            "features": churn.FEATURES,
            "data_fingerprint": data_fingerprint(churn_rows),
            **info,
        },
    )
    model, info = ltv.fit(ltv_rows, read_generator_truth(settings))
    cards["ltv"] = save_model(
        model,
        root / ltv.MODEL_NAME,
        {
            "model_name": ltv.MODEL_NAME,
            "model_version": model_version(ltv.MODEL_NAME, ltv_rows, ltv),
            "description": f"Expected net revenue (EUR) in the next {ltv.HORIZON_DAYS} days "
            "per user, from the latest weekly cutoff.",
            "features": ltv.FEATURES,
            "data_fingerprint": data_fingerprint(ltv_rows),
            **info,
        },
    )
    return cards


# Recent searches compared with the model's training window in ml.feature_drift
DRIFT_WINDOW_DAYS = 14


def _psi_values(rows: pl.DataFrame, features: list[str]) -> dict[str, Any]:
    """Each feature as population_stability_index reads it: numbers as floats (binned by
    deciles), booleans and strings as they are (levels; a boolean cast to 0/1 would collapse
    into one decile bin and always give a PSI of 0)."""
    return {
        feat: rows[feat].cast(pl.Float64).to_numpy()
        if rows.schema[feat].is_numeric()
        else rows[feat].to_numpy()
        for feat in features
    }


def feature_drift(
    card: dict[str, Any], rows: pl.DataFrame, date_col: str, current: pl.DataFrame, now: datetime
) -> list[dict[str, Any]]:
    """PSI of each of the model's features: its training rows (the card's training dates)
    against `current`, the rows being scored now."""
    if "training_dates" not in card:
        raise ArtifactError(
            f"model card of {card['model_name']} has no training_dates (trained by an older "
            "version); retrain with `python -m ml train`"
        )
    first, last = (date.fromisoformat(d) for d in card["training_dates"])
    reference = rows.filter(pl.col(date_col).is_between(first, last))
    ref, cur = _psi_values(reference, card["features"]), _psi_values(current, card["features"])
    return [
        {
            "model_name": card["model_name"],
            "feature": feat,
            "psi": population_stability_index(ref[feat], cur[feat]),
            "computed_at": now,
        }
        for feat in card["features"]
    ]


def score_all(settings: Settings) -> dict[str, int]:
    """Batch scoring with the saved (checksum-verified) artifacts; written to the ml layer."""
    from ml.artifacts import load_model

    now = datetime.now(UTC).replace(microsecond=0)
    root = settings.artifacts_dir
    # the artifacts first: a missing or corrupt one fails before the marts are read
    p_model, p_card = load_model(root / propensity.MODEL_NAME)
    s_model, s_card = load_model(root / segmentation.MODEL_NAME)
    c_model, c_card = load_model(root / churn.MODEL_NAME)
    l_model, l_card = load_model(root / ltv.MODEL_NAME)
    with connect(settings) as wh:
        searches = read_mart(wh, "ml_booking_propensity_features")
        churn_rows = read_mart(wh, "ml_churn_features")
        rfm = read_mart(wh, "ml_rfm_features")
        ltv_rows = read_mart(wh, "ml_ltv_features")
    stamp = pl.lit(now, dtype=pl.Datetime("us", "UTC"))

    p = propensity.predict(p_model, searches)
    search_scores = searches.select("search_id", "user_id").with_columns(
        propensity=pl.Series(p),
        intent_band=pl.Series(propensity.intent_band(p)),
        model_version=pl.lit(p_card["model_version"]),
        scored_at=stamp,
    )
    segments = segmentation.assign(s_model, s_card["cluster_names"], rfm).with_columns(
        model_version=pl.lit(s_card["model_version"]), scored_at=stamp
    )
    churn_scores = churn.score_latest(c_model, churn_rows).with_columns(
        model_version=pl.lit(c_card["model_version"]), scored_at=stamp
    )
    ltv_scores = ltv.score_latest(l_model, ltv_rows).with_columns(
        model_version=pl.lit(l_card["model_version"]), scored_at=stamp
    )
    recent = searches["search_date"].max() - timedelta(days=DRIFT_WINDOW_DAYS - 1)
    latest_cutoff = churn_rows.filter(pl.col("cutoff_date") == churn_rows["cutoff_date"].max())
    drift = pl.DataFrame(
        feature_drift(
            p_card, searches, "search_date", searches.filter(pl.col("search_date") >= recent), now
        )
        + feature_drift(c_card, churn_rows, "cutoff_date", latest_cutoff, now),
        schema_overrides={"computed_at": pl.Datetime("us", "UTC")},
    ).with_columns(pl.col("psi").fill_nan(None))
    with connect(settings, read_only=False) as wh:
        wh.write(search_scores, "ml", "search_propensity_scores")
        wh.write(segments, "ml", "user_segments")
        wh.write(churn_scores, "ml", "churn_scores")
        wh.write(ltv_scores, "ml", "user_ltv_scores")
        wh.write(drift, "ml", "feature_drift")
    return {
        "search_propensity_scores": search_scores.height,
        "user_segments": segments.height,
        "churn_scores": churn_scores.height,
        "user_ltv_scores": ltv_scores.height,
    }


def stage(settings: Settings) -> StageResult:
    cards = train_all(settings)
    counts = score_all(settings)
    p = cards["propensity"]
    oracle_auc = p["oracle"].get("auc", float("nan"))
    metrics = {
        "propensity": f"{p['estimator']} AUC {p['metrics']['auc']:.3f} vs oracle "
        f"{oracle_auc:.3f} (ratio {p['oracle'].get('auc_ratio', np.nan):.3f}), "
        f"ECE {p['metrics']['ece']:.3f}",
        "top feature": next(iter(p["permutation_importance"])),
        "churn": f"AUC {cards['churn']['metrics']['auc']:.3f} vs oracle "
        f"{cards['churn']['oracle'].get('auc', float('nan')):.3f} (ratio "
        f"{cards['churn']['oracle'].get('auc_ratio', float('nan')):.3f})",
        "ltv": f"MAE {cards['ltv']['metrics']['mae']:.2f} EUR (naive "
        f"{cards['ltv']['baseline']['naive_mae']:.2f}); vs the planted expectation: MAE "
        f"{cards['ltv']['oracle'].get('mae_vs_expected_eur', float('nan')):.2f}, Spearman "
        f"{cards['ltv']['oracle'].get('spearman_vs_expected', float('nan')):.3f}",
        "rfm": f"k={cards['segmentation']['k']}, ARI across seeds "
        f"{cards['segmentation']['stability_ari_across_seeds']:.2f}",
    }
    return StageResult(
        rows=sum(counts.values()),
        outputs=[str(settings.artifacts_dir), f"{settings.schema('ml')} schema"],
        metrics=metrics,
    )
