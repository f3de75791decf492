"""The Makefile interface newcomers rely on: `make help` and an idempotent `make setup`."""

from __future__ import annotations

import re
import subprocess

from railflow.settings import REPO_ROOT


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_is_the_default_and_lists_every_target_once() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony is not None
    targets = phony.group(1).split()
    out = make().stdout
    listed = [line.split()[0] for line in out.splitlines() if line.strip()]
    listed = [re.sub(r"\x1b\[[0-9;]*m", "", name) for name in listed]
    assert sorted(listed) == sorted(targets)
    for required in ("help", "setup", "run", "test", "lint", "app", "bench", "clean"):
        assert required in listed


def test_setup_is_up_to_date_once_made() -> None:
    """`make -q` only asks: exit 0 says a second `make setup` would do nothing. Asking installs
    nothing into the checkout the tests run from."""
    asked = make("-q", "setup")
    assert asked.returncode == 0, "make setup would run again: " + asked.stdout + asked.stderr
    assert asked.stdout == ""


def test_test_fast_leaves_out_worlds_dbt_and_the_browser() -> None:
    dry = make("-n", "test-fast").stdout
    assert '-m "not slow and not browser"' in dry
    assert "sqlfluff" not in dry
