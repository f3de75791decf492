"""The clear-text PII pool: Faker names and phones per country, sampled by index by the world.

This module imports only the standard library and Faker, so the world can build the pool in a
separate process (`python scripts/pii_pool.py SEED COUNTRY...`, JSON on stdout) while it
simulates the first chunk: Faker's import and pool are pure Python (about half a second here)
and on a thread they would hold the GIL the simulation needs. The pool never leaves memory
(and the pipe between the two processes); tests rebuild it to scan the outputs for leaks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

LOCALES = {
    "FR": "fr_FR", "DE": "de_DE", "IT": "it_IT", "ES": "es_ES", "NL": "nl_NL", "BE": "nl_BE",
    "CH": "de_CH", "AT": "de_AT", "GB": "en_GB", "CZ": "cs_CZ", "DK": "da_DK", "LU": "fr_FR",
    "PT": "pt_PT", "HU": "hu_HU", "PL": "pl_PL",
}  # fmt: skip
POOL_SIZE = 200  # names per locale; Faker builds the pool once, rows sample it by index
# Faker imports every provider module of a locale unless told which ones it needs; these are the
# only two the pool uses (the names and phones drawn are the same either way).
FAKER_PROVIDERS = ["faker.providers.person", "faker.providers.phone_number"]


@dataclass(frozen=True)
class PiiPool:
    """Clear-text PII pool per country; kept in memory only (tests rebuild it to scan for leaks).

    first_slug/last_slug are the email-safe forms of the names, made once per pool entry.
    """

    first: dict[str, list[str]]
    last: dict[str, list[str]]
    phone: dict[str, list[str]]
    first_slug: dict[str, list[str]]
    last_slug: dict[str, list[str]]


def ascii_slug(text: str) -> str:
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in norm.lower() if ch.isalnum()) or "user"


def build_pii_pool(seed: int, countries: list[str]) -> PiiPool:
    from faker import Faker

    first, last, phone = {}, {}, {}
    for i, country in enumerate(sorted(countries)):
        fake = Faker(LOCALES.get(country, "en_GB"), providers=FAKER_PROVIDERS)
        fake.seed_instance(seed * 1000 + i)
        first[country] = [fake.first_name() for _ in range(POOL_SIZE)]
        last[country] = [fake.last_name() for _ in range(POOL_SIZE)]
        phone[country] = [fake.phone_number() for _ in range(POOL_SIZE)]

    def slugs(names: dict[str, list[str]]) -> dict[str, list[str]]:
        return {country: [ascii_slug(n) for n in pool] for country, pool in names.items()}

    return PiiPool(first, last, phone, slugs(first), slugs(last))


class PoolProcess:
    """build_pii_pool(seed, countries) running in a child process; `result()` waits for it."""

    def __init__(self, seed: int, countries: list[str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(seed), *countries],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._pool: PiiPool | None = None

    def result(self) -> PiiPool:
        if self._pool is None:
            out, err = self._proc.communicate()
            if self._proc.returncode != 0:
                last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"building the Faker PII pool failed: {last}")
            self._pool = PiiPool(**json.loads(out))
        return self._pool


if __name__ == "__main__":
    pool = build_pii_pool(int(sys.argv[1]), sys.argv[2:])
    sys.stdout.write(json.dumps(asdict(pool)))  # ASCII: \u escapes survive any locale
