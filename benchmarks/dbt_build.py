"""dbt build time at 1M and 10M events, and an incremental run that adds one day to 180.

The daily run is `dbt build --vars '{test_since: <last day - lookback>}'`: incremental models
rebuild their lookback window and tests on event models check the rows since that day (see
macros/test_scope.sql). The same build checking every row, the incremental models alone
against their full refresh, and the fixed cost of starting dbt are reported beside it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from benchmarks.common import event_sizes, measure, settings_for, stage_cmd, world_env
from benchmarks.e2e import events_per_user
from railflow.dbt import dbt_executable, project_var
from railflow.warehouse import connect
from scripts.load import hold_back_deliveries


def build_counts(target: Path) -> dict[str, int]:
    """Nodes of the last `dbt build` by kind and status, from its run_results.json."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    kinds = Counter(r["unique_id"].split(".")[0] for r in results)
    statuses = Counter(str(r["status"]) for r in results)
    return {
        **{f"nodes: {kind}": n for kind, n in sorted(kinds.items())},
        **{f"status: {status}": n for status, n in sorted(statuses.items())},
    }


def run(quick: bool) -> dict[str, float]:
    sizes = event_sizes(quick)
    results: dict[str, float] = {}
    lookback = int(project_var("lookback_days"))
    with tempfile.TemporaryDirectory(prefix="railflow-bench-dbt-") as tmp:
        per_user = events_per_user(Path(tmp))
        for label, events in sizes.items():
            folder = Path(tmp) / label
            env = world_env(folder, round(events / per_user), days=181)
            measure(stage_cmd("generate", "load"), env)
            settings = settings_for(env)
            # hold back the last day's deliveries: the first build sees 180 days
            cutoff = datetime.combine(settings.start_date + timedelta(days=180), time(), UTC)
            with connect(settings, read_only=False) as wh:
                hold_back_deliveries(wh, cutoff)
            dbt_env = {**env, **settings.dbt_env()}
            build = [dbt_executable(), "build", "--exclude", "tag:post_scoring"]
            full = measure(build, dbt_env)
            if label == "1M":
                results |= build_counts(Path(env["DBT_TARGET_PATH"]))
            # the 181st day arrives: its rows were deleted from batches loaded before
            measure([sys.executable, "-m", "scripts.load", "--reload"], env)
            test_since = (cutoff.date() - timedelta(days=lookback)).isoformat()
            daily = measure([*build, "--vars", f"{{test_since: {test_since}}}"], dbt_env)
            every_row = measure(build, dbt_env)
            startup = measure([dbt_executable(), "ls", "--select", "dim_dates"], dbt_env)
            only_facts = measure(
                [dbt_executable(), "run", "--select", "config.materialized:incremental"], dbt_env
            )
            refresh_facts = measure(
                [dbt_executable(), "run", "--select", "config.materialized:incremental",
                 "--full-refresh"],
                dbt_env,
            )  # fmt: skip
            results[f"full build seconds ({label})"] = round(full["wall_s"], 1)
            results[f"full build peak MB ({label})"] = round(full["peak_mb"])
            results[f"build after one more day seconds ({label})"] = round(daily["wall_s"], 1)
            results[f"build after one more day / full ({label})"] = round(
                daily["wall_s"] / full["wall_s"], 3
            )
            results[f"same build, tests on every row, seconds ({label})"] = round(
                every_row["wall_s"], 1
            )
            results[f"dbt start-up (dbt ls) seconds ({label})"] = round(startup["wall_s"], 1)
            results[f"incremental models: incremental / full refresh ({label})"] = round(
                only_facts["wall_s"] / refresh_facts["wall_s"], 3
            )
    return results
