"""Experiments: the latest readouts (lift with confidence interval, SRM flag, power)."""

from __future__ import annotations

import polars as pl
import streamlit as st

import app_data as data

st.title("Experiments")


def page() -> None:
    docs = data.readouts()
    if not docs:
        st.info("No experiment readouts yet: run `make run` (stage `readouts`).")
        return
    rows = []
    for doc in docs:
        conv = doc["metrics"]["conversion"] or {}
        rows.append(
            {
                "experiment": doc["experiment_id"],
                "decision": doc["decision"],
                "control users": doc["variants"]["control"]["users"],
                "treatment users": doc["variants"]["treatment"]["users"],
                "conversion lift (abs)": conv.get("abs_lift"),
                "95% CI low": conv.get("abs_ci_low"),
                "95% CI high": conv.get("abs_ci_high"),
                "p (Holm)": doc["holm_adjusted_p_values"]["conversion"],
                "SRM": "flagged" if doc["srm"]["flagged"] else "ok",
                "MDE (relative)": doc["power"]["minimum_detectable_relative_lift"],
            }
        )
    st.dataframe(pl.DataFrame(rows).to_pandas(), hide_index=True)
    for doc in docs:
        with st.expander(f"{doc['experiment_id']} — {doc['decision']}"):
            if doc["srm"]["flagged"]:
                st.error("Sample-ratio mismatch: these results are not to be trusted.")
            st.write(doc["decision_reason"])
            png = data.settings().reports_dir / "experiments" / f"{doc['experiment_id']}.png"
            if png.exists():
                st.image(str(png))
            for warning in doc["warnings"]:
                st.warning(warning)


data.guard(page)
