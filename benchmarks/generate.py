"""Generator throughput at 1M and 10M events vs a row-by-row Faker loop; peak memory."""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from faker import Faker

from benchmarks.common import event_sizes, measure, world_env
from benchmarks.e2e import count_raw_events, events_per_user

ROW_BY_ROW_SAMPLE = 5_000


def row_by_row_events_per_second(n: int = ROW_BY_ROW_SAMPLE) -> float:
    """The naive way: one Faker call and one dict per event (same columns as search_route)."""
    fake = Faker("fr_FR")
    fake.seed_instance(0)
    rng = random.Random(0)
    start = time.perf_counter()
    rows = []
    for i in range(n):
        rows.append(
            {
                "event_id": fake.uuid4(),
                "event_name": "search_route",
                "user_id": f"usr_{rng.randrange(10**7):07d}",
                "email": fake.email(),
                "session_id": fake.uuid4(),
                "platform": rng.choice(["web", "ios", "android"]),
                "occurred_at": fake.date_time_between("-180d", "now"),
                "search_id": f"sr_{i}",
                "origin_station_id": rng.choice(["FRPLY", "DEBER", "ITMIL"]),
                "destination_station_id": rng.choice(["FRLPD", "DEMUC", "ITROM"]),
                "travel_date": fake.date_between("today", "+90d"),
                "passengers": rng.randint(1, 4),
                "fare_class": rng.choice(["standard", "first"]),
                "is_round_trip": rng.random() < 0.5,
            }
        )
    return n / (time.perf_counter() - start)


def run(quick: bool) -> dict[str, float]:
    sizes = event_sizes(quick)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="railflow-bench-gen-") as tmp:
        per_user = events_per_user(Path(tmp))
        for label, events in sizes.items():
            folder = Path(tmp) / label
            users = round(events / per_user)
            env = world_env(folder, users)
            m = measure(
                [sys.executable, "-m", "scripts.generate", "--users", str(users), "--days", "180",
                 "--out", str(folder / "data")],
                env,
            )  # fmt: skip
            produced = count_raw_events(folder / "data" / "raw")
            results[f"events generated ({label})"] = produced
            results[f"wall seconds ({label})"] = round(m["wall_s"], 2)
            results[f"events per second ({label})"] = round(produced / m["wall_s"])
            results[f"peak memory MB ({label})"] = round(m["peak_mb"])
    naive = row_by_row_events_per_second()
    results["row-by-row Faker events per second"] = round(naive)
    best = max(v for k, v in results.items() if k.startswith("events per second"))
    results["speed-up vs row-by-row"] = round(best / naive, 1)
    return results
