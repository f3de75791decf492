"""RailFlow app for product managers: `make app` (streamlit run app/app.py).

Read-only: the warehouse (opened read-only), experiment reports and model artifacts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

REPO_ROOT = Path(__file__).resolve().parent.parent
# `streamlit run` puts app/ first on the path, where `import app` would find this very file
# instead of the `app` package: the repo root must come first.
if sys.path[:1] != [str(REPO_ROOT)]:
    sys.path.insert(0, str(REPO_ROOT))
if "app" in sys.modules and not hasattr(sys.modules["app"], "__path__"):
    del sys.modules["app"]

st.set_page_config(page_title="RailFlow", page_icon=":material/train:", layout="wide")

PAGES = [
    st.Page(
        "views/pricing_simulator.py",
        title="Pricing simulator",
        icon=":material/sell:",
        default=True,
    ),
    st.Page("views/route_performance.py", title="Route performance", icon=":material/route:"),
    st.Page("views/customers.py", title="Customers", icon=":material/group:"),
    st.Page("views/experiments.py", title="Experiments", icon=":material/science:"),
    st.Page("views/data_health.py", title="Data health", icon=":material/monitor_heart:"),
]
st.navigation(PAGES).run()
