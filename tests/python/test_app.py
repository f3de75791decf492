"""The Streamlit app driven by AppTest on the small world, and by headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from railflow.settings import REPO_ROOT, Settings

APP = str(REPO_ROOT / "app" / "app.py")
COUNTRY_NAMES = {"Austria", "Belgium", "Switzerland", "Czechia", "Germany", "Denmark", "Spain",
                 "France", "United Kingdom", "Hungary", "Italy", "Luxembourg", "Netherlands",
                 "Poland", "Portugal"}  # fmt: skip
PAGES = [
    "views/route_performance.py",
    "views/funnel.py",
    "views/retention.py",
    "views/active_users.py",
    "views/customers.py",
    "views/experiments.py",
    "views/data_health.py",
]


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "RAILFLOW_DATA_DIR": str(settings.data_dir),
        "RAILFLOW_DUCKDB_PATH": str(settings.duckdb_path),
        "RAILFLOW_ARTIFACTS_DIR": str(settings.artifacts_dir),
        "DBT_TARGET_PATH": str(settings.dbt_target_path),
    }


@pytest.fixture
def app(small_world: Settings, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    for key, value in env_for(small_world).items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def test_simulator_scores_a_search(app: AppTest) -> None:
    assert not app.exception and not texts(app, "error")
    metrics = {m.label: m.value for m in app.metric}
    p = float(metrics["Booking probability"].rstrip("%")) / 100
    assert 0 < p < 1
    band = "low" if p < 0.3 else "high" if p > 0.7 else "medium"
    assert metrics["Intent band"] == f"{band.capitalize()} intent"
    assert metrics["Decision"] in {"No discount", "Offer 5% discount"}
    # a search for tomorrow is far more likely to book than one three months out
    app.date_input(key="search_date").set_value(date(2026, 6, 1))
    app.date_input(key="travel_date").set_value(date(2026, 6, 2)).run()
    soon = float(app.metric[0].value.rstrip("%"))
    app.date_input(key="travel_date").set_value(date(2026, 8, 30)).run()
    later = float(app.metric[0].value.rstrip("%"))
    assert soon > later
    assert any("Probability against lead time" in h.value for h in app.subheader)


def money(text: str) -> float:
    return float(text.replace("€", "").replace(",", ""))


def revenue(at: AppTest) -> tuple[str, float, float, str]:
    """Decision, expected revenue without and with the discount, and the with-delta shown."""
    metrics = {m.label: m for m in at.metric}
    return (
        metrics["Decision"].value,
        money(metrics["Expected revenue without discount"].value),
        money(metrics["Expected revenue with discount"].value),
        metrics["Expected revenue with discount"].delta,
    )


def test_discount_decision_weighs_revenue_inside_the_band(app: AppTest) -> None:
    app.slider(key="band").set_value((0, 100)).run()
    app.number_input(key="effect").set_value(2.0).run()  # a discount that sells: offer it
    decision, without, with_discount, delta = revenue(app)
    assert with_discount > without and decision == "Offer 5% discount"
    assert delta.startswith("+€")
    app.number_input(key="discount").set_value(10.0).run()
    assert revenue(app)[0] == "Offer 10% discount"
    app.number_input(key="effect").set_value(0.0).run()  # no effect: it only costs revenue
    decision, without, with_discount, delta = revenue(app)
    assert with_discount < without and decision == "No discount"
    # a loss is a fall (red, down), and it is said in words
    assert delta.startswith("-€")
    assert any(f"The discount loses €{without - with_discount:,.2f}" in w for w in
               texts(app, "warning"))  # fmt: skip
    app.number_input(key="effect").set_value(2.0).run()
    app.slider(key="band").set_value((99, 100)).run()  # outside the policy band: never
    decision, without, with_discount, _ = revenue(app)
    assert with_discount > without and decision == "No discount"
    assert any("the policy does not offer it" in i for i in texts(app, "info"))
    assert any("Why this score" in h.value for h in app.subheader)


def test_zero_discount_changes_nothing(app: AppTest) -> None:
    app.number_input(key="discount").set_value(0.0).run()
    decision, without, with_discount, delta = revenue(app)
    assert decision == "No discount" and with_discount == without and delta == "€0.00"
    uplift = next(m for m in app.metric if m.label == "Uplift in booking probability")
    assert uplift.value == "+0.0%" and uplift.delta == "break-even +0.0%"


def test_simulator_uses_the_readouts_search_level_effect(
    app: AppTest, small_world: Settings
) -> None:
    doc = json.loads(
        (small_world.reports_dir / "experiments" / "medium_intent_discount.json").read_text()
    )
    estimate = doc["search_level_effect"]["log_odds_ratio"]
    assert app.number_input(key="effect").value == pytest.approx(round(estimate, 2))
    assert any("estimated by the medium_intent_discount readout" in c.value for c in app.caption)
    # the break-even uplift is the discount's cost: 5% off needs 5/95 more bookings
    uplift = next(m for m in app.metric if m.label == "Uplift in booking probability")
    assert uplift.delta == "break-even +5.3%"


def test_simulator_never_recommends_a_losing_discount(app: AppTest) -> None:
    """Over a grid of discounts, effects and lead times, with every probability in the band:
    an offered discount always earns more than no discount, and one that earns more is offered."""
    app.slider(key="band").set_value((0, 100))
    app.date_input(key="search_date").set_value(date(2026, 6, 1))
    seen = set()
    for lead in (1, 30):
        app.date_input(key="travel_date").set_value(date(2026, 6, 1) + timedelta(days=lead))
        for effect in (0.0, 0.6, 2.5):
            app.number_input(key="effect").set_value(effect)
            for discount in (0.0, 5.0, 20.0, 45.0):
                app.number_input(key="discount").set_value(discount).run()
                assert not app.exception
                decision, without, with_discount, _ = revenue(app)
                if decision != "No discount":
                    assert with_discount > without, (lead, effect, discount)
                else:
                    assert with_discount <= without, (lead, effect, discount)
                seen.add(decision != "No discount")
    assert seen == {True, False}  # the grid reaches both decisions


def test_decide_never_offers_below_no_discount() -> None:
    """The decision rule itself, on a dense grid (no world needed)."""
    from ml import scoring

    p = np.linspace(0.001, 0.999, 200)
    price = np.array([5.0, 49.9, 300.0])
    pp, pr = (a.ravel() for a in np.meshgrid(p, price))
    for rate in (0.0, 0.01, 0.05, 0.2, 0.5):
        for shift in (-1.0, 0.0, 0.3, 0.6, 3.0):
            effect = scoring.at_rate(scoring.DiscountEffect(0.05, shift, "test"), rate)
            for band in ((0.0, 1.0), (0.3, 0.7)):
                d = scoring.decide(pp, pr, effect, band)
                assert (d.expected_revenue_with_eur[d.offer] > d.expected_revenue_without_eur[
                    d.offer]).all()  # fmt: skip
                better = d.expected_revenue_with_eur > d.expected_revenue_without_eur
                assert (d.offer == (better & d.eligible)).all()
                # it pays exactly when the uplift beats the break-even uplift
                uplift = d.probability_with_discount / pp - 1
                clear = np.abs(uplift - scoring.break_even_uplift(rate)) > 1e-9
                assert (better[clear] == (uplift > scoring.break_even_uplift(rate))[clear]).all()
            if rate == 0.0:
                assert not d.offer.any() and np.allclose(d.probability_with_discount, pp)


def test_typed_price_is_kept_until_reset(app: AppTest) -> None:
    app.number_input(key="price").set_value(123.0).run()
    assert any("typed price €123.00" in m for m in texts(app, "success") + texts(app, "warning")
               + texts(app, "info"))  # fmt: skip
    app.date_input(key="travel_date").set_value(
        app.date_input(key="travel_date").value + timedelta(days=5)
    ).run()
    assert app.number_input(key="price").value == 123.0
    assert any("typed price €123.00" in m for m in texts(app, "success") + texts(app, "warning")
               + texts(app, "info"))  # fmt: skip
    app.button(key="reset_price").click().run()
    assert app.number_input(key="price").value is None
    assert any("fare rule quote" in m for m in texts(app, "success") + texts(app, "warning")
               + texts(app, "info"))  # fmt: skip


def test_chart_marks_the_band_and_the_lead_time(app: AppTest) -> None:
    app.slider(key="band").set_value((20, 60))
    app.date_input(key="search_date").set_value(date(2026, 6, 1))
    app.date_input(key="travel_date").set_value(date(2026, 6, 8)).run()
    spec = json.loads(app.get("vega_lite_chart")[0].proto.spec)
    datums = [layer["encoding"] for layer in spec["layer"]]
    assert {"y": {"datum": 0.2}, "y2": {"datum": 0.6}} in datums  # the policy band
    assert any(e.get("x") == {"datum": 7} for e in datums)  # this search's lead time


def test_search_outside_the_trained_period_is_flagged(app: AppTest) -> None:
    assert not any("outside the period" in w for w in texts(app, "warning"))
    app.date_input(key="search_date").set_value(date(2025, 1, 1))
    app.date_input(key="travel_date").set_value(date(2025, 1, 3)).run()
    assert any("outside the period the model learned from" in w for w in texts(app, "warning"))
    assert app.metric  # a warning, not a refusal


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda at: at.selectbox(key="destination").set_value(at.selectbox(key="origin").value),
         "Origin and destination are the same"),
        (lambda at: at.date_input(key="travel_date").set_value(
            at.date_input(key="search_date").value - timedelta(days=1)),
         "travel date is before the search date"),
        (lambda at: at.number_input(key="passengers").set_value(0), "Passengers must be between"),
        (lambda at: at.number_input(key="passengers").set_value(12), "Passengers must be between"),
        (lambda at: at.number_input(key="discount").set_value(60.0), "at most 50%"),
        (lambda at: at.slider(key="band").set_value((50, 50)), "The policy band is empty"),
        (lambda at: at.number_input(key="price").set_value(0.0), "The price must be above"),
    ],
    ids=["same-station", "travel-before-search", "zero-passengers", "too-many-passengers",
         "discount-over-50", "empty-band", "zero-price"],
)  # fmt: skip
def test_bad_inputs_get_a_message_not_a_traceback(app: AppTest, change, message: str) -> None:
    assert app.metric  # a result on screen first: the bad input must clear it
    change(app)
    app.run()
    assert not app.exception
    assert any(message in e for e in texts(app, "error"))
    assert not app.metric


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app: AppTest, page: str) -> None:
    app.switch_page(page).run()
    assert not app.exception
    # the one error a page shows on purpose: the planted sample-ratio mismatch
    assert [e for e in texts(app, "error") if not e.startswith("Sample-ratio mismatch")] == []
    assert app.title[0].value
    # more than a title: each page shows figures or tables of the built world
    assert len(app.metric) + len(app.dataframe) > 0


def warehouse_rows(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.sql(sql).fetchall()


def test_pages_show_the_built_world(app: AppTest, small_world: Settings) -> None:
    app.switch_page("views/experiments.py").run()
    # the SRM banner is the page's first message, above every experiment
    assert texts(app, "error")[0].startswith("Sample-ratio mismatch in srm_checkout_redesign")
    results = app.dataframe[1].value  # the first experiment's results, GrowthBook's columns
    assert {"Metric", "Variant", "Users", "Rate or mean", "Relative lift", "95% CI",
            "Chance to win"} <= set(results.columns)  # fmt: skip
    assert set(results["Variant"]) == {"Control", "Treatment"}
    assert any(m.label == "Decision" for m in app.metric)
    assert any("Hypothesis:" in m.value for m in app.markdown)
    app.switch_page("views/data_health.py").run()
    assert {m.label for m in app.metric} >= {"success", "pass", "Data through", "Last load"}
    (through,) = warehouse_rows(
        small_world, "select max(activity_date) from marts.product_active_users"
    )[0]
    assert next(m.value for m in app.metric if m.label == "Data through") == through.isoformat()
    # both builds: the main one and the post-scoring (sync) one that ran after it
    shown = " ".join(m.value for m in app.markdown)
    assert "dbt build --exclude tag:post_scoring" in shown
    assert "dbt build --select tag:post_scoring" in shown


def test_pages_are_formatted_for_people(app: AppTest) -> None:
    app.switch_page("views/route_performance.py").run()
    routes = app.dataframe[0].value
    assert list(routes.columns[:3]) == ["Route", "From", "To"]
    assert "Net revenue" in routes.columns and "net_revenue_eur" not in routes.columns
    assert list(routes["Net revenue"]) == sorted(routes["Net revenue"], reverse=True)
    assert set(routes["From"]) <= set(COUNTRY_NAMES)  # names, not codes
    bars = json.loads(app.get("vega_lite_chart")[1].proto.spec)
    assert bars["encoding"]["y"]["sort"] == "-x"  # bars sorted by value
    assert {m.label for m in app.metric} == {"Searches", "Bookings", "Search conversion",
                                             "Net revenue"}  # fmt: skip
    assert next(m.value for m in app.metric if m.label == "Net revenue").startswith("€")
    assert any("compared with the 28 days before" in c.value for c in app.caption)
    app.switch_page("views/customers.py").run()
    churn = json.loads(app.get("vega_lite_chart")[-1].proto.spec)
    assert churn["encoding"]["y"]["sort"] == ["Low", "Medium", "High"]
    for page in PAGES:  # every page says who is counted and how fresh the data is
        app.switch_page(page).run()
        assert any("**Population:**" in c.value and "**Data through**" in c.value
                   for c in app.caption), page  # fmt: skip


def test_funnel_retention_and_active_users_read_their_marts(
    app: AppTest, small_world: Settings
) -> None:
    app.switch_page("views/funnel.py").run()
    assert not app.exception
    (searched, purchased) = warehouse_rows(
        small_world,
        "select sum(searched_users), sum(purchased_users) from marts.product_funnel_daily "
        "where platform = 'all'",
    )[0]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Searched"] == f"{searched:,}" and metrics["Purchased"] == f"{purchased:,}"
    table = app.dataframe[0].value
    assert set(table["Platform"]) >= {"All platforms", "Web", "iOS", "Android"}
    # the date filter: one day
    day, day_searched = warehouse_rows(
        small_world,
        "select funnel_date, searched_users from marts.product_funnel_daily "
        "where platform = 'all' order by funnel_date desc limit 1",
    )[0]
    app.date_input(key="funnel_period").set_value((day, day)).run()
    assert {m.label: m.value for m in app.metric}["Searched"] == f"{day_searched:,}"

    app.switch_page("views/retention.py").run()
    assert not app.exception
    (rate,) = warehouse_rows(
        small_world,
        "select sum(active_users) / sum(cohort_users) from marts.product_cohort_retention "
        "where weeks_since_signup = 1 and not is_left_censored and not is_partial_week",
    )[0]
    shown = {m.label: m.value for m in app.metric}["Week-1 retention (complete cohorts)"]
    assert shown == f"{rate:.1%}"
    spec = json.loads(app.get("vega_lite_chart")[0].proto.spec)
    assert "opacity" in spec["layer"][0]["encoding"]  # censored cells are drawn faded

    app.switch_page("views/active_users.py").run()
    assert not app.exception
    day, dau, sticky = warehouse_rows(
        small_world,
        "select activity_date, daily_active_users, stickiness from marts.product_active_users "
        "order by activity_date desc limit 1",
    )[0]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics[f"DAU on {day}"] == f"{dau:,}"
    assert metrics["Stickiness (DAU / MAU)"] == f"{sticky:.1%}"


def test_data_health_names_failed_dbt_nodes(
    small_world: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"
    shutil.copytree(small_world.dbt_target_path, target, ignore=shutil.ignore_patterns("compiled",
                    "run", "*.msgpack", "*.gpickle"))  # fmt: skip
    results = json.loads((target / "run_results.json").read_text())
    broken = next(r for r in results["results"] if r["unique_id"].startswith("test."))
    broken.update(status="fail", failures=3, message="Got 3 results, configured to fail if != 0")
    (target / "run_results.json").write_text(json.dumps(results))
    for key, value in {**env_for(small_world), "DBT_TARGET_PATH": str(target)}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("views/data_health.py").run()
    assert not at.exception
    assert any("1 node(s) failed or warned in the main build" in e for e in texts(at, "error"))
    failed = at.dataframe[0].value
    assert list(failed["Node"]) == [broken["unique_id"].split(".", 2)[-1]]
    assert list(failed["Status"]) == ["fail"]


def test_streamlit_config_sends_nothing_and_runs_from_the_repo_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tomllib

    from railflow import cli

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["toolbarMode"] == "viewer"  # no Deploy button
    # `railflow app` starts Streamlit in the repository root, where it reads that file
    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.os, "execv", lambda exe, args: seen.update(cwd=Path.cwd(), args=args))
    cli._app(["--server.port", "8599"])
    assert seen["cwd"] == REPO_ROOT
    assert seen["args"][1:] == ["-m", "railflow.app_server", "--server.port", "8599"]


def test_data_health_lists_the_anomalies(app: AppTest, small_world: Settings) -> None:
    from railflow.warehouse import connect

    with connect(small_world) as wh:
        found = wh.read("ml", "anomalies")
    app.switch_page("views/data_health.py").run()
    assert not app.exception
    assert "Anomalies" in [h.value for h in app.subheader]
    assert int({m.label: m.value for m in app.metric}["anomalies"]) == found.height > 0
    table = next(t.value for t in app.dataframe if "Severity" in t.value.columns)
    assert sorted(table["KPI"]) == sorted(found["metric"])


@pytest.mark.parametrize("warehouse", ["no file", "a file with nothing built"])
def test_missing_warehouse_says_which_command_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warehouse: str
) -> None:
    monkeypatch.setenv("RAILFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RAILFLOW_DUCKDB_PATH", raising=False)
    if warehouse != "no file":  # as `make docs` leaves it on a fresh clone
        duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("make run" in e for e in texts(at, "error"))
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception
        assert any("make run" in e for e in texts(at, "error") + texts(at, "info"))


def test_locked_warehouse_asks_to_retry(
    small_world: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    write_lock_held: Callable[[Path], AbstractContextManager[None]],
) -> None:
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(small_world.duckdb_path, db)
    monkeypatch.setenv("RAILFLOW_DATA_DIR", str(small_world.data_dir))
    monkeypatch.setenv("RAILFLOW_DUCKDB_PATH", str(db))
    monkeypatch.setenv("RAILFLOW_ARTIFACTS_DIR", str(small_world.artifacts_dir))
    with write_lock_held(db):
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        assert not at.exception
        assert any("Retry" in w for w in texts(at, "warning"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_app(small_world: Settings) -> Iterator[str]:
    # from the repository root, as `railflow app` runs it: Streamlit reads .streamlit/config.toml
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "railflow.app_server", "--server.port", str(port)],
        cwd=REPO_ROOT, env={**os.environ, **env_for(small_world)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1800",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def idle(driver: Any) -> bool:
    """The page has a title and no script run in flight (Streamlit's status widget)."""
    from selenium.webdriver.common.by import By

    return bool(driver.find_elements(By.TAG_NAME, "h1")) and not driver.find_elements(
        By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'
    )


ARTIFACTS = REPO_ROOT / "test-artifacts"
needs_chromium = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium"
)


