"""Generate the synthetic RailFlow world: raw event files (PII hashed) and the ground truth.

    python -m scripts.generate --users 20000 --days 180 --seed 42 --start-date 2026-03-01

Writes data/raw/<table>/part-<chunk>.parquet (exactly the columns of schemas/tracking_plan.yml),
data/raw/manifest.json (each file's SHA-256 and row count, which the loader checks) and
data/truth/ (params.json and Parquet files that are never loaded into the warehouse).
Same seed and arguments -> byte-identical files.

A new world is written beside the old one (data/.raw.new, data/.truth.new) and renamed into
place once complete: a failed run (a full disk, a kill) leaves the previous world as it was.
Before writing, the world's estimated disk and memory needs are checked against what is free.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from tqdm import tqdm

from railflow.checksums import sha256_file
from railflow.errors import RailflowError, SettingsError, cli_entrypoint, is_disk_full
from railflow.settings import Settings, get_settings, warn_if_development_salt
from railflow.stage import StageResult
from scripts.reference import load_reference
from scripts.tracking_plan import load_plan
from scripts.world import CHUNK_USERS, PARAMS, TRAVEL_HORIZON_DAYS, World

log = logging.getLogger("railflow.generate")
# zstd at level 1: within a few percent of snappy's speed, files about 30% smaller than snappy's
PARQUET = {"compression": "zstd", "compression_level": 1, "statistics": True}
WRITE_THREADS = 2  # Parquet encoding runs in native code, off the GIL, beside the next chunk
MANIFEST = "manifest.json"  # scripts.load reads it under the same name
# What a world costs, measured on generated worlds (2,000 x 120 and 25,000 x 30, raw + truth:
# 32 and 40 bytes a user-day; peak memory 190 MB and 400 MB), with a margin. Memory grows with
# the users of a chunk (CHUNK_USERS at most, two chunks in flight), not with the world.
DISK_BYTES_PER_USER_DAY = 60
MEMORY_BASE_BYTES = 300_000_000
MEMORY_BYTES_PER_CHUNK_USER_DAY = 600


class GenerateError(RailflowError):
    """The world cannot be written (not enough room, a full disk)."""


def _gb(n: float) -> str:
    """A size in GB, or in MB below a gigabyte."""
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def check_room(out_dir: Path, users: int, days: int) -> None:
    """Refuse a world that cannot fit: its estimated size against the free disk under out_dir
    (the old world stays until the new one is complete) and the available memory."""
    disk_needed = users * days * DISK_BYTES_PER_USER_DAY
    memory_needed = (
        MEMORY_BASE_BYTES + min(users, 2 * CHUNK_USERS) * days * MEMORY_BYTES_PER_CHUNK_USER_DAY
    )
    folder = out_dir
    while not folder.exists():  # the nearest existing folder is on the same disk
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    memory = available_memory()
    world = f"a world of {users:,} users x {days:,} days"
    if disk_needed > free:
        raise GenerateError(
            f"{world} needs about {_gb(disk_needed)} of disk for raw/ and truth/ (estimated at "
            f"{DISK_BYTES_PER_USER_DAY} bytes a user-day), but {folder} has {_gb(free)} free; "
            "choose fewer users or days (RAILFLOW_USERS, RAILFLOW_DAYS) or another "
            "RAILFLOW_DATA_DIR"
        )
    if memory_needed > memory:
        raise GenerateError(
            f"{world} needs about {_gb(memory_needed)} of memory, but {_gb(memory)} is "
            "available; choose fewer days (RAILFLOW_DAYS) or free some memory"
        )


class ParquetStream:
    """One Parquet file written chunk by chunk, without holding every chunk in memory.

    With a single chunk polars writes the file; with several, pyarrow's ParquetWriter appends
    one row group per chunk. Chunks must be written in order, one at a time.
    """

    def __init__(self, path: Path, chunks: int) -> None:
        self.path = path
        self.chunks = chunks
        self.written = 0
        self.writer = None

    def write(self, df: pl.DataFrame) -> None:
        self.written += 1
        if self.chunks == 1:
            df.write_parquet(self.path, **PARQUET)
            return
        table = df.to_arrow(compat_level=pl.CompatLevel.newest())
        if self.writer is None:
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(
                self.path,
                table.schema,
                compression=PARQUET["compression"],
                compression_level=PARQUET["compression_level"],
                # trying dictionaries on id columns costs ~30% more CPU; zstd finds the repeats
                use_dictionary=False,
            )
        self.writer.write_table(table)
        if self.written == self.chunks:
            self.writer.close()


def _conform(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Exactly the plan's columns, order and types."""
    schema = load_plan()[table].schema
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])


