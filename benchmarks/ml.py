"""ML: training time at the default scale, single-row latency, batch scoring throughput."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import measure, settings_for, stage_cmd, world_env
from ml import propensity
from ml.evaluate import binary_metrics
from ml.features import read_mart, to_pandas
from railflow.warehouse import connect


def subsample_auc(features: pl.DataFrame) -> dict[str, float]:
    """Validation AUC by training rows: evidence that the training caps do not cost accuracy."""
    split = propensity.time_split(features)
    x_valid = to_pandas(split.valid, propensity.FEATURES)
    y_valid = split.valid[propensity.LABEL].to_numpy().astype(int)
    out: dict[str, float] = {}
    candidates = (("random_forest", propensity.random_forest, (50_000, 150_000, 300_000)),
                  ("hist_gradient_boosting", propensity.gradient_boosting,
                   (50_000, 150_000, 300_000)))  # fmt: skip
    for name, make, sizes in candidates:
        for n in (*[s for s in sizes if s < split.train.height], split.train.height):
            rows = split.train.sample(n, seed=propensity.SEED)
            pipe = make()
            start = time.perf_counter()
            pipe.fit(to_pandas(rows, propensity.FEATURES), rows[propensity.LABEL].to_numpy())
            fit_s = time.perf_counter() - start
            auc = binary_metrics(y_valid, pipe.predict_proba(x_valid)[:, 1])["auc"]
            out[f"{name} validation AUC, {n:,} training rows"] = round(auc, 4)
            out[f"{name} fit seconds, {n:,} training rows"] = round(fit_s, 1)
    return out


def run(quick: bool) -> dict[str, float]:
    users = 5_000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="railflow-bench-ml-") as tmp:
        env = world_env(Path(tmp), users)
        measure(stage_cmd("generate", "load", "dbt_build"), env)
        train = measure(stage_cmd("ml"), env)
        settings = settings_for(env)
        folder = settings.artifacts_dir / propensity.MODEL_NAME
        with connect(settings) as wh:
            features = read_mart(wh, "ml_booking_propensity_features")
        model, _ = propensity.load(folder)
        rows = features.head(200).to_dicts()
        propensity.predict_one(folder, rows[0])  # warm the cache
        latencies = []
        for row in rows:
            start = time.perf_counter()
            propensity.predict_one(folder, row)
            latencies.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        propensity.predict(model, features)
        batch_s = time.perf_counter() - start
        by_rows = {} if quick else subsample_auc(features)
    return {
        "users": users,
        "ml stage seconds (train + evaluate + score)": round(train["wall_s"], 1),
        "ml stage peak MB": round(train["peak_mb"]),
        "single-row latency p50 ms": round(float(np.percentile(latencies, 50)), 2),
        "single-row latency p95 ms": round(float(np.percentile(latencies, 95)), 2),
        "batch scoring rows per second": round(features.height / batch_s),
        **by_rows,
    }
