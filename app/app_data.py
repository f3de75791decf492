"""Cached, read-only access to the warehouse, reports and model artifacts for the app.

Every read opens the warehouse read-only through railflow.warehouse; expected failures become
messages on the page (missing warehouse -> which command to run, locked -> retry) via `guard`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import streamlit as st

from railflow.errors import RailflowError, WarehouseLockedError, WarehouseMissingError
from railflow.settings import Settings, get_settings
from railflow.warehouse import connect

T = TypeVar("T")


def settings() -> Settings:
    return get_settings()


@st.cache_data(ttl=120, show_spinner=False)
def query(duckdb_path: str, sql: str) -> pl.DataFrame:
    """Cached SQL read. The path is part of the cache key so two worlds never mix."""
    s = settings()
    with connect(s, read_only=True, wait_seconds=1.0) as wh:
        df = wh.query(sql)
    # money is DECIMAL in the warehouse; charts and tables want floats
    return df.with_columns(pl.col(pl.Decimal).cast(pl.Float64))


def table(layer: str, name: str, where: str = "") -> pl.DataFrame:
    s = settings()
    return query(str(s.duckdb_path), f"select * from {layer_table(layer, name)} {where}")


def layer_table(layer: str, name: str) -> str:
    return f'"{settings().schema(layer)}"."{name}"'


def exists(layer: str, name: str) -> bool:
    s = settings()
    found = query(
        str(s.duckdb_path),
        "select count(*) as n from information_schema.tables "
        f"where table_schema = '{s.schema(layer)}' and table_name = '{name}'",
    )
    return bool(found["n"][0])


def guard(render: Callable[[], T]) -> T | None:
    """Run a page body; expected failures become a message instead of a traceback."""
    try:
        if not exists("marts", "dim_dates"):  # a file, but nothing built in it yet
            st.error("The warehouse has no marts yet. Build them with `make run`, then reload.")
            return None
        return render()
    except WarehouseMissingError:
        st.error("No warehouse yet. Build it with `make run`, then reload this page.")
    except WarehouseLockedError:
        st.warning(
            "The warehouse is busy: a build (`make run` / `dbt build`) is writing to it. "
            "Retry in a minute."
        )
    except RailflowError as exc:
        st.error(f"{exc}")
    return None


def readouts() -> list[dict[str, Any]]:
    folder = settings().reports_dir / "experiments"
    return (
        [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        if folder.exists()
        else []
    )


def model_cards() -> dict[str, dict[str, Any]]:
    root = settings().artifacts_dir
    cards = {}
    if root.exists():
        for path in sorted(root.glob("*/model_card.json")):
            cards[path.parent.name] = json.loads(path.read_text())
    return cards


def run_results(sub: str = "") -> dict[str, Any] | None:
    """A dbt build's run_results.json: the main build's, or a sub-folder's ("sync")."""
    path: Path = settings().dbt_target_path / sub / "run_results.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- formatting shared by every page -------------------------------------------------------

COUNTRIES = {
    "AT": "Austria", "BE": "Belgium", "CH": "Switzerland", "CZ": "Czechia", "DE": "Germany",
    "DK": "Denmark", "ES": "Spain", "FR": "France", "GB": "United Kingdom", "HU": "Hungary",
    "IT": "Italy", "LU": "Luxembourg", "NL": "Netherlands", "PL": "Poland", "PT": "Portugal",
}  # fmt: skip
PLATFORMS = {"all": "All platforms", "web": "Web", "ios": "iOS", "android": "Android"}
REAL_USERS = "real users (bots and internal test accounts excluded)"


def country(code: str | None) -> str:
    return COUNTRIES.get(code or "", code or "unknown")


def eur(x: float | None, decimals: int = 2) -> str:
    if x is None:
        return "n/a"
    sign = "-" if x < 0 else ""
    return f"{sign}€{abs(x):,.{decimals}f}"


def signed_eur(x: float, decimals: int = 2) -> str:
    """A delta Streamlit colours right: "-€0.04" is a fall, "+€0.04" a rise."""
    return ("+" if x > 0 else "") + eur(x, decimals) if round(x, decimals) != 0 else eur(0.0)


def pct(x: float | None, decimals: int = 1, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{decimals}%}" if signed else f"{x:.{decimals}%}"


def data_through() -> Any:
    """The last local day with activity in the warehouse (not the load time)."""
    s = settings()
    found = query(
        str(s.duckdb_path),
        f"select max(activity_date) as d from {layer_table('marts', 'product_active_users')}",
    )
    return found["d"][0]


def about(population: str, extra: str = "") -> None:
    """The caption every page carries: who is counted and how fresh the data is."""
    through = data_through()
    shown = through.isoformat() if through is not None else "no data yet"
    st.caption(f"**Population:** {population}. **Data through** {shown} (local dates). {extra}")