def experiment_outcome_sums(
    searches: pl.DataFrame, exposures: pl.DataFrame, data_end: datetime
) -> pl.DataFrame:
    """One chunk's share of the true experiment effects: per experiment, the exposed users whose
    outcome window ends by `data_end` (as the readouts count them) and the sums over them of
    each user's expected outcomes within the window, with and without treatment, from the true
    search probabilities (the counterfactuals are exact: searches do not depend on the arm).
    Users never span chunks, so chunks add up."""
    discount = PARAMS["experiments"]["medium_intent_discount"]["discount_rate"]
    window = PARAMS["experiments"]["outcome_window_days"]
    exposed = exposures.lazy().filter(
        pl.col("exposed_at") + pl.duration(days=window) <= pl.lit(data_end)
    )
    per_user = (
        exposed.join(searches.lazy(), on="user_id", how="left")
        .filter(
            (pl.col("searched_at") >= pl.col("exposed_at"))
            & (pl.col("searched_at") < pl.col("exposed_at") + pl.duration(days=window))
        )
        .with_columns(
            p_t=pl.when(pl.col("experiment_id") == "medium_intent_discount")
            .then(pl.col("true_probability_treatment"))
            .otherwise(pl.col("true_probability_control")),
            price_t=pl.when(
                (pl.col("experiment_id") == "medium_intent_discount") & pl.col("is_medium_intent")
            )
            .then(pl.col("price_eur") * (1 - discount))
            .otherwise(pl.col("price_eur")),
        )
        .group_by("experiment_id", "user_id")
        .agg(
            conv_c=1 - (1 - pl.col("true_probability_control")).product(),
            conv_t=1 - (1 - pl.col("p_t")).product(),
            rev_c=(pl.col("true_probability_control") * pl.col("price_eur")).sum(),
            rev_t=(pl.col("p_t") * pl.col("price_t")).sum(),
        )
    )
    all_exposed = exposed.select("experiment_id", "user_id").join(
        per_user, on=["experiment_id", "user_id"], how="left"
    )
    return (
        all_exposed.fill_null(0.0)
        .group_by("experiment_id")
        .agg(
            pl.len().cast(pl.Int64).alias("exposed_users"),
            *(pl.col(c).sum() for c in ("conv_c", "conv_t", "rev_c", "rev_t")),
        )
        .collect()
    )


def true_experiment_effects(sums: list[pl.DataFrame]) -> dict[str, dict[str, float]]:
    """Expected per-user outcomes over each experiment's exposed population, with and without
    treatment, from the per-chunk sums of experiment_outcome_sums."""
    n = pl.col("exposed_users").sum()
    stats = (
        pl.concat(sums)
        .group_by("experiment_id")
        .agg(
            exposed_users=n,
            conversion_control=pl.col("conv_c").sum() / n,
            conversion_treatment=pl.col("conv_t").sum() / n,
            revenue_per_user_control=pl.col("rev_c").sum() / n,
            revenue_per_user_treatment=pl.col("rev_t").sum() / n,
        )
    )
    out: dict[str, dict[str, float]] = {}
    for row in stats.iter_rows(named=True):
        c, t = row["conversion_control"], row["conversion_treatment"]
        rc, rt = row["revenue_per_user_control"], row["revenue_per_user_treatment"]
        values = {
            **{k: v for k, v in row.items() if k != "experiment_id"},
            "true_abs_lift_conversion": t - c,
            "true_rel_lift_conversion": (t - c) / c if c else 0.0,
            "true_abs_lift_revenue_per_user": rt - rc,
        }
        # parallel float sums differ in the last bits between runs: round for stable files
        out[row["experiment_id"]] = {
            k: round(v, 9) if isinstance(v, float) else v for k, v in values.items()
        }
    return out


