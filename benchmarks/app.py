"""The pricing simulator in a real browser (headless Chromium) on the default world (`make run`).

- first load: a fresh Streamlit server, then the time from opening the page to the simulator's
  result on screen (cold: the server's first session pays for imports and the model), and the
  same for a second browser session on that server (warm);
- input change: the discount's "+" button is clicked, and the time until the expected revenue
  shown changes is taken, 30 times (p50 / p95);
- AppTest rerun (in-process, no browser): the script's own share of a rerun.

Targets (issue 21): ready within 3 s of first load, 0.5 s p95 per input change.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from railflow.errors import SettingsError
from railflow.settings import REPO_ROOT, get_settings

APP = REPO_ROOT / "app" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHANGES = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate: Any, timeout: float, poll: float = 0.01) -> float:
    """Poll `predicate` until true; the seconds it took. Stale elements count as not yet."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if predicate():
                return time.perf_counter() - start
        except Exception:  # an element re-rendered between find and read
            pass
        time.sleep(poll)
    raise TimeoutError(f"not ready after {timeout:.0f} s")


def _metric(driver: Any, label: str) -> str:
    from selenium.webdriver.common.by import By

    for metric in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        lines = metric.text.splitlines()
        if lines and lines[0] == label:
            return lines[1] if len(lines) > 1 else ""
    return ""


def _browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--window-size=1400,1800", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _load(driver: Any, url: str) -> float:
    start = time.perf_counter()
    driver.get(url)
    _wait(lambda: _metric(driver, "Decision") and _metric(driver, "Booking probability"), 120)
    return time.perf_counter() - start


def _browser_figures(env: dict[str, str]) -> dict[str, float]:
    from selenium.webdriver.common.by import By

    port = _free_port()
    server = subprocess.Popen(
        # as `railflow app` starts it (railflow/app_server.py: the model stack preloaded)
        [sys.executable, "-m", "railflow.app_server", "--server.port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 60)
        with tempfile.TemporaryDirectory(prefix="railflow-bench-chromium-") as tmp:
            first = _browser(Path(tmp) / "a")
            try:
                cold = _load(first, url)
            finally:
                first.quit()
            driver = _browser(Path(tmp) / "b")
            try:
                warm = _load(driver, url)
                timings = []
                for _ in range(CHANGES):
                    shown = _metric(driver, "Expected revenue with discount")
                    button = driver.find_elements(
                        By.CSS_SELECTOR, '[data-testid="stNumberInputStepUp"]'
                    )
                    # the discount's "+" (found by its label among the number inputs)
                    step_up = next(
                        b
                        for b in button
                        if "Discount"
                        in b.find_element(
                            By.XPATH, "ancestor::*[@data-testid='stNumberInput']"
                        ).text
                    )
                    start = time.perf_counter()
                    step_up.click()
                    _wait(
                        lambda s=shown: _metric(driver, "Expected revenue with discount") != s, 30
                    )
                    timings.append(time.perf_counter() - start)
            finally:
                driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "browser first load s (fresh server)": round(cold, 2),
        "browser first load s (running server)": round(warm, 2),
        "browser input change p50 s": round(float(np.percentile(timings, 50)), 3),
        "browser input change p95 s": round(float(np.percentile(timings, 95)), 3),
        "browser input changes": len(timings),
    }


def _apptest_figures() -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()  # first run fills the caches
    timings = []
    for i in range(40):
        start = time.perf_counter()
        at.slider(key="hour").set_value(i % 24).run()
        timings.append((time.perf_counter() - start) * 1000)
    assert not at.exception
    return {
        "simulator rerun p50 ms": round(float(np.percentile(timings, 50)), 1),
        "simulator rerun p95 ms": round(float(np.percentile(timings, 95)), 1),
        "reruns": len(timings),
    }


def run(quick: bool) -> dict[str, float]:
    settings = get_settings()
    if not settings.duckdb_path.exists():
        raise SettingsError(
            f"no default world at {settings.duckdb_path}: build it with `make run` first"
        )
    figures = _apptest_figures()
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        figures |= _browser_figures(dict(os.environ))
    else:
        figures["browser"] = "skipped: needs Debian's chromium and chromium-driver"  # type: ignore[assignment]
    return figures
