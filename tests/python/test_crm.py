"""Reverse ETL: consent, privacy, diff sync, and HTTP delivery against a failing loopback server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import fastjsonschema
import jsonschema
import numpy as np
import polars as pl
import pytest

from analysis.crm_export import (
    MARTS,
    RF_ATTRIBUTES,
    SCHEMAS,
    STATE_SCHEMA,
    CrmDeliveryError,
    CrmExportError,
    _all_plain,
    _bulk_check,
    _compiled,
    _plain,
    _rows_valid,
    _schema_error,
    _sha256,
    audience_objects,
    batches,
    export,
    json_values,
    plan,
    raise_for_failed_delivery,
    round3,
    stage,
    write_files,
)
from analysis.crm_http import HttpSender, canonical, check_endpoint, idempotency_key
from railflow.errors import SettingsError
from railflow.settings import REPO_ROOT, Settings
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


def test_a_failed_row_whose_user_left_before_delivery_leaves_the_ledger(
    never_synced: Settings, crm_server: str
) -> None:
    world = never_synced
    with connect(world) as wh:
        ids = sorted(set(pl.concat([wh.read("sync", m) for m in MARTS])["external_id"]))
    leaver, stays = ids[:2]
    ScriptedCrm.bad_ids = {leaver, stays}
    sender = HttpSender(crm_server, None, sleep=lambda s: None)
    assert export(world, endpoint=crm_server, sender=sender)["failed"] == 2
    with connect(world, read_only=False) as wh:
        for mart in MARTS:
            where = "where external_id = $u"
            wh.execute(f"delete from {wh.table('sync', mart)} {where}", {"u": leaver})
    ScriptedCrm.bad_ids = {stays}
    again = export(world, endpoint=crm_server, sender=sender)
    # the leaver was never in the CRM: nothing to clear, nothing to retry
    assert again["counts"]["abandoned"] == 1 and again["counts"]["removed"] == 0
    assert again["counts"]["sent"] == again["failed"] == 1  # the one who stays, sent again
    with connect(world) as wh:
        assert set(wh.read("audit", "crm_failed_rows")["external_id"]) == {stays}
    assert not any(leaver in batch for batch in ScriptedCrm.applied.values())


def test_retries_exhausted_rows_go_to_the_ledger(never_synced: Settings, crm_server: str) -> None:
    world = never_synced
    ScriptedCrm.script = ["500"] * 100
    sender = HttpSender(crm_server, None, max_attempts=3, base_delay=0.01, sleep=lambda s: None)
    result = export(world, endpoint=crm_server, sender=sender)
    assert result["delivered"] == 0 and result["failed"] == result["counts"]["sent"] > 0
    assert not ScriptedCrm.applied


def run_export(world: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m analysis.crm_export` as a user runs it, on `world`'s files."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAILFLOW_")}
    paths = {
        "RAILFLOW_DATA_DIR": str(world.data_dir),
        "RAILFLOW_DUCKDB_PATH": str(world.duckdb_path),
    }
    return subprocess.run(
        [sys.executable, "-m", "analysis.crm_export", *args],
        cwd=REPO_ROOT, env={**base, **paths, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_failed_delivery_fails_the_command_and_keeps_the_rows(
    never_synced: Settings, crm_server: str
) -> None:
    world = never_synced
    with connect(world) as wh:
        ids = set(pl.concat([wh.read("sync", m) for m in MARTS])["external_id"])
    ScriptedCrm.bad_ids = set(ids)  # the endpoint rejects every row (no retry sleeps)
    proc = run_export(world, "--endpoint", crm_server)
    n = len(ids)
    assert proc.returncode == 1, proc.stderr
    assert f"exported {n}:" in proc.stdout and f"delivered 0, failed {n}" in proc.stdout
    assert error_lines(proc) == [
        f"error: {n:,} of {n:,} rows failed delivery to {crm_server}: HTTP 400: "
        '{"message": "invalid attribute"}; they are kept in audit.crm_failed_rows and will be '
        "retried on the next run"
    ]
    # written as before: the files, the ledger, and no sync state for undelivered rows
    (folder,) = (world.exports_dir / "crm").iterdir()
    _, files = exported(folder)
    assert {a["external_id"] for f in files for a in f["attributes"]} == ids
    with connect(world) as wh:
        assert set(wh.read("audit", "crm_failed_rows")["external_id"]) == ids
        assert wh.read("audit", "crm_sync_state").height == 0
    # the next run retries them; once delivered, the command succeeds
    ScriptedCrm.bad_ids = set()
    again = run_export(world, "--endpoint", crm_server)
    assert again.returncode == 0, again.stderr
    assert f"delivered {n}, failed 0" in again.stdout and not error_lines(again)
    with connect(world) as wh:
        assert wh.read("audit", "crm_failed_rows").height == 0


def test_nothing_listening_is_a_failed_delivery_not_a_success(never_synced: Settings) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}/track"
    sender = HttpSender(endpoint, None, max_attempts=2, sleep=lambda s: None)
    result = export(never_synced, mode="full", endpoint=endpoint, sender=sender)
    sent = result["counts"]["sent"]
    assert sent > 0 and result["delivered"] == 0 and result["failed"] == sent
    with pytest.raises(CrmDeliveryError) as caught:
        raise_for_failed_delivery(never_synced, result)
    assert str(caught.value) == (
        f"{sent:,} of {sent:,} rows failed delivery to {endpoint}: ConnectionError after 2 "
        "attempts; they are kept in audit.crm_failed_rows and will be retried on the next run"
    )
    assert Path(result["out_dir"], "manifest.json").exists()
    with connect(never_synced) as wh:
        assert wh.read("audit", "crm_failed_rows").height == sent


def test_export_stage_fails_the_pipeline_after_writing_files_and_ledger(
    never_synced: Settings, crm_server: str
) -> None:
    world = never_synced.with_overrides(crm_endpoint=crm_server)
    with connect(world) as wh:
        ids = set(pl.concat([wh.read("sync", m) for m in MARTS])["external_id"])
    ScriptedCrm.bad_ids = set(ids)
    retried = r"kept in audit\.crm_failed_rows and will be retried on the next run"
    with pytest.raises(CrmDeliveryError, match=retried):
        stage(world)
    (folder,) = (world.exports_dir / "crm").iterdir()
    _, files = exported(folder)
    assert {a["external_id"] for f in files for a in f["attributes"]} == ids
    with connect(world) as wh:
        assert set(wh.read("audit", "crm_failed_rows")["external_id"]) == ids
    ScriptedCrm.bad_ids = set()
    assert stage(world).metrics["delivered"] == f"{len(ids)} to {crm_server}"


def test_rows_that_failed_a_full_run_are_retried_by_the_next_diff_run(
    world: Settings, crm_server: str
) -> None:
    # the small world's export stage wrote files with no endpoint: every row counts as synced
    with connect(world) as wh:
        ids = set(pl.concat([wh.read("sync", m) for m in MARTS])["external_id"])
        assert set(wh.read("audit", "crm_sync_state")["external_id"]) >= ids
    sender = HttpSender(crm_server, None, sleep=lambda s: None)
    ScriptedCrm.bad_ids = set(ids)
    full = export(world, mode="full", endpoint=crm_server, sender=sender)
    assert full["failed"] == len(ids) and full["delivered"] == 0
    ScriptedCrm.bad_ids = set()
    diff = export(world, endpoint=crm_server, sender=sender)
    assert diff["counts"]["retried"] == diff["counts"]["sent"] == len(ids)
    assert diff["delivered"] == len(ids) and diff["failed"] == 0
    assert {uid for batch in ScriptedCrm.applied.values() for uid in batch} == ids
    with connect(world) as wh:
        assert wh.read("audit", "crm_failed_rows").height == 0
    assert export(world, endpoint=crm_server, sender=sender)["counts"]["sent"] == 0


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
    # an empty data folder: any work (opening the warehouse) would fail differently
    proc = run_export(empty_settings, *args, **env)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith(f"error: {name}=") and "give the full URL" in line
    assert not empty_settings.exports_dir.exists()


def test_endpoint_check_accepts_http_urls_only() -> None:
    for good in ("http://127.0.0.1:9/track", "https://rest.iad-01.braze.com/users/track"):
        check_endpoint(good, "--endpoint")
    for bad in ("localhost:9999", "not a url", "http://", "ftp://host/x", "http://host:port/",
                "http://not a host/"):  # fmt: skip
        with pytest.raises(SettingsError, match="--endpoint="):
            check_endpoint(bad, "--endpoint")


# The export encodes, validates and fingerprints a column at a time; these check it against
# the object at a time definitions (json.dumps, round(), the compiled item schema).

TRICKY_STRINGS = [
    "Champions", "", "Ünïcødé ✓", "emoji 😀", 'quo"te', "back\\slash", "tab\tnew\nline",
    "\x00\x1f\x7f", "</script>", "a/b", None,
]  # fmt: skip
TRICKY_FLOATS = [0.0, -0.0, 0.1 + 0.2, 1e-7, 2.675, 0.0625, 0.9995, 1.0, 1e300, -1.5, None]


def test_column_encoding_is_json_dumps_of_each_value() -> None:
    # doubles of every magnitude, bit patterns drawn at random (polars writes those between
    # 1e-9 and 1e-4 unlike repr(), so they must not be written in bulk)
    bits = np.random.default_rng(11).integers(-(2**63), 2**63 - 1, 20_000, dtype=np.int64)
    doubles = bits.view(np.float64)
    cases = [
        pl.Series(TRICKY_STRINGS * 3),
        pl.Series(["usr_0000001", "usr_0000002"]),  # all plain: quoted in bulk
        pl.Series([*TRICKY_FLOATS, float("nan"), float("inf")], dtype=pl.Float64),
        pl.Series([1e-5, 9.9999e-05, 1e-4, 5e-324, 1e16, 1.5e-9, -2e-7, 0.001], dtype=pl.Float64),
        pl.Series(doubles.tolist(), dtype=pl.Float64),
        pl.Series([0.5, 1e-5, None], dtype=pl.Float32),
        pl.Series([["high_churn_risk", "high_intent"], ["high_intent"], [], None, ["é"]]),
        pl.Series([["a", None], [None], ['quo"te'], ["x", "y", "z"], [""], ["tab\t"]]),
        pl.Series([["high_intent"], ["high_churn_risk", "high_intent"]] * 50),  # all in bulk
    ]
    for values in cases:
        expected = []
        for v in values.to_list():
            try:
                expected.append(canonical(v).decode())  # json.dumps, compact and strict
            except ValueError:
                expected.append(None)  # NaN and infinity are not JSON
        assert json_values(values).to_list() == expected


def test_plain_texts_are_told_from_their_bytes() -> None:
    """A text json.dumps writes as itself between quotes is told apart in bulk."""
    plain = re.compile(r"[ !#-\[\]-~]*")
    longer = [v * 5 if v else v for v in TRICKY_STRINGS]
    ids = [f"usr_{i:07d}" for i in range(100)]
    one_bad_byte = [["usr_1", f"a{c}b" * n] for c in '"\\\x00\x1f\x7fé' for n in (1, 9)]
    for strings in (TRICKY_STRINGS * 3, longer * 3, ids, [*ids, "", None], *one_bad_byte):
        full = pl.Series(strings, dtype=pl.String)
        keep = pl.Series([plain.fullmatch(v) is not None if v else True for v in strings])
        for values in (full, full.slice(5), full.filter(keep)):
            expected = all(plain.fullmatch(v) for v in values.drop_nulls().to_list())
            assert _all_plain(values) == expected
            assert (_plain({"c": values}) == {"c"}) == (expected and not values.null_count())
    plain_ids, quoted = pl.Series(ids), pl.Series(['say "hi"'] * len(ids))
    assert _plain({"a": plain_ids, "b": quoted, "c": plain_ids.str.to_uppercase()}) == {"a", "c"}


def test_fingerprints_hashed_in_parallel_parts_are_sha256_in_order() -> None:
    for n in (0, 1, 12_001):  # one part, and as many as polars has threads
        texts = pl.Series(
            [f'{{"external_id":"usr_{i}","é":{i}}}' for i in range(n)], dtype=pl.String
        )
        expected = [hashlib.sha256(t.encode()).hexdigest() for t in texts.to_list()]
        assert _sha256(texts).to_list() == expected


def test_vectorised_rounding_is_pythons_round() -> None:
    rng = np.random.default_rng(7)
    ties = (np.arange(-2000, 2000) + 0.5) / 1000  # near-ties, where x * 1000 misleads
    values = [*rng.random(50_000).tolist(), *rng.normal(0, 1e4, 1000).tolist(), *ties.tolist()]
    values += TRICKY_FLOATS  # Python floats: numpy's own round() differs at near-ties
    got = round3(pl.Series(values, dtype=pl.Float64)).to_list()
    expected = [None if v is None else round(v, 3) for v in values]
    assert [struct.pack("d", g) if g is not None else None for g in got] == [
        struct.pack("d", e) if e is not None else None for e in expected
    ]  # bit for bit, so -0.0 stays -0.0


def tricky_audience(n: int = 600, seed: int = 3) -> pl.DataFrame:
    """Both audiences, a share of invalid values in every column, one row per user and mart."""
    rng = np.random.default_rng(seed)
    pick = lambda options: [options[i] for i in rng.integers(0, len(options), n)]  # noqa: E731
    ids = [f"usr_{i:05d}" if i % 97 else f"USR-{i}" for i in range(n)]
    frame = pl.DataFrame(
        {
            "external_id": ids,
            "segment_name": pick(TRICKY_STRINGS),
            "churn_band": pick(["low", "medium", "high", "extreme", None]),
            "churn_probability": pick([*TRICKY_FLOATS, float("nan"), *rng.random(20)]),
            "propensity_band": pick(["low", "medium", "high"]),
            "last_searched_route": pick(["FRPLY-FRLPD", "ESBCN-FRPAR", "bad route", None]),
            "last_searched_at": [
                datetime(2026, 8, 1, tzinfo=UTC) + timedelta(seconds=int(s), microseconds=int(u))
                for s, u in zip(
                    rng.integers(0, 10**7, n), rng.integers(0, 2, n) * 123_456, strict=True
                )
            ],
            "recommended_offer": pick(["discount_5_percent", "win@back", "réduction"]),
        },
        schema_overrides={"churn_probability": pl.Float64},
    )
    churn = frame.sample(fraction=0.6, seed=seed).with_columns(audience=pl.lit("high_churn_risk"))
    intent = frame.sample(fraction=0.6, seed=seed + 1).with_columns(audience=pl.lit("high_intent"))
    intent = intent.with_columns(pl.col("last_searched_route").fill_null("FRPLY-FRLPD"))
    return pl.concat([churn, intent.select(churn.columns)])


def test_column_wise_export_matches_object_wise_definitions(tmp_path: Path) -> None:
    audience = tricky_audience()
    current = audience_objects(audience)
    state = pl.DataFrame({"external_id": ["usr_99999"], "attributes_sha256": ["0" * 64]})
    p = plan("diff", current, state, consenting=set())
    # every user is checked as one object against the item schema, as before
    item = json.loads((SCHEMAS / "users_track.schema.json").read_text())
    item = item["properties"]["attributes"]["items"]
    objects = {
        row["external_id"]: {k: row[k] for k in ("external_id", *RF_ATTRIBUTES)}
        for row in current.iter_rows(named=True)
    }
    invalid = {}
    for uid, obj in objects.items():
        try:
            body = canonical(obj)
        except ValueError:
            invalid[uid] = "NaN"
            continue
        if not jsonschema.Draft7Validator(item).is_valid(obj) or b"@" in body:
            invalid[uid] = "schema"
    assert {uid for uid, _ in p.invalid} == set(invalid) and 0 < len(invalid) < len(objects)
    assert p.counts["unsubscribed"] == 1  # usr_99999 left and never consented
    # the fingerprint of each object is sha256 of its canonical JSON (the sync state's hash)
    hashes = dict(p.hashes.iter_rows())
    assert hashes == {
        uid: hashlib.sha256(canonical(obj)).hexdigest()
        for uid, obj in objects.items()
        if uid not in invalid
    }
    # each file is canonical JSON of a valid request; sent objects are the built ones
    manifest = {"schema_version": 1, "mode": "diff", "generated_at": "now", "source_marts": [],
                "counts": p.counts, "batches": []}  # fmt: skip
    write_files(tmp_path, batches(p), manifest)
    track = json.loads((SCHEMAS / "users_track.schema.json").read_text())
    sent = []
    for entry in manifest["batches"]:
        raw = (tmp_path / entry["file"]).read_bytes()
        payload = json.loads(raw)
        assert raw == canonical(payload) + b"\n"
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest()
        assert entry["idempotency_key"] == idempotency_key(payload)
        jsonschema.validate(payload, track)
        sent += payload["attributes"]
        for event in payload.get("events", []):
            at = audience.filter(
                (pl.col("external_id") == event["external_id"])
                & (pl.col("audience") == "high_intent")
            ).row(0, named=True)["last_searched_at"]
            assert event["time"] == at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert sent[:-1] == [objects[uid] for uid in sorted(objects) if uid not in invalid]
    assert sent[-1]["external_id"] == "usr_99999" and sent[-1]["email_subscribe"]


def _all_match_in_bulk(values: pl.Series, schema: Any) -> bool:
    """Whether the bulk check says every value surely matches `schema`."""
    check = _bulk_check(values, schema)
    return check is not None and bool(pl.select(check).item())


def test_a_pattern_is_checked_in_bulk_only_where_polars_cannot_accept_more() -> None:
    schema = {"type": "string", "pattern": "^usr_[0-9]+$"}
    ids = pl.Series([f"usr_{i}" for i in range(1000)])
    assert _all_match_in_bulk(ids, schema)
    # one bad id: unsure, so each is checked by the validator (which names the bad one)
    assert not _all_match_in_bulk(pl.concat([ids, pl.Series(["usr_1\n"])]), schema)
    assert not _all_match_in_bulk(pl.concat([ids, pl.Series(["USR-1"])]), schema)
    # \\d is Unicode digits in both engines, maybe not the same ones: never checked in bulk
    assert not _all_match_in_bulk(ids, {"type": "string", "pattern": r"^usr_\d+$"})


def test_bulk_checks_only_pass_what_the_validator_passes() -> None:
    schemas = [
        {"type": "string"},
        {"type": ["string", "null"]},
        {"enum": ["low", "medium", "high", None]},
        {"enum": ["low", "high"]},
        {"const": "rf_high_intent_signal"},
        {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        {"type": "number", "minimum": 0},
        {"type": ["string", "null"], "pattern": "^[A-Z]{5}-[A-Z]{5}$"},
        {"type": "string", "maxLength": 3},  # a keyword the bulk checks do not know
    ]
    columns = [
        pl.Series(["low", "high"]), pl.Series(["low", None]), pl.Series(["extreme"]),
        pl.Series([None], dtype=pl.String), pl.Series(["rf_high_intent_signal"] * 3),
        pl.Series([0.0, 0.5, 1.0]), pl.Series([0.5, None]), pl.Series([1.5]),
        pl.Series([-0.0]), pl.Series([float("nan")]), pl.Series([float("inf")]),
        pl.Series([0, 1]), pl.Series([True, False]), pl.Series(["FRPLY-FRLPD", None]),
        pl.Series(["frply-frlpd"]),
    ]  # fmt: skip
    found = 0
    for schema in schemas:
        validate = fastjsonschema.compile(schema)
        for values in columns:
            verdicts = [_schema_error(validate, v) is None for v in values.to_list()]
            if _all_match_in_bulk(values, schema):
                assert all(verdicts), (schema, values.to_list())
                found += 1
    assert found >= 15  # the bands, probabilities, routes, ids and names of an export


def test_validators_are_compiled_once_and_kept_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAILFLOW_DATA_DIR", str(tmp_path))
    text = json.dumps({"type": "string", "pattern": "^usr_[0-9]+$"})
    compile_fresh = _compiled.__wrapped__  # past the in-process cache, to the one on disk

    def verdicts(validate: Callable[[Any], Any]) -> list[str | None]:
        return [_schema_error(validate, v) for v in ("usr_1", "usr_x", 7)]

    expected = verdicts(fastjsonschema.compile(json.loads(text)))
    assert expected[0] is None and expected[1] and expected[2]
    assert verdicts(compile_fresh(text)) == expected
    (kept,) = (tmp_path / "cache" / "validators").iterdir()
    assert verdicts(compile_fresh(text)) == expected  # loaded back
    kept.write_bytes(b"not marshalled code")  # corrupt: compiled again, and replaced
    assert verdicts(compile_fresh(text)) == expected
    assert kept.read_bytes() != b"not marshalled code"
    blocked = tmp_path / "blocked"  # a cache that cannot be written is no error
    blocked.mkdir()
    (blocked / "cache").write_text("a file where the cache folder would be")
    monkeypatch.setenv("RAILFLOW_DATA_DIR", str(blocked))
    assert verdicts(compile_fresh(text)) == expected


def test_objects_whose_keys_do_not_match_the_schema_are_refused_whole() -> None:
    item = json.loads((SCHEMAS / "users_track.schema.json").read_text())
    item = item["properties"]["attributes"]["items"]
    ids = pl.Series("external_id", ["usr_1", "usr_2"])
    with pytest.raises(CrmExportError, match="keys do not match"):  # an unknown key
        _rows_valid(item, {"external_id": ids, "rf_shoe_size": pl.Series([42, 43])}, set())
    item = {**item, "required": ["external_id", "rf_segment"]}
    with pytest.raises(CrmExportError, match="keys do not match"):  # a required key missing
        _rows_valid(item, {"external_id": ids}, set())


def test_a_column_of_objects_checked_field_by_field_gives_per_object_verdicts() -> None:
    item = json.loads((SCHEMAS / "users_track.schema.json").read_text())
    item = item["properties"]["events"]["items"]
    validate = fastjsonschema.compile(item)
    n = 6
    base = {
        "external_id": pl.Series("external_id", [f"usr_{i}" for i in range(n)]),
        "name": pl.Series("name", ["rf_high_intent_signal"] * n),
        "time": pl.Series("time", ["2026-08-01T10:00:00Z"] * n),
    }
    properties = [
        {"propensity_band": ["high", None, "low", "high", "medium", "x"],
         "route": ["FRPLY-FRLPD", "A", None, "B", "C", "D"]},
        {"propensity_band": ["high"] * n, "route": [1, 2, 3, 4, 5, 6]},  # not strings
        {"propensity_band": ["high"] * n, "route": ["A"] * n, "seats": [1] * n},  # unknown key
    ]  # fmt: skip
    for fields in properties:
        struct = pl.DataFrame(fields).select(pl.struct(pl.all()).alias("properties"))
        columns = {**base, "properties": struct.to_series()}
        rows = pl.DataFrame(columns).to_dicts()
        expected = [_schema_error(validate, row) is None for row in rows]
        assert _rows_valid(item, columns, set()).to_list() == expected
        assert not all(expected)


def test_a_format_checked_in_bulk_gives_fastjsonschemas_verdicts() -> None:
    schema = {"type": "string", "format": "date-time"}
    times = pl.Series("time", ["2026-08-01T10:00:00Z", "2026-08-01T10:00:00.123456Z"])
    assert _all_match_in_bulk(times, schema)
    # other scripts' digits pass re's \\d (so fastjsonschema), not polars' check: unsure;
    # 29 February of 2026 and a missing zone fail both
    odd = pl.Series("time", ["\uff12\uff10\uff12\uff16-08-01T10:00:00Z", "2026-02-29T10:00:00Z",
                             "2026-08-01T10:00:00"])  # fmt: skip
    mixed = pl.concat([times, odd])
    assert not _all_match_in_bulk(mixed, schema)
    validate = fastjsonschema.compile(schema)
    expected = [_schema_error(validate, value) is None for value in mixed]
    assert expected == [True, True, True, False, False]
    item = {"type": "object", "properties": {"time": schema}}
    assert _rows_valid(item, {"time": mixed}, set()).to_list() == expected


def test_no_file_is_written_when_one_has_an_invalid_event(tmp_path: Path) -> None:
    n = 200
    audience = pl.DataFrame(
        {
            "external_id": [f"usr_{i:04d}" for i in range(n)],
            "audience": "high_intent",
            "segment_name": "Champions",
            "churn_band": "low",
            "churn_probability": 0.25,
            "propensity_band": ["medium"] * 150 + [None] + ["high"] * 49,  # in the 3rd file
            "last_searched_route": "FRPLY-FRLPD",
            "last_searched_at": datetime(2026, 8, 1, tzinfo=UTC),
            "recommended_offer": "discount_5_percent",
        }
    )
    p = plan("full", audience_objects(audience), pl.DataFrame(schema=STATE_SCHEMA), set())
    assert p.counts["sent"] == n  # a null band is a valid attribute, not a valid event
    manifest = {"schema_version": 1, "mode": "full", "generated_at": "now", "source_marts": [],
                "counts": p.counts, "batches": []}  # fmt: skip
    with pytest.raises(
        CrmExportError, match=r"batch 3 .*events\[0\].*propensity_band must be string"
    ):
        write_files(tmp_path, batches(p), manifest)
    assert not list(tmp_path.iterdir())  # not even the valid files before it


def test_a_rerun_overwrites_its_files_and_deletes_the_surplus(tmp_path: Path) -> None:
    def export_files(users: int) -> dict[str, Any]:
        audience = tricky_audience(n=users).filter(pl.col("external_id").str.starts_with("usr_"))
        p = plan("full", audience_objects(audience), pl.DataFrame(schema=STATE_SCHEMA), set())
        manifest = {"schema_version": 1, "mode": "full", "generated_at": "now",
                    "source_marts": [], "counts": p.counts, "batches": []}  # fmt: skip
        write_files(tmp_path, batches(p), manifest)
        return manifest

    export_files(600)
    before = sorted(path.name for path in tmp_path.glob("batch-*.json"))
    manifest = export_files(200)
    after = sorted(path.name for path in tmp_path.glob("batch-*.json"))
    assert len(after) < len(before) and after == [entry["file"] for entry in manifest["batches"]]
    for entry in manifest["batches"]:  # each file is the new one, whole
        raw = (tmp_path / entry["file"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_an_unknown_or_missing_audience_is_refused() -> None:
    audience = tricky_audience(n=50)
    for bad in ("vip", None):
        marked = audience.with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(pl.lit(bad, dtype=pl.String))
            .otherwise(pl.col("audience"))
            .alias("audience")
        )
        with pytest.raises(CrmExportError, match=rf"unknown audiences \[{bad!r}\]"):
            audience_objects(marked)
