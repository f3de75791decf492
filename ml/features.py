"""Reading the feature marts and turning them into model inputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import polars as pl

from railflow.errors import RailflowError
from railflow.settings import Settings
from railflow.warehouse import Warehouse

# Each mart's sort order (its grain, searches by date first so time windows are slices). The
# warehouse returns rows in no fixed order otherwise, and sampling or tie-breaking on an unordered
# frame would train a different model each run.
MARTS = {
    "ml_booking_propensity_features": ("search_date", "search_id"),
    "ml_churn_features": ("user_id", "cutoff_date"),
    "ml_rfm_features": ("user_id",),
    "ml_ltv_features": ("user_id", "cutoff_date"),
}


class FeatureError(RailflowError):
    """Features are missing or unusable."""


def require_columns(
    df: pl.DataFrame, columns: Sequence[str], what: str, *, allow_empty: bool = False
) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FeatureError(
            f"{what}: missing feature column(s) {', '.join(missing)}; rebuild the marts with "
            "`dbt build --select marts.ml`"
        )
    if df.height == 0 and not allow_empty:
        raise FeatureError(f"{what}: no rows to work with; run the pipeline on a non-empty world")


def to_pandas(df: pl.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """sklearn input: booleans become 0/1 and nulls NaN (both estimators handle missing)."""
    frame = df.select(
        [pl.col(c).cast(pl.Float64) if df.schema[c] == pl.Boolean else pl.col(c) for c in columns]
    )
    return frame.to_pandas()


def read_mart(wh: Warehouse, name: str) -> pl.DataFrame:
    if not wh.table_exists("marts", name):
        raise FeatureError(
            f"feature mart {wh.schema('marts')}.{name} does not exist; run `make run` "
            "(or `python -m railflow.pipeline --from dbt_build`)"
        )
    return wh.read("marts", name, order_by=MARTS[name])


def read_truth(settings: Settings, name: str) -> pl.DataFrame | None:
    """Ground truth written by the generator (for oracle metrics); None when absent."""
    path = settings.truth_dir / f"{name}.parquet"
    return pl.read_parquet(path) if path.exists() else None


@dataclass(frozen=True)
class GeneratorTruth:
    """What the generator planted that the oracles need (data/truth/, never in the warehouse)."""

    activity: pl.DataFrame  # one row per user-day from signup: is_active, session_rate, sessions
    users: pl.DataFrame  # persona, signup_at, churn and reactivation times
    searches: pl.DataFrame  # each search's true booking probability and price
    planted: dict[str, Any]  # params.json's "planted" (scripts/world.py PARAMS)
    start_date: date  # the world's first day


def read_generator_truth(settings: Settings) -> GeneratorTruth | None:
    """The generator's truth for the oracles; None when any part is absent (e.g. a warehouse
    loaded from files someone else generated)."""
    params_path = settings.truth_dir / "params.json"
    parts = {name: read_truth(settings, name) for name in ("activity", "users", "searches")}
    if not params_path.exists() or any(part is None for part in parts.values()):
        return None
    params = json.loads(params_path.read_text())
    return GeneratorTruth(
        **parts,  # type: ignore[arg-type]
        planted=params["planted"],
        start_date=date.fromisoformat(params["generator"]["start_date"]),
    )
