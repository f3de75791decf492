"""Run one command and report its CPU time and peak memory as JSON on the last line of stderr.

Why a separate process: Linux counts the memory a process held before `exec` in the child's
peak RSS, so a command forked straight from the benchmark process (which holds frames from
earlier benchmarks) would report the benchmark's own memory. Forked from this small launcher, it
reports its own peak (the launcher's ~20 MB is the floor).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> None:
    proc = subprocess.Popen(sys.argv[1:])
    _, status, usage = os.wait4(proc.pid, 0)
    report = {
        "exit_code": os.waitstatus_to_exitcode(status),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,  # KiB on Linux
    }
    print(json.dumps(report), file=sys.stderr)
    sys.exit(0)


if __name__ == "__main__":
    main()