def check_period(start: date, days: int, today: date) -> None:
    """The simulated period, with its late deliveries, must be over by today: the loader
    quarantines events received in the future."""
    lateness = PARAMS["pathologies"]["max_lateness_days"]
    try:
        delivered_by = start + timedelta(days=days + lateness)
    except OverflowError:
        delivered_by = date.max
    if delivered_by > today:
        raise SettingsError(
            f"a world of {days} days from {start} is still receiving events after today "
            f"({today}); choose an earlier start date (--start-date or RAILFLOW_START_DATE) or "
            "fewer days (--days or RAILFLOW_DAYS), or set RAILFLOW_NOW to a later time"
        )


def check_calendar(start: date, days: int) -> None:
    """The holidays seed must cover every day the world's searches and travel reach."""
    covered = load_reference().holidays["holiday_date"]
    first, last = covered.min(), covered.max()
    end = start + timedelta(days=days + TRAVEL_HORIZON_DAYS - 1)
    if start < first or end > last:
        raise SettingsError(
            f"a world of {days} days from {start} reaches {end}, outside the holidays seed "
            f"({first} to {last}); choose dates inside it, or extend the seed with "
            f"`python -m scripts.holidays_seed --first-year {min(start.year, first.year)} "
            f"--last-year {max(end.year, last.year)}`"
        )


def generate(
    out_dir: Path,
    users: int,
    days: int,
    start: date,
    seed: int,
    salt: str,
    progress: bool = True,
    today: date | None = None,
    incidents: bool = True,
) -> dict[str, int]:
    """Generate the world into out_dir/raw and out_dir/truth; returns rows per raw table.
    `today` (default: the real date) is when the world's deliveries must be over by."""
    check_period(start, days, today or datetime.now(UTC).date())
    check_calendar(start, days)
    check_room(out_dir, users, days)
    final = {"raw": out_dir / "raw", "truth": out_dir / "truth"}
    # written beside the old world, which stays until the new one is complete
    staged = {name: out_dir / f".{name}.new" for name in final}
    for folder in staged.values():
        if folder.exists():
            shutil.rmtree(folder)  # a run killed before it finished
        folder.mkdir(parents=True)
    try:
        counts = _write_world(
            staged["raw"], staged["truth"], users, days, start, seed, salt, progress, incidents
        )
    except BaseException as exc:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, Exception) and is_disk_full(exc):
            raise GenerateError(
                f"no space left on the device under {out_dir} while writing the world; the "
                f"previous world in {out_dir} is intact; free some space or choose fewer users "
                "or days"
            ) from None
        raise
    for name, folder in final.items():
        old = out_dir / f".{name}.old"
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            folder.rename(old)
        staged[name].rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    return counts


def _write_world(
    raw_dir: Path,
    truth_dir: Path,
    users: int,
    days: int,
    start: date,
    seed: int,
    salt: str,
    progress: bool,
    incidents: bool = True,
) -> dict[str, int]:
    world = World(
        load_reference(), users=users, days=days, start=start, seed=seed, salt=salt,
        incidents=incidents,
    )  # fmt: skip
    counts: dict[str, int] = {}
    truth: dict[str, ParquetStream] = {}
    manifest: dict[str, dict[str, object]] = {}

    def write_raw(df: pl.DataFrame, table: str, path: Path) -> None:
        _conform(df, table).write_parquet(path, **PARQUET)
        # hashed right after writing, from the page cache, on the writer thread
        manifest[f"{table}/{path.name}"] = {"sha256": sha256_file(path), "rows": df.height}

    # Each table is encoded on a writer thread as soon as the simulation has finished it, while
    # the rest of its chunk (and the next chunk) is simulated. A chunk's first table waits until
    # the previous chunk's files are written: at most two chunks are in memory, and the truth
    # files receive their chunks in order.
    with ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="write") as writer:
        previous: list[Future[None]] = []
        current: list[Future[None]] = []
        outcome_sums: list[Future[pl.DataFrame]] = []

        def write(kind: str, table: str, df: pl.DataFrame) -> None:
            nonlocal previous
            for job in previous:
                job.result()
            previous = []
            if kind == "raw":
                (raw_dir / table).mkdir(exist_ok=True)
                path = raw_dir / table / f"part-{k:05d}.parquet"  # k: the chunk being simulated
                current.append(writer.submit(write_raw, df, table, path))
                counts[table] = counts.get(table, 0) + df.height
            else:
                stream = truth.setdefault(
                    table, ParquetStream(truth_dir / f"{table}.parquet", world.n_chunks)
                )
                current.append(writer.submit(stream.write, df))

        end = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=days)
        for k in tqdm(range(world.n_chunks), desc="generate", unit="chunk", disable=not progress):
            simulated = world.chunk(k, ready=write).truth
            # summed beside the next chunk's simulation, from the truth still in memory
            outcome_sums.append(
                writer.submit(
                    experiment_outcome_sums, simulated["searches"], simulated["exposures"], end
                )
            )
            previous, current = current, []
        for job in previous:
            job.result()
    world.incidents.write_parquet(truth_dir / "incidents.parquet")
    params = {
        "generator": {
            "users": users,
            "days": days,
            "start_date": start.isoformat(),
            "seed": seed,
            "incidents": incidents,
        },
        "planted": PARAMS,
        "true_effects": true_experiment_effects([job.result() for job in outcome_sums]),
        "raw_row_counts": counts,
    }
    (truth_dir / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))
    write_manifest(raw_dir, manifest)
    return counts


