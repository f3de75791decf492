"""Reverse ETL: CRM audiences from the sync_ marts as Braze /users/track requests.

    python -m analysis.crm_export                 # diff mode: only what changed
    python -m analysis.crm_export --mode full     # every audience user's attributes again
    python -m analysis.crm_export --dry-run       # counts only; writes and sends nothing
    python -m analysis.crm_export --endpoint URL  # POST them (API key in RAILFLOW_CRM_API_KEY)

Each run writes its requests (at most 75 objects of each type) and manifest.json to
data/exports/crm/<run date>/<run id>/. Each destination (the files; each endpoint) has its own
sync state (audit.crm_sync_state); a diff run sends what differs from it. The ledger
(audit.crm_failed_rows) holds objects not applied (failed) or maybe applied (unknown: re-sent
first, same key). A user who left the consenting audiences always gets an exit update.
Delivery semantics: README, "CRM export". Objects not delivered: files, state and ledger are
written, then the command exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence, Set
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import fastjsonschema
import polars as pl

from analysis.crm_http import CrmEndpoint, Outcome, canonical, check_endpoint, idempotency_key
from railflow.errors import RailflowError, cli_entrypoint
from railflow.settings import REPO_ROOT, Settings, get_settings
from railflow.stage import StageResult
from railflow.warehouse import Warehouse, connect

MARTS = (
    "sync_crm__high_churn_risk_users",
    "sync_crm__high_intent_users",
    "sync_crm__high_value_users",
)
ELIGIBLE = "int_crm_eligible_users"  # consenting real users: the sync layer's one consent rule
SCHEMAS = REPO_ROOT / "schemas" / "crm"
BATCH_SIZE = 75
PARALLEL_FROM = 50_000  # users
FILES = "files"  # the destination of a run without an endpoint
RF_ATTRIBUTES = ("rf_segment", "rf_churn_risk", "rf_churn_probability", "rf_propensity_band")
RF_ATTRIBUTES += ("rf_last_searched_route", "rf_recommended_offer", "rf_audiences")
AUDIENCES = ("high_churn_risk", "high_intent", "high_value")  # sorted: churn first
EVENT_NAME = "rf_high_intent_signal"
COUNTS = ["created", "updated", "unchanged", "removed", "unsubscribed", "invalid", "held"]
COUNTS += ["sent", "events", "resent"]
DELIVERY = ("delivered", "failed", "unknown")  # objects, by outcome
STATE, LEDGER = "crm_sync_state", "crm_failed_rows"
KEYS = ["destination", "external_id", "object_type"]  # one row per destination, user, type
STATE_SCHEMA = {**dict.fromkeys([*KEYS, "sha256"], pl.String), "synced_at": pl.Datetime("us")}
OUTCOMES = ["external_id", "object_type", "outcome", "sha256", "reason", "object_json"]
OUTCOME_SCHEMA = {**dict.fromkeys([*OUTCOMES, "idempotency_key"], pl.String), "position": pl.Int64}
LEDGER_SCHEMA = {"destination": pl.String, **OUTCOME_SCHEMA, "failed_at": pl.Datetime("us")}
Item = tuple[str, bytes, str]  # external_id, the object's canonical JSON, its sha256


class CrmExportError(RailflowError):
    """The CRM export cannot run."""


class CrmDeliveryError(CrmExportError):
    """Objects were not delivered; they are in the ledger and the next run sends them."""


@cache
def validator(name: str) -> Callable[[Any], Any]:
    """A schema of schemas/crm/ compiled once per process (fastjsonschema: Python code)."""
    return fastjsonschema.compile(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


def item(external_id: str, obj: dict[str, Any] | bytes) -> Item:
    body = obj if isinstance(obj, bytes) else canonical(obj)
    return external_id, body, hashlib.sha256(body).hexdigest()


def user_objects(audiences: pl.DataFrame) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Per user, by id: the attributes object and the high-intent event (None if none)."""
    if unknown := set(audiences["audience"].unique().to_list()) - set(AUDIENCES):
        raise CrmExportError(f"unknown audiences {sorted(unknown, key=str)}; expected {AUDIENCES}")
    at = pl.col("last_searched_at")
    at = at.dt.convert_time_zone("UTC") if audiences.schema["last_searched_at"].time_zone else at
    # by user then audience: the first row is the churn one if any (its values and offer
    # win), the last the high-intent one if any (the event)
    users = (
        audiences.sort("external_id", "audience")
        .group_by("external_id", maintain_order=True)
        .agg(
            pl.col("segment_name").first().alias("rf_segment"),
            pl.col("churn_band").first().alias("rf_churn_risk"),
            pl.col("churn_probability").first().round(3).alias("rf_churn_probability"),
            pl.col("propensity_band").first().alias("rf_propensity_band"),
            pl.col("last_searched_route").first().alias("rf_last_searched_route"),
            pl.col("recommended_offer").first().alias("rf_recommended_offer"),
            pl.col("audience").unique(maintain_order=True).str.join(",").alias("rf_audiences"),
            (pl.col("audience") == "high_intent").any().alias("has_event"),
            at.last().dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias("time"),
            pl.col("last_searched_route").last().alias("route"),
            pl.col("propensity_band").last().alias("propensity_band"),
        )
    )
    # rows of plain values: polars hands lists and structs over ~5x slower
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    events = users.select("has_event", "time", "propensity_band", "route").rows()
    for attributes, (has_event, time, band, route) in zip(
        users.select("external_id", *RF_ATTRIBUTES).to_dicts(), events, strict=True
    ):
        attributes["rf_audiences"] = attributes["rf_audiences"].split(",")
        properties = {"propensity_band": band, "route": route}
        event = {"external_id": attributes["external_id"], "name": EVENT_NAME, "time": time}
        out.append((attributes, event | {"properties": properties} if has_event else None))
    return out


