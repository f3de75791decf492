"""The tracking plan (schemas/tracking_plan.yml) as Python: column types per raw table.

Used by the generator (to emit exactly these columns), the loader (to validate before loading)
and the tests (to validate generated events).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl
import yaml

from railflow.errors import RailflowError
from railflow.settings import REPO_ROOT

PLAN_PATH = REPO_ROOT / "schemas" / "tracking_plan.yml"

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.Utf8(),
    "integer": pl.Int64(),
    "number": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us", "UTC"),
}

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# `format:` of a string column: the regex a whole value must match, and what it means.
FORMATS: dict[str, tuple[str, str]] = {
    "sha256_hex": (r"^[0-9a-f]{64}$", "64 lowercase hex characters (a salted SHA-256)"),
    "domain": (
        rf"^{_LABEL}(?:\.{_LABEL})+$",
        "a bare domain, lowercase, such as gmail.com (no '@')",
    ),
}


class PlanError(RailflowError):
    """The tracking plan file itself is invalid."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    references: str | None = None
    key: bool = False
    format: str | None = None  # a key of FORMATS

    @property
    def dtype(self) -> pl.DataType:
        return POLARS_TYPES[self.type]

    @property
    def free_text(self) -> bool:
        """A string no rule constrains (not an id, enum, reference or format): where stray
        personal data such as a phone number could hide."""
        return self.type == "string" and not (
            self.key or self.enum or self.references or self.format
        )


@dataclass(frozen=True)
class TableSpec:
    name: str
    kind: str  # "event" or "entity"
    columns: tuple[Column, ...]

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}

    @property
    def time_column(self) -> str:
        return "occurred_at" if self.kind == "event" else "updated_at"

    @property
    def key(self) -> str:
        return "event_id" if self.kind == "event" else "user_id"


def _enum(spec: dict) -> tuple[str, ...] | None:
    """A column's allowed values: `enum` in the plan, or `enum_from: experiment_registry` for
    the ids of the experiment registry (seeds/experiment_registry.csv), their one home."""
    if spec.get("enum_from") == "experiment_registry":
        from railflow.experiment_registry import load_registry

        return tuple(load_registry())
    if "enum_from" in spec:
        raise PlanError(f"{PLAN_PATH}: unknown enum_from {spec['enum_from']!r}")
    return tuple(spec["enum"]) if "enum" in spec else None


def _columns(props: dict[str, dict]) -> list[Column]:
    for name, spec in props.items():
        if spec.get("format") not in (None, *FORMATS):
            raise PlanError(
                f"{PLAN_PATH}: column {name} has unknown format {spec['format']!r}; "
                f"use one of {', '.join(FORMATS)}"
            )
    return [
        Column(
            name=name,
            type=spec["type"],
            required=bool(spec.get("required", False)),
            enum=_enum(spec),
            minimum=spec.get("min"),
            maximum=spec.get("max"),
            references=spec.get("references"),
            key=bool(spec.get("key", False)),
            format=spec.get("format"),
        )
        for name, spec in props.items()
    ]


@cache
def load_plan(path: Path = PLAN_PATH) -> dict[str, TableSpec]:
    """Every raw table of the plan, by name: events first (in plan order), then entities."""
    # libyaml's safe loader when PyYAML was built with it: same result, several times faster
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    plan = yaml.load(path.read_text(), Loader=loader)
    common = _columns(plan["common_properties"])
    tables: dict[str, TableSpec] = {}
    for name, spec in plan["events"].items():
        cols = common + _columns(spec.get("properties") or {})
        tables[name] = TableSpec(name, "event", tuple(cols))
    for name, spec in plan["entities"].items():
        tables[name] = TableSpec(name, "entity", tuple(_columns(spec["properties"])))
    return tables


def event_names() -> list[str]:
    return [t.name for t in load_plan().values() if t.kind == "event"]
