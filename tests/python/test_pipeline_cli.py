"""The pipeline command and dbt project wiring, run as a user would from the shell."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import psutil
import pytest
from conftest import SMALL_WORLD, settings_for
from test_load import KILLED_LOAD

from railflow.checksums import sha256_file
from railflow.dbt import ensure_profile, run_dbt
from railflow.pipeline import STAGES, Stage, StageError, run_stage, select_stages
from railflow.settings import REPO_ROOT, Settings, get_settings
from railflow.warehouse import connect
from scripts.generate import write_manifest


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
    order = ["generate", "load", "dbt_build", "ml", "anomalies", "dbt_sync", "readouts", "export"]
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


def filled_disk_stage(settings: Settings) -> None:
    """A stage writing a report to a disk that is full (the export's case, or any stage's)."""
    (settings.data_dir / "report.json").write_text("x" * 2_000_000)


def test_a_stage_that_fills_the_disk_is_one_line(small_disk: Callable[..., Path]) -> None:
    settings = get_settings({"RAILFLOW_DATA_DIR": str(small_disk("1m"))})
    stage = Stage("export", "writes files", filled_disk_stage)
    with pytest.raises(StageError) as info:
        run_stage(stage, settings)
    message = str(info.value)
    assert message.startswith("export: no space left on the device")
    assert "--from export" in message and "\n" not in message


def world_copy(small_world: Settings, folder: Path) -> tuple[Settings, dict[str, str]]:
    """A copy of the small world's raw files and warehouse, and the environment naming it."""
    settings = settings_for(folder)
    shutil.copytree(small_world.raw_dir, settings.raw_dir)
    shutil.copy(small_world.duckdb_path, settings.duckdb_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")},
        **SMALL_WORLD,
        "RAILFLOW_DATA_DIR": str(settings.data_dir),
        "RAILFLOW_ARTIFACTS_DIR": str(settings.artifacts_dir),
        "DBT_TARGET_PATH": str(settings.dbt_target_path),
    }
    return settings, env


def dbt_children(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "dbt" in " ".join(c.cmdline())]


def wait_for_dbt(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if found := dbt_children(proc.pid):
            time.sleep(2)  # dbt is up and building
            return found
        time.sleep(0.2)
    raise AssertionError(f"dbt never started: {proc.communicate()}")


def gone(processes: list[psutil.Process], timeout: float = 30) -> bool:
    """Whether the processes exit within the timeout (a zombie has exited: an orphan waits to
    be reaped by whatever adopted it)."""

    def running(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    while any(running(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.slow
def test_killing_the_pipeline_stops_its_dbt_child(small_world: Settings, tmp_path: Path) -> None:
    settings, env = world_copy(small_world, tmp_path)
    before = sha256_file(settings.duckdb_path)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen(
            [sys.executable, "-m", "railflow.pipeline", "--only", "dbt_build"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        dbt = wait_for_dbt(proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        assert gone(dbt), f"dbt outlived the pipeline after {sig.name}"
        if sig == signal.SIGTERM:  # it unwinds: one line, its copy of the warehouse removed
            assert proc.returncode == 143 and "Traceback" not in stderr
            assert [ln for ln in stderr.splitlines() if ln.startswith("error:")] == [
                "error: terminated"
            ]
            assert not settings.duckdb_path.with_name("warehouse.duckdb.building").exists()
        assert sha256_file(settings.duckdb_path) == before  # the warehouse is as it was


READER_LOOP = """
import sys, time
import duckdb
path, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error as exc:
        print("error", str(exc).splitlines()[0], flush=True)
    else:
        raw, marts = con.sql(
            "select (select count(distinct search_id) from raw.search_route), "
            "(select count(*) from marts.fct_searches)"
        ).fetchall()[0]
        print("saw", raw, marts, flush=True)
        time.sleep(0.3)  # holds the file, as the app does while it renders a page
        con.close()
    time.sleep(0.1)
"""


@pytest.mark.slow
def test_a_killed_load_is_repaired_and_built_while_readers_read(
    small_world: Settings, tmp_path: Path
) -> None:
    """Items 1 to 3 of issue 17 end to end: a changed raw file holding rows that used to load
    and then fail the build, a load killed mid-batch, then the pipeline's load and build while
    two readers hold the warehouse intermittently. The build succeeds, readers never fail nor
    see raw and marts from different runs, and the marts equal raw."""
    settings, env = world_copy(small_world, tmp_path)
    path = settings.raw_dir / "search_route" / "part-00000.parquet"
    searches = pl.read_parquet(path)
    kept = searches.filter(pl.col("travel_date") > pl.col("travel_date").min() + timedelta(days=3))
    empty_ids = kept.head(2).with_columns(pl.lit("").alias("event_id"))
    resent = kept.slice(5, 1).with_columns(  # the same event again, a second later
        pl.col("occurred_at") + pl.duration(seconds=1),
        pl.lit(kept["received_at"].max()).alias("received_at") + pl.duration(seconds=1),
    )
    backwards = kept.slice(10, 1).with_columns(
        pl.lit("ev_backwards").alias("event_id"), pl.col("occurred_at") + pl.duration(days=1)
    )
    pl.concat([kept, empty_ids, resent, backwards]).write_parquet(path)
    write_manifest(settings.raw_dir)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_LOAD], cwd=REPO_ROOT, env=env, capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with connect(settings) as wh:
        old = wh.query(
            "select (select count(distinct search_id) from raw.search_route) as raw, "
            "(select count(*) from marts.fct_searches) as marts"
        ).row(0)
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER_LOOP, str(settings.duckdb_path), "100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        pipeline = subprocess.run(
            [sys.executable, "-m", "railflow.pipeline", "--only", "load", "dbt_build"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        time.sleep(2)  # the readers see the published warehouse
    finally:
        for reader in readers:
            reader.terminate()
    seen = [line.split() for r in readers for line in r.communicate(timeout=30)[0].splitlines()]
    assert pipeline.returncode == 0, pipeline.stderr
    assert len(seen) > 20  # the readers did read, all along
    assert [s for s in seen if s[0] == "error"] == []
    with connect(settings) as wh:
        new = wh.query(
            "select (select count(distinct search_id) from raw.search_route) as raw, "
            "(select count(*) from marts.fct_searches) as marts"
        ).row(0)
        raw_ids = set(wh.query("select distinct search_id from raw.search_route")["search_id"])
        mart_ids = set(wh.query("select search_id from marts.fct_searches")["search_id"])
        quarantined = wh.query(
            "select reason from audit.quarantine where _batch_id = $b",
            {"b": "search_route/part-00000.parquet"},
        )["reason"].to_list()
    assert new != old and mart_ids == raw_ids
    observed = {(int(s[1]), int(s[2])) for s in seen}
    assert observed <= {old, new} and new in observed
    assert len(quarantined) == 4 and sum("empty" in r for r in quarantined) == 2
    assert any("before occurred_at" in r for r in quarantined)
