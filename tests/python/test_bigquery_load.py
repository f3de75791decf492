"""The loader's BigQuery path against a loopback server that answers like the BigQuery REST API."""

from __future__ import annotations

import email
import io
import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest

from railflow.settings import Settings, get_settings
from scripts.generate import generate
from scripts.load import load, summarise


class FakeBigQuery(BaseHTTPRequestHandler):
    """Just the calls the loader makes: datasets.insert, tables.get, multipart jobs.insert
    (load), jobs.get. Load jobs are recorded with their configuration and Parquet rows."""

    datasets: ClassVar[list[dict[str, Any]]] = []
    loads: ClassVar[list[dict[str, Any]]] = []
    lock = threading.Lock()

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_GET(self) -> None:
        if "/tables/" in self.path:
            return self._reply(404, {"error": {"code": 404, "message": "Not found: Table"}})
        if "/jobs/" in self.path:
            job_id = self.path.split("/jobs/")[1].split("?")[0]
            with self.lock:
                job = next(j["resource"] for j in self.loads if j["id"] == job_id)
            return self._reply(200, job)
        return self._reply(404, {"error": {"code": 404, "message": self.path}})

    def do_POST(self) -> None:
        body = self._body()
        if self.path.split("?")[0].endswith("/datasets"):
            resource = json.loads(body)
            with self.lock:
                self.datasets.append(resource)
            return self._reply(200, resource)
        if "/upload/bigquery/v2/projects/" in self.path and "uploadType=multipart" in self.path:
            message = email.message_from_bytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
            )
            meta_part, data_part = message.get_payload()
            resource = json.loads(meta_part.get_payload(decode=True))
            rows = pl.read_parquet(io.BytesIO(data_part.get_payload(decode=True)))
            job_id = resource["jobReference"]["jobId"]
            resource["status"] = {"state": "DONE"}
            resource["statistics"] = {"load": {"outputRows": str(rows.height)}}
            with self.lock:
                self.loads.append({"id": job_id, "resource": resource, "rows": rows})
            return self._reply(200, resource)
        return self._reply(404, {"error": {"code": 404, "message": self.path}})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bigquery_api() -> Iterator[str]:
    FakeBigQuery.datasets, FakeBigQuery.loads = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBigQuery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def bq_settings(tmp_path: Path, bigquery_api: str) -> Settings:
    generate(tmp_path, 120, 8, date(2026, 3, 1), 4, "bq-salt", progress=False)
    return get_settings(
        {
            "RAILFLOW_TARGET": "bigquery",
            "RAILFLOW_PII_SALT": "bq-salt-for-the-tests",
            "RAILFLOW_BQ_PROJECT": "railflow-test",
            "RAILFLOW_BQ_DATASET": "rf",
            "RAILFLOW_BQ_API_ENDPOINT": bigquery_api,
            "RAILFLOW_DATA_DIR": str(tmp_path),
        }
    )


def test_loader_submits_partitioned_clustered_parquet_load_jobs(bq_settings: Settings) -> None:
    reports = load(bq_settings, ["search_route", "users"])
    totals = summarise(reports)
    raw_loads = [j for j in FakeBigQuery.loads if "_raw" in json.dumps(j["resource"])]
    by_table = {
        j["resource"]["configuration"]["load"]["destinationTable"]["tableId"]: j for j in raw_loads
    }
    assert set(by_table) == {"search_route", "users"}
    search = by_table["search_route"]
    config = search["resource"]["configuration"]["load"]
    assert config["destinationTable"] == {
        "projectId": "railflow-test", "datasetId": "rf_raw", "tableId": "search_route"
    }  # fmt: skip
    assert config["sourceFormat"] == "PARQUET"
    assert config["writeDisposition"] == "WRITE_APPEND"
    assert config["timePartitioning"] == {"type": "DAY", "field": "occurred_at"}
    assert config["clustering"] == {"fields": ["event_name", "user_id"]}
    assert config.get("autodetect") is False
    fields = {f["name"]: f["type"] for f in config["schema"]["fields"]}
    assert fields["occurred_at"] == "TIMESTAMP" and fields["passengers"] == "INT64"
    assert fields["travel_date"] == "DATE" and fields["_batch_id"] == "STRING"
    assert search["resource"]["jobReference"]["location"] == "europe-west9"
    assert search["rows"].height == totals["search_route"][1]
    users = by_table["users"]["resource"]["configuration"]["load"]
    assert users["timePartitioning"]["field"] == "updated_at"
    datasets = {d["datasetReference"]["datasetId"]: d for d in FakeBigQuery.datasets}
    assert {"rf_raw", "rf_audit"} <= set(datasets)
    assert all(d["location"] == "europe-west9" for d in datasets.values())
    # the audit trail went to BigQuery too: one load_batches row per file
    batches = [j for j in FakeBigQuery.loads if '"load_batches"' in json.dumps(j["resource"])]
    assert sum(j["rows"].height for j in batches) == len(reports)


def test_a_service_account_key_authenticates_the_python_stages_and_dbt(tmp_path: Path) -> None:
    """RAILFLOW_BQ_METHOD=service-account: the loader, ml and export clients use the key file,
    and dbt's profile gets the same method and file (no request is made)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from railflow.warehouse import BigQueryWarehouse

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    email_address = "railflow-loader@railflow-test.iam.gserviceaccount.com"
    key = tmp_path / "key.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "railflow-test",
                "private_key_id": "0" * 40,
                "private_key": pem.decode(),
                "client_email": email_address,
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    settings = get_settings(
        {
            "RAILFLOW_TARGET": "bigquery",
            "RAILFLOW_PII_SALT": "bq-salt-for-the-tests",
            "RAILFLOW_BQ_PROJECT": "railflow-test",
            "RAILFLOW_BQ_METHOD": "service-account",
            "RAILFLOW_BQ_KEYFILE": str(key),
        }
    )
    client = BigQueryWarehouse(settings, read_only=True).client
    assert client._credentials.service_account_email == email_address
    assert (client.project, client.location) == ("railflow-test", "europe-west9")
    dbt_env = settings.dbt_env()
    assert dbt_env["RAILFLOW_BQ_METHOD"] == "service-account"
    assert dbt_env["RAILFLOW_BQ_KEYFILE"] == str(key)


def test_no_google_credentials_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from railflow.errors import SettingsError
    from railflow.pipeline import run_pipeline
    from railflow.warehouse import BigQueryWarehouse

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login saved there
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on Google Cloud: skip the metadata server
    env = {"RAILFLOW_TARGET": "bigquery", "RAILFLOW_PII_SALT": "s" * 16, "RAILFLOW_BQ_PROJECT": "p"}
    with pytest.raises(SettingsError, match="no Google credentials found"):
        BigQueryWarehouse(get_settings(env), read_only=True)
    # the pipeline asks before its first stage: the local world is not rewritten for nothing
    data = tmp_path / "data"
    with pytest.raises(SettingsError, match="no Google credentials found"):
        run_pipeline(get_settings({**env, "RAILFLOW_DATA_DIR": str(data)}))
    assert not (data / "raw").exists()
    not_a_key = tmp_path / "key.json"
    not_a_key.write_text('{"type": "authorized_user"}')
    env |= {"RAILFLOW_BQ_METHOD": "service-account", "RAILFLOW_BQ_KEYFILE": str(not_a_key)}
    with pytest.raises(SettingsError, match="is not a service-account JSON key"):
        BigQueryWarehouse(get_settings(env), read_only=True)