def write_manifest(raw_dir: Path, files: dict[str, dict[str, object]] | None = None) -> Path:
    """raw_dir/manifest.json: each raw file's SHA-256 and row count (`files`, or computed from
    the files present, as for a folder prepared by another producer)."""
    if files is None:
        files = {
            path.relative_to(raw_dir).as_posix(): {
                "sha256": sha256_file(path),
                "rows": pl.scan_parquet(path).select(pl.len()).collect().item(),
            }
            for path in sorted(raw_dir.glob("*/*.parquet"))
        }
    path = raw_dir / MANIFEST
    path.write_text(json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=1))
    return path


def stage(settings: Settings) -> StageResult:
    warn_if_development_salt(settings)
    counts = generate(
        settings.data_dir,
        users=settings.users,
        days=settings.days,
        start=settings.start_date,
        seed=settings.seed,
        salt=settings.pii_salt,
        progress=sys.stderr.isatty(),
        today=settings.current_time().date(),
        incidents=settings.incidents,
    )
    events = sum(v for k, v in counts.items() if k != "users")
    return StageResult(
        rows=events,
        outputs=[str(settings.raw_dir), str(settings.truth_dir)],
        metrics={"users": counts["users"], "events": f"{events:,}"},
    )


def build_parser(defaults: Settings) -> argparse.ArgumentParser:
    def positive(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} must be at least 1")
        return value

    def iso_date(text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None

    parser = argparse.ArgumentParser(
        prog="python -m scripts.generate",
        description="Generate the synthetic RailFlow world (raw events + ground truth).",
    )
    parser.add_argument("--users", type=positive, default=defaults.users, help="number of users")
    parser.add_argument("--days", type=positive, default=defaults.days, help="simulated days")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--start-date", type=iso_date, default=defaults.start_date, help="first simulated day"
    )
    parser.add_argument(
        "--out", type=Path, default=defaults.data_dir, help="data folder (raw/ and truth/)"
    )
    return parser


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    defaults = get_settings()
    args = build_parser(defaults).parse_args(argv)
    if args.seed < 0:
        raise SettingsError(f"--seed {args.seed} must be zero or positive")
    warn_if_development_salt(defaults)
    started = time.perf_counter()
    counts = generate(
        args.out, args.users, args.days, args.start_date, args.seed, defaults.pii_salt,
        today=defaults.current_time().date(), incidents=defaults.incidents,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    events = sum(v for k, v in counts.items() if k != "users")
    width = max(len(t) for t in counts)
    print(f"wrote {args.out / 'raw'} and {args.out / 'truth'}")
    for table, rows in counts.items():
        print(f"  {table:<{width}} {rows:>12,}")
    print(f"  {'events':<{width}} {events:>12,}")
    # from reading the seeds to the last file written; interpreter start-up and imports excluded
    print(f"generated in {seconds:.3f} s ({events / seconds:,.0f} events/s)")


if __name__ == "__main__":
    main(sys.argv[1:])
