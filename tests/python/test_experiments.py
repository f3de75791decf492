"""Experiment readouts on the small world, checked against the planted truth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import polars as pl
import pytest

from analysis.experiments import SCHEMA_PATH, run
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
    assert set(readouts) == {"medium_intent_discount", "aa_test", "srm_checkout_redesign"}
    folder = small_world.reports_dir / "experiments"
    for name, doc in readouts.items():
        jsonschema.validate(doc, schema)
        assert (folder / f"{name}.md").read_text().startswith(f"# Experiment readout: {name}")
        assert (folder / f"{name}.png").stat().st_size > 1000
    with connect(small_world) as wh:
        table = wh.read("reports", "experiment_readouts")
    assert table.height == 2 * len(readouts)


def test_planted_srm_invalidates_and_aa_is_not_shipped(readouts: dict[str, dict]) -> None:
    assert readouts["srm_checkout_redesign"]["decision"] == "invalid: SRM"
    assert readouts["srm_checkout_redesign"]["srm"]["flagged"]
    assert not readouts["aa_test"]["srm"]["flagged"]
    assert readouts["aa_test"]["decision"] != "ship"


def test_discount_interval_is_consistent_with_the_planted_lift(
    small_world: Settings, readouts: dict[str, dict]
) -> None:
    truth = json.loads((small_world.truth_dir / "params.json").read_text())["true_effects"]
    planted = truth["medium_intent_discount"]["true_abs_lift_conversion"]
    conv = readouts["medium_intent_discount"]["metrics"]["conversion"]
    assert planted > 0
    assert conv["abs_ci_low"] <= planted <= conv["abs_ci_high"]
    assert conv["abs_lift"] > 0


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
    assert fresh.height == 2 and set(fresh["generated_at"]) == {docs[0]["generated_at"]}


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
