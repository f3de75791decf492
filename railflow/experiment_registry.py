"""The experiment registry: every experiment's design in one file, seeds/experiment_registry.csv.

An analyst adds an experiment by adding a row (no Python). The same file is a dbt seed (the
experiment marts join it), the generator plants its splits, start days and triggers, and the
readouts take their split, metrics and planned end from it. docs/experiments.md describes the
columns. A bad row is refused with one line naming the experiment and the column.

    python -m railflow.experiment_registry                 # check the registry, list it
    python -m railflow.experiment_registry --path my.csv   # check another file
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from railflow.errors import RailflowError, cli_entrypoint
from railflow.settings import REPO_ROOT

REGISTRY_PATH = REPO_ROOT / "seeds" / "experiment_registry.csv"

# The metrics a readout can compute, each per exposed user over the outcome window (searches
# made at or after exposure, within var('experiment_outcome_window_days')), and the direction
# that is good. Columns of marts.experiment_user_outcomes.
METRICS: dict[str, str] = {
    "conversion": "share of users with a booking from a search in the outcome window",
    "revenue_per_user": "net revenue (gross - discount - refunds inside the window) per user, EUR",
    "bookings_per_user": "bookings from searches in the outcome window per user",
    "searches_per_user": "searches in the outcome window per user",
    "refund_per_user": "refunds inside the outcome window per user, EUR (lower is better)",
    "refund_rate": "refunds inside the outcome window per euro sold (gross − discount), a ratio "
    "of sums per arm (lower is better)",
}
LOWER_IS_BETTER = frozenset({"refund_per_user", "refund_rate"})
# Triggers the generator knows how to plant and the marts how to find: the exposure happens at
# the first search the trigger fires on (docs/experiments.md).
TRIGGERS = frozenset({"medium_intent_search"})
UNITS = frozenset({"user"})


class RegistryError(RailflowError):
    """The experiment registry has a row that cannot be used."""


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    hypothesis: str
    owner: str
    unit: str
    planned_split: dict[str, float]
    start_day: int
    planned_duration_days: int | None
    planned_users_per_arm: int | None
    primary_metric: str
    secondary_metrics: tuple[str, ...]
    guardrail_metrics: tuple[str, ...]
    exposure_trigger: str | None

    @property
    def treatment_share(self) -> float:
        return self.planned_split["treatment"]


def _metrics(text: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in (text or "").split("|") if m.strip())


def _experiment(row: dict, where: str) -> Experiment:
    name = row["experiment_id"]
    for column in ("experiment_id", "hypothesis", "owner", "unit", "primary_metric"):
        if not (row[column] or "").strip():
            raise RegistryError(f"{where}: column {column} is empty; fill it in")
    split = {"control": row["control_share"], "treatment": row["treatment_share"]}
    if any(v is None or not 0 < v < 1 for v in split.values()):
        raise RegistryError(
            f"{where} ({name}): control_share and treatment_share must each lie strictly "
            f"between 0 and 1, got {split['control']} and {split['treatment']}"
        )
    if not math.isclose(sum(split.values()), 1.0, abs_tol=1e-9):
        raise RegistryError(
            f"{where} ({name}): the planned split {split['control']} + {split['treatment']} "
            "does not sum to 1; fix control_share or treatment_share"
        )
    secondary, guardrail = _metrics(row["secondary_metrics"]), _metrics(row["guardrail_metrics"])
    for metric in (row["primary_metric"], *secondary, *guardrail):
        if metric not in METRICS:
            raise RegistryError(
                f"{where} ({name}): unknown metric {metric!r}; known: {', '.join(METRICS)}"
            )
    if row["primary_metric"] in secondary:
        raise RegistryError(f"{where} ({name}): the primary metric is also listed as secondary")
    if row["unit"] not in UNITS:
        raise RegistryError(
            f"{where} ({name}): unit {row['unit']!r} is not supported; use one of {sorted(UNITS)}"
        )
    trigger = (row["exposure_trigger"] or "").strip() or None
    if trigger is not None and trigger not in TRIGGERS:
        raise RegistryError(
            f"{where} ({name}): unknown trigger {trigger!r}; known: {', '.join(sorted(TRIGGERS))}"
            " (or leave it empty)"
        )
    if row["start_day"] is None or row["start_day"] < 0:
        raise RegistryError(f"{where} ({name}): start_day must be a day number >= 0")
    duration, users = row["planned_duration_days"], row["planned_users_per_arm"]
    if duration is None and users is None:
        raise RegistryError(
            f"{where} ({name}): give planned_duration_days or planned_users_per_arm (the planned "
            "end: readouts before it are sequential)"
        )
    if (duration is not None and duration <= 0) or (users is not None and users <= 0):
        raise RegistryError(
            f"{where} ({name}): planned_duration_days and planned_users_per_arm must be positive"
        )
    return Experiment(
        experiment_id=name,
        hypothesis=row["hypothesis"],
        owner=row["owner"],
        unit=row["unit"],
        planned_split=split,
        start_day=row["start_day"],
        planned_duration_days=duration,
        planned_users_per_arm=users,
        primary_metric=row["primary_metric"],
        secondary_metrics=secondary,
        guardrail_metrics=guardrail,
        exposure_trigger=trigger,
    )


def load_registry(path: Path = REGISTRY_PATH) -> dict[str, Experiment]:
    """Every experiment of the registry, in file order (the generator plants them in that
    order), validated; RegistryError (one line) on the first bad row."""
    from scripts.reference import read_seed  # the seeds' reader (types, one-line errors)

    df = read_seed("experiment_registry", path=path)
    experiments: dict[str, Experiment] = {}
    for line, row in enumerate(df.iter_rows(named=True), start=2):
        experiment = _experiment(row, f"experiment registry {path.name} line {line}")
        if experiment.experiment_id in experiments:
            raise RegistryError(
                f"experiment registry {path.name} line {line}: experiment "
                f"{experiment.experiment_id!r} is registered twice"
            )
        experiments[experiment.experiment_id] = experiment
    return experiments


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m railflow.experiment_registry",
        description="Check the experiment registry and list its experiments.",
    )
    parser.add_argument("--path", type=Path, default=REGISTRY_PATH, help="registry CSV")
    args = parser.parse_args(argv)
    for e in load_registry(args.path).values():
        end = (
            f"{e.planned_duration_days} days"
            if e.planned_duration_days
            else f"{e.planned_users_per_arm:,} users/arm"
        )
        print(
            f"{e.experiment_id}: primary {e.primary_metric}, split "
            f"{e.planned_split['control']:g}/{e.planned_split['treatment']:g}, from day "
            f"{e.start_day}, planned {end}, trigger {e.exposure_trigger or 'none'}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
