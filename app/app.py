"""RailFlow app for product managers: `make app` (`railflow app`, i.e. streamlit run app/app.py).

Read-only: the warehouse (opened read-only), experiment reports and model artifacts.
`app/` is a folder of Streamlit scripts, not a Python package: Streamlit puts this folder first
on the import path, so the pages import their helpers as `app_data`, and `railflow`, `ml` and
the rest come from the installed project (`make setup` installs it).
Server settings (no usage statistics, minimal toolbar) are in .streamlit/config.toml; the page
icon is an emoji, so nothing is fetched from the internet.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="RailFlow", page_icon="🚆", layout="wide")

PAGES = {
    "Decide": [
        st.Page("views/pricing_simulator.py", title="Pricing simulator", icon="💶", default=True),
        st.Page("views/experiments.py", title="Experiments", icon="🧪"),
    ],
    "Understand": [
        st.Page("views/route_performance.py", title="Route performance", icon="🛤️"),
        st.Page("views/funnel.py", title="Booking funnel", icon="🔻"),
        st.Page("views/retention.py", title="Retention cohorts", icon="🔁"),
        st.Page("views/active_users.py", title="Active users", icon="📈"),
        st.Page("views/customers.py", title="Customers", icon="👥"),
    ],
    "Trust": [st.Page("views/data_health.py", title="Data health", icon="🩺")],
}
st.navigation(PAGES).run()
