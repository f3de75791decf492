"""Start the scoring API as a child process on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from railflow.settings import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_local(
    artifacts_dir: Path, log: Path, workers: int = 1, timeout_s: float = 120.0
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m serving` on 127.0.0.1 serving `artifacts_dir`; returns once /health answers
    (200 or 503: a server without a usable model still answers)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(port), "--workers", str(workers),
             "--log-level", "warning"],
            cwd=REPO_ROOT, env={**os.environ, "RAILFLOW_ARTIFACTS_DIR": str(artifacts_dir)},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.get(f"{url}/health", timeout=5)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.3)
    proc.terminate()
    proc.wait(timeout=30)
    raise RuntimeError(f"the scoring API did not start: {log.read_text()[-2000:]}")
