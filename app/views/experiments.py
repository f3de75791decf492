"""Experiments in GrowthBook's shape: per experiment its hypothesis, dates, status, decision and
reason; per metric and variant the users, the rate or mean, the relative lift with the interval
that decides, and the chance to win; a sample-ratio-mismatch banner on top when flagged.

Reads the readouts (data/reports/experiments/*.json, schemas/experiment_readout.schema.json).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import polars as pl
import streamlit as st

import app_data as data

st.title("Experiments")

METRIC_NAMES = {
    "conversion": "Conversion",
    "revenue_per_user": "Revenue per user",
    "bookings_per_user": "Bookings per user",
    "searches_per_user": "Searches per user",
    "refund_per_user": "Refunds per user",
}
LOWER_IS_BETTER = {"refund_per_user"}  # as railflow/experiment_registry.LOWER_IS_BETTER
DECISION_NAMES = {
    "ship": "Ship",
    "don't ship": "Don't ship",
    "inconclusive": "Inconclusive",
    "invalid: SRM": "Invalid (SRM)",
}

LIFT_Y = {
    "field": "Metric",
    "type": "nominal",
    "sort": None,
    "title": None,
    "axis": {"labelLimit": 300},
}
LIFT_COLOUR = {
    "field": "Verdict",
    "type": "nominal",
    "scale": {
        "domain": ["better", "worse", "not significant"],
        "range": ["#2ca02c", "#d62728", "#7f7f7f"],
    },
    "legend": {"orient": "bottom", "title": None},
}
LIFT_CHART = {
    "encoding": {"y": LIFT_Y},
    "layer": [
        {
            "mark": {"type": "rule", "strokeWidth": 3},
            "encoding": {
                "x": {"field": "low", "type": "quantitative", "title": "relative lift (95% CI)",
                      "axis": {"format": "+.0%"}},
                "x2": {"field": "high"},
                "color": LIFT_COLOUR,
            },
        },
        {
            "mark": {"type": "point", "filled": True, "size": 80},
            "encoding": {"x": {"field": "lift", "type": "quantitative"}, "color": LIFT_COLOUR},
        },
        {
            "data": {"values": [{}]},
            "mark": {"type": "rule", "color": "#888", "strokeDash": [3, 3]},
            "encoding": {"x": {"datum": 0}, "y": None},
        },
    ],
}  # fmt: skip


def fmt_value(metric: str, x: float | None) -> str:
    if x is None:
        return "n/a"
    if metric == "conversion":
        return data.pct(x)
    if metric.endswith(("revenue_per_user", "refund_per_user")):
        return data.eur(x)
    return f"{x:,.2f}"


def chance_to_win(metric: str, m: dict[str, Any]) -> float | None:
    """The readout's chance to win, or the normal approximation P(lift in the good direction)
    = Φ(lift / SE) (GrowthBook's frequentist-prior equivalent) when it has none."""
    if m.get("chance_to_win") is not None:
        return float(m["chance_to_win"])
    if not m.get("se") or m.get("abs_lift") is None:
        return None
    z = m["abs_lift"] / m["se"] * (-1 if metric in LOWER_IS_BETTER else 1)
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def interval(doc: dict[str, Any], m: dict[str, Any]) -> tuple[Any, Any]:
    """The interval that decides (analysis.experiments.shown_interval): sequential before the
    planned end, fixed-horizon at it."""
    source = m["sequential"] if doc["analysis"]["mode"] == "sequential" else m
    return source["rel_ci_low"], source["rel_ci_high"]


def day(ts: str | None) -> str:
    return datetime.fromisoformat(ts).date().isoformat() if ts else "n/a"


def status(doc: dict[str, Any]) -> str:
    if doc["analysis"]["mode"] == "sequential":
        return "Running (before its planned end)"
    return "Finished (planned duration over)"


def results(doc: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The results table (one row per metric and variant) and the lift chart's rows."""
    rows, lifts = [], []
    users = {v: doc["variants"][v]["users"] for v in ("control", "treatment")}
    for metric, m in doc["metrics"].items():
        name = METRIC_NAMES.get(metric, metric)
        if m is None:
            continue
        low, high = interval(doc, m)
        significant = low is not None and high is not None and (low > 0 or high < 0)
        better = (m["rel_lift"] or 0) < 0 if metric in LOWER_IS_BETTER else (m["rel_lift"] or 0) > 0
        verdict = "not significant" if not significant else "better" if better else "worse"
        role = m["role"]
        for variant, value in (
            ("Control", m["control_value"]),
            ("Treatment", m["treatment_value"]),
        ):
            treated = variant == "Treatment"
            rows.append(
                {
                    "Metric": f"{name} ({role})",
                    "Variant": variant,
                    "Users": users[variant.lower()],
                    "Rate or mean": fmt_value(metric, value),
                    "Relative lift": data.pct(m["rel_lift"], signed=True) if treated else "",
                    "95% CI": f"{data.pct(low, signed=True)} to {data.pct(high, signed=True)}"
                    if treated and low is not None else "",
                    "Chance to win": data.pct(chance_to_win(metric, m), 0) if treated else "",
                    "p-value": f"{m['p_value']:.3g}" if treated and m["p_value"] is not None
                    else "",
                    "CUPED lift": data.pct(m["cuped"]["rel_lift"], signed=True)
                    if treated and m.get("cuped") and m["cuped"].get("rel_lift") is not None
                    else "",
                }
            )  # fmt: skip
        if low is not None and high is not None:
            lifts.append({"Metric": f"{name} ({role})", "lift": m["rel_lift"], "low": low,
                          "high": high, "Verdict": verdict})  # fmt: skip
    return pl.DataFrame(rows), pl.DataFrame(lifts)


def experiment(doc: dict[str, Any]) -> None:
    if doc["srm"]["flagged"]:
        st.error(
            f"Sample-ratio mismatch (χ² p = {doc['srm']['p_value']:.2g}): the split differs "
            "from the planned one, so the assignment is broken. Do not act on these results."
        )
    design = doc.get("design", {})
    st.markdown(f"**Hypothesis:** {doc['hypothesis']}  \n**Owner:** {doc.get('owner', 'n/a')}")
    c = st.columns(4)
    c[0].metric("Status", status(doc).split(" (")[0], help=status(doc))
    c[1].metric("Decision", DECISION_NAMES.get(doc["decision"], doc["decision"]))
    c[2].metric("First exposure", day(doc["first_exposed_at"]))
    c[3].metric("Planned end", day(doc.get("planned_end_at")))
    st.markdown(f"**Why:** {doc['decision_reason']}")
    split = " / ".join(f"{k} {v:.0%}" for k, v in doc["planned_split"].items())
    st.caption(
        f"Unit: {design.get('unit', 'user')}; planned split {split}; "
        f"{design.get('planned_duration_days', '?')} planned days; trigger: "
        f"{design.get('exposure_trigger') or 'none (every user)'}; analysis "
        f"{doc['analysis']['mode']} — {doc['analysis']['reason']}. Data through "
        f"{day(doc.get('data_end_at'))}; readout generated {day(doc['generated_at'])}."
    )
    table, lifts = results(doc)
    st.dataframe(
        table.to_pandas(), hide_index=True, width="stretch",
        column_config={"Users": st.column_config.NumberColumn(format="localized")},
    )  # fmt: skip
    if lifts.height:
        st.vega_lite_chart(
            lifts.to_pandas(), {**LIFT_CHART, "height": {"step": 32}}, width="stretch"
        )
    if effect := doc.get("search_level_effect"):
        st.caption(
            f"Effect on one search (the trigger search, for pricing): "
            f"{data.pct(effect['rel_lift'], signed=True)} relative "
            f"[{data.pct(effect['rel_ci_low'], signed=True)}, "
            f"{data.pct(effect['rel_ci_high'], signed=True)}], "
            f"{effect['log_odds_ratio']:+.2f} log-odds; the pricing simulator uses it."
        )
    for warning in doc["warnings"]:
        st.warning(warning)


def page() -> None:
    docs = data.readouts()
    data.about(
        "exposed " + data.REAL_USERS + "; each user counted once, in the arm they were assigned",
        "Outcomes count from searches at or after exposure, inside the outcome window.",
    )
    if not docs:
        st.info("No experiment readouts yet: run `make run` (stage `readouts`).")
        return
    flagged = [d["experiment_id"] for d in docs if d["srm"]["flagged"]]
    if flagged:
        st.error(
            "Sample-ratio mismatch in "
            + ", ".join(flagged)
            + ": do not act on "
            + ("its" if len(flagged) == 1 else "their")
            + " results."
        )
    overview = pl.DataFrame(
        [
            {
                "Experiment": d["experiment_id"],
                "Status": status(d),
                "Decision": DECISION_NAMES.get(d["decision"], d["decision"]),
                "Users": d["variants"]["control"]["users"] + d["variants"]["treatment"]["users"],
                "First exposure": day(d["first_exposed_at"]),
                "Planned end": day(d.get("planned_end_at")),
                "Sample ratio": "MISMATCH" if d["srm"]["flagged"] else "ok",
            }
            for d in docs
        ]
    )
    st.dataframe(
        overview.to_pandas(), hide_index=True, width="stretch",
        column_config={"Users": st.column_config.NumberColumn(format="localized")},
    )  # fmt: skip
    for tab, doc in zip(st.tabs([d["experiment_id"] for d in docs]), docs, strict=True):
        with tab:
            experiment(doc)


data.guard(page)