@pytest.mark.browser
@needs_chromium
def test_real_browser_visits_every_page(served_app: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    for page in ["", *(Path(p).stem for p in PAGES)]:
        name = page or "pricing_simulator"
        try:
            browser.get(f"{served_app}/{page}")
            WebDriverWait(browser, 90).until(idle)
            WebDriverWait(browser, 30).until(
                lambda d: (
                    d.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]')
                    or d.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
                )
            )
            assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
            # .streamlit/config.toml: viewer toolbar, so no Deploy button
            assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')
            # the tab icon is drawn locally, never fetched from the internet
            icons = browser.find_elements(By.CSS_SELECTOR, 'link[rel~="icon"]')
            assert all(not (i.get_attribute("href") or "").startswith("https://") for i in icons), [
                i.get_attribute("href") for i in icons
            ]
        except Exception:
            browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
            raise


@pytest.mark.browser
@needs_chromium
def test_real_browser_probability_changes_with_the_input(
    app: AppTest, served_app: str, browser: Any
) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The in-process run of the same page says what the browser must show once the travel date
    # moves from two days to three months after the search: lead time is the strongest driver
    # of the planted booking probability.
    before = app.metric[0].value
    travel = app.date_input(key="travel_date").value
    later = travel.replace(month=(travel.month + 2) % 12 + 1)
    app.date_input(key="travel_date").set_value(later).run()
    expected = app.metric[0].value
    assert expected != before, f"the model gives {before} two days and three months ahead"

    def probability() -> str:
        for metric in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
            if "Booking probability" in metric.text:
                return metric.text.splitlines()[-1]
        return ""

    ARTIFACTS.mkdir(exist_ok=True)
    try:
        browser.get(served_app)
        WebDriverWait(browser, 90).until(lambda d: probability().endswith("%") and idle(d))
        assert probability() == before
        # The date is typed into its month segment; the field commits when focus leaves it. A
        # rerun still in flight can re-render the field and drop keystrokes, so the month is
        # entered until the page shows its result, as a user would retype it.
        month_css = '[role="spinbutton"][aria-label="month, Travel date"]'
        for _attempt in range(3):
            month = browser.find_element(By.CSS_SELECTOR, month_css)
            month.click()
            month.send_keys(f"{later.month:02d}")
            browser.find_element(By.TAG_NAME, "h1").click()
            try:
                WebDriverWait(browser, 20).until(lambda d: idle(d) and probability() == expected)
                break
            except TimeoutException:
                continue
        shown = probability()
        typed = browser.find_element(By.CSS_SELECTOR, month_css).text
        assert shown == expected, (
            f"after setting the travel month to {later.month} (the field holds {typed!r}) the "
            f"page shows {shown}, expected {expected} (was {before})"
        )
    except Exception:
        browser.save_screenshot(str(ARTIFACTS / "pricing_simulator_input.png"))
        raise
