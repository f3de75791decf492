"""CRM file export throughput: users per second at the default scale and at 1M users."""

from __future__ import annotations

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


def run(quick: bool) -> dict[str, float]:
    sizes = {"20k": 20_000} if quick else {"20k": 20_000, "1M": 1_000_000}
    results: dict[str, float] = {}
    for label, n in sizes.items():
        audience = synthetic_audience(n)
        with tempfile.TemporaryDirectory(prefix="railflow-bench-crm-") as tmp:
            start = time.perf_counter()
            state = pl.DataFrame(schema={"external_id": pl.String, "attributes_sha256": pl.String})
            p = plan("full", audience_objects(audience), state, set())
            payloads = batches(p)
            manifest = {"schema_version": 1, "mode": "full", "generated_at": "bench",
                        "source_marts": [], "counts": p.counts, "batches": []}  # fmt: skip
            write_files(Path(tmp), payloads, manifest)
            seconds = time.perf_counter() - start
        results[f"users exported per second ({label})"] = round(n / seconds)
        results[f"seconds ({label})"] = round(seconds, 2)
    return results
