"""Reverse ETL: consent, privacy, diff sync, and HTTP delivery against a failing loopback server."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import jsonschema
import polars as pl
import pytest

from analysis.crm_export import MARTS, SCHEMAS, export
from analysis.crm_http import HttpSender
from railflow.settings import Settings
from railflow.warehouse import connect


@pytest.fixture
def world(small_world: Settings, tmp_path: Path) -> Settings:
    """A private copy of the small world's warehouse: these tests change the sync state."""
    shutil.copy(small_world.duckdb_path, tmp_path / "warehouse.duckdb")
    return small_world.with_overrides(data_dir=tmp_path, duckdb_path=tmp_path / "warehouse.duckdb")


@pytest.fixture
def never_synced(world: Settings) -> Settings:
    """The copy with its sync state and ledger removed, as before the first export."""
    with connect(world, read_only=False) as wh:
        wh.execute(f"drop table if exists {wh.table('audit', 'crm_sync_state')}")
        wh.execute(f"drop table if exists {wh.table('audit', 'crm_failed_rows')}")
    return world


def exported(folder: Path) -> tuple[dict, list[dict]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    files = [json.loads((folder / b["file"]).read_text()) for b in manifest["batches"]]
    return manifest, files


def test_stage_output_validates_and_respects_consent_and_traffic(small_world: Settings) -> None:
    folder = next((small_world.exports_dir / "crm").iterdir())
    manifest, files = exported(folder)
    jsonschema.validate(manifest, json.loads((SCHEMAS / "manifest.schema.json").read_text()))
    track = json.loads((SCHEMAS / "users_track.schema.json").read_text())
    ids = []
    for payload in files:
        jsonschema.validate(payload, track)
        assert len(payload["attributes"]) <= 75
        assert "@" not in json.dumps(payload)
        ids += [a["external_id"] for a in payload["attributes"]]
    assert ids and len(ids) == len(set(ids)) == manifest["counts"]["sent"]
    truth = pl.read_parquet(small_world.truth_dir / "users.parquet")
    excluded = set(truth.filter(pl.col("is_bot") | pl.col("is_internal"))["user_id"])
    no_consent = set(truth.filter(~pl.col("final_marketing_consent"))["user_id"])
    assert not set(ids) & excluded
    assert not set(ids) & no_consent


def test_diff_mode_sends_nothing_twice_and_full_mode_is_reproducible(
    never_synced: Settings,
) -> None:
    world = never_synced
    first = export(world)
    assert first["counts"]["created"] > 0
    second = export(world)
    assert (
        second["counts"]["sent"] == 0 and second["counts"]["unchanged"] == first["counts"]["sent"]
    )
    full_a = export(world, mode="full")
    files_a = {p.name: p.read_bytes() for p in Path(full_a["out_dir"]).glob("batch-*.json")}
    full_b = export(world, mode="full")
    files_b = {p.name: p.read_bytes() for p in Path(full_b["out_dir"]).glob("batch-*.json")}
    assert files_a and files_a == files_b
    dry = export(world, dry_run=True)
    assert dry["counts"]["sent"] == 0 and "batches" not in dry


def test_leaving_the_audience_and_withdrawing_consent(world: Settings) -> None:
    export(world)
    with connect(world) as wh:
        audience = pl.concat([wh.read("sync", m) for m in MARTS]).sort("external_id")
    leaver, withdrawn = audience["external_id"].unique().sort().to_list()[:2]
    with connect(world, read_only=False) as wh:
        for mart in MARTS:
            wh.execute(
                f"delete from {wh.table('sync', mart)} where external_id in ($a, $b)",
                {"a": leaver, "b": withdrawn},
            )
        wh.execute(
            f"update {wh.table('snapshots', 'users_snapshot')} set has_marketing_consent = false "
            "where user_id = $u and dbt_valid_to is null",
            {"u": withdrawn},
        )
    result = export(world)
    assert result["counts"]["removed"] == 1 and result["counts"]["unsubscribed"] == 1
    _, files = exported(Path(result["out_dir"]))
    sent = {a["external_id"]: a for f in files for a in f["attributes"]}
    assert sent[leaver]["rf_audiences"] is None and "email_subscribe" not in sent[leaver]
    assert sent[withdrawn]["email_subscribe"] == "unsubscribed"
    assert export(world)["counts"]["sent"] == 0  # both now out of the sync state


class ScriptedCrm(BaseHTTPRequestHandler):
    """Fails in scripted ways; applies each idempotency key at most once."""

    script: ClassVar[list[str]] = []
    applied: ClassVar[dict[str, list[str]]] = {}
    bad_ids: ClassVar[set[str]] = set()
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ids = [a["external_id"] for a in body["attributes"]]
        with self.lock:
            action = self.script.pop(0) if self.script else "ok"
        if action == "500":
            return self._reply(500, {"message": "internal error"})
        if action == "429":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return None
        if set(ids) & self.bad_ids:
            return self._reply(400, {"message": "invalid attribute"})
        with self.lock:  # idempotent apply, then maybe be too slow to answer
            self.applied.setdefault(self.headers["Idempotency-Key"], ids)
        if action == "timeout":
            time.sleep(0.6)
        return self._reply(201, {"message": "success"})

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crm_server() -> Iterator[str]:
    ScriptedCrm.script, ScriptedCrm.applied, ScriptedCrm.bad_ids = [], {}, set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedCrm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/users/track"
    server.shutdown()


def test_every_row_is_delivered_once_or_ledgered(never_synced: Settings, crm_server: str) -> None:
    world = never_synced
    with connect(world) as wh:
        audience = pl.concat([wh.read("sync", m) for m in MARTS])
    ids = sorted(set(audience["external_id"]))
    bad = ids[len(ids) // 2]
    ScriptedCrm.bad_ids = {bad}
    ScriptedCrm.script = ["500", "500", "429", "timeout", "ok", "500"]
    sender = HttpSender(crm_server, "test-key", base_delay=0.01, timeout=0.3, sleep=lambda s: None)
    result = export(world, endpoint=crm_server, sender=sender)
    delivered = [uid for batch in ScriptedCrm.applied.values() for uid in batch]
    assert len(delivered) == len(set(delivered)), "a row was applied twice"
    with connect(world) as wh:
        ledger = wh.read("audit", "crm_failed_rows")
        state = wh.read("audit", "crm_sync_state")
    assert set(delivered) | set(ledger["external_id"]) == set(ids)
    assert set(ledger["external_id"]) == {bad}
    assert bad not in set(state["external_id"])
    assert result["failed"] == 1 and result["delivered"] == len(ids) - 1
    # next run: the failed row is retried (and now accepted); nothing else is re-sent
    ScriptedCrm.bad_ids = set()
    again = export(world, endpoint=crm_server, sender=sender)
    assert again["counts"]["sent"] == 1 and again["failed"] == 0
    with connect(world) as wh:
        assert wh.read("audit", "crm_failed_rows").height == 0


def test_retries_exhausted_rows_go_to_the_ledger(never_synced: Settings, crm_server: str) -> None:
    world = never_synced
    ScriptedCrm.script = ["500"] * 100
    sender = HttpSender(crm_server, None, max_attempts=3, base_delay=0.01, sleep=lambda s: None)
    result = export(world, endpoint=crm_server, sender=sender)
    assert result["delivered"] == 0 and result["failed"] == result["counts"]["sent"] > 0
    assert not ScriptedCrm.applied
