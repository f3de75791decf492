"""`python -m serving` (`make serve`): the scoring API under uvicorn, on 127.0.0.1:8000."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from railflow.errors import cli_entrypoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1; one per core at most)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    uvicorn.run(
        "serving.app:app_from_settings",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
