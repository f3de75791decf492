"""CRM file export throughput: users per second at the default scale and at 1M users.

The throughput is that of the first export in the process, as a daily run pays it: it includes
one-time costs (lazy imports, compiling the JSON Schema validators, loading polars plugins),
which at 20k users are about a third of the export. The median of WARM_RUNS further exports
is reported beside it. Each run starts after os.sync(), yet on this VM the disk slows file
creation after a few hundred MB have been written, so the further 1M runs are slower than
the first.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from analysis.crm_export import audience_objects, batches, plan, write_files


def synthetic_audience(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    ids = [f"usr_{i:07d}" for i in range(n)]
    return pl.DataFrame(
        {
            "external_id": ids,
            "audience": np.where(rng.random(n) < 0.5, "high_intent", "high_churn_risk"),
            "segment_name": "Champions",
            "churn_band": "high",
            "churn_probability": rng.random(n),
            "propensity_band": "medium",
            "last_searched_route": "FRPLY-FRLPD",
            "last_searched_at": datetime(2026, 8, 1, tzinfo=UTC),
            "recommended_offer": "discount_5_percent",
        }
    )


WARM_RUNS = 5


def export_seconds(audience: pl.DataFrame) -> float:
    """Seconds for one full-mode file export of `audience` (plan, encode, validate, write)."""
    with tempfile.TemporaryDirectory(prefix="railflow-bench-crm-") as tmp:
        # start from a settled disk: the previous run's files (hundreds of MB at 1M users) are
        # otherwise still being written back, and file creation stalls behind them
        os.sync()
        start = time.perf_counter()
        state = pl.DataFrame(schema={"external_id": pl.String, "attributes_sha256": pl.String})
        p = plan("full", audience_objects(audience), state, set())
        payloads = batches(p)
        manifest = {"schema_version": 1, "mode": "full", "generated_at": "bench",
                    "source_marts": [], "counts": p.counts, "batches": []}  # fmt: skip
        write_files(Path(tmp), payloads, manifest)
        return time.perf_counter() - start


def run(quick: bool) -> dict[str, float]:
    sizes = {"20k": 20_000} if quick else {"20k": 20_000, "1M": 1_000_000}
    results: dict[str, float] = {}
    for label, n in sizes.items():
        audience = synthetic_audience(n)
        cold = export_seconds(audience)
        warm = statistics.median(export_seconds(audience) for _ in range(WARM_RUNS))
        results[f"users exported per second ({label})"] = round(n / cold)
        results[f"seconds ({label})"] = round(cold, 3)
        results[f"users per second, median of {WARM_RUNS} further runs ({label})"] = round(n / warm)
    return results
