"""Privacy by construction: hashed emails, no clear-text PII on disk or in the warehouse."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import polars as pl

from railflow.settings import Settings
from railflow.warehouse import connect
from scripts.generate import generate
from scripts.pii_pool import PoolProcess, build_pii_pool
from scripts.privacy import hash_email, normalise_email
from scripts.reference import load_reference
from scripts.world import World


def test_known_email_gives_known_hash() -> None:
    expected = hashlib.sha256(b"pepper" + b"ada.lovelace@example.com").hexdigest()
    assert hash_email("  Ada.Lovelace@Example.COM ", "pepper") == expected
    assert normalise_email(" X@Y.Z ") == "x@y.z"


def test_changing_the_salt_changes_every_hash(tmp_path: Path) -> None:
    generate(tmp_path / "a", 200, 10, date(2026, 3, 1), 3, "salt-one", progress=False)
    generate(tmp_path / "b", 200, 10, date(2026, 3, 1), 3, "salt-two", progress=False)
    a = pl.read_parquet(tmp_path / "a" / "raw" / "users" / "*.parquet")
    b = pl.read_parquet(tmp_path / "b" / "raw" / "users" / "*.parquet")
    assert a["user_id"].to_list() == b["user_id"].to_list()
    assert (a["email_sha256"] != b["email_sha256"]).all()
    assert a.drop("email_sha256").equals(b.drop("email_sha256"))
    assert a["email_sha256"].str.contains(r"^[0-9a-f]{64}$").all()


def test_the_pool_built_in_a_child_process_is_the_in_process_pool() -> None:
    """The world reads its Faker pool from a child process (as JSON): names with accents and
    the seeding must come through unchanged."""
    countries = ["CZ", "DE", "FR", "HU", "PL"]
    pool = PoolProcess(7, countries).result()
    assert pool == build_pii_pool(7, countries)
    assert any(not name.isascii() for name in pool.last["CZ"])
    assert PoolProcess(8, countries).result().first != pool.first


def clear_pii(settings: Settings) -> pl.DataFrame:
    """Rebuild the clear-text PII the generator held in memory for this world."""
    world = World(
        load_reference(), settings.users, settings.days, settings.start_date, settings.seed,
        settings.pii_salt,
    )  # fmt: skip
    return pl.concat(world.chunk(k).clear_pii for k in range(world.n_chunks))


def test_no_pii_in_raw_files_or_warehouse(small_world: Settings) -> None:
    pii = clear_pii(small_world)
    emails = set(pii["email"].str.strip_chars().str.to_lowercase())
    names = set(pii["first_name"]) | set(pii["last_name"])
    phones = set(pii["phone"])
    hashed = {hash_email(e, small_world.pii_salt) for e in emails}

    def scan(values: set[str], where: str) -> None:
        assert not any("@" in v for v in values), f"email-like value in {where}"
        assert not values & emails, where
        assert not values & phones, where
        full_names = values & {
            f"{a} {b}" for a, b in zip(pii["first_name"], pii["last_name"], strict=True)
        }
        assert not full_names, where
        # single first or last names collide with real words (cities, "Basel"...): checked
        # only where a name column could plausibly leak
        if where.rsplit(".", 1)[-1].endswith("name") and "station" not in where:
            assert not values & names, where

    raw_hashes: set[str] = set()
    for path in sorted(small_world.raw_dir.rglob("*.parquet")):
        df = pl.read_parquet(path)
        for col in df.columns:
            if df.schema[col] == pl.Utf8:
                values = set(df[col].drop_nulls().unique())
                scan(values, f"{path}:{col}")
                if col == "email_sha256":
                    raw_hashes |= values
    assert raw_hashes and raw_hashes <= hashed

    with connect(small_world) as wh:
        columns = wh.query(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR' "
            "and table_schema not in ('information_schema', 'pg_catalog')"
        )
        assert columns.height > 50
        for schema, table, column in columns.iter_rows():
            values = wh.query(f'select distinct "{column}" as v from "{schema}"."{table}"')
            scan(set(values["v"].drop_nulls()), f"{schema}.{table}.{column}")
