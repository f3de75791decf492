"""`make bench`: run every benchmark and regenerate docs/benchmarks.md from the results.

Each area module (benchmarks/<area>.py) exposes `run(quick: bool) -> dict` of named
measurements. Results accumulate in docs/benchmarks/results.json so one area can be re-run
(`--only dbt_build`) without losing the others; the Markdown and the plot are always rebuilt from
that file, never typed by hand.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from railflow.errors import SettingsError, cli_entrypoint
from railflow.settings import REPO_ROOT

AREAS = ("generate", "dbt_build", "ml", "crm_export", "app", "serving")
SCALES = {"1M": 1_000_000, "10M": 10_000_000, "50M": 50_000_000}
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
RESULTS = REPO_ROOT / "docs" / "benchmarks" / "results.json"
PLOT = REPO_ROOT / "docs" / "benchmarks" / "scaling.png"


def machine() -> dict[str, object]:
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def probe_ms() -> float:
    """How busy the machine is, just before an area runs: the best of 5 runs of a fixed pure
    Python loop, in ms. This VM shares its host; when the probe is high, so is every figure."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def _load() -> dict[str, object]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def plot(records: list[dict[str, object]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(str(r["stage"]) for r in records))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in stages:
        rows = sorted((r for r in records if r["stage"] == stage), key=lambda r: r["events"])
        xs = [r["events"] / 1e6 for r in rows]
        ax_t.plot(xs, [r["wall_s"] for r in rows], marker="o", label=stage)
        ax_m.plot(xs, [r["peak_mb"] / 1024 for r in rows], marker="o", label=stage)
    for ax, label in ((ax_t, "wall time (s)"), (ax_m, "peak memory (GB)")):
        ax.set_xlabel("events (millions)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle("RailFlow pipeline cost per stage (2 cores)")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


# (area, measurement, comparison, threshold): the targets the issues set for each area
AREA_TARGETS = (
    ("generate", "events per second (1M)", ">=", 1_000_000),
    ("generate", "events per second (10M)", ">=", 1_000_000),
    ("generate", "speed-up vs row-by-row", ">=", 300),
    ("generate", "peak memory MB (10M)", "<", 4096),
    ("dbt_build", "build after one more day / full (1M)", "<=", 0.2),
    ("dbt_build", "build after one more day / full (10M)", "<=", 0.2),
    ("ml", "single-row latency p95 ms", "<", 50),
    ("app", "simulator rerun p95 ms", "<", 100),
    ("app", "browser first load s (fresh server)", "<=", 3),
    ("app", "browser first load s (running server)", "<=", 3),
    ("app", "browser input change p95 s", "<=", 0.5),
    ("crm_export", "seconds, first export of 1M users (all created)", "<=", 20),
    ("serving", "p95 ms, 8 clients, 1 worker", "<=", 25),
    ("serving", "p95 ms, 8 clients, 2 workers", "<=", 25),
    ("serving", "scores per second, 1 client, 1 worker", ">=", 300),
    ("serving", "batch scores per second (explain=false), 1 worker", ">=", 20_000),
    ("serving", "batch scores per second (with SHAP), 1 worker", ">=", 20_000),
)


def area_checks(areas: dict[str, Any]) -> list[str]:
    lines = ["## Targets per area", "", "| area | measurement | target | measured | met |",
             "|---|---|---|---|---|"]  # fmt: skip
    for area, key, op, threshold in AREA_TARGETS:
        value = (areas.get(area) or {}).get("results", {}).get(key)
        if value is None:
            continue
        ok = {">=": value >= threshold, "<": value < threshold, "<=": value <= threshold}[op]
        lines.append(
            f"| {area} | {key} | {op} {_fmt(threshold)} | {_fmt(value)} | "
            f"{'yes' if ok else '**no**'} |"
        )
    return [*lines, ""] if len(lines) > 2 else []


def scaling_checks(records: list[dict[str, object]]) -> list[str]:
    """The scale issue's targets, checked against the records (where the scales were run)."""
    by_scale: dict[str, list[dict[str, object]]] = {}
    for r in records:
        by_scale.setdefault(str(r["scale"]), []).append(r)
    lines = ["### Targets", "", "| target | measured | met |", "|---|---|---|"]

    def row(target: str, measured: str, ok: bool) -> None:
        lines.append(f"| {target} | {measured} | {'yes' if ok else '**no**'} |")

    limits = {"10M": (600.0, 6 * 1024.0), "50M": (None, 12 * 1024.0)}
    for scale, (max_wall, max_peak) in limits.items():
        rows = by_scale.get(scale)
        if not rows:
            continue
        wall = sum(float(r["wall_s"]) for r in rows)
        peak = max(float(r["peak_mb"]) for r in rows)
        if max_wall:
            row(f"{scale} end to end in at most {max_wall / 60:.0f} min", f"{wall:.0f} s",
                wall <= max_wall)  # fmt: skip
        row(f"{scale} peak memory under {max_peak / 1024:.0f} GB", f"{peak / 1024:.2f} GB",
            peak < max_peak)  # fmt: skip
    if "10M" in by_scale and "50M" in by_scale:
        small = {str(r["stage"]): r for r in by_scale["10M"]}
        for r in by_scale["50M"]:
            base = small.get(str(r["stage"]))
            if not base:
                continue
            t_ratio = float(r["wall_s"]) / float(base["wall_s"])
            e_ratio = float(r["events"]) / float(base["events"])
            measured = f"time x{t_ratio:.2f}, events x{e_ratio:.2f}"
            target = f"{r['stage']}: time 10M→50M grows at most with events (+20%)"
            row(target, measured, t_ratio <= 1.2 * e_ratio)
    lines.append("")
    return lines


def render(results: dict[str, object]) -> str:
    m = results.get("machine", {})
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m benchmarks`) from `docs/benchmarks/results.json`;",
        "do not edit by hand. Re-run one area with `python -m benchmarks --only <area>`.",
        "",
        f"Machine: {m.get('cores')} cores, {m.get('memory_gb')} GB RAM, {m.get('cpu')}, "
        f"Python {m.get('python')}.",
        "",
        "The machine probe beside each area is the best of 5 runs of a 2M-step pure Python loop",
        "just before the area ran: the VM shares its host, and figures taken while the probe is",
        "high are slow by about as much.",
        "",
    ]
    areas = results.get("areas", {})
    for area in AREAS:
        entry = areas.get(area) if isinstance(areas, dict) else None
        if not entry:
            continue
        probe = f" Machine probe {entry['probe_ms']} ms." if "probe_ms" in entry else ""
        lines += [f"## {area}", "", f"Measured {entry['measured_at']}.{probe}", ""]
        if "error" in entry:
            lines += [f"Failed: `{entry['error']}`", ""]
            continue
        lines += ["| measurement | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in entry["results"].items()]
        lines.append("")
    if isinstance(areas, dict):
        lines += area_checks(areas)
    e2e = results.get("e2e")
    if isinstance(e2e, dict) and e2e.get("records"):
        records = e2e["records"]
        lines += [
            "## End-to-end scaling",
            "",
            f"Measured {e2e['measured_at']}. Each stage runs in its own process; peak memory is"
            " that process tree's maximum resident set.",
            "",
            "| scale | events | stage | wall (s) | CPU (s) | peak (MB) | rows | rows/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in records:
            lines.append(
                f"| {r['scale']} | {r['events']:,} | {r['stage']} | {r['wall_s']:.1f} | "
                f"{r['cpu_s']:.1f} | {r['peak_mb']:.0f} | {_fmt(r['rows'] or '')} | "
                f"{_fmt(r['rows_per_s'] or '')} |"
            )
        totals: dict[str, list[float]] = {}
        for r in records:
            t = totals.setdefault(r["scale"], [0.0, 0.0, r["events"]])
            t[0] += r["wall_s"]
            t[1] = max(t[1], r["peak_mb"])
        lines += ["", "| scale | events | total wall (s) | max peak (MB) |", "|---|---|---|---|"]
        for scale, (wall, peak, events) in totals.items():
            lines.append(f"| {scale} | {int(events):,} | {wall:.0f} | {peak:.0f} |")
        lines += ["", "![time and memory per stage](benchmarks/scaling.png)", ""]
        lines += scaling_checks(records)
    lines += [
        "## Reproduce",
        "",
        "```bash",
        "make bench                                   # everything (long: includes 50M events)",
        ".venv/bin/python -m benchmarks --quick       # small sizes only",
        ".venv/bin/python -m benchmarks --only e2e --scales 1M 10M",
        "```",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only", nargs="+", metavar="AREA", help=f"areas to run: {', '.join(AREAS)}, e2e"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--scales", nargs="+", default=list(SCALES), help="e2e scales (default: 1M 10M 50M)"
    )
    return parser


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    wanted = args.only or [*AREAS, "e2e"]
    unknown = [a for a in wanted if a not in (*AREAS, "e2e")]
    bad_scales = [s for s in args.scales if s not in SCALES]
    if unknown or bad_scales:
        raise SettingsError(
            f"unknown benchmark area or scale {unknown + bad_scales}; areas: "
            f"{', '.join(AREAS)}, e2e; scales: {', '.join(SCALES)}"
        )
    results = _load()
    results["machine"] = machine()
    areas = results.setdefault("areas", {})
    now = lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")  # noqa: E731
    for area in (a for a in AREAS if a in wanted):
        module = importlib.import_module(f"benchmarks.{area}")
        print(f"[bench] {area} ...", flush=True)
        probe = probe_ms()
        start = time.perf_counter()
        try:
            entry = {"results": module.run(quick=args.quick)}
        except Exception as exc:  # a failing benchmark is recorded, the others still run
            traceback.print_exc()
            entry = {"error": f"{type(exc).__name__}: {exc}"}
        entry["measured_at"] = now()
        entry["probe_ms"] = probe
        areas[area] = entry
        print(f"[bench] {area} done in {time.perf_counter() - start:.0f}s", flush=True)
    if "e2e" in wanted:
        from benchmarks import e2e

        scales = {"1M": 1_000_000} if args.quick else {s: SCALES[s] for s in args.scales}
        records = e2e.run(scales)
        results["e2e"] = {"records": records, "measured_at": now()}
        plot(records)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    DOCS.write_text(render(results))
    print(f"[bench] wrote {DOCS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
