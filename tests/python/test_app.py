"""The Streamlit app driven by AppTest on the small world, and by headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from railflow.settings import REPO_ROOT, Settings

APP = str(REPO_ROOT / "app" / "app.py")
PAGES = [
    "views/route_performance.py",
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
    assert metrics["Intent band"] == ("low" if p < 0.3 else "high" if p > 0.7 else "medium")
    assert metrics["Decision"] in {"No discount", "Offer 5% discount"}
    # a search for tomorrow is far more likely to book than one three months out
    app.date_input(key="travel_date").set_value(date(2026, 8, 2)).run()
    soon = float(app.metric[0].value.rstrip("%"))
    app.date_input(key="travel_date").set_value(date(2026, 11, 1)).run()
    later = float(app.metric[0].value.rstrip("%"))
    assert soon > later
    assert any("Probability against lead time" in h.value for h in app.subheader)


def test_discount_decision_weighs_revenue_inside_the_band(app: AppTest) -> None:
    def decision() -> tuple[str, float]:
        metrics = {m.label: m for m in app.metric}
        delta = metrics["Expected revenue with discount"].delta
        return metrics["Decision"].value, float(delta.replace("€", "").replace(",", ""))

    app.slider(key="band").set_value((0.0, 1.0)).run()
    app.number_input(key="effect").set_value(2.0).run()  # a discount that sells: offer it
    assert decision()[1] > 0 and decision()[0] == "Offer 5% discount"
    app.number_input(key="discount").set_value(10.0).run()
    assert decision()[0] == "Offer 10% discount"
    app.number_input(key="effect").set_value(0.0).run()  # no effect: it only costs revenue
    assert decision()[1] < 0 and decision()[0] == "No discount"
    app.number_input(key="effect").set_value(2.0).run()
    app.slider(key="band").set_value((0.99, 1.0)).run()  # outside the policy band: never
    assert decision()[1] > 0 and decision()[0] == "No discount"
    assert any("Why this score" in h.value for h in app.subheader)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda at: at.selectbox(key="destination").set_value(at.selectbox(key="origin").value),
         "Origin and destination are the same"),
        (lambda at: at.date_input(key="travel_date").set_value(date(2026, 7, 1)),
         "travel date is before the search date"),
        (lambda at: at.number_input(key="passengers").set_value(0), "At least one passenger"),
    ],
    ids=["same-station", "travel-before-search", "zero-passengers"],
)  # fmt: skip
def test_bad_inputs_get_a_message_not_a_traceback(app: AppTest, change, message: str) -> None:
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


def test_pages_show_the_built_world(app: AppTest) -> None:
    app.switch_page("views/experiments.py").run()
    assert any("Sample-ratio mismatch" in e for e in texts(app, "error"))
    app.switch_page("views/data_health.py").run()
    assert {m.label for m in app.metric} >= {"success", "pass"}
    # the main build's results, not the sync stage's that ran after it
    assert any("dbt build --exclude tag:post_scoring" in c.value for c in app.caption)


def test_data_health_lists_the_anomalies(app: AppTest, small_world: Settings) -> None:
    from railflow.warehouse import connect

    with connect(small_world) as wh:
        found = wh.read("ml", "anomalies")
    app.switch_page("views/data_health.py").run()
    assert not app.exception
    assert "Anomalies" in [h.value for h in app.subheader]
    assert {m.label: int(m.value) for m in app.metric}["anomalies"] == found.height > 0
    table = next(t.value for t in app.dataframe if "severity" in t.value.columns)
    assert sorted(table["metric"]) == sorted(found["metric"])


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
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", APP, "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false"],
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


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_real_browser_probability_changes_with_the_input(
    app: AppTest, served_app: str, tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The in-process run of the same page says what the browser must show once the travel date
    # moves from a week to three months after the search: lead time is the strongest driver of
    # the planted booking probability (the quoted price barely moves a model this small).
    before = app.metric[0].value
    app.date_input(key="travel_date").set_value(date(2026, 11, 8)).run()
    expected = app.metric[0].value
    assert expected != before, f"the model gives {before} a week and three months ahead"

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1800",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 90)

    def probability() -> str:
        for metric in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
            if "Booking probability" in metric.text:
                return metric.text.splitlines()[-1]
        return ""

    def idle() -> bool:
        # Streamlit shows its status widget while a script run is in flight
        return not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')

    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        driver.get(served_app)
        wait.until(lambda d: probability().endswith("%") and idle())
        assert probability() == before
        # The date is typed into its month segment; the field commits when focus leaves it. A
        # rerun still in flight can re-render the field and drop keystrokes, so the month is
        # entered until the page shows its result, as a user would retype it.
        month_css = '[role="spinbutton"][aria-label="month, Travel date"]'
        for _attempt in range(3):
            month = driver.find_element(By.CSS_SELECTOR, month_css)
            month.click()
            month.send_keys("11")
            driver.find_element(By.TAG_NAME, "h1").click()
            try:
                WebDriverWait(driver, 20).until(lambda d: idle() and probability() == expected)
                break
            except TimeoutException:
                continue
        driver.save_screenshot(str(artifacts / "pricing_simulator.png"))
        shown = probability()
        typed = driver.find_element(By.CSS_SELECTOR, month_css).text
        assert shown == expected, (
            f"after setting the travel month to 11 (the field holds {typed!r}) the page shows "
            f"{shown}, expected {expected} (was {before})"
        )
    finally:
        driver.quit()
