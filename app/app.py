"""RailFlow app for product managers: `make app` (`railflow app`, i.e. streamlit run app/app.py).

Read-only: the warehouse (opened read-only), experiment reports and model artifacts.
`app/` is a folder of Streamlit scripts, not a Python package: Streamlit puts this folder first
on the import path, so the pages import their helpers as `app_data`, and `railflow`, `ml` and
the rest come from the installed project (`make setup` installs it).
Server settings (no usage statistics, minimal toolbar) are in .streamlit/config.toml. Nothing is
fetched from the internet: the tab icon is an emoji (Streamlit draws it as an inline SVG, while a
`:material/...:` tab icon would be fetched from fonts.gstatic.com); the navigation's material
icons come from the font Streamlit bundles.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="RailFlow", page_icon="🚆", layout="wide")

PAGES = {
    "Decide": [
        st.Page(
            "views/pricing_simulator.py",
            title="Pricing simulator",
            icon=":material/sell:",
            default=True,
        ),
        st.Page("views/experiments.py", title="Experiments", icon=":material/science:"),
    ],
    "Understand": [
        st.Page("views/route_performance.py", title="Route performance", icon=":material/route:"),
        st.Page("views/funnel.py", title="Booking funnel", icon=":material/filter_alt:"),
        st.Page("views/retention.py", title="Retention cohorts", icon=":material/event_repeat:"),
        st.Page("views/active_users.py", title="Active users", icon=":material/monitoring:"),
        st.Page("views/customers.py", title="Customers", icon=":material/group:"),
    ],
    "Trust": [
        st.Page("views/data_health.py", title="Data health", icon=":material/monitor_heart:")
    ],
}
st.navigation(PAGES).run()
