"""Reverse ETL: consent, privacy, per-destination sync, and delivery to a faulty loopback CRM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import numpy as np
import polars as pl
import pytest

from analysis import crm_export
from analysis.crm_export import (
    MARTS,
    RF_ATTRIBUTES,
    SCHEMAS,
    CrmDeliveryError,
    CrmExportError,
    export,
    item,
    plan,
    raise_for_failed_delivery,
    request,
    requests_of,
    stage,
    user_objects,
)
from analysis.crm_http import CrmAuthError, CrmEndpoint, canonical, check_endpoint, default_retry
from railflow.errors import SettingsError
from railflow.settings import REPO_ROOT, Settings
from railflow.warehouse import connect

TRACK = json.loads((SCHEMAS / "users_track.schema.json").read_text())


class FaultyCrm(BaseHTTPRequestHandler):
    """A Braze-like /users/track that fails as real ones do, one scripted action per POST.

    It applies each idempotency key once (a repeat gets the first reply), rejects the objects
    of `reject` users in a partial-success body, and fails after applying on "504", "timeout"
    and "broken" (a chunked reply cut short).
    """

    protocol_version = "HTTP/1.1"
    script: ClassVar[list[str]] = []
    replies: ClassVar[dict[str, bytes]] = {}  # idempotency key -> the reply it got
    applied: ClassVar[list[tuple[str, str, bytes]]] = []  # (array, external_id, object)
    posts: ClassVar[list[str]] = []  # the key of each POST
    reject: ClassVar[set[str]] = set()
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["Idempotency-Key"]
        with self.lock:
            self.posts.append(key)
            action = self.script.pop(0) if self.script else "ok"
            if action in ("500", "302", "429", "429-date", "401"):
                retry_after = formatdate(time.time(), usegmt=True) if action == "429-date" else "0"
                headers = {"Location": "http://127.0.0.1:1/moved", "Retry-After": retry_after}
                return self._reply(int(action[:3]), b'{"message":"no"}', headers)
            if key not in self.replies:
                self.replies[key] = self._apply(json.loads(body))
            reply = self.replies[key]
        if action == "timeout":
            time.sleep(0.5)  # the client gave up at 0.3 s
        if action == "504":
            return self._reply(504, b'{"message":"gateway timeout"}')
        if action == "broken":
            self.send_response(201)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b'40\r\n{"message":')  # promises 64 bytes, sends 11, hangs up
            self.close_connection = True
            return None
        return self._reply(201, reply)

    def _apply(self, payload: dict[str, Any]) -> bytes:
        errors = []
        for array in ("attributes", "events"):
            for i, obj in enumerate(payload.get(array, [])):
                if obj["external_id"] in self.reject:
                    errors.append({"type": "rejected by test", "input_array": array, "index": i})
                else:
                    self.applied.append((array, obj["external_id"], canonical(obj)))
        return json.dumps({"message": "success", **({"errors": errors} if errors else {})}).encode()

    def _reply(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            for name, value in {**(headers or {}), "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client timed out and left
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crm() -> Iterator[str]:
    FaultyCrm.script, FaultyCrm.replies, FaultyCrm.applied = [], {}, []
    FaultyCrm.posts, FaultyCrm.reject = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultyCrm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/users/track"
    server.shutdown()


def fast(url: str) -> CrmEndpoint:
    """Production retries (4 attempts here), with millisecond backoffs and a 0.3 s timeout."""
    return CrmEndpoint(url, "key", default_retry().new(total=3, backoff_factor=0.001), 0.3)


def one(uid: str = "usr_1") -> bytes:
    return request([item(uid, {"external_id": uid, "rf_segment": "A"})], []).body


def test_each_fault_ends_in_one_outcome_and_nothing_applies_twice(crm: str) -> None:
    endpoint = fast(crm)
    cases = [  # script, outcome, times applied
        (["500", "429", "429-date"], "applied", 1),  # both Retry-After forms, then applied
        (["504"], "applied", 1),  # applied, 504, retried with the same key: applied once
        (["timeout"], "applied", 1),
        (["broken"], "applied", 1),
        (["timeout"] * 4, "unknown", 1),  # applied, but no answer after the last retry
        (["500"] * 4, "unknown", 0),
        (["302"], "failed", 0),  # not followed: urllib3 would GET the Location, bodiless
    ]
    total = 0
    for i, (script, status, applied) in enumerate(cases):
        FaultyCrm.script, body, total = list(script), one(f"usr_{i}"), total + applied
        outcome = endpoint.post(body, f"key-{i}")
        assert (outcome.status, len(FaultyCrm.applied)) == (status, total)
        assert not FaultyCrm.script  # every scripted fault was met, none skipped
    FaultyCrm.script = ["302"]
    assert "redirect to http://127.0.0.1:1/moved (not followed" in endpoint.post(one(), "k2").reason
    FaultyCrm.script = ["401"]
    with pytest.raises(CrmAuthError, match="refused the API key"):
        endpoint.post(one(), "k3")
    FaultyCrm.reject = {"usr_8"}  # a partial success names exactly the objects not applied
    two = request([item(u, {"external_id": u}) for u in ("usr_7", "usr_8")], []).body
    outcome = endpoint.post(two, "k4")
    assert outcome.status == "applied" and list(outcome.not_applied or {}) == [("attributes", 1)]


def tricky_audience(n: int = 400, seed: int = 3) -> pl.DataFrame:
    """Both audiences, a share of invalid values in most columns, one row per user and mart."""
    rng = np.random.default_rng(seed)
    pick = lambda options: [options[i] for i in rng.integers(0, len(options), n)]  # noqa: E731
    frame = pl.DataFrame(
        {
            "external_id": [f"usr_{i:05d}" if i % 97 else f"USR-{i}" for i in range(n)],
            "segment_name": pick(["Champions", "", "Ünïcødé ✓", 'quo"te', "tab\tx", None]),
            "churn_band": pick(["low", "medium", "high", "extreme", None]),
            "churn_probability": pick([0.0, 0.1 + 0.2, 2.675, 1.5, float("nan"), None]),
            "propensity_band": pick(["low", "medium", "high"]),
            "last_searched_route": pick(["FRPLY-FRLPD", "ESBCN-FRPAR", "bad route", None]),
            "last_searched_at": [datetime(2026, 8, 1, tzinfo=UTC) + timedelta(seconds=int(s))
                                 for s in rng.integers(0, 10**7, n)],
            "recommended_offer": pick(["discount_5_percent", "win@back", "réduction"]),
        },
        schema_overrides={"churn_probability": pl.Float64},
    )  # fmt: skip
    churn = frame.sample(fraction=0.6, seed=seed).with_columns(audience=pl.lit("high_churn_risk"))
    intent = frame.sample(fraction=0.6, seed=seed + 1).with_columns(audience=pl.lit("high_intent"))
    intent = intent.with_columns(pl.col("last_searched_route").fill_null("FRPLY-FRLPD"))
    return pl.concat([churn, intent.select(churn.columns)])


def test_objects_are_checked_one_by_one_and_requests_are_their_canonical_json() -> None:
    audience = tricky_audience()
    ids = set(audience["external_id"])
    no_consent = sorted(ids)[1]  # in a mart, yet not consenting: never sent
    consenting = ids - {no_consent} | {"usr_99998"}
    state = {("usr_99999", "attributes"): "0" * 64}  # once delivered, now gone, no consent
    # usr_99998: only in the ledger (never confirmed), gone, consenting
    p = plan("diff", audience, consenting, state, known={"usr_99999", "usr_99998"})
    expected_invalid = {no_consent}
    for attributes, event in user_objects(audience):
        payload = {"attributes": [attributes], **({"events": [event]} if event else {})}
        try:
            text = canonical(payload)
        except ValueError:  # NaN is not JSON
            expected_invalid.add(attributes["external_id"])
            continue
        if not jsonschema.Draft202012Validator(TRACK).is_valid(payload) or b"@" in text:
            expected_invalid.add(attributes["external_id"])
    assert {uid for uid, _ in p.invalid} == expected_invalid and len(expected_invalid) < len(ids)
    assert p.counts["unsubscribed"] == 1 and p.counts["removed"] == 1
    requests = requests_of(p)
    sent = []
    for r in requests:
        payload = json.loads(r.body)
        jsonschema.validate(payload, TRACK)
        assert r.body == canonical(payload) and len(r.attributes) <= 75 >= len(r.events)
        sent += payload["attributes"]
    assert [a["external_id"] for a in sent] == sorted(
        ids - expected_invalid | {"usr_99999", "usr_99998"}
    )
    gone = {a["external_id"]: a for a in sent if a.get("_update_existing_only")}
    assert gone["usr_99999"]["email_subscribe"] == "unsubscribed"
    assert all(gone["usr_99999"][k] is None for k in RF_ATTRIBUTES)
    # the state's fingerprints: nothing changed, nothing sent (the exits' included)
    delivered = {(i[0], kind): i[2] for r in requests for kind in ("attributes", "events")
                 for i in getattr(r, kind)}  # fmt: skip
    again = plan("diff", audience, consenting, delivered, known=set(gone))
    assert again.counts["sent"] == again.counts["events"] == 0


def test_an_unknown_or_missing_audience_is_refused() -> None:
    audience = tricky_audience(n=50)
    for bad in ("vip", None):
        marked = audience.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(bad, dtype=pl.String))
            .otherwise(pl.col("audience")).alias("audience")
        )  # fmt: skip
        with pytest.raises(CrmExportError, match=rf"unknown audiences \[{bad!r}\]"):
            user_objects(marked)


def test_endpoint_check_accepts_http_urls_only() -> None:
    for good in ("http://127.0.0.1:9/track", "https://rest.iad-01.braze.com/users/track"):
        check_endpoint(good, "--endpoint")
    for bad in ("localhost:9999", "not a url", "http://", "ftp://host/x", "http://host:port/"):
        with pytest.raises(SettingsError, match="--endpoint="):
            check_endpoint(bad, "--endpoint")


# -- on the small world -------------------------------------------------------------------


@pytest.fixture
def world(small_world: Settings, tmp_path: Path) -> Settings:
    """A private copy of the small world's warehouse, sync state and ledger removed."""
    shutil.copy(small_world.duckdb_path, tmp_path / "warehouse.duckdb")
    world = small_world.with_overrides(data_dir=tmp_path, duckdb_path=tmp_path / "warehouse.duckdb")
    with connect(world, read_only=False) as wh:
        wh.execute(f"drop table if exists {wh.table('audit', 'crm_sync_state')}")
        wh.execute(f"drop table if exists {wh.table('audit', 'crm_failed_rows')}")
    return world