@dataclass
class Plan:
    attributes: list[Item] = field(default_factory=list)  # to send, by id
    events: list[Item] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (external_id, why)
    current: set[str] = field(default_factory=set)  # the consenting audience users


def exit_object(external_id: str, consenting: bool) -> dict[str, Any]:
    """A user who left: RailFlow attributes cleared; unsubscribed without consent. Never
    creates a profile the CRM does not have (`_update_existing_only`)."""
    obj = {"external_id": external_id, "_update_existing_only": True}
    obj |= dict.fromkeys(RF_ATTRIBUTES)
    if not consenting:
        obj |= {"email_subscribe": "unsubscribed", "push_subscribe": "unsubscribed"}
    return obj


Checked = tuple[str, Item | None, Item | None, str]  # id, attributes, event (if any), error


def checked(audiences: pl.DataFrame) -> list[Checked]:
    """Each user's objects, encoded, validated and fingerprinted (or why they are invalid)."""
    validate, out = validator("users_track"), []
    for attributes, event in user_objects(audiences):
        uid = attributes["external_id"]
        try:
            a, e = item(uid, attributes), event and item(uid, event)
            validate({"attributes": [attributes], **({"events": [event]} if event else {})})
            if b"@" in a[1] or (e and b"@" in e[1]):  # nothing email-like may leave
                raise ValueError("an email-like value")
            out.append((uid, a, e, ""))
        except (ValueError, fastjsonschema.JsonSchemaValueException) as exc:
            out.append((uid, None, None, str(exc).replace("data.", "", 1)))
    return out


def checked_on_all_cores(
    audiences: pl.DataFrame, cores: int = os.cpu_count() or 1
) -> list[Checked]:
    """checked(), a share of the users per core for large audiences (the target is 1M users
    in 20 s on 2 cores; below PARALLEL_FROM users, starting processes costs more than it
    saves). Spawned processes: a script calling export() needs `if __name__ == "__main__":`."""
    if audiences.height < PARALLEL_FROM or cores < 2:
        return checked(audiences)
    part = audiences.with_columns(part=pl.col("external_id").hash() % cores)
    parts = part.partition_by("part", include_key=False)
    with ProcessPoolExecutor(cores, mp_context=get_context("spawn")) as pool:
        return [user for part in pool.map(checked, parts) for user in part]


