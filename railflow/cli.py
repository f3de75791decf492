"""`railflow`: one console command for every stage and starter (installed by `pip install .`).

    railflow run [--only STAGE ... | --from STAGE | --list]   the whole pipeline (make run)
    railflow generate | load | ml | readouts | export ...    one stage, with that stage's options
    railflow dbt-build | dbt-sync                            the two dbt stages
    railflow dbt ARGS / power / compile-bigquery / bench     tools
    railflow app                                             the Streamlit app on 127.0.0.1:8501

Each subcommand hands the rest of the command line to the module that owns it, so
`railflow export --help` is `python -m analysis.crm_export --help`. The modules are imported only
when their subcommand runs, so `railflow --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from railflow.settings import REPO_ROOT


def _run(argv: list[str]) -> None:
    from railflow.pipeline import main

    main(argv)


def _stage(name: str) -> Callable[[list[str]], None]:
    def run_one(argv: list[str]) -> None:
        from railflow.pipeline import main

        main(["--only", name, *argv])

    return run_one


def _generate(argv: list[str]) -> None:
    from scripts.generate import main

    main(argv)


def _load(argv: list[str]) -> None:
    from scripts.load import main

    main(argv)


def _ml(argv: list[str]) -> None:
    from ml.__main__ import main

    main(argv)


def _anomalies(argv: list[str]) -> None:
    from ml.anomalies import main

    main(argv)


def _readouts(argv: list[str]) -> None:
    from analysis.experiments import main

    main(argv)


def _export(argv: list[str]) -> None:
    from analysis.crm_export import main

    main(argv)


def _power(argv: list[str]) -> None:
    from analysis.power import main

    main(argv)


def _dbt(argv: list[str]) -> None:
    from railflow.dbt import main

    main(argv)


def _compile_bigquery(argv: list[str]) -> None:
    from scripts.compile_bigquery import main

    main(argv)


def _bench(argv: list[str]) -> None:
    from benchmarks.__main__ import main

    main(argv)


def _app(argv: list[str]) -> None:
    """Replace this process with Streamlit serving app/app.py on loopback (railflow/app_server.py).

    Streamlit reads `.streamlit/config.toml` from its working directory, so it runs from the
    repository root (no usage statistics, viewer toolbar); the options repeat what matters."""
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "railflow.app_server", *argv])


COMMANDS: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "run": (_run, "the whole pipeline, or some stages (--only, --from, --list)"),
    "generate": (_generate, "stage: synthetic world -> data/raw, data/truth"),
    "load": (_load, "stage: validate and load raw files into the warehouse"),
    "dbt-build": (_stage("dbt_build"), "stage: dbt seeds, snapshots, models, tests"),
    "ml": (_ml, "stage: train, evaluate and score the models (train | score ...)"),
    "anomalies": (_anomalies, "stage: KPI anomalies in the monitoring marts -> ml.anomalies"),
    "dbt-sync": (_stage("dbt_sync"), "stage: dbt post-scoring sync models"),
    "readouts": (_readouts, "stage: experiment readouts and decision memos"),
    "export": (_export, "stage: CRM audiences as Braze JSON (diff sync)"),
    "dbt": (_dbt, "dbt with RailFlow's settings, e.g. `railflow dbt build --select marts`"),
    "power": (_power, "experiment sample size and minimum detectable effect"),
    "compile-bigquery": (_compile_bigquery, "compile the project for BigQuery, offline"),
    "bench": (_bench, "run the benchmarks and rewrite docs/benchmarks.md"),
    "app": (_app, "the Streamlit app on http://127.0.0.1:8501"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="railflow",
        description="RailFlow: each pipeline stage, and the tools around it. Settings come "
        "from RAILFLOW_* environment variables (see the README).",
        epilog="Every command takes --help, e.g. `railflow export --help`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        # add_help=False: `--help` and every other option belong to the command's own parser
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage (or the unknown-command error) and exits
        return
    command, *rest = argv
    if not (REPO_ROOT / "dbt_project.yml").is_file():
        raise SystemExit(
            f"error: {REPO_ROOT} is not a RailFlow checkout (no dbt_project.yml); run railflow "
            "from the project's folder"
        )
    COMMANDS[command][0](rest)


if __name__ == "__main__":
    main()
