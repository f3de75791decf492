"""Grade the anomaly detector on worlds with unseen seeds; rewrite docs/anomalies.md.

`python -m benchmarks.anomalies [--seeds 201 202 203 204] [--users 2000] [--days 120]`
builds each world (generate, load, dbt build, anomalies) in a temporary folder, grades the
anomalies against the world's planted incidents (ml.anomalies.grade), builds one more world
without incidents (RAILFLOW_INCIDENTS=off) to count false alarms, and writes the figures.
Slow (about a minute a world on 2 cores): not part of `make bench`; run `make bench-anomalies`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from ml import anomalies
from railflow.errors import cli_entrypoint
from railflow.settings import REPO_ROOT, Settings, get_settings

DOC = REPO_ROOT / "docs" / "anomalies.md"
STAGES = ("generate", "load", "dbt_build", "anomalies")
MARK = "<!-- figures: python -m benchmarks.anomalies -->"


def world(folder: Path, seed: int, users: int, days: int, incidents: bool) -> Settings:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")},
        "RAILFLOW_USERS": str(users),
        "RAILFLOW_DAYS": str(days),
        "RAILFLOW_SEED": str(seed),
        "RAILFLOW_INCIDENTS": "on" if incidents else "off",
        "RAILFLOW_DATA_DIR": str(folder / "data"),
        "RAILFLOW_ARTIFACTS_DIR": str(folder / "artifacts"),
        "DBT_TARGET_PATH": str(folder / "target"),
    }
    return get_settings(env)


def grade_world(seed: int, users: int, days: int, incidents: bool) -> dict[str, Any]:
    from railflow.pipeline import STAGES as ALL
    from railflow.pipeline import run_pipeline
    from railflow.warehouse import connect

    with tempfile.TemporaryDirectory(prefix="railflow-anomalies-") as tmp:
        settings = world(Path(tmp), seed, users, days, incidents)
        run_pipeline(settings, [s for s in ALL if s.name in STAGES])
        with connect(settings) as wh:
            found = wh.read("ml", anomalies.TABLE)
        truth = pl.read_parquet(settings.truth_dir / "incidents.parquet")
        started = time.perf_counter()
        hourly, daily = anomalies.read_marts(settings)
        anomalies.detect(hourly, daily)
        seconds = time.perf_counter() - started
        return {
            "seed": seed,
            "planted": incidents,
            **anomalies.grade(found, truth, days),
            "detect_seconds": round(seconds, 1),
            "kinds": found["metric"].to_list(),
        }


def render(rows: list[dict[str, Any]], users: int, days: int) -> str:
    planted = [r for r in rows if r["planted"]]
    clean = [r for r in rows if not r["planted"]]
    lines = [
        MARK,
        "",
        f"Worlds of {users:,} users x {days} days, threshold {anomalies.DEFAULT_THRESHOLD} "
        f"(detector `{anomalies.DETECTOR_VERSION}`); written by `python -m benchmarks.anomalies`.",
        "",
        "| seed | incidents | detected | missed | anomalies | false alarms | recall | precision "
        "| false alarms / 90 days | detection (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['incidents'] if r['planted'] else 'off'} "
            f"| {r['detected']} | {', '.join(r['missed']) or '–'} | {r['anomalies']} "
            f"| {r['false_alarms']} | {_pct(r['recall'])} | {_pct(r['precision'])} "
            f"| {r['false_alarms_per_90_days']:.2f} | {r['detect_seconds']} |"
        )
    if planted:
        inc = sum(r["incidents"] for r in planted)
        det = sum(r["detected"] for r in planted)
        an = sum(r["anomalies"] for r in planted)
        fa = sum(r["false_alarms"] for r in planted)
        lines += [
            "",
            f"Over the {len(planted)} worlds with incidents: recall {_pct(det / inc)} "
            f"({det}/{inc}), precision {_pct((an - fa) / an if an else float('nan'))} "
            f"({an - fa}/{an}).",
        ]
    if clean:
        fa = sum(r["false_alarms"] for r in clean)
        lines.append(
            f"Without incidents: {fa} false alarm(s) in {len(clean) * days} days "
            f"({fa * 90 / (len(clean) * days):.2f} per 90 days)."
        )
    return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.0f}%"


def write_doc(figures: str) -> None:
    text = DOC.read_text() if DOC.exists() else MARK + "\n"
    head = text.split(MARK)[0]
    DOC.write_text(head + figures)


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.anomalies", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[201, 202, 203, 204])
    parser.add_argument("--clean-seed", type=int, default=205, help="the world without incidents")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=120)
    args = parser.parse_args(argv)
    rows = []
    for seed, incidents in [*((s, True) for s in args.seeds), (args.clean_seed, False)]:
        row = grade_world(seed, args.users, args.days, incidents)
        print(row, flush=True)
        rows.append(row)
    write_doc(render(rows, args.users, args.days))
    print(f"wrote {DOC.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
