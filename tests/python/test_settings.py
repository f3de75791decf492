"""Settings: defaults, validation messages, and layer naming on both targets."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from railflow.errors import SettingsError
from railflow.settings import DEV_PII_SALT, REPO_ROOT, get_settings


def test_defaults_are_safe_duckdb() -> None:
    s = get_settings({})
    assert s.target == "duckdb"
    assert s.duckdb_path == REPO_ROOT / "data" / "warehouse.duckdb"
    assert (s.users, s.days, s.seed) == (20_000, 180, 42)
    assert s.start_date == date(2026, 3, 1)
    assert s.bq_location == "europe-west9"
    assert s.pii_salt == DEV_PII_SALT and s.salt_is_default
    assert s.schema("marts") == "marts"
    assert s.raw_dir == REPO_ROOT / "data" / "raw"


def test_environment_overrides(tmp_path: Path) -> None:
    s = get_settings(
        {
            "RAILFLOW_DATA_DIR": str(tmp_path),
            "RAILFLOW_USERS": "1_500",
            "RAILFLOW_DAYS": "30",
            "RAILFLOW_SEED": "0",
            "RAILFLOW_PII_SALT": "s3cret",
            "RAILFLOW_START_DATE": "2026-05-01",
        }
    )
    assert s.duckdb_path == tmp_path / "warehouse.duckdb"
    assert (s.users, s.days, s.seed) == (1500, 30, 0)
    assert s.start_date == date(2026, 5, 1)
    assert not s.salt_is_default
    assert "s3cret" not in repr(s)


def test_bigquery_layers_are_prefixed_datasets() -> None:
    s = get_settings(
        {
            "RAILFLOW_TARGET": "bigquery",
            "RAILFLOW_PII_SALT": "x" * 32,
            "RAILFLOW_BQ_PROJECT": "acme-analytics",
            "RAILFLOW_BQ_DATASET": "rail",
        }
    )
    assert s.schema("raw") == "rail_raw"
    assert s.schema("sync") == "rail_sync"
    assert s.bq_location == "europe-west9"
    with pytest.raises(ValueError, match="unknown warehouse layer"):
        s.schema("gold")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RAILFLOW_TARGET": "snowflake"}, "RAILFLOW_TARGET"),
        ({"RAILFLOW_USERS": "lots"}, "RAILFLOW_USERS"),
        ({"RAILFLOW_DAYS": "0"}, "RAILFLOW_DAYS"),
        ({"RAILFLOW_SEED": "4.2"}, "RAILFLOW_SEED"),
        ({"RAILFLOW_DUCKDB_MEMORY_LIMIT": "lots"}, "RAILFLOW_DUCKDB_MEMORY_LIMIT"),
        ({"RAILFLOW_DUCKDB_MEMORY_LIMIT": "0GB"}, "RAILFLOW_DUCKDB_MEMORY_LIMIT=0GB is too small"),
        ({"RAILFLOW_START_DATE": "March"}, "RAILFLOW_START_DATE"),
        ({"RAILFLOW_TARGET": "bigquery", "RAILFLOW_BQ_PROJECT": "p"}, "RAILFLOW_PII_SALT"),
        ({"RAILFLOW_TARGET": "bigquery", "RAILFLOW_PII_SALT": "s" * 16}, "RAILFLOW_BQ_PROJECT"),
        ({"RAILFLOW_BQ_METHOD": "password"}, "RAILFLOW_BQ_METHOD"),
        ({"RAILFLOW_BQ_METHOD": "service-account"}, "RAILFLOW_BQ_KEYFILE"),
        (
            {"RAILFLOW_BQ_METHOD": "service-account", "RAILFLOW_BQ_KEYFILE": "/no/such/key.json"},
            "RAILFLOW_BQ_KEYFILE",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError) as info:
        get_settings(env)
    message = str(info.value)
    assert names in message
    assert "\n" not in message


def test_unwritable_data_dir_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    s = get_settings({"RAILFLOW_DATA_DIR": str(blocker / "data")})
    with pytest.raises(SettingsError, match="RAILFLOW_DATA_DIR: cannot write"):
        s.ensure_writable()


def test_unwritable_artifacts_dir_names_its_own_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    s = get_settings(
        {"RAILFLOW_DATA_DIR": str(tmp_path / "data"), "RAILFLOW_ARTIFACTS_DIR": str(blocker / "a")}
    )
    with pytest.raises(SettingsError, match=r"^RAILFLOW_ARTIFACTS_DIR: cannot write"):
        s.ensure_writable()


BQ = {"RAILFLOW_TARGET": "bigquery", "RAILFLOW_BQ_PROJECT": "p"}


@pytest.mark.parametrize(
    ("salt", "problem"),
    [
        (None, "is not set"),
        (" ", "is too short"),
        ("x", "is too short"),
        ("fifteen-chars!!", "is too short"),
        (" " * 20 + "short", "is too short"),
        (DEV_PII_SALT, "is the development salt"),
    ],
)
def test_bigquery_refuses_weak_salts(salt: str | None, problem: str) -> None:
    env = BQ if salt is None else {**BQ, "RAILFLOW_PII_SALT": salt}
    with pytest.raises(SettingsError) as info:
        get_settings(env)
    message = str(info.value)
    assert message.startswith(f"RAILFLOW_PII_SALT {problem}") and "at least 16" in message
    assert "\n" not in message


def test_bigquery_accepts_a_salt_of_16_characters() -> None:
    assert get_settings({**BQ, "RAILFLOW_PII_SALT": "sixteen-chars-ok"}).pii_salt_is_set


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "RAILFLOW_PII_SALT is not set"),
        ({"RAILFLOW_PII_SALT": DEV_PII_SALT}, "RAILFLOW_PII_SALT is the development salt"),
    ],
)
def test_the_development_salt_warning_says_why(
    env: dict[str, str], says: str, caplog: pytest.LogCaptureFixture
) -> None:
    from railflow import settings as settings_module

    settings_module._warned_dev_salt.clear()
    with caplog.at_level("WARNING", logger="railflow.settings"):
        settings_module.warn_if_development_salt(get_settings(env))
    assert [r.getMessage().split(":")[1].strip() for r in caplog.records] == [says]
