"""Experiment readouts: per experiment, a versioned JSON, a Markdown memo with a lift plot, and
rows in `reports.experiment_readouts` for the app.

    python -m analysis.experiments                  # every experiment in the marts
    python -m analysis.experiments --experiment aa_test --winsorize 0.99

A run over every experiment replaces the table; `--experiment` replaces only those rows.

The design of each experiment (split, metrics, planned end, trigger) comes from the registry,
seeds/experiment_registry.csv. The primary metric decides, unadjusted; Holm corrects across the
secondary metrics only; a guardrail significantly worse blocks a ship. Before the planned end
every interval and the decision are sequential (always-valid confidence sequences, as in
GrowthBook's sequential mode), so a readout may be looked at every day; at the planned end the
fixed-horizon test decides. CUPED (pre-period searches, bookings, revenue and quoted prices) is
reported beside each metric with its variance reduction. A triggered experiment also gets the
treatment's effect on one search (user-clustered). SRM (chi-square vs the planned split,
p < 0.001) invalidates a readout. docs/experiments.md states the definitions.
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
import numpy as np
import polars as pl

from analysis import stats
from railflow.errors import RailflowError, cli_entrypoint
from railflow.experiment_registry import (
    LOWER_IS_BETTER,
    METRICS,
    Experiment,
    load_registry,
)
from railflow.settings import REPO_ROOT, Settings, get_settings
from railflow.stage import StageResult
from railflow.warehouse import connect

log = logging.getLogger("railflow.experiments")
SCHEMA_VERSION = 2
SCHEMA_PATH = REPO_ROOT / "schemas" / "experiment_readout.schema.json"
ALPHA = 0.05
POWER = 0.8
SRM_THRESHOLD = 0.001
# metric -> (column of marts.experiment_user_outcomes, test); every metric is per exposed user
METRIC_COLUMNS: dict[str, tuple[str, str]] = {
    "conversion": ("is_converted", "proportion"),
    "revenue_per_user": ("revenue_eur", "mean"),
    "bookings_per_user": ("bookings", "mean"),
    "searches_per_user": ("searches", "mean"),
    "refund_per_user": ("refund_eur", "mean"),
    "refund_rate": ("refund_eur", "ratio"),
}
# a ratio metric's denominator, per user: refunds per euro sold (gross − discount), so a
# treatment that sells more is not blamed for refunding in proportion
RATIO_DENOMINATORS: dict[str, pl.Expr] = {
    "refund_rate": pl.col("gross_revenue_eur") - pl.col("discount_eur"),
}
# for a triggered experiment, what the user asked for on the search that fired the trigger:
# chosen before the arm can act, so CUPED may use it (experiment_trigger_searches)
TRIGGER_COVARIATES = {
    "price_seen_eur": "trigger_price_seen_eur",
    "lead_time_days": "trigger_lead_time_days",
    "passengers": "trigger_passengers",
}
MONEY_METRICS = frozenset({"revenue_per_user", "refund_per_user"})
CUPED_COVARIATES = (
    "pre_exposure_searches",
    "pre_exposure_bookings",
    "pre_exposure_revenue_eur",
    "pre_exposure_quoted_eur",
)
ESTIMAND = (
    "Unit: the user, randomised by hash of experiment and user id, analysed from the first "
    "exposure (for a triggered experiment: the search that fired the trigger). Outcomes count "
    "from the searches the user made at or after exposure and within the outcome window; a "
    "booking counts with the search it came from. Revenue per user is net: gross − discount − "
    "refunds paid inside the window (fct_bookings' definitions), in EUR. Users whose window is "
    "not over by the end of the data are left out of the metrics (not of the SRM check). Bots "
    "and internal accounts are excluded."
)


class ExperimentError(RailflowError):
    """An experiment cannot be read out."""


def read_marts(settings: Settings) -> dict[str, pl.DataFrame]:
    """The experiment marts the readouts need: outcomes, designs, trigger searches."""
    tables = {}
    with connect(settings) as wh:
        for name in ("experiment_user_outcomes", "experiment_designs",
                     "experiment_trigger_searches"):  # fmt: skip
            if not wh.table_exists("marts", name):
                raise ExperimentError(
                    f"mart {wh.schema('marts')}.{name} does not exist; run `make run` first"
                )
            tables[name] = wh.read("marts", name)
        mart = f"{wh.schema('marts')}.experiment_user_outcomes"
    if tables["experiment_user_outcomes"].height == 0:
        raise ExperimentError(
            f"mart {mart} has no experiment exposures to read out; simulate a period that "
            "covers the experiments (RAILFLOW_START_DATE, RAILFLOW_DAYS) and run `make run`"
        )
    return tables


def _variant_summary(df: pl.DataFrame) -> dict[str, Any]:
    revenue = df["revenue_eur"].to_numpy()
    return {
        "users": df.height,
        "converters": int(df["is_converted"].sum()),
        "bookings": int(df["bookings"].sum()),
        "conversion_rate": stats.finite(df["is_converted"].mean()) if df.height else None,
        "revenue_eur": stats.finite(revenue.sum()),
        "revenue_per_user_mean": stats.finite(revenue.mean()) if df.height else None,
        "revenue_per_user_sd": stats.finite(revenue.std(ddof=1)) if df.height > 1 else None,
    }


def _compare(
    metric: str,
    df: pl.DataFrame,
    is_t: np.ndarray,
    winsorize_at: float | None,
    tuning_n: int,
) -> dict[str, Any]:
    column, kind = METRIC_COLUMNS[metric]
    y = df[column].cast(pl.Float64).to_numpy()
    extra: dict[str, Any] = {}
    if kind == "proportion":
        result = stats.two_proportion_ztest(
            int(y[~is_t].sum()), int((~is_t).sum()), int(y[is_t].sum()), int(is_t.sum()), ALPHA
        )
        method = "two-proportion z-test (unpooled SE); relative CI from the log risk ratio"
        extra["chance_to_win"] = stats.chance_to_win(
            int(y[~is_t].sum()), int((~is_t).sum()), int(y[is_t].sum()), int(is_t.sum())
        )
    elif kind == "ratio":
        den = df.select(RATIO_DENOMINATORS[metric]).to_series().cast(pl.Float64).to_numpy()
        result = stats.ratio_ztest(y[~is_t], den[~is_t], y[is_t], den[is_t], ALPHA)
        method = "ratio of sums per arm, z-test on delta-method standard errors"
    else:
        if winsorize_at is not None and metric in MONEY_METRICS:
            y, cap = stats.winsorize(y, winsorize_at)
            extra |= {"winsorized_at_quantile": winsorize_at, "winsorize_cap_eur": cap}
        result = stats.welch_ttest(y[~is_t], y[is_t], ALPHA)
        method = "Welch's t-test; relative CI from the log ratio of the means"
    # CUPED adjusts a per-user mean; a ratio of sums is left unadjusted
    covariates = [c for c in (*CUPED_COVARIATES, *TRIGGER_COVARIATES.values()) if c in df.columns]
    cuped = (
        stats.cuped(y, df.select(covariates).cast(pl.Float64).to_numpy(), is_t, ALPHA)
        if covariates and kind != "ratio"
        else None
    )
    return {
        **result.as_dict(),
        "method": method,
        "sequential": stats.sequential(result, len(y), ALPHA, tuning_n),
        "cuped": cuped,
        **extra,
    }


def _is_better(metric: str, lift: float) -> bool:
    return lift < 0 if metric in LOWER_IS_BETTER else lift > 0


def _significant(m: dict[str, Any], mode: str) -> bool:
    if mode == "sequential":
        return bool(m["sequential"]["significant"])
    return m["p_value"] is not None and m["p_value"] < ALPHA


def decide(
    srm_flagged: bool,
    primary: str,
    metrics: dict[str, dict[str, Any] | None],
    guardrails: Sequence[str],
    mode: str,
) -> tuple[str, str]:
    if srm_flagged:
        return (
            "invalid: SRM",
            "Exposures do not match the planned split: results are not to be trusted.",
        )
    m = metrics.get(primary)
    if m is None or m["p_value"] is None:
        return "inconclusive", f"Not enough data to test the primary metric ({primary})."
    how = (
        "always-valid sequential interval, before the planned end"
        if mode == "sequential"
        else "fixed-horizon test at the planned end"
    )
    broken = [g for g in guardrails if (metrics.get(g) or {}).get("guardrail_broken")]
    if _significant(m, mode):
        if _is_better(primary, m["abs_lift"]):
            if broken:
                return "don't ship", (
                    f"{primary} is significantly better but guardrail(s) "
                    f"{', '.join(broken)} are significantly worse ({how})."
                )
            return "ship", f"{primary} is significantly better in treatment ({how})."
        return "don't ship", f"{primary} is significantly worse in treatment ({how})."
    return "inconclusive", f"No significant difference in {primary} at alpha {ALPHA} ({how})."


def _analysis_mode(
    design: Experiment, status: dict[str, Any] | None, users_per_arm: int
) -> dict[str, Any]:
    """Sequential before the planned end, fixed-horizon at or after it."""
    tuning = 2 * design.planned_users_per_arm if design.planned_users_per_arm else None
    tuning = tuning or stats.SEQUENTIAL_TUNING_N
    reached_users = (
        design.planned_users_per_arm is not None and users_per_arm >= design.planned_users_per_arm
    )
    reached_time = bool(status and status.get("is_past_planned_duration"))
    if reached_users or reached_time:
        reason = (
            f"planned sample of {design.planned_users_per_arm:,} users per arm reached"
            if reached_users
            else f"planned duration of {design.planned_duration_days} days is over"
        )
        return {"mode": "fixed-horizon", "reason": reason, "sequential_tuning_users": tuning}
    return {
        "mode": "sequential",
        "reason": "before the planned end: intervals stay valid however often the readout is "
        "looked at",
        "sequential_tuning_users": tuning,
    }


def _search_level(design: Experiment, searches: pl.DataFrame | None) -> dict[str, Any] | None:
    if design.exposure_trigger is None or searches is None:
        return None
    rows = searches.filter(pl.col("experiment_id") == design.experiment_id)
    effect = stats.search_level_effect(
        rows["is_converted"].to_numpy(),
        (rows["variant"] == "treatment").to_numpy(),
        rows["user_id"].to_numpy(),
        ALPHA,
    )
    if effect is None:
        return None
    return {
        **effect,
        "sample": "the search that fired the trigger, one per exposed user, both arms",
        "method": "Logit (log-odds), linear probability (absolute) and Poisson GLM (relative), "
        "standard errors clustered by user (statsmodels)",
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def readout(
    experiment_id: str,
    outcomes: pl.DataFrame,
    winsorize_at: float | None = None,
    *,
    design: Experiment | None = None,
    status: dict[str, Any] | None = None,
    trigger_searches: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """The typed readout of one experiment (see schemas/experiment_readout.schema.json).
    `design` defaults to the registry's; `status` is its row of marts.experiment_designs
    (without it the readout is sequential: the planned end is not known to be reached)."""
    exposed = outcomes.filter(pl.col("experiment_id") == experiment_id)
    if exposed.height == 0:
        raise ExperimentError(
            f"experiment {experiment_id!r} has no exposures in the marts; known: "
            f"{', '.join(sorted(outcomes['experiment_id'].unique().to_list())) or 'none'}"
        )
    if design is None:
        registry = load_registry()
        if experiment_id not in registry:
            raise ExperimentError(
                f"experiment {experiment_id!r} is not in the registry "
                "(seeds/experiment_registry.csv); add its design there"
            )
        design = registry[experiment_id]
    # assignment is checked on everyone exposed; the metrics on whole outcome windows only (a
    # user exposed near the end of the data has had fewer days to convert)
    srm = stats.srm_test(
        {v: exposed.filter(pl.col("variant") == v).height for v in ("control", "treatment")},
        design.planned_split,
        SRM_THRESHOLD,
    )
    df = exposed.filter(pl.col("is_outcome_window_complete"))
    if design.exposure_trigger is not None and trigger_searches is not None:
        trigger = trigger_searches.filter(pl.col("experiment_id") == experiment_id).select(
            "exposure_id", *(pl.col(k).alias(v) for k, v in TRIGGER_COVARIATES.items())
        )
        df = df.join(trigger, on="exposure_id", how="left").with_columns(
            pl.col(list(TRIGGER_COVARIATES.values())).cast(pl.Float64).fill_null(0.0)
        )
    is_t = (df["variant"] == "treatment").to_numpy()
    n_control, n_treatment = int((~is_t).sum()), int(is_t.sum())
    variants = {
        "control": _variant_summary(df.filter(pl.col("variant") == "control")),
        "treatment": _variant_summary(df.filter(pl.col("variant") == "treatment")),
    }
    warnings: list[str] = []
    if open_windows := exposed.height - df.height:
        warnings.append(
            f"{open_windows:,} exposed user(s) are left out of the metrics: their outcome window "
            "is not over by the end of the data"
        )
    analysis = _analysis_mode(design, status, min(n_control, n_treatment))
    roles = {
        design.primary_metric: "primary",
        **dict.fromkeys(design.secondary_metrics, "secondary"),
        **dict.fromkeys(design.guardrail_metrics, "guardrail"),
    }
    metrics: dict[str, dict[str, Any] | None] = dict.fromkeys(roles)
    if min(n_control, n_treatment) == 0:
        missing = "control" if n_control == 0 else "treatment"
        warnings.append(f"variant {missing} has no users: nothing to compare")
    elif min(n_control, n_treatment) < 2:
        warnings.append("the metrics need at least two users per variant")
    else:
        for metric, role in roles.items():
            result = _compare(metric, df, is_t, winsorize_at, analysis["sequential_tuning_users"])
            metrics[metric] = {"role": role, **result}
            if result["p_value"] is None:
                warnings.append(f"{metric} has no variance in either arm: no test possible")
    holm = stats.holm({m: (metrics[m] or {}).get("p_value") for m in design.secondary_metrics})
    for metric, p in holm.items():
        if metrics[metric] is not None:
            metrics[metric]["p_value_holm"] = p
    for metric in design.guardrail_metrics:
        if (m := metrics[metric]) is not None:
            m["guardrail_broken"] = _significant(m, analysis["mode"]) and not _is_better(
                metric, m["abs_lift"]
            )
    decision, reason = decide(
        srm["flagged"], design.primary_metric, metrics, design.guardrail_metrics,
        analysis["mode"],
    )  # fmt: skip
    if srm["flagged"]:
        warnings.append("sample-ratio mismatch: do not act on these results")
    baseline = variants["control"]["conversion_rate"]
    n_min = min(n_control, n_treatment)
    window = exposed["outcome_window_end_at"] - exposed["exposed_at"]
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_id": experiment_id,
        "hypothesis": design.hypothesis,
        "owner": design.owner,
        "design": {
            "unit": design.unit,
            "planned_split": design.planned_split,
            "start_day": design.start_day,
            "planned_duration_days": design.planned_duration_days,
            "planned_users_per_arm": design.planned_users_per_arm,
            "primary_metric": design.primary_metric,
            "secondary_metrics": list(design.secondary_metrics),
            "guardrail_metrics": list(design.guardrail_metrics),
            "exposure_trigger": design.exposure_trigger,
        },
        "definitions": {
            "estimand": ESTIMAND,
            "outcome_window_days": window.max().total_seconds() / 86_400,
            "metrics": {m: METRICS[m] for m in roles},
        },
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "alpha": ALPHA,
        "planned_split": design.planned_split,
        "first_exposed_at": exposed["exposed_at"].min().isoformat(),
        "last_exposed_at": exposed["exposed_at"].max().isoformat(),
        "data_end_at": _iso((status or {}).get("data_end_at")),
        "planned_end_at": _iso((status or {}).get("planned_end_at")),
        "analysis": analysis,
        "users_with_open_outcome_window": open_windows,
        "variants": variants,
        "srm": srm,
        "primary_metric": design.primary_metric,
        "metrics": metrics,
        "holm_adjusted_p_values": holm,
        "search_level_effect": _search_level(design, trigger_searches),
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


def shown_interval(doc: dict[str, Any], m: dict[str, Any], scale: str) -> tuple[Any, Any]:
    """The interval a reader acts on: the sequential one before the planned end, the
    fixed-horizon one at it. `scale` is "abs" or "rel"."""
    source = m["sequential"] if doc["analysis"]["mode"] == "sequential" else m
    return source[f"{scale}_ci_low"], source[f"{scale}_ci_high"]


def _plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, m in doc["metrics"].items():
        low, high = shown_interval(doc, m, "rel") if m else (None, None)
        if m and m["rel_lift"] is not None and low is not None and high is not None:
            rows.append((f"{name} ({m['role']})", m["rel_lift"], low, high))
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.6 * max(len(rows), 1)))
    for i, (_label, mid, lo, hi) in enumerate(rows):
        ax.errorbar(
            [mid * 100], [i], xerr=[[(mid - lo) * 100], [(hi - mid) * 100]], fmt="o", capsize=4
        )
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_xlabel(f"relative lift, % (95% CI, {doc['analysis']['mode']})")
    ax.set_title(f"{doc['experiment_id']}: {doc['decision']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:+.2f}%"


def _num(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}"


def _metric_line(doc: dict[str, Any], name: str, m: dict[str, Any] | None) -> str:
    if m is None:
        return f"- {name}: not enough data."
    low, high = shown_interval(doc, m, "abs")
    rel_low, rel_high = shown_interval(doc, m, "rel")
    fmt = _pct if name in ("conversion", "refund_rate") else _num
    line = (
        f"- {name} ({m['role']}): {fmt(m['control_value'])} → {fmt(m['treatment_value'])}, "
        f"lift {fmt(m['abs_lift'])} [{fmt(low)}, {fmt(high)}], relative {_pct(m['rel_lift'])} "
        f"[{_pct(rel_low)}, {_pct(rel_high)}]; p = {_num(m['p_value'])}"
    )
    if "p_value_holm" in m:
        line += f", Holm p = {_num(m['p_value_holm'])}"
    if m.get("guardrail_broken"):
        line += "; **guardrail broken**"
    cuped = m.get("cuped")
    if cuped is None:
        return line + ". CUPED: not applied (no covariates, or a ratio metric)."
    line += (
        f". CUPED: lift {fmt(cuped.get('abs_lift'))} [{fmt(cuped.get('abs_ci_low'))}, "
        f"{fmt(cuped.get('abs_ci_high'))}] (fixed-horizon), variance reduction "
        f"{_pct(cuped.get('variance_reduction'))}."
    )
    return line


def memo(doc: dict[str, Any], plot_name: str) -> str:
    c, t = doc["variants"]["control"], doc["variants"]["treatment"]
    analysis = doc["analysis"]
    lines = [
        f"# Experiment readout: {doc['experiment_id']}",
        "",
        f"**Decision: {doc['decision']}** — {doc['decision_reason']}",
        "",
        f"Hypothesis: {doc['hypothesis']} Owner: {doc['owner']}. Primary metric: "
        f"{doc['primary_metric']}.",
        "",
        f"Analysis: **{analysis['mode']}** ({analysis['reason']}; planned end "
        f"{doc['planned_end_at'] or 'n/a'}, data until {doc['data_end_at'] or 'n/a'}). "
        "Intervals below are the ones that decide"
        + (" (always-valid confidence sequences)." if analysis["mode"] == "sequential" else "."),
        "",
        "| | control | treatment |",
        "|---|---|---|",
        f"| users | {c['users']:,} | {t['users']:,} |",
        f"| conversion rate | {_pct(c['conversion_rate'])} | {_pct(t['conversion_rate'])} |",
        f"| net revenue per user (EUR) | {c['revenue_per_user_mean'] or 0:.2f} "
        f"| {t['revenue_per_user_mean'] or 0:.2f} |",
        "",
        *(_metric_line(doc, name, m) for name, m in doc["metrics"].items()),
    ]
    if effect := doc["search_level_effect"]:
        lines.append(
            f"- Effect on one search ({effect['sample']}): log-odds "
            f"{_num(effect['log_odds_ratio'])} [{_num(effect['log_odds_ci_low'])}, "
            f"{_num(effect['log_odds_ci_high'])}], absolute {_pct(effect['abs_lift'])} "
            f"[{_pct(effect['abs_ci_low'])}, {_pct(effect['abs_ci_high'])}], relative "
            f"{_pct(effect['rel_lift'])} [{_pct(effect['rel_ci_low'])}, "
            f"{_pct(effect['rel_ci_high'])}]; SEs clustered by user."
        )
    lines += [
        f"- SRM: chi-square p = {_num(doc['srm']['p_value'])} (flagged below {SRM_THRESHOLD}).",
        f"- Power: with {doc['power']['users_per_arm']:,} users per arm the minimum detectable "
        f"relative lift in conversion is {_pct(doc['power']['minimum_detectable_relative_lift'])}"
        f" (alpha {ALPHA}, power {POWER}, fixed horizon).",
    ]
    lines += [f"- Warning: {w}" for w in doc["warnings"]]
    lines += ["", "## Definitions", "", doc["definitions"]["estimand"], ""]
    lines += [f"- {name}: {text}" for name, text in doc["definitions"]["metrics"].items()]
    lines += [
        f"- Outcome window: {doc['definitions']['outcome_window_days']:g} days.",
        "",
        f"![lift]({plot_name})",
        "",
    ]
    return "\n".join(lines)


FLOAT_COLUMNS = (
    "control_value", "treatment_value", "abs_lift", "ci_low", "ci_high", "rel_lift",
    "rel_ci_low", "rel_ci_high", "p_value", "p_value_holm", "srm_p_value",
    "minimum_detectable_relative_lift",
)  # fmt: skip


def table_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of the readout, with the interval that decides."""
    rows = []
    for metric, m in doc["metrics"].items():
        m = m or {}
        low, high = shown_interval(doc, m, "abs") if m else (None, None)
        rel_low, rel_high = shown_interval(doc, m, "rel") if m else (None, None)
        rows.append(
            {
                "experiment_id": doc["experiment_id"],
                "metric": metric,
                "role": m.get("role"),
                "analysis": doc["analysis"]["mode"],
                "control_value": m.get("control_value"),
                "treatment_value": m.get("treatment_value"),
                "abs_lift": m.get("abs_lift"),
                "ci_low": low,
                "ci_high": high,
                "rel_lift": m.get("rel_lift"),
                "rel_ci_low": rel_low,
                "rel_ci_high": rel_high,
                "p_value": m.get("p_value"),
                "p_value_holm": m.get("p_value_holm"),
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
    registry = load_registry()
    marts = read_marts(settings)
    outcomes = marts["experiment_user_outcomes"]
    ids = (
        list(dict.fromkeys(experiments))  # an id named twice is read out once
        if experiments
        else sorted(outcomes["experiment_id"].unique().to_list())
    )
    if unknown := [i for i in ids if i not in registry]:
        raise ExperimentError(
            f"experiment(s) {', '.join(unknown)} not in the registry "
            f"(seeds/experiment_registry.csv); known: {', '.join(registry)}"
        )
    statuses = {
        row["experiment_id"]: row for row in marts["experiment_designs"].iter_rows(named=True)
    }
    out_dir = settings.reports_dir / "experiments"
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = []
    for experiment_id in ids:
        doc = readout(
            experiment_id, outcomes, winsorize_at, design=registry[experiment_id],
            status=statuses.get(experiment_id),
            trigger_searches=marts["experiment_trigger_searches"],
        )  # fmt: skip
        validate_readout(doc)
        (out_dir / f"{experiment_id}.json").write_text(json.dumps(doc, indent=2, allow_nan=False))
        _plot(doc, out_dir / f"{experiment_id}.png")
        (out_dir / f"{experiment_id}.md").write_text(memo(doc, f"{experiment_id}.png"))
        docs.append(doc)
    rows = pl.DataFrame(
        [r for d in docs for r in table_rows(d)],
        schema_overrides=dict.fromkeys(FLOAT_COLUMNS, pl.Float64),
    )
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
    metrics = {}
    for d in docs:
        primary = d["metrics"][d["primary_metric"]] or {}
        p = primary.get("p_value")
        metrics[d["experiment_id"]] = (
            f"{d['decision']} ({d['primary_metric']} p={p:.2g}, {d['analysis']['mode']})"
            if p is not None
            else d["decision"]
        )
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
