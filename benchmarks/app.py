"""Pricing simulator rerun latency (AppTest, warm caches) on a built world."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import measure, stage_cmd, world_env
from railflow.settings import REPO_ROOT


def run(quick: bool) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    users = 2_000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="railflow-bench-app-") as tmp:
        env = world_env(Path(tmp), users, days=120)
        measure(stage_cmd("generate", "load", "dbt_build", "ml"), env)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("RAILFLOW_", "DBT_"))})
        at = AppTest.from_file(str(REPO_ROOT / "app" / "app.py"), default_timeout=120)
        at.run()  # first run fills the caches
        timings = []
        for i in range(40):
            start = time.perf_counter()
            at.slider(key="hour").set_value(i % 24).run()
            timings.append((time.perf_counter() - start) * 1000)
        assert not at.exception
    return {
        "simulator rerun p50 ms": round(float(np.percentile(timings, 50)), 1),
        "simulator rerun p95 ms": round(float(np.percentile(timings, 95)), 1),
        "reruns": len(timings),
    }