def plan(
    mode: str,
    audiences: pl.DataFrame,
    consenting: set[str],
    state: dict[tuple[str, str], str],
    known: Set[str] = frozenset(),
    held: Set[str] = frozenset(),
) -> Plan:
    """Validate each user's objects and compare their sha256 with the destination's `state`
    ((external_id, object_type) -> sha256). `known`: users this destination has had anything
    of; `held`: users of a request whose outcome is still unknown (nothing is decided)."""
    p = Plan()
    for uid, a, e, error in checked_on_all_cores(audiences):
        if uid not in consenting:  # the marts and the consent rule disagree: never send
            p.invalid.append((uid, f"not a consenting user in sync.{ELIGIBLE}"))
            continue
        p.current.add(uid)
        if uid in held:
            p.counts["held"] += 1
            continue
        if error or not a:
            p.invalid.append((uid, error))
            continue
        before = state.get((uid, "attributes"))
        kind = "created" if before is None else "unchanged" if before == a[2] else "updated"
        p.counts[kind] += 1
        if kind != "unchanged" or mode == "full":
            p.attributes.append(a)
        if e and state.get((uid, "events")) != e[2]:  # an event is never re-sent, full or not
            p.events.append(e)
    for uid in sorted(known - p.current - held):
        exit_item = item(uid, exit_object(uid, uid in consenting))
        if state.get((uid, "attributes")) != exit_item[2]:
            p.counts["removed" if uid in consenting else "unsubscribed"] += 1
            p.attributes.append(exit_item)
    p.attributes.sort()
    p.events.sort()
    p.counts["invalid"], p.counts["sent"] = len(p.invalid), len(p.attributes)
    p.counts["events"] = len(p.events)
    return p


@dataclass(frozen=True)
class Request:
    """One POST body (canonical JSON of the payload) and its objects, in order."""

    body: bytes
    key: str
    attributes: list[Item]
    events: list[Item]


def request(attributes: list[Item], events: list[Item], key: str | None = None) -> Request:
    """The objects' canonical texts joined: the payload's canonical JSON, byte for byte."""
    body = b'{"attributes":[' + b",".join(i[1] for i in attributes) + b"]"
    if events:
        body += b',"events":[' + b",".join(i[1] for i in events) + b"]"
    body += b"}"
    return Request(body, key or idempotency_key(body), attributes, events)


