"""Run dbt as a subprocess with the settings' profile and environment.

A subprocess (not dbtRunner in-process) keeps dbt's global state out of the sidecars and lets
the pipeline, the tests and analysts run exactly the command they would type.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from railflow.errors import RailflowError, SettingsError
from railflow.settings import REPO_PROFILES_DIR, REPO_ROOT, Settings

PROFILE_TEMPLATE = REPO_ROOT / "profiles.example.yml"


class DbtError(RailflowError):
    """dbt exited non-zero."""


def ensure_profile(settings: Settings) -> Path:
    """The profiles.yml dbt will read, where DBT_PROFILES_DIR points.

    The project's own (.dbt/) is a copy of profiles.example.yml, refreshed like the Makefile
    rule when the example is newer. A profiles folder of the user's own is never written to.
    """
    profile = settings.dbt_profiles_dir / "profiles.yml"
    if settings.dbt_profiles_dir.resolve() != REPO_PROFILES_DIR.resolve():
        if not profile.is_file():
            raise SettingsError(
                f"DBT_PROFILES_DIR={settings.dbt_profiles_dir} has no profiles.yml; copy "
                "profiles.example.yml there, or unset DBT_PROFILES_DIR to use the project's"
            )
    elif not profile.exists() or profile.stat().st_mtime < PROFILE_TEMPLATE.stat().st_mtime:
        settings.dbt_profiles_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROFILE_TEMPLATE, profile)
    return profile


def project_var(name: str) -> Any:
    """A var's default from dbt_project.yml (what dbt uses when --vars does not override it)."""
    import yaml

    project = yaml.safe_load((REPO_ROOT / "dbt_project.yml").read_text())
    return project["vars"][name]


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def run_dbt(
    settings: Settings,
    args: Sequence[str],
    *,
    capture: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `dbt <args>` in the project folder for the settings' target."""
    ensure_profile(settings)
    if settings.target == "duckdb":  # dbt-duckdb will not create the folder for its file
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    cmd = [dbt_executable(), *args, "--target", settings.target]
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        text=True,
        capture_output=capture,
        check=False,
    )
    if check and proc.returncode != 0:
        tail = ""
        if capture:
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            tail = f": {lines[-1].strip()}" if lines else ""
        raise DbtError(
            f"`dbt {' '.join(args)}` failed with exit code {proc.returncode}{tail}; "
            f"see {settings.dbt_target_path / 'run_results.json'} and logs/dbt.log"
        )
    return proc
