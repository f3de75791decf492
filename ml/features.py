"""Reading the feature marts and turning them into model inputs."""

from __future__ import annotations

from collections.abc import Sequence

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
