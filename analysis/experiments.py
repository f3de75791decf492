"""Experiment readouts: per experiment, a versioned JSON, a Markdown memo with a lift plot, and
rows in `reports.experiment_readouts` for the app.

    python -m analysis.experiments                  # every experiment in the marts
    python -m analysis.experiments --experiment aa_test --winsorize 0.99

A run over every experiment replaces the table; `--experiment` replaces only those rows.

Metrics: conversion (two-proportion z-test, delta-method relative interval) is primary;
revenue per user (Welch) is secondary, optionally winsorised, with CUPED on the pre-exposure
revenue. Holm corrects across the two. SRM (chi-square vs the planned split, p < 0.001)
invalidates a readout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl

from analysis import stats
from railflow.errors import RailflowError, cli_entrypoint
from railflow.settings import REPO_ROOT, Settings, get_settings
from railflow.stage import StageResult
from railflow.warehouse import connect

log = logging.getLogger("railflow.experiments")
SCHEMA_VERSION = 1
SCHEMA_PATH = REPO_ROOT / "schemas" / "experiment_readout.schema.json"
ALPHA = 0.05
POWER = 0.8
SRM_THRESHOLD = 0.001
# Planned designs (the generator plants the same splits; see docs/world.md).
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "medium_intent_discount": {
        "planned_split": {"control": 0.5, "treatment": 0.5},
        "hypothesis": "A 5% discount on medium-intent searches raises conversion.",
    },
    "aa_test": {
        "planned_split": {"control": 0.5, "treatment": 0.5},
        "hypothesis": "A/A: both arms see the same product; no difference expected.",
    },
    "srm_checkout_redesign": {
        "planned_split": {"control": 0.5, "treatment": 0.5},
        "hypothesis": "A redesigned checkout raises conversion.",
    },
}
DEFAULT_DESIGN = {"planned_split": {"control": 0.5, "treatment": 0.5}, "hypothesis": ""}


class ExperimentError(RailflowError):
    """An experiment cannot be read out."""


def read_outcomes(settings: Settings) -> pl.DataFrame:
    with connect(settings) as wh:
        mart = f"{wh.schema('marts')}.experiment_user_outcomes"
        if not wh.table_exists("marts", "experiment_user_outcomes"):
            raise ExperimentError(f"mart {mart} does not exist; run `make run` first")
        outcomes = wh.read("marts", "experiment_user_outcomes")
    if outcomes.height == 0:
        raise ExperimentError(
            f"mart {mart} has no experiment exposures to read out; simulate a period that "
            "covers the experiments (RAILFLOW_START_DATE, RAILFLOW_DAYS) and run `make run`"
        )
    return outcomes


def _variant_summary(df: pl.DataFrame) -> dict[str, Any]:
    revenue = df["revenue_eur"].to_numpy()
    return {
        "users": df.height,
        "converters": int(df["is_converted"].sum()),
        "conversions": int(df["conversions"].sum()),
        "conversion_rate": stats.finite(df["is_converted"].mean()) if df.height else None,
        "revenue_eur": stats.finite(revenue.sum()),
        "revenue_per_user_mean": stats.finite(revenue.mean()) if df.height else None,
        "revenue_per_user_sd": stats.finite(revenue.std(ddof=1)) if df.height > 1 else None,
    }


def decide(
    srm_flagged: bool, conversion: dict[str, Any] | None, p_holm: float | None
) -> tuple[str, str]:
    if srm_flagged:
        return (
            "invalid: SRM",
            "Exposures do not match the planned split: results are not to be trusted.",
        )
    if conversion is None or p_holm is None:
        return "inconclusive", "Not enough data to test the primary metric."
    if p_holm < ALPHA:
        if conversion["abs_lift"] > 0:
            return "ship", "Conversion is significantly higher in treatment (Holm-adjusted)."
        return "don't ship", "Conversion is significantly lower in treatment (Holm-adjusted)."
    return "inconclusive", "No significant difference in conversion at alpha 0.05 (Holm-adjusted)."


def readout(
    experiment_id: str, outcomes: pl.DataFrame, winsorize_at: float | None = None
) -> dict[str, Any]:
    """The typed readout of one experiment (see schemas/experiment_readout.schema.json)."""
    design = EXPERIMENTS.get(experiment_id, DEFAULT_DESIGN)
    exposed = outcomes.filter(pl.col("experiment_id") == experiment_id)
    if exposed.height == 0:
        raise ExperimentError(
            f"experiment {experiment_id!r} has no exposures in the marts; known: "
            f"{', '.join(sorted(outcomes['experiment_id'].unique().to_list())) or 'none'}"
        )
    # assignment is checked on everyone exposed; the metrics on whole outcome windows only (a
    # user exposed near the end of the data has had fewer days to convert)
    srm = stats.srm_test(
        {v: exposed.filter(pl.col("variant") == v).height for v in ("control", "treatment")},
        design["planned_split"],
        SRM_THRESHOLD,
    )
    df = exposed.filter(pl.col("is_outcome_window_complete"))
    control = df.filter(pl.col("variant") == "control")
    treatment = df.filter(pl.col("variant") == "treatment")
    variants = {"control": _variant_summary(control), "treatment": _variant_summary(treatment)}
    warnings: list[str] = []
    if open_windows := exposed.height - df.height:
        warnings.append(
            f"{open_windows:,} exposed user(s) are left out of the metrics: their outcome window "
            "is not over by the end of the data"
        )
    conversion = revenue = cuped = None
    p_values: dict[str, float | None] = {"conversion": None, "revenue_per_user": None}
    if min(control.height, treatment.height) == 0:
        missing = "control" if control.height == 0 else "treatment"
        warnings.append(f"variant {missing} has no users: nothing to compare")
    else:
        conv = stats.two_proportion_ztest(
            int(control["is_converted"].sum()), control.height,
            int(treatment["is_converted"].sum()), treatment.height, ALPHA,
        )  # fmt: skip
        conversion = {
            **conv.as_dict(),
            "method": "two-proportion z-test; relative CI by the delta method",
            "chance_to_win": stats.chance_to_win(
                int(control["is_converted"].sum()), control.height,
                int(treatment["is_converted"].sum()), treatment.height,
            ),
        }  # fmt: skip
        if conv.p_value is None:
            warnings.append("conversion has no variance (rates of 0 or 1): no test possible")
        p_values["conversion"] = conversion["p_value"]
        if min(control.height, treatment.height) >= 2:
            y = df["revenue_eur"].to_numpy()
            cap = None
            if winsorize_at is not None:
                y, cap = stats.winsorize(y, winsorize_at)
            is_t = (df["variant"] == "treatment").to_numpy()
            rev = stats.welch_ttest(y[~is_t], y[is_t], ALPHA)
            revenue = {
                **rev.as_dict(),
                "method": "Welch's t-test",
                "winsorized_at_quantile": winsorize_at,
                "winsorize_cap_eur": stats.finite(cap),
            }
            p_values["revenue_per_user"] = revenue["p_value"]
            cuped = stats.cuped(y, df["pre_exposure_revenue_eur"].to_numpy(), is_t, ALPHA)
        else:
            warnings.append("revenue per user needs at least two users per variant")
    adjusted = stats.holm(p_values)
    baseline = variants["control"]["conversion_rate"]
    n_min = min(control.height, treatment.height)
    decision, reason = decide(srm["flagged"], conversion, adjusted["conversion"])
    if srm["flagged"]:
        warnings.append("sample-ratio mismatch: do not act on these results")
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_id": experiment_id,
        "hypothesis": design["hypothesis"],
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "alpha": ALPHA,
        "planned_split": design["planned_split"],
        "first_exposed_at": exposed["exposed_at"].min().isoformat(),
        "last_exposed_at": exposed["exposed_at"].max().isoformat(),
        "users_with_open_outcome_window": open_windows,
        "variants": variants,
        "srm": srm,
        "metrics": {"conversion": conversion, "revenue_per_user": revenue},
        "cuped_revenue_per_user": cuped,
        "holm_adjusted_p_values": adjusted,
        "power": {
            "power": POWER,
            "users_per_arm": n_min,
            "minimum_detectable_relative_lift": stats.finite(
                stats.minimum_detectable_effect(baseline, n_min, ALPHA, POWER)
                if baseline is not None
                else None
            ),
        },
        "decision": decision,
        "decision_reason": reason,
        "warnings": warnings,
    }


def validate_readout(doc: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(doc, schema)
    json.dumps(doc, allow_nan=False)  # strict JSON: a NaN anywhere is a bug


def _plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    conv = doc["metrics"]["conversion"]
    if conv and conv["rel_lift"] is not None:
        rows.append(
            ("conversion (relative)", conv["rel_lift"], conv["rel_ci_low"], conv["rel_ci_high"])
        )
    rev = doc["metrics"]["revenue_per_user"]
    base = doc["variants"]["control"]["revenue_per_user_mean"]
    if rev and base:
        rows.append(
            (
                "revenue/user (relative)",
                rev["diff"] / base,
                rev["ci_low"] / base,
                rev["ci_high"] / base,
            )
        )
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.6 * max(len(rows), 1)))
    for i, (_label, mid, lo, hi) in enumerate(rows):
        ax.errorbar(
            [mid * 100], [i], xerr=[[(mid - lo) * 100], [(hi - mid) * 100]], fmt="o", capsize=4
        )
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_xlabel("lift, % (95% CI)")
    ax.set_title(f"{doc['experiment_id']}: {doc['decision']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def memo(doc: dict[str, Any], plot_name: str) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 100:+.2f}%"

    conv = doc["metrics"]["conversion"] or {}
    rev = doc["metrics"]["revenue_per_user"] or {}
    cuped = doc["cuped_revenue_per_user"] or {}
    c, t = doc["variants"]["control"], doc["variants"]["treatment"]
    lines = [
        f"# Experiment readout: {doc['experiment_id']}",
        "",
        f"**Decision: {doc['decision']}** — {doc['decision_reason']}",
        "",
        f"Hypothesis: {doc['hypothesis']}",
        "",
        "| | control | treatment |",
        "|---|---|---|",
        f"| users | {c['users']:,} | {t['users']:,} |",
        f"| conversion rate | {pct(c['conversion_rate'])} | {pct(t['conversion_rate'])} |",
        f"| revenue per user (EUR) | {c['revenue_per_user_mean'] or 0:.2f} "
        f"| {t['revenue_per_user_mean'] or 0:.2f} |",
        "",
        f"- Conversion lift: {pct(conv.get('abs_lift'))} absolute "
        f"[{pct(conv.get('abs_ci_low'))}, {pct(conv.get('abs_ci_high'))}], "
        f"{pct(conv.get('rel_lift'))} relative [{pct(conv.get('rel_ci_low'))}, "
        f"{pct(conv.get('rel_ci_high'))}] (delta method); p = {conv.get('p_value')}, Holm p = "
        f"{doc['holm_adjusted_p_values']['conversion']}; chance to win "
        f"{conv.get('chance_to_win')}.",
        f"- Revenue per user: {rev.get('diff')} EUR [{rev.get('ci_low')}, {rev.get('ci_high')}] "
        f"(Welch); winsorised at {rev.get('winsorized_at_quantile')}; Holm p = "
        f"{doc['holm_adjusted_p_values']['revenue_per_user']}.",
        f"- CUPED (pre-exposure revenue): {cuped.get('diff')} EUR [{cuped.get('ci_low')}, "
        f"{cuped.get('ci_high')}], variance reduction {pct(cuped.get('variance_reduction'))}.",
        f"- SRM: chi-square p = {doc['srm']['p_value']} (flagged below {SRM_THRESHOLD}).",
        f"- Power: with {doc['power']['users_per_arm']:,} users per arm the minimum detectable "
        f"relative lift in conversion is {pct(doc['power']['minimum_detectable_relative_lift'])} "
        f"(alpha {ALPHA}, power {POWER}).",
    ]
    lines += [f"- Warning: {w}" for w in doc["warnings"]]
    lines += ["", f"![lift]({plot_name})", ""]
    return "\n".join(lines)


def table_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    keys = {
        "conversion": ("control_rate", "treatment_rate", "abs_lift", "abs_ci_low", "abs_ci_high"),
        "revenue_per_user": ("control_mean", "treatment_mean", "diff", "ci_low", "ci_high"),
    }
    for metric, names in keys.items():
        m = doc["metrics"][metric] or {}
        values = [m.get(name) for name in names] + [m.get("rel_lift")]
        rows.append(
            {
                "experiment_id": doc["experiment_id"],
                "metric": metric,
                "control_value": values[0],
                "treatment_value": values[1],
                "abs_lift": values[2],
                "ci_low": values[3],
                "ci_high": values[4],
                "rel_lift": values[5],
                "p_value": m.get("p_value"),
                "p_value_holm": doc["holm_adjusted_p_values"][metric],
                "control_users": doc["variants"]["control"]["users"],
                "treatment_users": doc["variants"]["treatment"]["users"],
                "srm_p_value": doc["srm"]["p_value"],
                "srm_flagged": doc["srm"]["flagged"],
                "minimum_detectable_relative_lift": doc["power"][
                    "minimum_detectable_relative_lift"
                ],
                "decision": doc["decision"],
                "generated_at": doc["generated_at"],
            }
        )
    return rows


def run(
    settings: Settings, experiments: Sequence[str] | None = None, winsorize_at: float | None = None
) -> list[dict[str, Any]]:
    outcomes = read_outcomes(settings)
    ids = (
        list(dict.fromkeys(experiments))  # an id named twice is read out once
        if experiments
        else sorted(outcomes["experiment_id"].unique().to_list())
    )
    out_dir = settings.reports_dir / "experiments"
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = []
    for experiment_id in ids:
        doc = readout(experiment_id, outcomes, winsorize_at)
        validate_readout(doc)
        (out_dir / f"{experiment_id}.json").write_text(json.dumps(doc, indent=2, allow_nan=False))
        _plot(doc, out_dir / f"{experiment_id}.png")
        (out_dir / f"{experiment_id}.md").write_text(memo(doc, f"{experiment_id}.png"))
        docs.append(doc)
    rows = pl.DataFrame(
        [r for d in docs for r in table_rows(d)],
        schema_overrides={
            k: pl.Float64
            for k in ("control_value", "treatment_value", "abs_lift", "ci_low", "ci_high",
                      "rel_lift", "p_value", "p_value_holm", "srm_p_value",
                      "minimum_detectable_relative_lift")
        },
    )  # fmt: skip
    with connect(settings, read_only=False) as wh:
        if experiments and wh.table_exists("reports", "experiment_readouts"):
            # a readout of some experiments leaves the others' rows as they were
            kept = wh.read("reports", "experiment_readouts").filter(
                ~pl.col("experiment_id").is_in(ids)
            )
            rows = pl.concat([kept, rows], how="diagonal_relaxed")
        wh.write(rows, "reports", "experiment_readouts")
    return docs


def stage(settings: Settings) -> StageResult:
    docs = run(settings)
    metrics = {
        d[
            "experiment_id"
        ]: f"{d['decision']} (conversion p={d['metrics']['conversion']['p_value']:.2g})"
        if d["metrics"]["conversion"] and d["metrics"]["conversion"]["p_value"] is not None
        else d["decision"]
        for d in docs
    }
    return StageResult(
        rows=len(docs),
        outputs=[
            str(settings.reports_dir / "experiments"),
            f"{settings.schema('reports')}.experiment_readouts",
        ],
        metrics=metrics,
    )


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the examples, a line each
    )
    parser.add_argument(
        "--experiment", action="append", help="experiment id (repeatable); default all"
    )
    parser.add_argument(
        "--winsorize",
        type=float,
        metavar="Q",
        help="cap revenue at this pooled quantile, e.g. 0.99",
    )
    args = parser.parse_args(argv)
    if args.winsorize is not None and not 0.5 < args.winsorize < 1:
        parser.error("--winsorize must be a quantile between 0.5 and 1")
    settings = get_settings()
    for doc in run(settings, args.experiment, args.winsorize):
        print(f"{doc['experiment_id']}: {doc['decision']} — {doc['decision_reason']}")
    print(f"readouts in {settings.reports_dir / 'experiments'}")


if __name__ == "__main__":
    main(sys.argv[1:])
