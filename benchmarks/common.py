"""Shared benchmark helpers: measured child processes and throwaway worlds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from railflow.settings import REPO_ROOT, Settings, get_settings


def settle_disk(max_seconds: float = 90.0) -> float:
    """Wait until the disk has finished the work earlier benchmarks left it (discarding the
    blocks of deleted worlds, writing back pages). Returns the seconds waited. Linux's
    pressure stall information tells: the share of time tasks were stalled on I/O in the last
    10 s."""
    pressure = Path("/proc/pressure/io")
    start = time.perf_counter()
    os.sync()
    while pressure.exists() and time.perf_counter() - start < max_seconds:
        some = pressure.read_text().split()[1]  # "some avg10=1.23 ..."
        if float(some.split("=")[1]) < 0.1:
            break
        time.sleep(1)
    return time.perf_counter() - start


def settle_inodes(
    folder: Path, max_seconds: float = 420.0, budget_us: float = 35.0
) -> tuple[float, float]:
    """Wait until creating a file in `folder` costs what it does on a settled disk; returns
    the seconds waited and the last probe's microseconds per new file.

    This VM's ext4 runs without a journal, and then a new file never gets an inode freed in
    the last minute (the last six while its inode table is not written back): the allocator
    checks each such inode it passes. After an earlier benchmark deletes thousands of files,
    creating one costs up to 0.5 ms of CPU instead of 15-25 us, until those inodes age. The
    probe's files are kept until `folder` goes: deleting them would add to the count."""
    probe = Path(tempfile.mkdtemp(prefix="inode-probe-", dir=folder))
    start, created = time.perf_counter(), 0
    while True:
        begin = time.perf_counter()
        for _ in range(100):
            os.close(os.open(probe / str(created), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            created += 1
        per_file_us = (time.perf_counter() - begin) / 100 * 1e6
        if per_file_us <= budget_us or time.perf_counter() - start > max_seconds:
            return time.perf_counter() - start, per_file_us
        time.sleep(5)


def measure(cmd: Sequence[str], env: dict[str, str], log: Path | None = None) -> dict[str, float]:
    """Run a command; wall and CPU seconds and peak resident memory of its process tree.

    The command runs under benchmarks.launcher so the peak is the command's own, not the memory
    this (long-lived, frame-holding) benchmark process had when it forked.
    """
    with tempfile.TemporaryFile("w+") as report:
        out = log.open("a") if log else subprocess.DEVNULL
        start = time.perf_counter()
        try:
            subprocess.run(
                [sys.executable, "-m", "benchmarks.launcher", *cmd],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=report, check=True,
            )  # fmt: skip
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        wall = time.perf_counter() - start
        report.seek(0)
        lines = report.read().splitlines()
    result = json.loads(lines[-1])
    if log:  # the command's own stderr (logging goes there), minus the launcher's report
        with log.open("a") as fh:
            fh.write("".join(f"{line}\n" for line in lines[:-1]))
    if result["exit_code"] != 0:
        tail = "" if log else "\n".join(lines[-20:-1])
        raise RuntimeError(f"{' '.join(cmd)} failed" + (f"; see {log}" if log else f":\n{tail}"))
    return {"wall_s": wall, "cpu_s": result["cpu_s"], "peak_mb": result["peak_mb"]}


def event_sizes(quick: bool) -> dict[str, int]:
    """The event counts the per-area benchmarks run at."""
    return {"1M": 1_000_000} if quick else {"1M": 1_000_000, "10M": 10_000_000}


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
    return get_settings(env)
