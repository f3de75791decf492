"""PII handling: emails are normalised and salted-SHA-256 hashed before anything is written.

Names and phone numbers are never written at all. The salt comes from settings
(RAILFLOW_PII_SALT); the DuckDB default may use the development salt, BigQuery refuses to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import polars as pl


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_email(email: str, salt: str) -> str:
    """sha256(salt || normalised email), hex. The salt prefix keeps hashes unlinkable across
    deployments with different salts."""
    return hashlib.sha256((salt + normalise_email(email)).encode("utf-8")).hexdigest()


def hash_emails(emails: Iterable[str], salt: str) -> pl.Series:
    # hashlib per value: it runs once per user, not per event, so a bulk hash would save little.
    return pl.Series("email_sha256", [hash_email(e, salt) for e in emails], dtype=pl.Utf8)


def email_domain(emails: pl.Series) -> pl.Series:
    return emails.str.strip_chars().str.to_lowercase().str.split("@").list.last()
