"""End-to-end scaling run: the whole pipeline at several event counts, measured per stage.

Each stage runs in its own process (`python -m railflow.pipeline --only <stage>`) so its peak
memory is its own: `os.wait4` returns the child's resource usage, whose `ru_maxrss` covers the
stage and the processes it waited for (dbt runs as a grandchild).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from benchmarks.common import measure, stage_cmd, world_env
from railflow.pipeline import STAGES
from railflow.settings import REPO_ROOT

DAYS = 180


@dataclass
class StageMeasure:
    scale: str
    events: int
    stage: str
    wall_s: float
    cpu_s: float
    peak_mb: float
    rows: int | None

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.wall_s if self.rows and self.wall_s > 0 else None


CALIBRATION_USERS = 20_000  # events per user drift with world size; calibrate at the default
STAGE_ROWS = re.compile(r"\] (\w+) done in [\d.]+s, ([\d,]+) rows")


def _run_stage(stage: str, env: dict[str, str], log: Path) -> tuple[float, float, float]:
    m = measure(stage_cmd(stage), env, log)
    return m["wall_s"], m["cpu_s"], m["peak_mb"]


def stage_rows(log: Path, stage: str) -> int | None:
    """Rows the stage reported in its closing log line (its output), if it reports any."""
    found = [int(n.replace(",", "")) for s, n in STAGE_ROWS.findall(log.read_text()) if s == stage]
    return found[-1] if found else None


def count_raw_events(raw_dir: Path) -> int:
    """Events in the generated raw files (users excluded)."""
    total = 0
    for folder in sorted(p for p in raw_dir.iterdir() if p.is_dir() and p.name != "users"):
        total += pl.scan_parquet(folder / "**" / "*.parquet").select(pl.len()).collect().item()
    return total


def events_per_user(workdir: Path) -> float:
    """Calibrate: events generated per user over DAYS days, on a small world."""
    env = _env(workdir / "calibrate", users=CALIBRATION_USERS)
    subprocess.run(
        [sys.executable, "-m", "railflow.pipeline", "--only", "generate"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    per_user = count_raw_events(workdir / "calibrate" / "data" / "raw") / CALIBRATION_USERS
    shutil.rmtree(workdir / "calibrate", ignore_errors=True)
    return per_user


def _env(folder: Path, users: int) -> dict[str, str]:
    return world_env(folder, users, DAYS)


def run_scale(label: str, target_events: int, per_user: float, workdir: Path) -> list[StageMeasure]:
    users = max(100, round(target_events / per_user))
    folder = workdir / label
    env = _env(folder, users)
    log = folder / "pipeline.log"
    folder.mkdir(parents=True, exist_ok=True)
    measures: list[StageMeasure] = []
    events = 0
    for stage in STAGES:
        wall, cpu, peak = _run_stage(stage.name, env, log)
        if stage.name == "generate":
            events = count_raw_events(folder / "data" / "raw")
        # the first three stages process every event; later ones report what they produced
        counts_events = stage.name in {"generate", "load", "dbt_build"}
        rows = events if counts_events else stage_rows(log, stage.name)
        measures.append(StageMeasure(label, events, stage.name, wall, cpu, peak, rows))
        print(f"  {label:>4} {stage.name:<10} {wall:8.1f}s {peak:8.0f} MB", flush=True)
    return measures


def run(scales: dict[str, int], workdir: Path | None = None) -> list[dict[str, object]]:
    """Run the pipeline at each scale; returns one record per (scale, stage)."""
    with tempfile.TemporaryDirectory(prefix="railflow-bench-") as tmp:
        root = workdir or Path(tmp)
        per_user = events_per_user(root)
        print(f"calibration: {per_user:.1f} events per user over {DAYS} days", flush=True)
        records: list[dict[str, object]] = []
        for label, target in scales.items():
            for m in run_scale(label, target, per_user, root):
                records.append({**asdict(m), "rows_per_s": m.rows_per_s})
            shutil.rmtree(root / label, ignore_errors=True)  # the next scale needs the disk
        return records


if __name__ == "__main__":
    print(json.dumps(run({"1M": 1_000_000}), indent=2))
