"""POST CRM requests to an HTTP endpoint: urllib3 retries, idempotency keys, no redirects.

Every request carries `Idempotency-Key: sha256(body)`: the same objects sent again (a retry,
or a later run re-sending a request whose outcome was unknown) carry the same key, so an
endpoint that honours keys applies them once. Each POST ends in one of three outcomes:
- applied: a 2xx. A Braze partial success (`"errors": [{"input_array", "index", "type"}]`)
  names the objects that were not applied;
- failed: the endpoint answered without applying it: a 4xx, or a 3xx (redirects are not
  followed: urllib3 would re-send a 302 as a GET without a body);
- unknown: no definite answer once urllib3's `Retry` gave up (timeouts, broken replies,
  connection errors, 429/5xx; Retry-After honoured in both its forms). It may have been applied.
401 and 403 stop the run: the API key is wrong, nothing else will go through.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import urllib3
from urllib3.util import Retry

from railflow.errors import RailflowError, SettingsError

RETRY_STATUSES = (429, 500, 502, 503, 504)


class CrmAuthError(RailflowError):
    """The CRM endpoint refused the API key."""


def check_endpoint(url: str, name: str) -> None:
    """Refuse a URL that cannot be POSTed to; `name` is the flag or variable it came from."""
    parts = urlsplit(url)
    try:
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is no number
        ok = False
    if not ok or any(c.isspace() for c in url):
        raise SettingsError(
            f"{name}={url!r} is not an http(s):// URL with a host (and a valid port); give the "
            f"full URL, e.g. {name}=https://rest.iad-01.braze.com/users/track"
        )


# json.dumps(sort_keys=True, separators=(",", ":"), allow_nan=False), its encoder built once
# (json.dumps with options builds one per call: a quarter of the time of a small object)
CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical(value: Any) -> bytes:
    """Sorted keys, no spaces, ASCII, no NaN (raises ValueError): one text per value."""
    return CANONICAL.encode(value).encode()


def idempotency_key(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def default_retry() -> Retry:
    """6 attempts over about 16 s, POST included; a Retry-After of up to 2 minutes is obeyed."""
    retry = Retry(total=5, backoff_factor=0.5, backoff_max=30, retry_after_max=120)
    return retry.new(status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False)


@dataclass(frozen=True)
class Outcome:
    status: Literal["applied", "failed", "unknown"]
    reason: str = ""  # why it was not applied (failed, unknown)
    not_applied: dict[tuple[str, int], str] | None = None  # (array, index): reason, if applied


def one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


class CrmEndpoint:
    def __init__(
        self, url: str, api_key: str | None, retries: Retry | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.pool = urllib3.PoolManager(retries=retries or default_retry(), timeout=timeout)

    def post(self, body: bytes, key: str) -> Outcome:
        headers = {**self.headers, "Idempotency-Key": key}
        try:
            r = self.pool.request("POST", self.url, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.MaxRetryError as exc:
            return Outcome("unknown", f"{type(exc.reason).__name__} after retries")
        except urllib3.exceptions.HTTPError as exc:  # e.g. an unreadable Retry-After
            return Outcome("unknown", one_line(f"{type(exc).__name__}: {exc}"))
        if r.status in (401, 403):
            raise CrmAuthError(
                f"{self.url} refused the API key (HTTP {r.status}); check RAILFLOW_CRM_API_KEY"
            )
        if 300 <= r.status < 400:
            where = f"HTTP {r.status} redirect to {r.headers.get('Location')}"
            return Outcome("failed", f"{where} (not followed; set the endpoint to that URL)")
        if r.status in RETRY_STATUSES:
            return Outcome("unknown", f"HTTP {r.status} after retries")
        if not 200 <= r.status < 300:
            return Outcome(
                "failed", f"HTTP {r.status}: {one_line(r.data.decode('utf-8', 'replace'))}"
            )
        return _partial(r.data)


def _partial(data: bytes) -> Outcome:
    """A 2xx: applied, less the objects its Braze `errors` list names."""
    try:
        errors = json.loads(data).get("errors") or []
    except (ValueError, AttributeError):  # no JSON object: nothing says anything failed
        return Outcome("applied", not_applied={})
    not_applied = {}
    for error in errors if isinstance(errors, list) else [errors]:
        where = (error.get("input_array"), error.get("index")) if isinstance(error, dict) else ()
        if where[:1] not in [("attributes",), ("events",)] or not isinstance(where[1], int):
            # an error that names no object: none of them is known to be applied
            return Outcome("failed", f"2xx with an unplaced error: {one_line(json.dumps(error))}")
        not_applied[where] = one_line(f"rejected: {error.get('type', 'error')}")
    return Outcome("applied", not_applied=not_applied)
