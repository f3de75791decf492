"""The pipeline command and dbt project wiring, run as a user would from the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb
import pytest

from railflow.dbt import ensure_profile, run_dbt
from railflow.pipeline import STAGES, select_stages
from railflow.settings import REPO_ROOT, Settings, get_settings


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "railflow.pipeline", *args],
        cwd=REPO_ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_list_shows_stages_in_flow_order() -> None:
    proc = run_cli("--list")
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.splitlines()]
    assert listed == [s.name for s in STAGES]
    order = ["generate", "load", "dbt_build", "ml", "dbt_sync", "readouts", "export"]
    assert listed == [name for name in order if name in listed]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"RAILFLOW_TARGET": "oracle"}, "RAILFLOW_TARGET"),
        ((), {"RAILFLOW_USERS": "twenty"}, "RAILFLOW_USERS"),
        (("--only", "deploy"), {}, "unknown stage 'deploy'"),
        (("--from", "nowhere"), {}, "unknown stage 'nowhere'"),
        (("--from", "export", "--only", "generate"), {}, "selects no stage"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    proc = run_cli(*args, env=env)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in proc.stderr


def test_unwritable_data_dir_fails_before_any_stage(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_cli(env={"RAILFLOW_DATA_DIR": str(blocker / "data")})
    assert proc.returncode == 2
    assert "RAILFLOW_DATA_DIR" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_flag_is_rejected_by_argparse() -> None:
    proc = run_cli("--stages", "x")
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr


def test_select_stages_from_keeps_order() -> None:
    names = [s.name for s in STAGES]
    assert [s.name for s in select_stages(start=names[2])] == names[2:]
    assert [s.name for s in select_stages(start=names[-1])] == [names[-1]]
    assert [s.name for s in select_stages(only=[names[3], names[1]])] == [names[1], names[3]]
    both = select_stages(only=[names[1], names[4]], start=names[2])  # --only within --from
    assert [s.name for s in both] == [names[4]]


@pytest.fixture
def dbt_settings(tmp_path: Path) -> Settings:
    return get_settings(
        {
            "RAILFLOW_DATA_DIR": str(tmp_path / "data"),
            "DBT_TARGET_PATH": str(tmp_path / "target"),
        }
    )


@pytest.mark.slow  # runs dbt
def test_dbt_debug_and_parse_with_the_makefile_profile(dbt_settings: Settings) -> None:
    debug = run_dbt(dbt_settings, ["debug"], capture=True)
    assert "All checks passed" in debug.stdout
    run_dbt(dbt_settings, ["parse"], capture=True)
    assert (dbt_settings.dbt_target_path / "manifest.json").exists()


def test_a_profiles_folder_of_your_own_is_used_and_never_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "profiles"
    mine.mkdir()
    profile = mine / "profiles.yml"
    profile.write_text("# my own profile\n")
    os.utime(profile, (0, 0))  # older than profiles.example.yml: the project's copy is refreshed
    settings = get_settings({"DBT_PROFILES_DIR": str(mine)})
    assert ensure_profile(settings) == profile
    assert profile.read_text() == "# my own profile\n"


def test_a_profiles_folder_without_a_profile_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.compile_bigquery", "--target-path", str(tmp_path / "t")],
        cwd=REPO_ROOT, env={**os.environ, "DBT_PROFILES_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "DBT_PROFILES_DIR" in errors[0] and "no profiles.yml" in errors[0]
    assert not (tmp_path / "profiles.yml").exists()


def test_a_path_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.generate", "--users", "10", "--days", "5",
         "--out", str(blocker / "data")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(blocker) in errors[0] and "permissions" in errors[0]


@pytest.mark.slow  # runs dbt
def test_a_locked_warehouse_stops_dbt_with_one_line(
    tmp_path: Path, write_lock_held: Callable[[Path], AbstractContextManager[None]]
) -> None:
    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).close()
    with write_lock_held(db):
        proc = run_cli(
            "--only", "dbt_sync",
            env={"RAILFLOW_DATA_DIR": str(tmp_path), "DBT_TARGET_PATH": str(tmp_path / "target")},
        )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "is locked by another process" in errors[0]
    assert not (tmp_path / "target" / "sync").exists()  # dbt never started


def test_sync_before_scoring_says_to_run_the_ml_stage(tmp_path: Path) -> None:
    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()
    proc = run_cli("--only", "dbt_sync", env={"RAILFLOW_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "run the ml stage first" in errors[0]


@pytest.mark.slow  # runs dbt
def test_dbt_through_the_settings(tmp_path: Path) -> None:
    """`python -m railflow.dbt` runs dbt on the warehouse the RAILFLOW_* settings name."""
    env = {"RAILFLOW_DATA_DIR": str(tmp_path), "DBT_TARGET_PATH": str(tmp_path / "target")}
    listed = subprocess.run(
        [sys.executable, "-m", "railflow.dbt", "ls", "--select", "dim_dates", "--output", "name"],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0 and "dim_dates" in listed.stdout.split()
    assert (tmp_path / "target" / "manifest.json").exists()
    bogus = subprocess.run(
        [sys.executable, "-m", "railflow.dbt", "bogus"],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    errors = [ln for ln in bogus.stderr.splitlines() if ln.startswith("error:")]
    assert bogus.returncode == 1 and len(errors) == 1 and "`dbt bogus` failed" in errors[0]
    # nothing loaded yet: one line before dbt starts, and no empty warehouse file left behind
    build = subprocess.run(
        [sys.executable, "-m", "railflow.dbt", "build", "--select", "marts"],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    errors = [ln for ln in build.stderr.splitlines() if ln.startswith("error:")]
    assert build.returncode == 2 and len(errors) == 1 and "no raw tables yet" in errors[0]
    assert not (tmp_path / "warehouse.duckdb").exists()


@pytest.mark.slow  # runs dbt
def test_dbt_writes_no_colour_codes_into_a_log(tmp_path: Path) -> None:
    env = {"RAILFLOW_DATA_DIR": str(tmp_path), "DBT_TARGET_PATH": str(tmp_path / "target")}
    parsed = subprocess.run(
        [sys.executable, "-m", "railflow.dbt", "parse"],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert parsed.returncode == 0 and "Running with dbt" in parsed.stdout
    assert "\x1b[" not in parsed.stdout + parsed.stderr


def test_a_world_too_short_for_the_models_stops_before_generating(tmp_path: Path) -> None:
    proc = run_cli(env={"RAILFLOW_DAYS": "30", "RAILFLOW_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "set RAILFLOW_DAYS to at least" in errors[0]
    assert not (tmp_path / "raw").exists()
