"""Scoring API latency and throughput: a real uvicorn process on loopback, the default model.

"The default model" is the one `make run` trained (RAILFLOW_ARTIFACTS_DIR, default
ml/artifacts), and the searches replayed are that world's features mart rows. Clients are
threads of this process, each with its own keep-alive connection; they share the machine's two
cores with the server, as a co-located caller would.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from ml import propensity
from ml.artifacts import CARD_JSON
from ml.features import read_mart
from railflow.errors import SettingsError
from railflow.settings import get_settings
from railflow.warehouse import connect
from serving.local import start_local
from serving.schemas import MAX_BATCH, request_for_features

CONCURRENCY = (1, 8, 32)


def _load(
    url: str, bodies: list[dict[str, Any]], clients: int, per_client: int
) -> dict[str, float]:
    """`clients` threads each send `per_client` /v1/score requests back to back."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []

    def client(k: int) -> None:
        with requests.Session() as session:
            for i in range(per_client):
                body = bodies[(k * per_client + i) % len(bodies)]
                start = time.perf_counter()
                r = session.post(f"{url}/v1/score", json=body, timeout=60)
                latencies[k].append((time.perf_counter() - start) * 1000)
                if r.status_code != 200:
                    failures.append(r.text[:200])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    flat = np.concatenate([np.array(x) for x in latencies])
    return {
        "p50": float(np.percentile(flat, 50)),
        "p95": float(np.percentile(flat, 95)),
        "p99": float(np.percentile(flat, 99)),
        "per_s": flat.size / wall,
    }


def run(quick: bool) -> dict[str, float]:
    settings = get_settings()
    folder = settings.artifacts_dir / propensity.MODEL_NAME
    if not (folder / CARD_JSON).exists():
        raise SettingsError(f"no model in {folder}: run `make run` first (the default model)")
    with connect(settings) as wh:
        rows = read_mart(wh, "ml_booking_propensity_features").sample(5_000, seed=0)
    bodies = [request_for_features(r) for r in rows.to_dicts()]
    requests_per_level = 100 if quick else 600
    out: dict[str, float] = {"searches in the features mart": rows.height}
    for workers in (1, 2):
        log = Path(tempfile.mkdtemp(prefix="railflow-bench-serving-")) / "server.log"
        proc, url = start_local(settings.artifacts_dir, log, workers=workers)
        try:
            if requests.get(f"{url}/health", timeout=30).status_code != 200:
                raise RuntimeError(f"the scoring API is unhealthy: {log.read_text()[-500:]}")
            _load(url, bodies, 4, 25)  # warm every worker
            for clients in CONCURRENCY:
                m = _load(url, bodies, clients, max(requests_per_level // clients, 10))
                label = f"{clients} client{'s' if clients > 1 else ''}, {workers} worker"
                label += "s" if workers > 1 else ""
                for key in ("p50", "p95", "p99"):
                    out[f"{key} ms, {label}"] = round(m[key], 2)
                out[f"scores per second, {label}"] = round(m["per_s"], 1)
            if workers == 1:
                for explain in (False, True):
                    batch = {"searches": bodies[:MAX_BATCH], "explain": explain}
                    with requests.Session() as session:
                        session.post(f"{url}/v1/score/batch", json=batch, timeout=300)
                        reps = 2 if quick else 5
                        start = time.perf_counter()
                        for _ in range(reps):
                            r = session.post(f"{url}/v1/score/batch", json=batch, timeout=300)
                            r.raise_for_status()
                        per_s = reps * MAX_BATCH / (time.perf_counter() - start)
                    shap = "with SHAP" if explain else "explain=false"
                    out[f"batch scores per second ({shap}), 1 worker"] = round(per_s)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return out
