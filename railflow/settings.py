"""The one place settings come from: environment variables with safe DuckDB defaults.

Every sidecar (generator, loader, ml, analysis, app) calls `get_settings()`; no other Python
module reads `RAILFLOW_*` variables (dbt's profile reads those `Settings.dbt_env()` passes on).
Bad values raise `SettingsError` with a one-line message naming the
variable and the fix.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

from railflow.errors import SettingsError

log = logging.getLogger("railflow.settings")
_warned_dev_salt: list[bool] = []  # warn once per process


def _project_root() -> Path:
    """The RailFlow checkout (the folder with dbt_project.yml). Installed editable, as `make
    setup` does, that is the folder above this package; installed from a wheel (`pip install .`),
    the package lives elsewhere and the checkout is the folder the command runs in."""
    beside_package = Path(__file__).resolve().parent.parent
    return beside_package if (beside_package / "dbt_project.yml").is_file() else Path.cwd()


REPO_ROOT = _project_root()
# The project's own dbt profile: a copy of profiles.example.yml (railflow.dbt.ensure_profile)
REPO_PROFILES_DIR = REPO_ROOT / ".dbt"
TARGETS = ("duckdb", "bigquery")
BQ_METHODS = ("oauth", "service-account")  # as dbt-bigquery names them
# Used only on DuckDB, with a warning; BigQuery refuses it, and any salt shorter than
# MIN_PII_SALT_CHARS (a short salt is guessed as easily as no salt).
DEV_PII_SALT = "railflow-dev-salt-not-for-production"
MIN_PII_SALT_CHARS = 16

# Warehouse layers. On DuckDB each is a schema of that name; on BigQuery a dataset named
# `<dataset>_<layer>`. The dbt macro `layer_schema_name` applies the same rule.
LAYERS = (
    "raw",
    "seeds",
    "staging",
    "intermediate",
    "marts",
    "ml",
    "sync",
    "snapshots",
    "audit",
    "reports",
)


@dataclass(frozen=True)
class Settings:
    target: str = "duckdb"
    data_dir: Path = REPO_ROOT / "data"
    duckdb_path: Path = REPO_ROOT / "data" / "warehouse.duckdb"
    # DuckDB spills to disk beyond this; its default (80% of RAM) let a 50M-event build reach
    # 12.5 GB. Python-side frames come on top of it.
    duckdb_memory_limit: str = "8GB"
    artifacts_dir: Path = REPO_ROOT / "ml" / "artifacts"
    users: int = 20_000
    days: int = 180
    start_date: date = date(2026, 3, 1)
    seed: int = 42
    # plant the incidents anomaly detection is graded against (RAILFLOW_INCIDENTS=off: none)
    incidents: bool = True
    pii_salt: str = field(default=DEV_PII_SALT, repr=False)
    pii_salt_is_set: bool = False  # RAILFLOW_PII_SALT was given (even if to the dev salt)
    bq_project: str | None = None
    bq_dataset: str = "railflow"
    bq_location: str = "europe-west9"
    # A service-account key (RAILFLOW_BQ_METHOD=service-account); None: application-default
    # credentials (`gcloud auth application-default login`), as dbt's oauth method
    bq_keyfile: Path | None = None
    # An emulator or test server speaking the BigQuery REST API (anonymous credentials)
    bq_api_endpoint: str | None = None
    dbt_profiles_dir: Path = REPO_PROFILES_DIR
    dbt_target_path: Path = REPO_ROOT / "target"
    crm_endpoint: str | None = None
    crm_api_key: str | None = field(default=None, repr=False)
    # The time the pipeline takes for now (RAILFLOW_NOW); None: the real clock. Set it to build
    # a world dated after today: the generator refuses a world still receiving events and the
    # loader quarantines events received in the future, both measured against this clock.
    now: datetime | None = None

    def current_time(self) -> datetime:
        return self.now or datetime.now(UTC)

    @property
    def salt_is_default(self) -> bool:
        return self.pii_salt == DEV_PII_SALT

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def truth_dir(self) -> Path:
        return self.data_dir / "truth"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    def schema(self, layer: str) -> str:
        """Name of the schema (DuckDB) or dataset (BigQuery) holding a warehouse layer."""
        if layer not in LAYERS:
            raise ValueError(f"unknown warehouse layer {layer!r}; expected one of {LAYERS}")
        return f"{self.bq_dataset}_{layer}" if self.target == "bigquery" else layer

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)

    def ensure_writable(self) -> None:
        """Create the output folders, or fail with a one-line message if we cannot."""
        folders = {
            "RAILFLOW_DATA_DIR": self.data_dir,
            "RAILFLOW_DUCKDB_PATH": self.duckdb_path.parent,
            "RAILFLOW_ARTIFACTS_DIR": self.artifacts_dir,
        }
        if self.target == "bigquery":
            del folders["RAILFLOW_DUCKDB_PATH"]
        for variable, folder in folders.items():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / ".railflow-write-probe"
                probe.write_text("ok")
                probe.unlink()
            except OSError as exc:
                raise SettingsError(
                    f"{variable}: cannot write to {folder} ({exc.strerror or exc}); "
                    f"point {variable} at a writable folder or fix its permissions"
                ) from None

    def dbt_env(self) -> dict[str, str]:
        """Environment variables that profiles.example.yml and dbt_project.yml read."""
        env = {
            "RAILFLOW_TARGET": self.target,
            "RAILFLOW_DUCKDB_PATH": str(self.duckdb_path),
            "RAILFLOW_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "RAILFLOW_BQ_DATASET": self.bq_dataset,
            "RAILFLOW_BQ_LOCATION": self.bq_location,
            "DBT_PROFILES_DIR": str(self.dbt_profiles_dir),
            "DBT_TARGET_PATH": str(self.dbt_target_path),
        }
        if self.bq_project:
            env["RAILFLOW_BQ_PROJECT"] = self.bq_project
        if self.bq_keyfile:  # dbt authenticates as the Python stages do
            env |= {
                "RAILFLOW_BQ_METHOD": "service-account",
                "RAILFLOW_BQ_KEYFILE": str(self.bq_keyfile),
            }
        return env


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not a whole number; set it to an integer such as {default}"
        ) from None
    if value < minimum:
        raise SettingsError(f"{name}={value} is too small; use a value of at least {minimum}")
    return value


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name)
    if not raw:
        return default
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


_MEMORY_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
                 "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_MEMORY_MINIMUM_MB = 256  # below this DuckDB fails on the first real query


def _memory(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B)", value, re.IGNORECASE)
    if not match:
        raise SettingsError(
            f"{name}={value!r} is not a memory size; use a number and a unit, e.g. {name}=8GB"
        )
    if float(match[1]) * _MEMORY_UNITS[match[2].lower()] < _MEMORY_MINIMUM_MB * 1e6:
        raise SettingsError(f"{name}={value} is too small; use at least {_MEMORY_MINIMUM_MB}MB")
    return value


def warn_if_development_salt(settings: Settings) -> None:
    """Say once per process that PII is being hashed with the development salt: only what
    hashes says it, so `--help` and the stages that read hashes stay quiet."""
    if settings.salt_is_default and not _warned_dev_salt:
        _warned_dev_salt.append(True)
        state = "is the development salt" if settings.pii_salt_is_set else "is not set"
        log.warning(
            f"warning: RAILFLOW_PII_SALT {state}: using the development salt "
            "(fine for local DuckDB, never for production)"
        )


def check_production_salt(salt: str) -> None:
    """BigQuery holds real data: its salt must be a secret, not the development salt, and long
    enough not to be guessed (at least MIN_PII_SALT_CHARS characters, spaces not counted)."""
    fix = (
        f"export RAILFLOW_PII_SALT to a random secret of at least {MIN_PII_SALT_CHARS} "
        "characters, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    )
    if not salt:
        problem = "is not set"
    elif salt == DEV_PII_SALT:
        problem = "is the development salt"
    elif len(salt.strip()) < MIN_PII_SALT_CHARS:
        problem = f"is too short ({len(salt.strip())} characters without spaces)"
    else:
        return
    raise SettingsError(
        f"RAILFLOW_PII_SALT {problem}; the bigquery target refuses to hash PII with it: {fix}"
    )


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise SettingsError(f"{name}={raw!r} is not on or off; set it to on or off")


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (or the given mapping) and validate them."""
    env = os.environ if env is None else env
    target = env.get("RAILFLOW_TARGET", "duckdb").strip().lower() or "duckdb"
    if target not in TARGETS:
        raise SettingsError(
            f"RAILFLOW_TARGET={target!r} is not a known target; use one of: {', '.join(TARGETS)}"
        )

    data_dir = _path(env, "RAILFLOW_DATA_DIR", REPO_ROOT / "data")
    start_raw = env.get("RAILFLOW_START_DATE", "2026-03-01")
    try:
        start_date = date.fromisoformat(start_raw)
    except ValueError:
        raise SettingsError(
            f"RAILFLOW_START_DATE={start_raw!r} is not a date; use YYYY-MM-DD, e.g. 2026-03-01"
        ) from None

    now_raw = env.get("RAILFLOW_NOW") or None
    try:
        now = datetime.fromisoformat(now_raw) if now_raw else None
    except ValueError:
        raise SettingsError(
            f"RAILFLOW_NOW={now_raw!r} is not a time; use an ISO timestamp, e.g. 2030-06-01T00:00Z"
        ) from None
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=UTC)

    salt = env.get("RAILFLOW_PII_SALT", "")
    if target == "bigquery":
        check_production_salt(salt)
    salt_is_set = bool(salt)
    salt = salt or DEV_PII_SALT  # what hashes with it says so (warn_if_development_salt)

    bq_project = env.get("RAILFLOW_BQ_PROJECT") or None
    if target == "bigquery" and not bq_project:
        raise SettingsError(
            "RAILFLOW_BQ_PROJECT is not set; the bigquery target needs your GCP project id"
        )

    method = (env.get("RAILFLOW_BQ_METHOD") or "oauth").strip().lower()
    if method not in BQ_METHODS:
        raise SettingsError(
            f"RAILFLOW_BQ_METHOD={method!r} is not known; use one of: {', '.join(BQ_METHODS)}"
        )
    keyfile = _path(env, "RAILFLOW_BQ_KEYFILE", Path()) if method == "service-account" else None
    if keyfile and not keyfile.is_file():
        raise SettingsError(
            f"RAILFLOW_BQ_KEYFILE={env.get('RAILFLOW_BQ_KEYFILE', '')!r} is not a file; "
            "service-account needs the path of its JSON key file"
        )

    return Settings(
        target=target,
        data_dir=data_dir,
        duckdb_path=_path(env, "RAILFLOW_DUCKDB_PATH", data_dir / "warehouse.duckdb"),
        duckdb_memory_limit=_memory(env, "RAILFLOW_DUCKDB_MEMORY_LIMIT", "8GB"),
        artifacts_dir=_path(env, "RAILFLOW_ARTIFACTS_DIR", REPO_ROOT / "ml" / "artifacts"),
        users=_int(env, "RAILFLOW_USERS", 20_000),
        days=_int(env, "RAILFLOW_DAYS", 180),
        start_date=start_date,
        seed=_int(env, "RAILFLOW_SEED", 42, minimum=0),
        incidents=_switch(env, "RAILFLOW_INCIDENTS", True),
        pii_salt=salt,
        pii_salt_is_set=salt_is_set,
        bq_project=bq_project,
        bq_dataset=env.get("RAILFLOW_BQ_DATASET", "railflow") or "railflow",
        bq_location=env.get("RAILFLOW_BQ_LOCATION", "europe-west9") or "europe-west9",
        bq_keyfile=keyfile,
        bq_api_endpoint=env.get("RAILFLOW_BQ_API_ENDPOINT") or None,
        dbt_profiles_dir=_path(env, "DBT_PROFILES_DIR", REPO_PROFILES_DIR),
        dbt_target_path=_path(env, "DBT_TARGET_PATH", REPO_ROOT / "target"),
        crm_endpoint=env.get("RAILFLOW_CRM_ENDPOINT") or None,
        crm_api_key=env.get("RAILFLOW_CRM_API_KEY") or None,
        now=now,
    )
