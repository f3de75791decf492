"""Reference data shared by the generator and dbt: the CSV seeds in seeds/."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

from railflow.errors import RailflowError
from railflow.settings import REPO_ROOT

SEEDS_DIR = REPO_ROOT / "seeds"

SEED_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "stations": {
        "station_id": pl.Utf8(),
        "station_name": pl.Utf8(),
        "city": pl.Utf8(),
        "country_code": pl.Utf8(),
        "latitude": pl.Float64(),
        "longitude": pl.Float64(),
        "timezone": pl.Utf8(),
        "is_hub": pl.Boolean(),
    },
    "routes": {
        "route_id": pl.Utf8(),
        "origin_station_id": pl.Utf8(),
        "destination_station_id": pl.Utf8(),
        "distance_km": pl.Int64(),
        "duration_minutes": pl.Int64(),
        "base_fare_eur": pl.Float64(),
        "operator": pl.Utf8(),
    },
    "holidays": {
        "holiday_date": pl.Date(),
        "country_code": pl.Utf8(),
        "holiday_name": pl.Utf8(),
        "holiday_type": pl.Utf8(),
    },
    # the experiment registry (railflow/experiment_registry.py validates its rows)
    "experiment_registry": {
        "experiment_id": pl.Utf8(),
        "hypothesis": pl.Utf8(),
        "owner": pl.Utf8(),
        "unit": pl.Utf8(),
        "control_share": pl.Float64(),
        "treatment_share": pl.Float64(),
        "start_day": pl.Int64(),
        "planned_duration_days": pl.Int64(),
        "planned_users_per_arm": pl.Int64(),
        "primary_metric": pl.Utf8(),
        "secondary_metrics": pl.Utf8(),
        "guardrail_metrics": pl.Utf8(),
        "exposure_trigger": pl.Utf8(),
    },
}


class SeedError(RailflowError):
    """A seed file is missing, unreadable or does not match its expected columns."""


def read_seed(name: str, seeds_dir: Path = SEEDS_DIR, path: Path | None = None) -> pl.DataFrame:
    """Read one seed with its declared types (from `path` when given, a copy being checked);
    a bad file gives a one-line error naming it."""
    path = path or seeds_dir / f"{name}.csv"
    schema = SEED_SCHEMAS[name]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SeedError(
            f"seed {path} cannot be read ({exc.strerror}); restore it from git"
        ) from None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SeedError(
            f"seed {path} is not valid UTF-8 (byte {exc.start}); re-save it as UTF-8"
        ) from None
    try:
        df = pl.read_csv(raw, schema_overrides=schema)
    except Exception as exc:  # polars raises several error types for bad CSV
        first = str(exc).splitlines()[0]
        raise SeedError(f"seed {path} does not parse: {first}") from None
    if list(df.columns) != list(schema):
        raise SeedError(
            f"seed {path} has columns {df.columns}; expected {list(schema)} in that order"
        )
    return df


@dataclass(frozen=True)
class Reference:
    stations: pl.DataFrame
    routes: pl.DataFrame
    holidays: pl.DataFrame


@cache
def load_reference(seeds_dir: Path = SEEDS_DIR) -> Reference:
    return Reference(
        stations=read_seed("stations", seeds_dir),
        routes=read_seed("routes", seeds_dir),
        holidays=read_seed("holidays", seeds_dir),
    )
