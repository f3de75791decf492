"""The ML sidecar on the small world: fit, time split, artifacts, bad inputs, scores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ml import churn, propensity
from ml.artifacts import CARD_JSON, ArtifactError, data_fingerprint, load_card, load_model
from ml.evaluate import expected_calibration_error, population_stability_index
from ml.features import FeatureError
from ml.pipeline import train_all
from railflow.settings import REPO_ROOT, Settings
from railflow.warehouse import connect


@pytest.fixture(scope="module")
def features(small_world: Settings) -> pl.DataFrame:
    with connect(small_world) as wh:
        return wh.read("marts", "ml_booking_propensity_features")


def test_time_split_never_leaks_the_future(features: pl.DataFrame) -> None:
    split = propensity.time_split(features)
    assert split.train["search_date"].max() < split.valid["search_date"].min()
    assert split.valid["search_date"].max() < split.test["search_date"].min()
    assert split.test["search_date"].max() - split.test["search_date"].min() == timedelta(
        days=propensity.TEST_DAYS - 1
    )
    assert split.train.height + split.valid.height + split.test.height == features.height


def test_cards_report_metrics_against_the_oracle(small_world: Settings) -> None:
    card = load_card(small_world.artifacts_dir / propensity.MODEL_NAME)
    assert card["estimator"] in {"random_forest", "hist_gradient_boosting"}
    assert set(card["validation_auc_by_candidate"]) == {"random_forest", "hist_gradient_boosting"}
    assert 0.5 < card["metrics"]["auc"] <= card["oracle"]["auc"] + 0.02
    assert card["metrics"]["ece"] < 0.05
    assert next(iter(card["permutation_importance"])) == "lead_time_days"
    # global SHAP importance beside it, for every input and derived feature
    assert set(card["shap_importance"]) == set(propensity.FEATURES) | set(propensity.DERIVED)
    assert "lead_time_days" in list(card["shap_importance"])[:3]
    assert len(card["sha256"]) == 64 and card["library_versions"]["scikit-learn"]
    assert (small_world.artifacts_dir / propensity.MODEL_NAME / "model_card.md").exists()
    churn_card = load_card(small_world.artifacts_dir / churn.MODEL_NAME)
    assert churn_card["metrics"]["auc"] > 0.6 and "auc" in churn_card["oracle"]
    seg = load_card(small_world.artifacts_dir / "rfm_segmentation")
    assert 3 <= seg["k"] <= 6 and seg["stability_ari_across_seeds"] > 0.8
    assert all(not name.startswith("cluster") for name in seg["cluster_names"].values())


def test_scores_in_the_warehouse_match_predictions_in_memory(
    small_world: Settings, features: pl.DataFrame
) -> None:
    model, _ = load_model(small_world.artifacts_dir / propensity.MODEL_NAME)
    sample = features.sample(500, seed=1)
    expected = propensity.predict(model, sample)
    with connect(small_world) as wh:
        stored = wh.read("ml", "search_propensity_scores")
    got = sample.select("search_id").join(stored, on="search_id", how="left")
    assert got["propensity"].null_count() == 0
    np.testing.assert_allclose(got["propensity"].to_numpy(), expected, rtol=1e-9)
    # the intent bands of the brief: low below 0.3, high above 0.7 (they pick the CRM audience)
    p = got["propensity"].to_numpy()
    expected_bands = np.where(p < 0.3, "low", np.where(p > 0.7, "high", "medium"))
    assert got["intent_band"].to_list() == expected_bands.tolist()
    assert len(set(expected_bands)) > 1
    assert stored.height == features.height


def test_tampered_artifact_is_refused(small_world: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(small_world.artifacts_dir / propensity.MODEL_NAME, folder)
    with (folder / "model.joblib").open("ab") as fh:
        fh.write(b"\x00evil")
    with pytest.raises(ArtifactError, match="tampered"):
        load_model(folder)
    shutil.rmtree(folder)
    with pytest.raises(ArtifactError, match="make run"):
        load_model(folder)


@pytest.mark.parametrize(
    "content", [b'{"model_name": "churn", "sha2', b"\xff\xfe", b"[]", b'{"model_name": "churn"}']
)
def test_corrupt_model_card_is_refused(
    small_world: Settings, tmp_path: Path, content: bytes
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(small_world.artifacts_dir / churn.MODEL_NAME, folder)
    (folder / CARD_JSON).write_bytes(content)
    with pytest.raises(ArtifactError, match=r"model card .*; retrain with `python -m ml train`"):
        load_model(folder)


def test_corrupt_model_card_is_a_one_line_error_in_the_cli(
    small_world: Settings, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(small_world.artifacts_dir, artifacts)
    card = artifacts / churn.MODEL_NAME / CARD_JSON
    card.write_text(card.read_text()[:100])  # truncated mid-write
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")}
    env = {**base, "RAILFLOW_DATA_DIR": str(small_world.data_dir),
           "RAILFLOW_ARTIFACTS_DIR": str(artifacts)}  # fmt: skip
    for args in (("card", "churn"), ("score",)):
        proc = subprocess.run(
            [sys.executable, "-m", "ml", *args],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert line.startswith(f"error: model card {card} is not valid JSON (")
        assert line.endswith("; retrain with `python -m ml train`")


def test_churn_cutoff_rule_matches_the_mart(small_world: Settings) -> None:
    with connect(small_world) as wh:
        rows = wh.read("marts", "ml_churn_features")
    labelled = sorted(rows.filter(pl.col("is_churned").is_not_null())["cutoff_date"].unique())
    assert labelled == churn.labelled_cutoffs(small_world.start_date, small_world.days)
    # the minimum is tight, whatever the weekday the world starts on
    for start in (small_world.start_date + timedelta(days=i) for i in range(7)):
        need = churn.min_days(start)
        assert len(churn.labelled_cutoffs(start, need)) == churn.MIN_LABELLED_CUTOFFS
        assert len(churn.labelled_cutoffs(start, need - 1)) == churn.MIN_LABELLED_CUTOFFS - 1
    # the default start, a Sunday: cutoffs Monday 30 March to 25 May, the last labelled by 22 June
    assert churn.min_days(date(2026, 3, 1)) == 114


def test_short_world_fails_before_training_and_names_the_days_it_needs(
    small_world: Settings, tmp_path: Path
) -> None:
    shutil.copy(small_world.duckdb_path, tmp_path / "warehouse.duckdb")
    # a 60-day world from the default start: one labelled cutoff (Monday 30 March)
    short = small_world.with_overrides(
        data_dir=tmp_path, duckdb_path=tmp_path / "warehouse.duckdb",
        artifacts_dir=tmp_path / "artifacts", days=60,
    )  # fmt: skip
    with connect(short, read_only=False) as wh:
        wh.execute(
            f"update {wh.table('marts', 'ml_churn_features')} set is_churned = null "
            "where cutoff_date > date '2026-03-30'"
        )
        no_cutoffs = wh.read("marts", "ml_churn_features").head(0)
    need = churn.min_days(short.start_date)
    with pytest.raises(
        FeatureError,
        match=rf"found 1 .*; set RAILFLOW_DAYS to at least {need} \(it is 60; starting "
        rf"{short.start_date}\)",
    ):
        train_all(short)
    assert not short.artifacts_dir.exists() or not any(short.artifacts_dir.iterdir())
    # no cutoff at all (an even shorter world): the same message, not "no rows"
    with pytest.raises(FeatureError, match=f"found 0 .*at least {need} \\(it is 20"):
        churn.fit(no_cutoffs, None, short.start_date, 20)


def test_bad_inputs_give_clear_errors_or_documented_handling(
    small_world: Settings, features: pl.DataFrame
) -> None:
    model, _ = load_model(small_world.artifacts_dir / propensity.MODEL_NAME)
    with pytest.raises(FeatureError, match="lead_time_days"):
        propensity.predict(model, features.drop("lead_time_days"))
    assert propensity.predict(model, features.head(0)).size == 0
    with pytest.raises(FeatureError, match="no rows"):
        propensity.train(features.head(0), None, Path("/nonexistent"))
    # unseen station and a missing price are handled, not errors
    odd = features.head(3).with_columns(
        pl.lit("ZZZZZ").alias("origin_station_id"),
        pl.lit(None, dtype=pl.Float64).alias("price_seen_eur"),
    )
    p = propensity.predict(model, odd)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    row = features.row(0, named=True)
    one = propensity.predict_one(small_world.artifacts_dir / propensity.MODEL_NAME, row)
    assert one == pytest.approx(float(propensity.predict(model, features.head(1))[0]))


def test_metric_helpers() -> None:
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0
    assert expected_calibration_error(y, np.array([1.0, 1.0, 0.0, 0.0])) == 1
    rng = np.random.default_rng(0)
    same = population_stability_index(rng.normal(size=5000), rng.normal(size=5000))
    shifted = population_stability_index(rng.normal(size=5000), rng.normal(1, 1, size=5000))
    assert same < 0.02 < 0.2 < shifted


def test_derived_features_price_against_list_price_and_past_conversion() -> None:
    x = pd.DataFrame(
        {
            "route_base_fare_eur": [50.0, 50.0, 50.0],
            "passengers": [2, 1, 1],
            "fare_class": ["standard", "first", "standard"],
            "is_round_trip": [0.0, 1.0, 0.0],
            "price_seen_eur": [100.0, 50 * 1.6 * 1.85 * 1.5, 0.0],
            "user_prior_bookings": [0, 3, 1],
            "user_prior_searches": [0, 9, 4],
        }
    )
    out = propensity.add_derived_features(x)
    assert out["log_price_vs_list"].iloc[0] == pytest.approx(0.0)  # quoted at list price
    assert out["log_price_vs_list"].iloc[1] == pytest.approx(np.log(1.5))  # 50% markup
    assert np.isnan(out["log_price_vs_list"].iloc[2])  # a free ticket: missing, not -inf
    assert out["user_prior_conversion"].tolist() == pytest.approx([0.1, 0.31, 0.22])


def test_a_model_in_another_models_folder_is_refused(small_world: Settings, tmp_path: Path) -> None:
    folder = tmp_path / propensity.MODEL_NAME
    shutil.copytree(small_world.artifacts_dir / churn.MODEL_NAME, folder)
    with pytest.raises(ArtifactError, match="holds a model card for 'churn', not 'booking_pro"):
        load_model(folder)
    _model, card = load_model(small_world.artifacts_dir / churn.MODEL_NAME)
    assert card["model_name"] == churn.MODEL_NAME


def test_markdown_cards_carry_the_fingerprint_and_windows(small_world: Settings) -> None:
    for name in (propensity.MODEL_NAME, churn.MODEL_NAME):
        text = (small_world.artifacts_dir / name / "model_card.md").read_text()
        card = load_card(small_world.artifacts_dir / name)
        assert f"**data_fingerprint**: {card['data_fingerprint']}" in text
        assert f"**test_window**: {card['test_window']}" in text


def test_boolean_drift_is_measured_on_its_levels() -> None:
    """0/1 binned by deciles collapse into one bin: the PSI of a boolean always read 0."""
    from ml.pipeline import _psi_values

    def rows(share: float) -> pl.DataFrame:
        n = 1000
        cards = [i < share * n for i in range(n)]
        return pl.DataFrame({f: [0.0] * n for f in churn.FEATURES}).with_columns(
            pl.Series("has_loyalty_card", cards, dtype=pl.Boolean)
        )

    features = list(churn.FEATURES)
    reference, shifted = _psi_values(rows(0.34), features), _psi_values(rows(0.9), features)
    assert population_stability_index(
        reference["has_loyalty_card"], shifted["has_loyalty_card"]
    ) == pytest.approx(1.60, abs=0.05)
    assert population_stability_index(
        reference["has_loyalty_card"], _psi_values(rows(0.34), features)["has_loyalty_card"]
    ) == pytest.approx(0.0)


def test_model_version_changes_with_the_data_and_with_the_training_code(tmp_path: Path) -> None:
    import types

    from ml.artifacts import model_version

    code = tmp_path / "trainer.py"
    code.write_text("DEPTH = 3\n")
    module = types.ModuleType("trainer")
    module.__file__ = str(code)
    rows = pl.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    first = model_version("m", rows, module)
    assert first == model_version("m", rows.clone(), module)  # reproducible
    assert model_version("m", rows.with_columns(y=pl.lit(1)), module) != first
    code.write_text("DEPTH = 4\n")
    assert model_version("m", rows, module) != first
    assert first.startswith("m-") and first.split("-")[1] == data_fingerprint(rows)


def test_drift_compares_the_training_window_with_the_searches_scored_now(
    small_world: Settings,
) -> None:
    card = load_card(small_world.artifacts_dir / propensity.MODEL_NAME)
    with connect(small_world) as wh:
        drift = wh.read("ml", "feature_drift")
        searches = wh.read("marts", "ml_booking_propensity_features")
    first, last = (date.fromisoformat(d) for d in card["training_dates"])
    trained = searches.filter(pl.col("search_date").is_between(first, last))
    recent = searches.filter(
        pl.col("search_date") > searches["search_date"].max() - timedelta(days=14)
    )
    expected = population_stability_index(
        trained["lead_time_days"].cast(pl.Float64).to_numpy(),
        recent["lead_time_days"].cast(pl.Float64).to_numpy(),
    )
    got = drift.filter(
        (pl.col("model_name") == propensity.MODEL_NAME) & (pl.col("feature") == "lead_time_days")
    )["psi"]
    assert got.to_list() == [pytest.approx(expected)]
    # churn: its training cutoffs (not every earlier cutoff) against the latest one, scored now
    churn_card = load_card(small_world.artifacts_dir / churn.MODEL_NAME)
    with connect(small_world) as wh:
        cutoffs = wh.read("marts", "ml_churn_features")
    first, last = (date.fromisoformat(d) for d in churn_card["training_dates"])
    assert first <= last <= cutoffs["cutoff_date"].max() - timedelta(days=2 * churn.HORIZON_DAYS)
    expected = population_stability_index(
        cutoffs.filter(pl.col("cutoff_date").is_between(first, last))["sessions_30d"]
        .cast(pl.Float64)
        .to_numpy(),
        cutoffs.filter(pl.col("cutoff_date") == cutoffs["cutoff_date"].max())["sessions_30d"]
        .cast(pl.Float64)
        .to_numpy(),
    )
    got = drift.filter(
        (pl.col("model_name") == churn.MODEL_NAME) & (pl.col("feature") == "sessions_30d")
    )["psi"]
    assert got.to_list() == [pytest.approx(expected)]
    assert set(drift["model_name"]) == {propensity.MODEL_NAME, churn.MODEL_NAME}
    assert drift.height == len(card["features"]) + len(churn.FEATURES)
