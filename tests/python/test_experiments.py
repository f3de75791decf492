"""Experiment readouts on the small world, checked against the planted truth."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jsonschema
import polars as pl
import pytest

from analysis.experiments import SCHEMA_PATH, run
from railflow.experiment_registry import load_registry
from railflow.settings import REPO_ROOT, Settings
from railflow.warehouse import connect


@pytest.fixture(scope="module")
def readouts(small_world: Settings) -> dict[str, dict]:
    folder = small_world.reports_dir / "experiments"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_every_experiment_has_a_valid_readout_memo_and_plot(
    small_world: Settings, readouts: dict[str, dict]
) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert set(readouts) == set(load_registry())
    folder = small_world.reports_dir / "experiments"
    for name, doc in readouts.items():
        jsonschema.validate(doc, schema)
        assert doc["schema_version"] == 2
        memo = (folder / f"{name}.md").read_text()
        assert memo.startswith(f"# Experiment readout: {name}")
        assert "## Definitions" in memo and "net: gross − discount − refunds" in memo
        assert (folder / f"{name}.png").stat().st_size > 1000
    with connect(small_world) as wh:
        table = wh.read("reports", "experiment_readouts")
    assert table.height == sum(len(doc["metrics"]) for doc in readouts.values())


def test_readouts_follow_the_registry(small_world: Settings, readouts: dict[str, dict]) -> None:
    """Metrics and roles from the registry; sequential before the planned end (the A/A test
    runs 200 days, past this 120-day world), fixed-horizon after it."""
    with connect(small_world) as wh:
        designs = wh.read("marts", "experiment_designs")
    for experiment in load_registry().values():
        doc = readouts[experiment.experiment_id]
        roles = {m: doc["metrics"][m]["role"] for m in doc["metrics"]}
        assert roles[experiment.primary_metric] == "primary"
        assert {m for m, r in roles.items() if r == "secondary"} == set(
            experiment.secondary_metrics
        )
        assert set(doc["holm_adjusted_p_values"]) == set(experiment.secondary_metrics)
        past = designs.filter(pl.col("experiment_id") == experiment.experiment_id)
        mode = "fixed-horizon" if past["is_past_planned_duration"].item() else "sequential"
        assert doc["analysis"]["mode"] == mode
    assert readouts["aa_test"]["analysis"]["mode"] == "sequential"
    assert readouts["medium_intent_discount"]["analysis"]["mode"] == "fixed-horizon"


def test_planted_srm_invalidates_and_aa_is_not_shipped(readouts: dict[str, dict]) -> None:
    assert readouts["srm_checkout_redesign"]["decision"] == "invalid: SRM"
    assert readouts["srm_checkout_redesign"]["srm"]["flagged"]
    assert not readouts["aa_test"]["srm"]["flagged"]
    assert readouts["aa_test"]["decision"] != "ship"


def test_discount_intervals_cover_the_planted_lifts(
    small_world: Settings, readouts: dict[str, dict]
) -> None:
    params = json.loads((small_world.truth_dir / "params.json").read_text())
    truth = params["true_effects"]["medium_intent_discount"]
    doc = readouts["medium_intent_discount"]
    conv = doc["metrics"]["conversion"]
    assert truth["true_abs_lift_conversion"] > 0 and conv["abs_lift"] > 0
    assert conv["abs_ci_low"] <= truth["true_abs_lift_conversion"] <= conv["abs_ci_high"]
    assert conv["rel_ci_low"] <= truth["true_rel_lift_conversion"] <= conv["rel_ci_high"]
    # the truth's revenue is gross − discount; the readout's is also net of the refunds paid
    # inside the window, at most the cancellation rate of it: the interval covers both ends
    revenue = doc["metrics"]["revenue_per_user"]
    lift = truth["true_abs_lift_revenue_per_user"]
    for planted in (lift, lift * (1 - params["planted"]["cancellation_rate"])):
        assert revenue["abs_ci_low"] <= planted <= revenue["abs_ci_high"]
    rel = truth["revenue_per_user_treatment"] / truth["revenue_per_user_control"] - 1
    assert revenue["rel_ci_low"] <= rel <= revenue["rel_ci_high"]
    # CUPED on predictive covariates reduces the variance of the revenue difference
    assert revenue["cuped"]["variance_reduction"] > 0.02
    # refunds are a share of the fare paid, drawn alike in both arms: the guardrail's rate
    # (refunds per euro sold) covers no difference, so it does not block the planted win
    refund_rate = doc["metrics"]["refund_rate"]
    assert refund_rate["role"] == "guardrail" and not refund_rate["guardrail_broken"]
    assert refund_rate["abs_ci_low"] <= 0 <= refund_rate["abs_ci_high"]


def test_search_level_effect_covers_the_planted_effect(
    small_world: Settings, readouts: dict[str, dict]
) -> None:
    """The discount acts on one search: +0.6 log-odds on medium-intent searches. The readout
    estimates it on the searches that fired the trigger; the truth gives their probabilities
    with and without the discount."""
    effect = readouts["medium_intent_discount"]["search_level_effect"]
    assert readouts["aa_test"]["search_level_effect"] is None  # not a triggered experiment
    with connect(small_world) as wh:
        triggers = wh.read("marts", "experiment_trigger_searches")
    truth = pl.read_parquet(small_world.truth_dir / "searches.parquet").join(
        triggers.select("search_id", "variant"), on="search_id"
    )
    assert truth.height == triggers.height  # every trigger search is a real search...
    assert truth["is_medium_intent"].all()  # ...on which the discount could show
    assert truth.filter(pl.col("variant") == "treatment")["is_treated"].all()
    p_c, p_t = truth["true_probability_control"].mean(), truth["true_probability_treatment"].mean()
    log_odds = math.log(p_t / (1 - p_t)) - math.log(p_c / (1 - p_c))
    planted = json.loads((small_world.truth_dir / "params.json").read_text())["planted"]
    assert effect["log_odds_ci_low"] <= log_odds <= effect["log_odds_ci_high"]
    assert (
        effect["log_odds_ci_low"]
        <= planted["experiments"]["medium_intent_discount"]["logit_uplift"]
        <= effect["log_odds_ci_high"]
    )
    assert effect["abs_ci_low"] <= p_t - p_c <= effect["abs_ci_high"]
    assert effect["rel_ci_low"] <= p_t / p_c - 1 <= effect["rel_ci_high"]
    # the estimate points the planted way (whether its CI clears 0 on 2,000 users depends on the
    # draw; docs/experiments.md gives the default world's figures)
    assert effect["log_odds_ratio"] > 0


def test_outcomes_count_searches_made_after_exposure_only(small_world: Settings) -> None:
    """The estimand, checked against the truth: a user's bookings are those of the searches
    they made at or after exposure and inside the window, whenever the purchase was. A search
    made before exposure and bought after it (the earlier readouts counted it) never counts."""
    with connect(small_world) as wh:
        outcomes = wh.read("marts", "experiment_user_outcomes").filter(
            pl.col("is_outcome_window_complete")
        )
        purchases = wh.read("marts", "fct_bookings").select(
            "booking_id", pl.col("purchased_at").dt.replace_time_zone("UTC")
        )
    searches = pl.read_parquet(small_world.truth_dir / "searches.parquet")
    exposures = pl.read_parquet(small_world.truth_dir / "exposures.parquet")
    window = pl.col("exposed_at") + timedelta(days=14)
    expected = (
        exposures.join(searches, on="user_id")
        .filter((pl.col("searched_at") >= pl.col("exposed_at")) & (pl.col("searched_at") < window))
        .group_by("experiment_id", "user_id")
        .agg(pl.col("is_booked").sum().alias("true_bookings"))
    )
    straddling = (
        exposures.join(searches.filter(pl.col("booking_id").is_not_null()), on="user_id")
        .filter(pl.col("searched_at") < pl.col("exposed_at"))
        .join(purchases, on="booking_id")
        .filter(
            (pl.col("purchased_at") >= pl.col("exposed_at")) & (pl.col("purchased_at") < window)
        )
        .group_by("experiment_id", "user_id")
        .agg(pl.len().alias("bought_after_exposure"))
    )
    both = outcomes.join(expected, on=["experiment_id", "user_id"], how="left").with_columns(
        pl.col("true_bookings").fill_null(0)
    )
    # tracking outages lose some events on purpose; everything else must agree
    assert (both["bookings"] == both["true_bookings"]).mean() > 0.95
    assert both["bookings"].sum() == pytest.approx(both["true_bookings"].sum(), rel=0.03)
    tricky = both.join(straddling, on=["experiment_id", "user_id"])
    assert tricky.height >= 5
    assert (tricky["bookings"] == tricky["true_bookings"]).mean() > 0.8
    by_purchase_time = tricky["true_bookings"] + tricky["bought_after_exposure"]
    assert (tricky["bookings"] == by_purchase_time).sum() == 0


def test_metrics_use_whole_outcome_windows_only(
    small_world: Settings, readouts: dict[str, dict]
) -> None:
    """A user exposed less than the window before the end of the data is left out of the
    metrics (fewer days to convert), and said so; assignment (SRM) counts every exposure."""
    with connect(small_world) as wh:
        outcomes = wh.read("marts", "experiment_user_outcomes")
    # the simulated period's end, from the generator's own record: 14 days after exposure
    # must fall by then
    world = json.loads((small_world.truth_dir / "params.json").read_text())["generator"]
    end = datetime.fromisoformat(world["start_date"]).replace(tzinfo=UTC)
    end += timedelta(days=world["days"])
    for name, doc in readouts.items():
        exposed = outcomes.filter(pl.col("experiment_id") == name)
        is_open = exposed["exposed_at"].dt.convert_time_zone("UTC") + timedelta(days=14) > end
        open_windows = int(is_open.sum())
        assert (~exposed["is_outcome_window_complete"]).to_list() == is_open.to_list()
        assert doc["users_with_open_outcome_window"] == open_windows > 0
        measured = sum(doc["variants"][v]["users"] for v in ("control", "treatment"))
        assert measured == exposed.height - open_windows
        assert any("outcome window is not over" in w for w in doc["warnings"])


def test_power_cli(tmp_path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "analysis.power", "--baseline", "0.05", "--mde", "0.10"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0 and "users per arm: 31,2" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "analysis.power", "--baseline", "1.5", "--mde", "0.1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--baseline" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--users-per-arm", "20000", "--power", "0.01"],
        ["--mde", "0.1", "--power", "0.01"],
        ["--mde", "0"],
        ["--users-per-arm", "0"],
    ],
    ids=["mde-power-below-alpha", "n-power-below-alpha", "zero-mde", "no-users"],
)
def test_power_cli_refuses_targets_without_an_answer(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.power", "--baseline", "0.05", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert any(flag in errors[0] for flag in ("--power", "--mde 0", "--users-per-arm 0"))


def test_power_cli_says_when_no_lift_is_detectable() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.power", "--baseline", "0.9", "--users-per-arm", "3"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and "none: with 3 users per arm no lift reaches" in proc.stdout


@pytest.fixture
def world(small_world: Settings, tmp_path: Path) -> Settings:
    """A private copy of the small world's warehouse: these tests change the readouts."""
    shutil.copy(small_world.duckdb_path, tmp_path / "warehouse.duckdb")
    return small_world.with_overrides(data_dir=tmp_path, duckdb_path=tmp_path / "warehouse.duckdb")


