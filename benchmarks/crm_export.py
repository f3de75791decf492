"""CRM file export throughput: users per second at the default scale and at 1M users.

The default scale is the default world's 20,000 users, every one of them in an audience (the
default world's real audiences hold a few hundred). The headline is the first export in a
process, as a daily run pays it: it includes one-time costs (loading the JSON Schema
validators and polars plugins, and page faults: this VM charges ~4 us for each page a process
touches first, about a fifth of a 20k export). It is the median over COLD_RUNS fresh
processes: one 20k export lasts under a tenth of a second, and a single run swings by half
with other work on the machine's host (see the machine probe). The validators come from their
on-disk cache (data/cache/validators), as in every run after the first; one fresh process
without that cache, as after a schema change, is reported beside, and so is the median of
WARM_RUNS further exports in the last process.

Each run writes into a new folder, as a daily export writes into a new dated folder, and the
folders are deleted only after every timed run: on this VM's journal-less ext4, creating a file
costs up to 25x more while inodes freed in the last minutes are near (see
benchmarks.common.settle_inodes). For the same reason each size starts once the disk has
settled and file creation costs what it does on a settled disk: the areas before this one
delete thousands of files. Each run also starts after os.sync(), so the previous run's pages
are not still being written back.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from analysis.crm_export import STATE_SCHEMA, audience_objects, batches, plan, write_files
from benchmarks.common import settle_disk, settle_inodes
from railflow.settings import REPO_ROOT
from scripts.reference import load_reference

SEGMENTS = ["Champions", "Loyal", "New or promising", "At risk", "Hibernating", "Needs attention"]
BANDS = ["low", "medium", "high"]


def synthetic_audience(n: int) -> pl.DataFrame:
    """n users as the sync marts deliver them, with values as varied as the real ones: every
    segment and band, routes from the seeds, search times to the microsecond over 30 days,
    churn probabilities as floats, and the offer each audience's rule picks."""
    rng = np.random.default_rng(0)
    routes = load_reference().routes
    route_ids = (routes["origin_station_id"] + "-" + routes["destination_station_id"]).to_numpy()
    audience = np.where(rng.random(n) < 0.5, "high_intent", "high_churn_risk")
    # the high-intent audience is the medium and high propensity bands only
    propensity_band = np.where(
        audience == "high_intent", rng.choice(BANDS[1:], n), rng.choice(BANDS, n)
    )
    offer = np.where(
        audience == "high_churn_risk",
        "win_back_10_percent",
        np.where(propensity_band == "medium", "discount_5_percent", "reminder_no_discount"),
    )
    searched_us = rng.integers(0, 30 * 86_400 * 1_000_000, n)
    return pl.DataFrame(
        {
            "external_id": [f"usr_{i:07d}" for i in range(n)],
            "audience": audience,
            "segment_name": rng.choice(SEGMENTS, n),
            "churn_band": rng.choice(BANDS, n),
            "churn_probability": rng.random(n),
            "propensity_band": propensity_band,
            "last_searched_route": rng.choice(route_ids, n),
            "last_searched_at": pl.Series(searched_us).cast(pl.Duration("us"))
            + datetime(2026, 8, 1),  # the warehouse's timestamps are UTC without a zone
            "recommended_offer": offer,
        }
    )


WARM_RUNS = 5


def export_seconds(audience: pl.DataFrame, out_dir: Path) -> float:
    """Seconds for one full-mode file export of `audience` (plan, encode, validate, write)."""
    os.sync()
    start = time.perf_counter()
    state = pl.DataFrame(schema=STATE_SCHEMA)
    p = plan("full", audience_objects(audience), state, set())
    payloads = batches(p)
    manifest = {"schema_version": 1, "mode": "full", "generated_at": "bench",
                "source_marts": [], "counts": p.counts, "batches": []}  # fmt: skip
    write_files(out_dir, payloads, manifest)
    return time.perf_counter() - start


COLD_RUNS = {"20k": 9, "1M": 3}


def _in_fresh_process(n: int, out_dir: Path, warm_runs: int, data_dir: Path) -> list[float]:
    """Seconds of the first export of a fresh process, then of `warm_runs` more in it."""
    env = {**os.environ, "RAILFLOW_DATA_DIR": str(data_dir)}  # where the validator cache is
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.crm_export", str(n), str(out_dir), str(warm_runs)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [float(x) for x in proc.stdout.split()]


def run(quick: bool) -> dict[str, float]:
    sizes = {"20k": 20_000} if quick else {"20k": 20_000, "1M": 1_000_000}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="railflow-bench-crm-") as tmp:
        for label, n in sizes.items():
            results[f"seconds waited for a settled disk ({label})"] = round(settle_disk(), 1)
            waited, per_file_us = settle_inodes(Path(tmp))
            results[f"seconds waited for file creation to settle ({label})"] = round(waited, 1)
            results[f"microseconds per new file, probe ({label})"] = round(per_file_us, 1)
            data_dir = Path(tmp) / f"{label}-data"  # a validator cache of its own, empty
            (uncached,) = _in_fresh_process(n, Path(tmp) / f"{label}-uncached", 0, data_dir)
            cold, warm = [], []
            for i in range(COLD_RUNS[label]):
                last = i == COLD_RUNS[label] - 1
                first, *more = _in_fresh_process(
                    n, Path(tmp) / f"{label}-{i}", WARM_RUNS if last else 0, data_dir
                )
                cold.append(first)
                warm += more
            median = statistics.median(cold)
            results[f"users exported per second ({label})"] = round(n / median)
            results[f"seconds, median of {len(cold)} fresh processes ({label})"] = round(median, 3)
            results[f"users per second, fastest fresh process ({label})"] = round(n / min(cold))
            results[f"users per second, slowest fresh process ({label})"] = round(n / max(cold))
            results[f"users per second, fresh process without validator cache ({label})"] = round(
                n / uncached
            )
            results[f"users per second, median of {WARM_RUNS} further runs ({label})"] = round(
                n / statistics.median(warm)
            )
    return results


if __name__ == "__main__":  # one process of run(): n, folder, further runs
    users, folder, further = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    audience = synthetic_audience(users)
    seconds = [export_seconds(audience, folder / f"run-{i}") for i in range(1 + further)]
    print(" ".join(f"{s:.6f}" for s in seconds))
