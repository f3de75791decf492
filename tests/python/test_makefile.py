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


def test_second_setup_does_nothing() -> None:
    first = make("setup")
    assert first.returncode == 0, first.stderr
    second = make("setup")
    assert second.returncode == 0
    assert "install" not in second.stdout
    assert "Nothing to be done" in second.stdout