def test_reading_out_one_experiment_keeps_the_other_experiments_rows(world: Settings) -> None:
    with connect(world) as wh:
        before = wh.read("reports", "experiment_readouts")
    assert before["experiment_id"].n_unique() == 3
    docs = run(world, ["aa_test", "aa_test"])  # named twice: read out once
    with connect(world) as wh:
        after = wh.read("reports", "experiment_readouts")
    assert set(after["experiment_id"]) == set(before["experiment_id"])
    others = pl.col("experiment_id") != "aa_test"
    order = ["experiment_id", "metric"]
    assert after.filter(others).sort(order).equals(before.filter(others).sort(order))
    fresh = after.filter(~others)
    assert [d["experiment_id"] for d in docs] == ["aa_test"]
    assert fresh.height == len(docs[0]["metrics"])
    assert set(fresh["generated_at"]) == {docs[0]["generated_at"]}


def test_no_exposures_is_a_one_line_error_and_loses_nothing(world: Settings) -> None:
    with connect(world, read_only=False) as wh:
        wh.execute(f"delete from {wh.table('marts', 'experiment_user_outcomes')}")
        before = wh.read("reports", "experiment_readouts")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")}
    paths = {
        "RAILFLOW_DATA_DIR": str(world.data_dir),
        "RAILFLOW_DUCKDB_PATH": str(world.duckdb_path),
    }
    for args in ((), ("--experiment", "aa_test")):
        proc = subprocess.run(
            [sys.executable, "-m", "analysis.experiments", *args],
            cwd=REPO_ROOT, env={**base, **paths}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            "error: mart marts.experiment_user_outcomes has no experiment exposures to read "
            "out; simulate a period that covers the experiments (RAILFLOW_START_DATE, "
            "RAILFLOW_DAYS) and run `make run`"
        ]
    with connect(world) as wh:
        assert wh.read("reports", "experiment_readouts").equals(before)