def requests_of(p: Plan) -> list[Request]:
    """Slices of 75 of each object type, side by side."""
    n = -(-max(len(p.attributes), len(p.events)) // BATCH_SIZE)
    size = BATCH_SIZE
    return [
        request(p.attributes[i * size : (i + 1) * size], p.events[i * size : (i + 1) * size])
        for i in range(n)
    ]


def pending_requests(ledger: pl.DataFrame) -> list[Request]:
    """The requests whose outcome is unknown, rebuilt as sent (same body, same key)."""
    out = []
    unknown = ledger.filter(pl.col("outcome") == "unknown").sort("failed_at", "position")
    for (key,), rows in unknown.group_by("idempotency_key", maintain_order=True):
        items: dict[str, list[Item]] = {"attributes": [], "events": []}
        for r in rows.iter_rows(named=True):
            items[r["object_type"]].append(item(r["external_id"], r["object_json"].encode()))
        out.append(request(items["attributes"], items["events"], key=str(key)))
    return out


# (external_id, object_type) -> the latest (outcome, sha256, reason, object_json,
# idempotency_key, position in its request's array): OUTCOME_SCHEMA less the first two
Outcomes = dict[tuple[str, str], tuple[Any, ...]]


def send(
    endpoint: CrmEndpoint,
    requests: list[Request],
    outcomes: Outcomes,
    down: str = "",
    skipped: str = "failed",
) -> str:
    """POST each request; record each object's outcome (a later one replaces an earlier).

    Once one gets no answer the endpoint is taken as down (not a retry cycle per request):
    the rest are not sent and count as `skipped` (failed; unknown for re-sent requests, which
    may have been applied). Returns why it is down ("" if it is not)."""
    for req in requests:
        if down:
            result = Outcome(skipped, f"not sent: no answer to an earlier request ({down})")
        else:
            result = endpoint.post(req.body, req.key)
            down = result.reason if result.status == "unknown" else ""
        not_applied = result.not_applied or {}
        for array, items in (("attributes", req.attributes), ("events", req.events)):
            for i, (uid, obj, sha) in enumerate(items):
                reason = result.reason or not_applied.get((array, i))
                outcome = "applied" if not reason else result.status.replace("applied", "failed")
                outcomes[uid, array] = (outcome, sha, reason, obj.decode(), req.key, i)
    return down


def _rows(wh: Warehouse, name: str, schema: dict[str, Any]) -> pl.DataFrame:
    """An audit table, or no rows if it is missing or of an earlier layout (then rebuilt)."""
    if not wh.table_exists("audit", name):
        return pl.DataFrame(schema=schema)
    rows = wh.read("audit", name)
    if set(rows.columns) != set(schema):
        return pl.DataFrame(schema=schema)
    return rows.select(pl.col(c).cast(t) for c, t in schema.items())


def read_inputs(wh: Warehouse) -> tuple[pl.DataFrame, set[str], pl.DataFrame, pl.DataFrame]:
    """The audiences, the consenting user ids, the sync state and the ledger."""
    for name in (*MARTS, ELIGIBLE):
        if not wh.table_exists("sync", name):
            raise CrmExportError(
                f"{wh.schema('sync')}.{name} does not exist; run `make run` (the dbt_sync stage "
                "builds it after scoring)"
            )
    audiences = pl.concat([wh.read("sync", m) for m in MARTS])
    consenting = set(wh.read("sync", ELIGIBLE, ["user_id"])["user_id"].to_list())
    return audiences, consenting, _rows(wh, STATE, STATE_SCHEMA), _rows(wh, LEDGER, LEDGER_SCHEMA)


def write_files(out_dir: Path, requests: list[Request], manifest: dict[str, Any]) -> None:
    """The requests as files (the exact bodies, and a newline), then the manifest."""
    out_dir.mkdir(parents=True)  # never an earlier run's folder
    for i, req in enumerate(requests, start=1):
        path, data = out_dir / f"batch-{i:05d}.json", req.body + b"\n"
        path.write_bytes(data)
        entry = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
        entry |= {"idempotency_key": req.key, "attributes": len(req.attributes)}
        manifest["batches"].append(entry | {"events": len(req.events)})
    try:
        validator("manifest")(manifest)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise CrmExportError(f"the manifest does not match schemas/crm/manifest: {exc}") from None
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def export(
    settings: Settings,
    mode: str = "diff",
    dry_run: bool = False,
    endpoint: str | None = None,
    sender: CrmEndpoint | None = None,
) -> dict[str, Any]:
    if mode not in ("diff", "full"):
        raise CrmExportError(f"unknown mode {mode!r}; use diff or full")
    if endpoint:  # checked before any work
        check_endpoint(endpoint, "--endpoint")
    elif settings.crm_endpoint:
        check_endpoint(settings.crm_endpoint, "RAILFLOW_CRM_ENDPOINT")
    endpoint = endpoint or settings.crm_endpoint
    destination = endpoint or FILES
    with connect(settings) as wh:
        audiences, consenting, all_state, all_ledger = read_inputs(wh)
    mine = pl.col("destination") == destination
    state_rows, ledger = all_state.filter(mine), all_ledger.filter(mine)
    ids, kinds, shas = (state_rows[c].to_list() for c in ("external_id", "object_type", "sha256"))
    state = dict(zip(zip(ids, kinds, strict=True), shas, strict=True))
    known = set(state_rows["external_id"]) | set(ledger["external_id"])
    pending = pending_requests(ledger) if endpoint else []
    client = endpoint and not dry_run and (sender or CrmEndpoint(endpoint, settings.crm_api_key))
    outcomes: Outcomes = {}
    down = ""
    if client and pending:  # first the requests that may have been applied, same key
        down = send(client, pending, outcomes, skipped="unknown")
    held = (
        {u for r in pending for u, *_ in (*r.attributes, *r.events)}
        if dry_run
        else {uid for (uid, _), o in outcomes.items() if o[0] == "unknown"}
    )
    state |= {k: o[1] for k, o in outcomes.items() if o[0] == "applied"}
    p = plan(mode, audiences, consenting, state, known, held)
    p.counts["resent"] = sum(len(r.attributes) + len(r.events) for r in pending)
    result = {"counts": p.counts, "invalid": p.invalid, "dry_run": dry_run, "endpoint": endpoint}
    if dry_run:
        return result
    requests = requests_of(p)
    now = datetime.now(UTC)
    out_dir = settings.exports_dir / "crm" / now.date().isoformat() / f"{now:%Y%m%dT%H%M%S%fZ}"
    if written := bool(requests) or mode == "full":
        marts = [f"{settings.schema('sync')}.{m}" for m in MARTS]
        manifest = {"schema_version": 1, "run_id": out_dir.name, "destination": destination}
        manifest |= {"mode": mode, "generated_at": now.isoformat(timespec="seconds")}
        manifest |= {"source_marts": marts, "counts": p.counts, "batches": []}
        write_files(out_dir, requests, manifest)
    if client:
        send(client, requests, outcomes, down)
        applied = [(*key, o[1]) for key, o in outcomes.items() if o[0] == "applied"]
    else:  # the files are the delivery
        sent = (("attributes", p.attributes), ("events", p.events))
        applied = [(uid, kind, sha) for kind, items in sent for uid, _, sha in items]
    missed = [(*key, *o) for key, o in outcomes.items() if o[0] != "applied"]
    record(settings, destination, applied, missed, p.current, now.replace(tzinfo=None))
    return result | {
        "batches": len(requests),
        "delivered": len(applied) if endpoint else 0,
        "failed": sum(m[2] == "failed" for m in missed),
        "unknown": sum(m[2] == "unknown" for m in missed),
        "failure_reasons": dict(Counter(m[4] for m in missed).most_common()),
        "out_dir": str(out_dir) if written else None,
    }


def record(
    settings: Settings,
    destination: str,
    applied: list[tuple[str, str, str]],
    missed: list[tuple[Any, ...]],
    current: set[str],
    now: datetime,
) -> None:
    """Advance the destination's state for applied objects (external_id, object_type,
    sha256); ledger the others (OUTCOME_SCHEMA rows), in place of their earlier rows."""
    mine = pl.lit(destination).alias("destination")
    done = pl.DataFrame(
        applied, schema=dict.fromkeys([*KEYS[1:], "sha256"], pl.String), orient="row"
    )
    done = done.with_columns(mine)
    new = pl.DataFrame(missed, schema=OUTCOME_SCHEMA, orient="row").with_columns(mine)
    at = pl.lit(now, pl.Datetime("us"))
    with connect(settings, read_only=False) as wh:
        state = _rows(wh, STATE, STATE_SCHEMA).join(done, on=KEYS, how="anti")
        fresh = done.with_columns(synced_at=at).select(list(STATE_SCHEMA))
        wh.write(pl.concat([state, fresh]).sort(KEYS), "audit", STATE)
        # a failed event of a user who left is stale: it will not be sent again
        events = (pl.col("destination") == destination) & (pl.col("object_type") == "events")
        stale = events & (pl.col("outcome") == "failed") & ~pl.col("external_id").is_in(current)
        ledger = _rows(wh, LEDGER, LEDGER_SCHEMA).filter(~stale)
        ledger = ledger.join(pl.concat([done.select(KEYS), new.select(KEYS)]), on=KEYS, how="anti")
        new = new.with_columns(failed_at=at).select(list(LEDGER_SCHEMA))
        wh.write(pl.concat([ledger, new]), "audit", LEDGER)


def raise_for_failed_delivery(settings: Settings, result: dict[str, Any]) -> None:
    """Fail the run when objects were not delivered (export() has ledgered them)."""
    if missed := result.get("failed", 0) + result.get("unknown", 0):
        reason = next(iter(result["failure_reasons"]))
        several = " (the most common reason)" if len(result["failure_reasons"]) > 1 else ""
        raise CrmDeliveryError(
            f"{missed:,} of {missed + result['delivered']:,} objects were not delivered to "
            f"{result['endpoint']}: {reason}{several}; they are kept in "
            f"{settings.schema('audit')}.{LEDGER} and will be sent again on the next run"
        )


def summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def stage(settings: Settings) -> StageResult:
    result = export(settings)
    raise_for_failed_delivery(settings, result)  # the files and the ledger are written by now
    metrics = {"exported": summary(result["counts"])}
    if result["endpoint"]:
        metrics["delivered"] = f"{result['delivered']} objects to {result['endpoint']}"
    outputs = [result["out_dir"]] if result["out_dir"] else []
    return StageResult(rows=result["counts"]["sent"], outputs=outputs, metrics=metrics)


@cli_entrypoint
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.crm_export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mode", choices=("diff", "full"), default="diff")
    parser.add_argument("--dry-run", action="store_true", help="print counts; write, send nothing")
    parser.add_argument("--endpoint", help="POST batches here (default RAILFLOW_CRM_ENDPOINT)")
    args = parser.parse_args(argv)
    settings = get_settings()
    result = export(settings, args.mode, args.dry_run, args.endpoint)
    print(("would send: " if args.dry_run else "exported: ") + summary(result["counts"]))
    for uid, reason in result["invalid"]:
        print(f"invalid {uid}: {reason}")
    if not args.dry_run:
        print(f"files in {result['out_dir'] or '(none: nothing to send)'}")
        if endpoint := result["endpoint"]:
            print(f"to {endpoint}: " + summary({k: result[k] for k in DELIVERY}))
        raise_for_failed_delivery(settings, result)


if __name__ == "__main__":
    main(sys.argv[1:])
