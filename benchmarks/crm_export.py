"""CRM export: seconds for a 1M-user audience, end to end (target: at most 20 s on 2 cores).

A synthetic audience as the sync marts deliver it (both audiences, values as varied as the real
ones) is written to a throwaway DuckDB warehouse; then `analysis.crm_export.export` runs as the
pipeline runs it, in a fresh process: read the marts, build, validate and fingerprint one
object per user, write the request files and the manifest, record the sync state. The first
run exports everyone (no sync state yet); the second finds nothing changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from analysis.crm_export import ELIGIBLE, MARTS, export
from benchmarks.common import settings_for, world_env
from railflow.settings import REPO_ROOT
from railflow.warehouse import connect
from scripts.reference import load_reference

SEGMENTS = ["Champions", "Loyal", "New or promising", "At risk", "Hibernating", "Needs attention"]
BANDS = ["low", "medium", "high"]
SIZES = {"1M": 1_000_000}


def synthetic_audience(n: int) -> pl.DataFrame:
    """n users as the sync marts deliver them: every segment and band, routes from the seeds,
    search times to the microsecond over 30 days, and the offer each audience's rule picks."""
    rng = np.random.default_rng(0)
    routes = load_reference().routes
    route_ids = (routes["origin_station_id"] + "-" + routes["destination_station_id"]).to_numpy()
    audience = np.where(rng.random(n) < 0.5, "high_intent", "high_churn_risk")
    band = np.where(audience == "high_intent", rng.choice(BANDS[1:], n), rng.choice(BANDS, n))
    offer = np.where(
        audience == "high_churn_risk",
        "win_back_10_percent",
        np.where(band == "medium", "discount_5_percent", "reminder_no_discount"),
    )
    searched_us = rng.integers(0, 30 * 86_400 * 1_000_000, n)
    return pl.DataFrame(
        {
            "external_id": [f"usr_{i:07d}" for i in range(n)],
            "audience": audience,
            "segment_name": rng.choice(SEGMENTS, n),
            "churn_band": rng.choice(BANDS, n),
            "churn_probability": rng.random(n),
            "propensity_band": band,
            "last_searched_route": rng.choice(route_ids, n),
            "last_searched_at": pl.Series(searched_us).cast(pl.Duration("us"))
            + datetime(2026, 8, 1),  # the warehouse's timestamps are UTC without a zone
            "recommended_offer": offer,
        }
    )


def run(quick: bool) -> dict[str, float]:
    sizes = {"20k": 20_000} if quick else SIZES
    results: dict[str, float] = {}
    for label, n in sizes.items():
        with tempfile.TemporaryDirectory(prefix="railflow-bench-crm-") as tmp:
            env = world_env(Path(tmp), users=n)
            settings = settings_for(env)
            audience = synthetic_audience(n)
            with connect(settings, read_only=False) as wh:
                for mart, name in zip(MARTS, ("high_churn_risk", "high_intent"), strict=True):
                    wh.write(audience.filter(pl.col("audience") == name), "sync", mart)
                wh.write(audience.select(user_id="external_id"), "sync", ELIGIBLE)
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.crm_export"],
                cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            first, second = (float(x) for x in proc.stdout.split())
            results[f"seconds, first export of {label} users (all created)"] = round(first, 2)
            results[f"users exported per second ({label})"] = round(n / first)
            results[f"seconds, second export, nothing changed ({label})"] = round(second, 2)
    return results


if __name__ == "__main__":  # one fresh process: two exports of the world in the environment
    settings = settings_for(dict(os.environ))
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        export(settings)
        seconds.append(time.perf_counter() - start)
    print(" ".join(f"{s:.3f}" for s in seconds))
