"""Run dbt as a subprocess with the settings' profile and environment.

A subprocess (not dbtRunner in-process) keeps dbt's global state out of the sidecars and lets
the pipeline, the tests and analysts run exactly the command they would type.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from railflow.errors import RailflowError, SettingsError, cli_entrypoint
from railflow.settings import REPO_PROFILES_DIR, REPO_ROOT, Settings, get_settings
from railflow.warehouse import connect

PROFILE_TEMPLATE = REPO_ROOT / "profiles.example.yml"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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


# dbt commands that read the raw layer: without it, every model fails with a catalog error
READS_RAW = ("build", "run", "test", "snapshot")


def run_dbt(
    settings: Settings,
    args: Sequence[str],
    *,
    capture: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `dbt <args>` in the project folder for the settings' target."""
    ensure_profile(settings)
    if settings.target == "duckdb":
        loaded = False
        if settings.duckdb_path.exists():  # a lock held elsewhere: one line, not dbt's traceback
            with connect(settings, read_only=False) as wh:
                loaded = wh.table_exists("audit", "load_batches")  # the loader's record
        if args and args[0] in READS_RAW and not loaded:  # before dbt leaves an empty file
            raise SettingsError(
                f"the warehouse {settings.duckdb_path} has no raw tables yet: load them first "
                "with `make run`, or `python -m railflow.pipeline --only generate load`"
            )
        # dbt-duckdb will not create the folder for its file
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    if not sys.stdout.isatty():  # a log file or a pipe: no terminal colour codes in it
        env.setdefault("DBT_USE_COLORS", "false")
    cmd = [dbt_executable(), *args, "--target", settings.target]
    started = time.time()
    proc = run_child(cmd, env, capture)
    if check and proc.returncode != 0:
        target = Path(args[args.index("--target-path") + 1]) if "--target-path" in args else None
        results = (target or settings.dbt_target_path) / "run_results.json"
        # an older run_results.json is an earlier run's: this one stopped before any node
        fresh = results.exists() and results.stat().st_mtime >= started
        tail = failed_nodes(results) if fresh else ""
        if not tail and capture:
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            tail = f": {lines[-1].strip()}" if lines else ""
        raise DbtError(
            f"`dbt {' '.join(args)}` failed with exit code {proc.returncode}{tail}; "
            f"see {f'{results} and ' if fresh else ''}logs/dbt.log"
        )
    return proc


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs before dbt starts: have the kernel send it SIGTERM when its parent
    dies, even by SIGKILL, which no handler in the parent can see (Linux's PR_SET_PDEATHSIG).
    libc is loaded here, in the parent: between fork and exec the child only makes the call."""
    if sys.platform != "linux":
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # the running program's symbols, libc's among them

    def set_parent_death_signal() -> None:
        libc.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG

    return set_parent_death_signal


def stop_child(proc: subprocess.Popen[str], grace_seconds: float = 15.0) -> None:
    """SIGTERM (dbt then cancels its queries and exits), SIGKILL if it does not within grace."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_child(
    cmd: Sequence[str], env: dict[str, str], capture: bool
) -> subprocess.CompletedProcess[str]:
    """Run a child process that never outlives this one: stopped when this process is
    interrupted or terminated (the exception reaches here), and by the kernel when it is killed."""
    pipe = subprocess.PIPE if capture else None
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=pipe,
        stderr=pipe,
        preexec_fn=_die_with_parent(),
    )
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        stop_child(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def failed_nodes(results: Path, shown: int = 3) -> str:
    """': 2 failed: <node> (<message>), ...' from a run_results.json, or '' when none failed."""
    try:
        nodes = json.loads(results.read_text())["results"]
    except (OSError, ValueError, KeyError):  # unreadable: nothing to name
        return ""
    failed = [r for r in nodes if r.get("status") in ("error", "fail", "runtime error")]
    if not failed:
        return ""
    names = []
    for r in failed[:shown]:
        # dbt's messages span lines and may carry terminal colours
        message = " ".join(_ANSI.sub("", str(r.get("message") or r["status"])).split())
        kind, _, name, *rest = r["unique_id"].split(".")  # a test's id ends with a hash
        names.append(f"{name}{'::' + rest[0] if kind == 'unit_test' else ''} ({message})")
    more = f", and {len(failed) - shown} more" if len(failed) > shown else ""
    return f": {len(failed)} failed: {', '.join(names)}{more}"


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    """`python -m railflow.dbt <dbt arguments>`: dbt with RailFlow's settings (warehouse file,
    profile, target path from the RAILFLOW_* variables) and its one-line errors."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m railflow.dbt <dbt command and arguments>, e.g. docs generate")
        return
    run_dbt(get_settings(), args)


if __name__ == "__main__":
    main()
