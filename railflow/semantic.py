"""Run MetricFlow (`mf`) on the settings' warehouse: the dbt semantic layer's metrics.

    python -m railflow.semantic query --metrics net_revenue_eur --group-by route,metric_time__week

passes its arguments to `mf` with the environment dbt gets (profile, warehouse path), from the
project folder. `mf` reads the semantic manifest only from <project>/target/, whatever
DBT_TARGET_PATH says, so a build that wrote it elsewhere (the tests' worlds) has it copied there
first. After `make run` plain `mf` works as well (with DBT_PROFILES_DIR=.dbt, as the Makefile sets).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from railflow.dbt import ensure_profile
from railflow.errors import RailflowError, SettingsError, cli_entrypoint
from railflow.settings import REPO_ROOT, Settings, get_settings

MANIFEST = "semantic_manifest.json"


class MetricFlowError(RailflowError):
    """`mf` exited non-zero (an unknown metric, dimension or grain, a failed validation...)."""


def mf_executable() -> str:
    candidate = Path(sys.executable).with_name("mf")
    return str(candidate) if candidate.exists() else "mf"


def ensure_semantic_manifest(settings: Settings) -> Path:
    """The semantic manifest where `mf` reads it, copied from the settings' dbt target path."""
    built = settings.dbt_target_path / MANIFEST
    read = REPO_ROOT / "target" / MANIFEST
    if not built.is_file():
        raise SettingsError(
            f"{built} is missing: build the project first (`make run`, or `dbt parse`)"
        )
    if built.resolve() != read.resolve():
        read.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, read)
    return read


def run_mf(
    settings: Settings, args: Sequence[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`mf <args>` against the settings' warehouse; MetricFlowError with mf's error on one line."""
    ensure_profile(settings)
    ensure_semantic_manifest(settings)
    env = {**os.environ, **settings.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run(
        [mf_executable(), *args], cwd=REPO_ROOT, env=env, text=True, capture_output=True
    )
    if check and proc.returncode != 0:
        raise MetricFlowError(
            f"`mf {' '.join(args)}` failed: {one_line(proc.stdout + proc.stderr)}"
        )
    return proc


def one_line(output: str) -> str:
    """MetricFlow's error block (from `ERROR:` to its log file pointer) on one line."""
    text = output.replace("\r", "\n")
    start = text.find("ERROR")
    block = text[start:] if start >= 0 else text
    block = block.split("Log File::")[0]
    return " ".join(block.split()) or "no output (see logs/metricflow.log)"


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    proc = run_mf(get_settings(), args or ["--help"])
    print(proc.stdout, end="")


if __name__ == "__main__":
    main()
