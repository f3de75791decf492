"""Deliver CRM batches over HTTP: retries with backoff, batch splitting, idempotency keys.

- 429 (honouring Retry-After), 5xx, timeouts and connection errors are retried with
  exponential backoff; every retry of a batch reuses its idempotency key, so an endpoint that
  already applied the batch (e.g. before a timeout) does not apply it twice.
- A 400/422 rejects the batch: it is split in halves until the bad rows are isolated; a single
  rejected row, or a batch that still fails after the last attempt, goes to the failed-row list.
- 401/403 stop the run (a configuration problem; nothing is marked as sent).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from railflow.errors import RailflowError, SettingsError


class CrmAuthError(RailflowError):
    """The CRM endpoint refused the API key."""


def check_endpoint(url: str, name: str) -> None:
    """Refuse an endpoint requests cannot POST to (no http(s) scheme, no host, a bad port).

    `name` is where the value came from (a flag or a variable), for the message.
    """
    parts = urlsplit(url)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "is not an http:// or https:// URL"
    elif not parts.hostname or any(c.isspace() for c in url):
        problem = "has no valid host"
    else:
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            problem = "has an invalid port"
    if problem:
        raise SettingsError(
            f"{name}={url!r} {problem}; give the full URL, e.g. "
            f"{name}=https://rest.iad-01.braze.com/users/track"
        )


# json.dumps(sort_keys=True, separators=(",", ":"), allow_nan=False), built once: with options,
# json.dumps builds a new encoder per call, most of the cost of encoding one small value
CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical(payload: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, no NaN (invalid JSON; raises ValueError)."""
    return CANONICAL.encode(payload).encode()


def idempotency_key(payload: dict[str, Any] | bytes) -> str:
    """Same payload, same key (pass the canonical bytes when you already have them)."""
    body = payload if isinstance(payload, bytes) else canonical(payload)
    return key_from_digest(hashlib.sha256(body))


def key_from_digest(digest: hashlib._Hash) -> str:
    """The idempotency key of a body from its sha256 object (for callers that hash it anyway)."""
    return digest.hexdigest()[:32]


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)  # external ids
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (object, reason)
    requests: int = 0


@dataclass
class HttpSender:
    endpoint: str
    api_key: str | None
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)

    def _post(self, body: bytes, report: DeliveryReport) -> requests.Response | str:
        """The final response, or the reason the last attempt failed."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key(body)}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        reason = "no attempt made"
        for attempt in range(self.max_attempts):
            delay = min(self.base_delay * 2**attempt, self.max_delay)
            report.requests += 1
            try:
                response = self.session.post(
                    self.endpoint, data=body, headers=headers, timeout=self.timeout
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                reason = f"{type(exc).__name__} after {self.max_attempts} attempts"
            else:
                if response.status_code == 429:
                    reason = "HTTP 429 after retries"
                    retry_after = response.headers.get("Retry-After", "")
                    if retry_after.replace(".", "", 1).isdigit():
                        delay = min(float(retry_after), self.max_delay)
                elif response.status_code >= 500:
                    reason = f"HTTP {response.status_code} after retries"
                else:
                    return response
            if attempt < self.max_attempts - 1:
                self.sleep(delay)
        return reason

    def deliver(
        self,
        payload: dict[str, Any],
        report: DeliveryReport | None = None,
        body: bytes | None = None,
    ) -> DeliveryReport:
        """POST payload; `body` is its canonical bytes when the caller has them (the file)."""
        report = report or DeliveryReport()
        result = self._post(body if body is not None else canonical(payload), report)
        ids = [a["external_id"] for a in payload["attributes"]]
        if isinstance(result, str):
            report.failed += [(a, result) for a in payload["attributes"]]
            return report
        if result.status_code in (401, 403):
            raise CrmAuthError(
                f"CRM endpoint refused the API key (HTTP {result.status_code}); check "
                "RAILFLOW_CRM_API_KEY"
            )
        if 200 <= result.status_code < 300:
            report.delivered += ids
            return report
        if len(ids) == 1:
            report.failed.append(
                (payload["attributes"][0], f"HTTP {result.status_code}: {result.text[:200]}")
            )
            return report
        half = len(ids) // 2
        for part in (ids[:half], ids[half:]):
            keep = set(part)
            sub: dict[str, Any] = {
                "attributes": [a for a in payload["attributes"] if a["external_id"] in keep]
            }
            events = [e for e in payload.get("events", []) if e["external_id"] in keep]
            if events:
                sub["events"] = events
            self.deliver(sub, report)
        return report
