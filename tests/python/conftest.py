"""Shared fixtures: a small RailFlow world built once per test session.

`small_world` runs every registered pipeline stage (generate, load, dbt build, ml, sync,
readouts, export — whichever exist) into a temporary data folder and returns its Settings.
Tests read from that world; a test that needs to change data builds its own copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from railflow.pipeline import run_pipeline
from railflow.settings import Settings, get_settings

SMALL_WORLD = {"RAILFLOW_USERS": "2000", "RAILFLOW_DAYS": "120", "RAILFLOW_SEED": "7"}


@pytest.fixture
def write_lock_held() -> Callable[[Path], AbstractContextManager[None]]:
    """`with write_lock_held(db):` another process holds the DuckDB file's write lock."""
    return _write_lock_held


@contextmanager
def _write_lock_held(db: Path) -> Iterator[None]:
    """Another process holds the DuckDB file's write lock (as a running build does)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys
            con = duckdb.connect({str(db)!r})
            print("locked", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("done\n", timeout=30)


def settings_for(folder: Path, **overrides: str) -> Settings:
    """Settings pointing every output at `folder` (data, warehouse, artifacts, dbt target)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")},
        **SMALL_WORLD,
        "RAILFLOW_DATA_DIR": str(folder / "data"),
        "RAILFLOW_ARTIFACTS_DIR": str(folder / "artifacts"),
        "DBT_TARGET_PATH": str(folder / "target"),
        **overrides,
    }
    return get_settings(env)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = settings_for(tmp_path_factory.mktemp("small_world"))
    run_pipeline(settings)
    yield settings


@pytest.fixture
def empty_settings(tmp_path: Path) -> Settings:
    """Settings for a fresh, empty data folder (nothing generated or built)."""
    return settings_for(tmp_path)


# Fixtures that build a world (generate, load, dbt): a test using any of them is `slow` and so
# stays out of `make test-fast`. Tests that build a world of their own carry the mark themselves.
WORLD_FIXTURES = {"small_world"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if WORLD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`small_disk("2m")` mounts a real tmpfs of that size (and `inodes=` files at most) and
    returns its folder: a disk that really fills up. Needs root (CI runs as root); skipped
    where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: str, inodes: int | None = None) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)
