"""The world generator: determinism, the tracking plan, and the planted truth."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from railflow.settings import REPO_ROOT, Settings
from scripts.generate import GenerateError, check_room, generate
from scripts.load import validate
from scripts.tracking_plan import load_plan


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


def tiny(folder: Path, seed: int, salt: str = "salt") -> dict[str, int]:
    return generate(folder, 300, 20, date(2026, 3, 1), seed, salt, progress=False)


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    tiny(tmp_path / "a", seed=1)
    tiny(tmp_path / "b", seed=1)
    tiny(tmp_path / "c", seed=2)
    a, b, c = (digest_tree(tmp_path / x / "raw") for x in "abc")
    assert a and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)
    truth_a = json.loads((tmp_path / "a" / "truth" / "params.json").read_text())
    truth_b = json.loads((tmp_path / "b" / "truth" / "params.json").read_text())
    assert truth_a == truth_b


def test_a_world_of_several_chunks_is_identical_run_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are written on threads while the next one is simulated, and truth files are
    appended chunk by chunk: the files must still be byte-identical, truth included."""
    monkeypatch.setattr("scripts.world.CHUNK_USERS", 120)  # 300 users -> 3 chunks
    counts = tiny(tmp_path / "a", seed=1)
    tiny(tmp_path / "b", seed=1)
    raw_a, raw_b = digest_tree(tmp_path / "a" / "raw"), digest_tree(tmp_path / "b" / "raw")
    assert len(raw_a) == 3 * len(counts) and raw_a == raw_b
    truth_a = digest_tree(tmp_path / "a" / "truth")
    assert truth_a and truth_a == digest_tree(tmp_path / "b" / "truth")
    users = pl.read_parquet(tmp_path / "a" / "truth" / "users.parquet")
    assert users.height == 300 and users["user_id"].is_unique().all()
    deliveries = pl.read_parquet(tmp_path / "a" / "truth" / "deliveries.parquet")
    assert deliveries.height + deliveries["duplicate_deliveries"].sum() == sum(
        v for k, v in counts.items() if k != "users"
    )


def test_raw_files_follow_the_tracking_plan(small_world: Settings) -> None:
    plan = load_plan()
    entries = sorted(p.name for p in small_world.raw_dir.iterdir())
    assert entries == sorted([*plan, "manifest.json"])  # table folders, and the manifest
    for name, spec in plan.items():
        df = pl.read_parquet(small_world.raw_dir / name / "*.parquet")
        assert df.schema == pl.Schema(spec.schema), name
        good, bad = validate(df, spec, now=datetime(2099, 1, 1, tzinfo=UTC))
        assert bad.height == 0, (name, bad.head(3).to_dicts())
        assert good.height == df.height


def test_duplicates_and_late_arrivals_match_the_planted_rates(small_world: Settings) -> None:
    params = json.loads((small_world.truth_dir / "params.json").read_text())
    planted = params["planted"]["pathologies"]
    deliveries = pl.read_parquet(small_world.truth_dir / "deliveries.parquet")
    raw_rows = sum(v for k, v in params["raw_row_counts"].items() if k != "users")
    # raw keeps every duplicate delivery: rows = unique events + duplicates
    assert raw_rows == deliveries.height + deliveries["duplicate_deliveries"].sum()
    searches = pl.read_parquet(small_world.raw_dir / "search_route" / "*.parquet")
    assert searches.height > searches["event_id"].n_unique()
    dup_rate = deliveries["duplicate_deliveries"].mean()
    late_rate = deliveries["is_late"].mean()
    assert dup_rate == pytest.approx(planted["duplicate_rate"], abs=0.004)
    assert late_rate == pytest.approx(planted["late_rate"], abs=0.004)
    late = deliveries.filter(pl.col("is_late"))["lateness_seconds"]
    assert late.min() >= 3600 and late.max() <= planted["max_lateness_days"] * 86400


def test_lead_time_is_the_planted_driver_of_booking(small_world: Settings) -> None:
    truth = pl.read_parquet(small_world.truth_dir / "searches.parquet")
    users = pl.read_parquet(small_world.truth_dir / "users.parquet")
    human = truth.join(users.filter(~pl.col("is_bot")), on="user_id")
    bands = (
        human.with_columns(
            band=pl.when(pl.col("lead_time_days") <= 2)
            .then(0)
            .when(pl.col("lead_time_days") <= 14)
            .then(1)
            .otherwise(2)
        )
        .group_by("band")
        .agg(pl.col("is_booked").mean().alias("rate"), pl.len())
        .sort("band")
    )
    rates = bands["rate"].to_list()
    assert rates[0] > rates[1] > rates[2]
    assert rates[0] > 2 * rates[2]
    # outcomes follow the planted probabilities (calibration of the simulation itself)
    assert human["is_booked"].mean() == pytest.approx(human["true_probability"].mean(), abs=0.01)


