"""PII handling: emails are normalised and salted-SHA-256 hashed before anything is written,
and the loader's detectors of clear-text PII, disguised forms included.

Names and phone numbers are never written at all. The salt comes from settings
(RAILFLOW_PII_SALT); the DuckDB default may use the development salt, BigQuery refuses to.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
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


# ------------------------------------------------------------------------------------------
# Detecting clear-text PII in values the loader is given (the loader quarantines such rows and
# redacts them in audit.quarantine). Every pattern is a polars (Rust regex) expression, so a
# batch is scanned in native code. Disguised forms are spelled into the patterns rather than
# normalised away first (NFKC on every id of a batch made the load ten times slower): '@' may
# be a full-width '＠', a small '﹫' or percent-encoded '%40'; \w and \d match full-width letters
# and digits as they are.
# ------------------------------------------------------------------------------------------
# An email: an '@' between characters an address can hold, quotes and brackets excluded.
EMAIL_LIKE = r"[\w.%+'!#$&*/=?^`{|}~-]+(?:@|＠|﹫|%40)[\w-]+(?:[.．][\w-]+)*"
# "alice at gmail dot com", "alice [at] gmail (dot) com": 'at' and 'dot' spelled out as words
_AT = r"(?:\s+at\s+|\s*[\[({<]\s*at\s*[\])}>]\s*)"
_DOT = r"(?:\s+dot\s+|\s*[\[({<]\s*dot\s*[\])}>]\s*)"
SPELLED_EMAIL = rf"(?i)[\w.+-]+{_AT}[\w-]+(?:{_DOT}[\w-]+)+"
TEL_LINK = r"(?i)\btel:(?://)?\s*\+?[\d(]"
# a run of digits and phone punctuation inside a longer text; it is a phone number when it
# holds 9 to 15 digits and is not an ISO date
PHONE_RUN = r"(?:^|[^\w+])\+?\(?\d[\d\s./()-]{7,}\d"  # not inside an id (sr_000000012)
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}"
# Two capitalised words, as a first name and a family name are written ("Alice Martin")
CAPITALISED_PAIR = r"\b\p{Lu}[\p{Ll}'-]+(?:-\p{Lu}\p{Ll}+)?\s+\p{Lu}[\p{L}'-]+"
NAME_LOCALES = (
    "fr_FR", "de_DE", "it_IT", "es_ES", "nl_NL", "nl_BE", "de_CH", "de_AT", "en_GB", "en_US",
    "cs_CZ", "da_DK", "pt_PT", "hu_HU", "pl_PL",
)  # fmt: skip


@functools.cache
def first_names() -> frozenset[str]:
    """Lower-cased first names of the locales the world draws from (Faker's name lists, data
    modules only: no Faker instance is built)."""
    names: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            names.update(n.lower() for n in getattr(provider, attr, ()))
    return frozenset(n for n in names if len(n) > 2)


def looks_like_email(text: pl.Expr) -> pl.Expr:
    """An email address, written plainly, percent-encoded, full-width, or spelled with 'at'
    and 'dot' words."""
    return text.str.contains(EMAIL_LIKE) | text.str.contains(SPELLED_EMAIL)


def looks_like_tel_link(text: pl.Expr) -> pl.Expr:
    return text.str.contains(TEL_LINK)


def looks_like_phone(text: pl.Expr) -> pl.Expr:
    """The whole value is a phone number: only digits and phone punctuation, 9 to 15 digits.
    A bare run of digits not starting with 0 (a numeric id) and an ISO date with a time are
    not taken for one."""
    return (
        text.str.contains(r"^\s*\+?[\s./()-]*(?:\d[\s./()-]*){9,15}$")
        & ~text.str.contains(r"^\s*[1-9]\d*\s*$")
        & ~text.str.contains(r"^\s*\d{4}-\d{2}-\d{2}")
    )


def contains_phone(text: pl.Expr) -> pl.Expr:
    """A phone number anywhere in the text ("call +33 6 12 34 56 78", "tel:0612345678")."""
    runs = text.str.extract_all(PHONE_RUN)
    run = pl.element().str.strip_chars_start(" \t\n([{:;,=\"'")
    is_phone = (run.str.count_matches(r"\d") >= 9) & ~run.str.contains(_ISO_DATE)
    return looks_like_phone(text) | runs.list.eval(is_phone).list.any().fill_null(False)


def contains_full_name(text: pl.Expr) -> pl.Expr:
    """A first name followed by a capitalised family name ("Alice Martin", "met Jan Novák")."""
    pairs = text.str.extract_all(CAPITALISED_PAIR)
    first = pl.element().str.extract(r"^(\S+)").str.to_lowercase()
    known = sorted(first_names())
    return pairs.list.eval(first.is_in(known)).list.any().fill_null(False)
