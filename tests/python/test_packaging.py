"""The project installs as one package with a `railflow` command, and imports flow one way."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from railflow.pipeline import STAGES
from railflow.settings import REPO_ROOT

RAILFLOW = Path(sys.executable).with_name("railflow")
# The shared bottom: modules every stage may import. The orchestrator and the CLI sit on top.
BOTTOM = {"railflow.settings", "railflow.errors", "railflow.warehouse", "railflow.stage",
          "railflow.dbt", "railflow.checksums"}  # fmt: skip
TOP = {"railflow.pipeline", "railflow.cli"}
STAGE_PACKAGES = ("scripts", "ml", "analysis")


def _requirement_names(lines: list[str]) -> list[str]:
    return sorted(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def test_pyproject_lists_exactly_what_requirements_in_asks_for() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    wanted = (REPO_ROOT / "requirements.in").read_text().splitlines()
    assert sorted(declared) == _requirement_names(wanted)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_stages_never_import_the_orchestrator(package: str) -> None:
    for path in sorted((REPO_ROOT / package).glob("*.py")):
        assert not _imports(path) & TOP, f"{path.relative_to(REPO_ROOT)} imports {TOP}"


def test_the_shared_bottom_imports_no_stage() -> None:
    for module in sorted(BOTTOM):
        path = REPO_ROOT / Path(*module.split(".")).with_suffix(".py")
        upward = {m for m in _imports(path) if m.split(".")[0] in (*STAGE_PACKAGES, "app")}
        upward |= _imports(path) & TOP
        assert not upward, f"{module} imports {upward}"


def test_the_orchestrator_holds_the_stage_functions_themselves() -> None:
    assert all(callable(stage.run) for stage in STAGES)
    assert STAGES[1].run.__module__ == "scripts.load"


def railflow(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RAILFLOW), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_console_command_lists_a_subcommand_per_stage() -> None:
    shown = railflow("--help")
    assert shown.returncode == 0, shown.stderr
    commands = set(re.findall(r"^    ([a-z-]+)", shown.stdout, flags=re.M))
    assert {s.name.replace("_", "-") for s in STAGES} <= commands
    assert {"run", "app", "bench", "dbt"} <= commands


def test_a_subcommand_hands_its_options_to_the_stage() -> None:
    shown = railflow("generate", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "--users" in shown.stdout and "--seed" in shown.stdout
    listed = railflow("run", "--list")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [s.name for s in STAGES]


def test_an_unknown_subcommand_is_one_line() -> None:
    wrong = railflow("genrate")
    assert wrong.returncode == 2
    assert "invalid choice: 'genrate'" in wrong.stderr
    assert "Traceback" not in wrong.stderr


@pytest.mark.slow  # builds a wheel (pip fetches the build backend from the package index)
def test_pip_wheel_builds_the_packages_and_the_command(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("railflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("railflow/cli.py", "scripts/load.py", "ml/churn.py", "analysis/stats.py"):
        assert module in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "railflow = railflow.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