def test_the_generator_plants_what_the_registry_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry edited by an analyst (no Python): a new split, one experiment removed, a new
    one added; the generator plants exactly that."""
    from railflow.experiment_registry import REGISTRY_PATH
    from scripts import world
    from scripts.generate import generate

    rows = REGISTRY_PATH.read_text().splitlines()
    edited = [rows[0]]
    for row in rows[1:]:
        if row.startswith("aa_test,"):
            edited.append(row.replace(",0.5,0.5,0,", ",0.2,0.8,0,"))
        elif row.startswith("medium_intent_discount,"):
            edited.append(row)
    edited.append("new_banner,A banner raises searches.,growth,user,0.5,0.5,20,30,,"
                  "searches_per_user,conversion,,")  # fmt: skip
    registry = tmp_path / "registry.csv"
    registry.write_text("\n".join(edited) + "\n")
    monkeypatch.setattr(world, "load_registry", lambda: load_registry(registry))
    generate(tmp_path / "data", 800, 60, date(2026, 3, 1), 3, "salt", progress=False)
    exposures = pl.read_parquet(tmp_path / "data" / "truth" / "exposures.parquet")
    assert set(exposures["experiment_id"]) == {"medium_intent_discount", "aa_test", "new_banner"}
    aa = exposures.filter(pl.col("experiment_id") == "aa_test")
    assert (aa["variant"] == "treatment").mean() == pytest.approx(0.8, abs=0.05)
    banner = exposures.filter(pl.col("experiment_id") == "new_banner")["exposed_at"]
    assert banner.min() >= datetime(2026, 3, 21, tzinfo=UTC)
