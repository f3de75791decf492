"""Shared benchmark helpers: measured child processes and throwaway worlds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from railflow.settings import REPO_ROOT, Settings, get_settings


def measure(cmd: Sequence[str], env: dict[str, str], log: Path | None = None) -> dict[str, float]:
    """Run a command; wall and CPU seconds and peak resident memory of its process tree."""
    start = time.perf_counter()
    out = log.open("a") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            list(cmd), cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed" + (f"; see {log}" if log else ""))
    return {
        "wall_s": time.perf_counter() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,  # KiB on Linux
    }


def world_env(folder: Path, users: int, days: int = 180, seed: int = 42) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")}
    return {
        **base,
        "RAILFLOW_USERS": str(users),
        "RAILFLOW_DAYS": str(days),
        "RAILFLOW_SEED": str(seed),
        "RAILFLOW_DATA_DIR": str(folder / "data"),
        "RAILFLOW_ARTIFACTS_DIR": str(folder / "artifacts"),
        "DBT_TARGET_PATH": str(folder / "target"),
    }


def stage_cmd(*stages: str) -> list[str]:
    return [sys.executable, "-m", "railflow.pipeline", "--only", *stages]


def settings_for(env: dict[str, str]) -> Settings:
    return get_settings(env, warn=False)