def manifests(settings: Settings) -> list[dict[str, Any]]:
    """Every run's manifest, oldest first (with its folder)."""
    paths = sorted((settings.exports_dir / "crm").glob("*/*/manifest.json"))
    return [json.loads(p.read_text()) | {"folder": p.parent} for p in paths]


def files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads((manifest["folder"] / b["file"]).read_bytes()) for b in manifest["batches"]]


def audience_ids(world: Settings) -> set[str]:
    with connect(world) as wh:
        return set(pl.concat([wh.read("sync", m) for m in MARTS])["external_id"])


def leave(world: Settings, uid: str, withdraw: bool) -> None:
    with connect(world, read_only=False) as wh:
        for mart in MARTS:
            wh.execute(f"delete from {wh.table('sync', mart)} where external_id = $u", {"u": uid})
        if withdraw:
            wh.execute(
                f"update {wh.table('snapshots', 'users_snapshot')} set has_marketing_consent = "
                "false where user_id = $u and dbt_valid_to is null",
                {"u": uid},
            )


def ledger(world: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    with connect(world) as wh:
        rows = wh.read("audit", "crm_failed_rows").iter_rows(named=True)
        return {(r["external_id"], r["object_type"]): r for r in rows}


@pytest.mark.slow
def test_stage_output_validates_and_respects_consent_and_traffic(small_world: Settings) -> None:
    manifest = manifests(small_world)[0]  # the pipeline's export stage
    schema = json.loads((SCHEMAS / "manifest.schema.json").read_text())
    jsonschema.validate({k: v for k, v in manifest.items() if k != "folder"}, schema)
    ids = []
    for payload in files(manifest):
        jsonschema.validate(payload, TRACK)
        assert "@" not in json.dumps(payload)
        ids += [a["external_id"] for a in payload["attributes"]]
    assert ids and len(ids) == len(set(ids)) == manifest["counts"]["sent"]
    assert manifest["destination"] == "files"
    truth = pl.read_parquet(small_world.truth_dir / "users.parquet")
    excluded = truth.filter(pl.col("is_bot") | pl.col("is_internal") |
                            ~pl.col("final_marketing_consent"))  # fmt: skip
    assert not set(ids) & set(excluded["user_id"])


@pytest.mark.slow
def test_files_diff_full_and_same_day_runs_keep_their_own_folders(world: Settings) -> None:
    first = export(world)
    assert first["counts"]["created"] == first["counts"]["sent"] == len(audience_ids(world))
    assert export(world)["counts"]["sent"] == 0  # nothing changed: nothing written
    full_a, full_b = export(world, mode="full"), export(world, mode="full")
    folders = [Path(r["out_dir"]) for r in (first, full_a, full_b)]
    assert len(set(folders)) == 3 and [m["folder"] for m in manifests(world)] == folders
    batches = [{p.name: p.read_bytes() for p in f.glob("batch-*.json")} for f in folders]
    assert batches[1] == batches[2] and batches[0]  # full runs: the same bytes, own folders
    leaver, withdrawn = sorted(audience_ids(world))[:2]
    leave(world, leaver, withdraw=False)
    leave(world, withdrawn, withdraw=True)
    dry = export(world, dry_run=True)
    assert dry["counts"]["sent"] == 2 and "out_dir" not in dry and len(manifests(world)) == 3
    result = export(world)
    assert result["counts"]["removed"] == result["counts"]["unsubscribed"] == 1
    sent = {a["external_id"]: a for f in files(manifests(world)[-1]) for a in f["attributes"]}
    assert set(sent) == {leaver, withdrawn} and sent[leaver]["rf_audiences"] is None
    assert "email_subscribe" not in sent[leaver] and sent[withdrawn]["email_subscribe"]
    assert export(world)["counts"]["sent"] == 0


@pytest.mark.slow
def test_faulty_endpoint_over_several_runs_delivers_each_change_once(
    world: Settings, crm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = audience_ids(world)
    monkeypatch.setattr(crm_export, "BATCH_SIZE", max(2, len(ids) // 10))  # ~10 requests
    export(world)  # a file-only run first: the endpoint's own state is still empty
    FaultyCrm.script = ["500", "429", "ok", "504", "ok", "timeout", "ok", "broken", "ok", "302",
                        "429-date", "ok", *["timeout"] * 4]  # fmt: skip
    run2 = export(world, endpoint=crm, sender=fast(crm))
    assert run2["counts"]["created"] == len(ids) and not FaultyCrm.script
    (manifest,) = [m for m in manifests(world) if m["destination"] == crm]
    batches = [{(o["external_id"], kind) for kind in ("attributes", "events")
                for o in f.get(kind, [])} for f in files(manifest)]  # fmt: skip
    assert len(batches) >= 8
    redirected, unanswered = batches[4], batches[6]  # the 302, the 4 timeouts
    not_sent = set().union(*batches[7:])  # the endpoint looked down: no retry cycle for each
    assert max(Counter(FaultyCrm.applied).values()) == 1  # 504, timeouts: applied once
    rows = ledger(world)
    failed = {k for k, r in rows.items() if r["outcome"] == "failed"}
    assert failed == redirected | not_sent and len(FaultyCrm.posts) == 16
    assert {k for k, r in rows.items() if r["outcome"] == "unknown"} == unanswered
    assert all("302 redirect to http://127.0.0.1:1/moved" in rows[k]["reason"] for k in redirected)
    assert all(rows[k]["reason"].startswith("not sent: no answer to an earlier") for k in not_sent)
    delivered = {u for kind, u, _ in FaultyCrm.applied if kind == "attributes"}
    assert delivered | {u for u, kind in rows if kind == "attributes"} == ids  # none lost
    with pytest.raises(CrmDeliveryError, match="will be sent again on the next run"):
        raise_for_failed_delivery(world, run2)
    # still no answer: the same request again, and nothing else (its users are held)
    key = rows[min(unanswered)]["idempotency_key"]
    FaultyCrm.script, posts = ["timeout"] * 4, len(FaultyCrm.posts)
    again = export(world, endpoint=crm, sender=fast(crm))
    assert FaultyCrm.posts[posts:] == [key] * 4 and not FaultyCrm.script
    assert again["counts"]["held"] == len({u for u, _ in unanswered})
    assert {k for k, r in ledger(world).items() if r["outcome"] == "unknown"} == unanswered
    # withdrawals: a user of the unanswered request (applied after all), one of the
    # redirected one (never applied), one delivered; and a partial success for another
    first = lambda keys: min(u for u, kind in keys if kind == "attributes")  # noqa: E731
    withdrawn = [first(unanswered), first(redirected), first(batches[0])]
    for uid in withdrawn:
        leave(world, uid, withdraw=True)
    stays = min(u for u, kind in redirected if kind == "attributes" and u not in withdrawn)
    FaultyCrm.reject = {stays}
    posts = len(FaultyCrm.posts)
    run3 = export(world, endpoint=crm, sender=fast(crm))
    # the unanswered request went first, with its key: the endpoint had applied it already
    assert FaultyCrm.posts[posts] == rows[first(unanswered), "attributes"]["idempotency_key"]
    assert run3["counts"]["resent"] == len(unanswered) and run3["unknown"] == 0
    assert run3["counts"]["unsubscribed"] == 3
    event_failed_before = {(stays, "events")} & failed  # else delivered or never one
    assert set(ledger(world)) == {(stays, "attributes")} | event_failed_before
    FaultyCrm.reject = set()
    run4 = export(world, endpoint=crm, sender=fast(crm))
    assert run4["failed"] == run4["unknown"] == 0 and not ledger(world)
    posts = len(FaultyCrm.posts)
    assert export(world, endpoint=crm, sender=fast(crm))["counts"]["sent"] == 0
    assert len(FaultyCrm.posts) == posts  # nothing left to send
    applied = Counter(FaultyCrm.applied)
    assert max(applied.values()) == 1  # over four runs, no object applied twice
    unsubscribed = {u for kind, u, o in FaultyCrm.applied if b'"email_subscribe"' in o}
    assert unsubscribed == set(withdrawn)  # every withdrawal reached the endpoint
    latest = {u: o for kind, u, o in FaultyCrm.applied if kind == "attributes"}
    assert set(latest) == ids  # every user delivered; the last object of each is current
    assert all(json.loads(latest[u])["rf_audiences"] for u in ids - set(withdrawn))


def run_export(world: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m analysis.crm_export` as a user runs it, on `world`'s files."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")}
    paths = {"RAILFLOW_DATA_DIR": str(world.data_dir),
             "RAILFLOW_DUCKDB_PATH": str(world.duckdb_path)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "analysis.crm_export", *args],
        cwd=REPO_ROOT, env={**base, **paths, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_a_redirecting_endpoint_fails_the_command_in_one_line(world: Settings, crm: str) -> None:
    FaultyCrm.script = ["302"] * 1000
    proc = run_export(world, "--endpoint", crm)
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc)
    assert line.startswith("error: ") and line.endswith("will be sent again on the next run")
    assert f"to {crm}: HTTP 302 redirect to http://127.0.0.1:1/moved (not followed" in line
    assert not FaultyCrm.applied
    FaultyCrm.script = []
    again = run_export(world, "--endpoint", crm)
    assert again.returncode == 0 and not error_lines(again), again.stderr
    assert {u for kind, u, _ in FaultyCrm.applied if kind == "attributes"} == audience_ids(world)


@pytest.mark.slow
def test_export_stage_fails_the_pipeline_after_writing_files_and_ledger(
    world: Settings, crm: str
) -> None:
    world = world.with_overrides(crm_endpoint=crm)
    FaultyCrm.script = ["302"] * 1000
    with pytest.raises(CrmDeliveryError, match=r"kept in audit\.crm_failed_rows"):
        stage(world)
    assert len(manifests(world)) == 1 and ledger(world)
    FaultyCrm.script = []
    assert stage(world).metrics["delivered"].endswith(f"objects to {crm}")
    assert not ledger(world)


@pytest.mark.parametrize(
    ("args", "env", "name"),
    [
        (("--endpoint", "localhost:9999"), {}, "--endpoint"),
        (("--endpoint", "not a url"), {}, "--endpoint"),
        (("--mode", "full"), {"RAILFLOW_CRM_ENDPOINT": "localhost:9999"}, "RAILFLOW_CRM_ENDPOINT"),
    ],
)
def test_an_endpoint_without_scheme_or_host_is_refused_before_any_work(
    empty_settings: Settings, args: tuple[str, ...], env: dict[str, str], name: str
) -> None:
    proc = run_export(empty_settings, *args, **env)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith(f"error: {name}=") and "give the full URL" in line
    assert not empty_settings.exports_dir.exists()