def test_experiments_are_planted_as_documented(small_world: Settings) -> None:
    params = json.loads((small_world.truth_dir / "params.json").read_text())
    effects = params["true_effects"]
    assert effects["aa_test"]["true_abs_lift_conversion"] == 0
    assert effects["medium_intent_discount"]["true_abs_lift_conversion"] > 0.02
    exposures = pl.read_parquet(small_world.truth_dir / "exposures.parquet")
    logged = exposures.filter(pl.col("is_logged"))
    srm = logged.filter(pl.col("experiment_id") == "srm_checkout_redesign")
    share = (srm["variant"] == "treatment").mean()
    assert share < 0.45  # planted sample-ratio mismatch: treatment exposures go missing
    aa = logged.filter(pl.col("experiment_id") == "aa_test")
    assert (aa["variant"] == "treatment").mean() == pytest.approx(0.5, abs=0.05)


def test_bots_and_internal_accounts_are_planted(small_world: Settings) -> None:
    users = pl.read_parquet(small_world.truth_dir / "users.parquet")
    raw_users = pl.read_parquet(small_world.raw_dir / "users" / "*.parquet")
    assert users["is_bot"].sum() > 0 and users["is_internal"].sum() > 0
    internal = raw_users.filter(pl.col("email_domain") == "railflow.test")["user_id"]
    assert sorted(internal) == sorted(users.filter(pl.col("is_internal"))["user_id"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "abc"], "not a whole number"),
        (["--days", "0"], "must be at least 1"),
        (["--start-date", "yesterday"], "not a date"),
        (["--seed", "-3"], "--seed -3 must be zero or positive"),
        (["--start-date", "9999-12-01"], "still receiving events after today"),
        (["--days", "10000"], "still receiving events after today"),
    ],
)
def test_cli_rejects_bad_arguments(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.generate", *args, "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_rejected_period_leaves_the_previous_world_alone(tmp_path: Path) -> None:
    kept = tmp_path / "raw" / "search_route" / "part-00000.parquet"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"the previous world")
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.generate", "--start-date", "9999-12-01",
         "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert kept.read_bytes() == b"the previous world"


def test_cli_prints_a_summary_and_says_once_that_it_hashes_with_the_dev_salt(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAILFLOW_PII_SALT"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip

    for quiet in (("scripts.generate", "--help"), ("scripts.load", "--help")):
        assert "development salt" not in run(*quiet).stderr  # nothing hashed
    proc = run("scripts.generate", "--users", "100", "--days", "10", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("using the development salt") == 1
    assert "search_route" in proc.stdout and "events" in proc.stdout
    assert (tmp_path / "truth" / "params.json").exists()


def test_a_full_disk_leaves_the_previous_world_intact(
    small_disk: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real disk that fills up part-way through writing (the room estimate is skipped: the
    write itself is under test)."""
    out = small_disk("3m")
    tiny(out, seed=1)
    before = digest_tree(out / "raw")
    monkeypatch.setattr("scripts.generate.check_room", lambda *args: None)
    with pytest.raises(GenerateError) as info:
        generate(out, 3000, 60, date(2026, 3, 1), 2, "salt", progress=False)
    message = str(info.value)
    assert "no space left" in message and "intact" in message and "\n" not in message
    assert digest_tree(out / "raw") == before and (out / "raw" / "manifest.json").exists()
    assert sorted(p.name for p in out.iterdir()) == ["raw", "truth"]  # no partial world left


def test_the_cli_on_a_full_disk_is_one_line(small_disk: Callable[..., Path]) -> None:
    out = small_disk("20m", inodes=40)  # room for one world's files, not for a second
    tiny(out, seed=1)
    before = digest_tree(out / "raw")
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.generate", "--users", "400", "--days", "20",
         "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no space left" in errors[0], proc.stderr
    assert digest_tree(out / "raw") == before


def test_a_world_that_cannot_fit_on_the_disk_is_refused_with_its_estimate(tmp_path: Path) -> None:
    kept = tmp_path / "raw" / "users" / "part-00000.parquet"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"the previous world")
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.generate", "--users", "1000000000000", "--out",
         str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "needs about 10,800,000.0 GB of disk" in errors[0]
    assert kept.read_bytes() == b"the previous world"


def test_a_world_that_cannot_fit_in_memory_is_refused_with_its_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory side of the estimate, on a machine with 1 GB available."""
    monkeypatch.setattr("scripts.generate.available_memory", lambda: 1_000_000_000)
    check_room(tmp_path, 20_000, 30)  # 0.7 GB: fits
    with pytest.raises(GenerateError, match=r"needs about 1\.4 GB of memory, but 1\.0 GB"):
        check_room(tmp_path, 40_000, 45)
