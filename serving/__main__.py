"""`python -m serving` (`make serve`): the scoring API under uvicorn, on 127.0.0.1:8000."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# One OpenMP thread per worker process, set before scikit-learn loads OpenMP (requests run in
# uvicorn's thread pool, where a limit set at run time in the main thread does not apply):
# gradient boosting's predict opens an OpenMP region per tree, and for one search the threads
# cost more than they save (single-client p95 351 -> 43 ms here). Scale with --workers instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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
