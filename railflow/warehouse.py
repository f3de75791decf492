"""The one module that talks to the warehouse, on DuckDB (default) or BigQuery.

Sidecars never open connections themselves: they call `connect()` and use `query`, `read`,
`write` and `execute`, naming tables by layer (`raw`, `marts`, `ml`, ...) so the same code
runs on both targets.

DuckDB lets one process hold a file for writing, or any number for reading, never both. The
pipeline therefore never writes the file readers open: `build_then_publish` gives it a copy
(`<file>.building`), and when every stage has succeeded the copy replaces the file in one
rename. A reader (the app) never blocks the pipeline and never sees a half-built warehouse.
Readers open the file read-only; a writer that opens the file itself (a stage run alone, dbt by
hand) waits for readers with a bounded retry (WRITER_WAIT_SECONDS), and a reader waits briefly
for such a writer, then gets `WarehouseLockedError` (retryable) instead of a crash.
"""

from __future__ import annotations

import fcntl
import io
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import polars as pl

from railflow.errors import (
    SettingsError,
    WarehouseError,
    WarehouseLockedError,
    WarehouseMissingError,
    is_disk_full,
)
from railflow.settings import Settings, get_settings

WriteMode = Literal["replace", "append"]
# How long a writer waits for readers to let go of the DuckDB file (they hold it for a query at
# a time), and a reader for a writer, before giving up with WarehouseLockedError
WRITER_WAIT_SECONDS = 120.0
READER_WAIT_SECONDS = 2.0
# How long a pipeline waits for a writer on the warehouse itself before building its copy
PUBLISH_WAIT_SECONDS = 10.0
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise WarehouseError(f"invalid table or column name {name!r}: use letters, digits and _")
    return name


class Warehouse:
    """Common interface; see DuckDBWarehouse and BigQueryWarehouse."""

    def __init__(self, settings: Settings, read_only: bool) -> None:
        self.settings = settings
        self.read_only = read_only

    # -- naming ---------------------------------------------------------------------------
    def schema(self, layer: str) -> str:
        return self.settings.schema(layer)

    def table(self, layer: str, name: str) -> str:
        """Fully qualified, quoted table name for SQL."""
        raise NotImplementedError

    # -- operations -----------------------------------------------------------------------
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a SELECT; named parameters are written `$name` on every target."""
        raise NotImplementedError

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    def create_schema(self, layer: str) -> None:
        raise NotImplementedError

    def table_exists(self, layer: str, name: str) -> bool:
        raise NotImplementedError

    def write(
        self,
        df: pl.DataFrame,
        layer: str,
        name: str,
        mode: WriteMode = "replace",
        *,
        partition_by: str | None = None,
        cluster_by: Sequence[str] = (),
    ) -> int:
        """Write a frame to `layer.name`; returns the rows written."""
        raise NotImplementedError

    def read(
        self,
        layer: str,
        name: str,
        columns: Sequence[str] | None = None,
        order_by: Sequence[str] = (),
    ) -> pl.DataFrame:
        """A whole table; `order_by` sorts in the engine (it spills; a copy in Python would not)."""
        cols = ", ".join(_check_identifier(c) for c in columns) if columns else "*"
        order = f" order by {', '.join(_check_identifier(c) for c in order_by)}" if order_by else ""
        return self.query(f"select {cols} from {self.table(layer, name)}{order}")

    def close(self) -> None:  # pragma: no cover - trivial
        pass

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements that commit together or not at all. BigQuery runs each load job on its
        own: callers keep every step idempotent there (see scripts.load.load_file)."""
        yield

    def _require_writable(self) -> None:
        if self.read_only:
            raise WarehouseError(
                "this warehouse connection is read-only; open it with read_only=False"
            )


# ------------------------------------------------------------------------------------------
# DuckDB
# ------------------------------------------------------------------------------------------
def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def disk_full(path: Path) -> WarehouseError:
    return WarehouseError(
        f"no space left on the device holding {path}; free some space, or point "
        "RAILFLOW_DATA_DIR / RAILFLOW_DUCKDB_PATH at a larger disk, then run again"
    )


class DuckDBWarehouse(Warehouse):
    def __init__(
        self, settings: Settings, read_only: bool, wait_seconds: float = READER_WAIT_SECONDS
    ) -> None:
        import duckdb

        super().__init__(settings, read_only)
        path: Path = settings.duckdb_path
        if read_only and not path.exists():
            raise WarehouseMissingError(
                f"warehouse {path} does not exist yet; run `make run` to build it"
            )
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        delay = 0.1
        while True:
            try:
                self.con = duckdb.connect(str(path), read_only=read_only)
                # Timestamps are UTC everywhere; never the machine's local zone.
                self.con.sql("set TimeZone = 'UTC'")
                self.con.sql(f"set memory_limit = '{settings.duckdb_memory_limit}'")
                break
            except duckdb.IOException as exc:
                if is_disk_full(exc):
                    raise disk_full(path) from None
                if not _is_lock_error(exc):
                    raise WarehouseError(f"cannot open warehouse {path}: {exc}") from None
                if time.monotonic() >= deadline:
                    raise WarehouseLockedError(
                        f"warehouse {path} is locked by another process (a build, a load, or "
                        f"readers for over {wait_seconds:.0f}s); wait for it to finish and retry"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def table(self, layer: str, name: str) -> str:
        return f'"{self.schema(layer)}"."{_check_identifier(name)}"'

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        try:
            relation = self.con.sql(sql, params=dict(params) if params else None)
            if relation is None:  # a statement that returns nothing
                return pl.DataFrame()
            return pl.from_arrow(relation.to_arrow_table())  # type: ignore[return-value]
        except Exception as exc:  # duckdb raises many Error subclasses
            raise WarehouseError(f"query failed: {str(exc).splitlines()[0]}") from exc

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._require_writable()
        with self._disk_full_is_one_line():
            self.con.sql(sql, params=dict(params) if params else None)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._require_writable()
        self.con.sql("begin transaction")
        try:
            yield
        except BaseException:
            with suppress(Exception):  # a failed statement may have ended it already
                self.con.sql("rollback")
            raise
        with self._disk_full_is_one_line():
            self.con.sql("commit")

    @contextmanager
    def _disk_full_is_one_line(self) -> Iterator[None]:
        import duckdb

        try:
            yield
        except duckdb.Error as exc:
            if not is_disk_full(exc):
                raise
            raise disk_full(self.settings.duckdb_path) from None

    def create_schema(self, layer: str) -> None:
        self._require_writable()
        self.con.sql(f'create schema if not exists "{self.schema(layer)}"')

    def table_exists(self, layer: str, name: str) -> bool:
        row = self.con.sql(
            "select count(*) from information_schema.tables "
            "where table_schema = $schema and table_name = $name",
            params={"schema": self.schema(layer), "name": name},
        ).fetchall()
        return bool(row and row[0][0])

    def write(
        self,
        df: pl.DataFrame,
        layer: str,
        name: str,
        mode: WriteMode = "replace",
        *,
        partition_by: str | None = None,
        cluster_by: Sequence[str] = (),
    ) -> int:
        # DuckDB has no partitions or clustering. Its nearest equivalent: rows stored in order of
        # the partition column, so each row group's min/max (zonemap) lets a filter on recent
        # days skip the rest, as incremental dbt models and scoped tests do.
        self._require_writable()
        self.create_schema(layer)
        target = self.table(layer, name)
        order = f" order by {_check_identifier(partition_by)}" if partition_by else ""
        rows = f"select * from _railflow_frame{order}"
        self.con.register("_railflow_frame", df.to_arrow())
        try:
            with self._disk_full_is_one_line():
                if mode == "append" and self.table_exists(layer, name):
                    self.con.sql(f"insert into {target} by name {rows}")
                else:
                    self.con.sql(f"create or replace table {target} as {rows}")
        finally:
            self.con.unregister("_railflow_frame")
        return df.height

    def close(self) -> None:
        with self._disk_full_is_one_line():  # closing checkpoints the write-ahead log
            self.con.close()


# ------------------------------------------------------------------------------------------
# BigQuery
# ------------------------------------------------------------------------------------------
_POLARS_TO_BQ = {
    pl.Utf8: "STRING",
    pl.Boolean: "BOOL",
    pl.Int8: "INT64",
    pl.Int16: "INT64",
    pl.Int32: "INT64",
    pl.Int64: "INT64",
    pl.UInt8: "INT64",
    pl.UInt16: "INT64",
    pl.UInt32: "INT64",
    pl.Float32: "FLOAT64",
    pl.Float64: "FLOAT64",
    pl.Date: "DATE",
}


def bigquery_type(dtype: pl.DataType) -> str:
    """BigQuery column type for a polars dtype (explicit schemas, never autodetect)."""
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMP"
    if isinstance(dtype, pl.Decimal):
        return "NUMERIC"
    for polars_type, bq_type in _POLARS_TO_BQ.items():
        if dtype == polars_type:
            return bq_type
    raise WarehouseError(f"no BigQuery type for polars dtype {dtype}; cast the column first")


def load_job_config(
    df_schema: Mapping[str, pl.DataType],
    mode: WriteMode,
    partition_by: str | None = None,
    cluster_by: Sequence[str] = (),
) -> Any:
    """The LoadJobConfig used for every Parquet load (pure: asserted by the offline tests)."""
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=(
            bigquery.WriteDisposition.WRITE_APPEND
            if mode == "append"
            else bigquery.WriteDisposition.WRITE_TRUNCATE
        ),
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        schema=[bigquery.SchemaField(col, bigquery_type(dt)) for col, dt in df_schema.items()],
        autodetect=False,
    )
    if partition_by:
        config.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=partition_by
        )
    if cluster_by:
        config.clustering_fields = list(cluster_by)
    return config


def _bigquery_client(settings: Settings) -> Any:
    """A client with the service-account key, or else the application-default credentials."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import bigquery

    where = {"project": settings.bq_project, "location": settings.bq_location}
    if settings.bq_keyfile:
        try:
            return bigquery.Client.from_service_account_json(str(settings.bq_keyfile), **where)
        except ValueError as exc:  # google-auth's MalformedError is one
            raise SettingsError(
                f"RAILFLOW_BQ_KEYFILE={settings.bq_keyfile} is not a service-account JSON key "
                f"({exc})"
            ) from None
    try:
        return bigquery.Client(**where)
    except DefaultCredentialsError:
        raise SettingsError(
            "no Google credentials found: run `gcloud auth application-default login`, or set "
            "RAILFLOW_BQ_METHOD=service-account and RAILFLOW_BQ_KEYFILE to a key file"
        ) from None


class BigQueryWarehouse(Warehouse):
    def __init__(self, settings: Settings, read_only: bool, client: Any = None) -> None:
        super().__init__(settings, read_only)
        if client is None:
            from google.cloud import bigquery

            if settings.bq_api_endpoint:  # an emulator: no Google credentials involved
                from google.auth.credentials import AnonymousCredentials

                client = bigquery.Client(
                    project=settings.bq_project,
                    location=settings.bq_location,
                    credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": settings.bq_api_endpoint},
                )
            else:
                client = _bigquery_client(settings)
        self.client = client

    def table_id(self, layer: str, name: str) -> str:
        return f"{self.settings.bq_project}.{self.schema(layer)}.{_check_identifier(name)}"

    def table(self, layer: str, name: str) -> str:
        return f"`{self.table_id(layer, name)}`"

    def _job_config(self, params: Mapping[str, Any] | None) -> Any:
        from google.cloud import bigquery

        if not params:
            return None
        type_of = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING"}
        return bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(k, type_of.get(type(v), "STRING"), v)
                for k, v in params.items()
            ]
        )

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        job = self.client.query(_PARAM.sub(r"@\1", sql), job_config=self._job_config(params))
        return pl.from_arrow(job.result().to_arrow())  # type: ignore[return-value]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._require_writable()
        self.client.query(_PARAM.sub(r"@\1", sql), job_config=self._job_config(params)).result()

    def create_schema(self, layer: str) -> None:
        from google.cloud import bigquery

        self._require_writable()
        dataset = bigquery.Dataset(f"{self.settings.bq_project}.{self.schema(layer)}")
        dataset.location = self.settings.bq_location
        self.client.create_dataset(dataset, exists_ok=True)

    def table_exists(self, layer: str, name: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(self.table_id(layer, name))
            return True
        except NotFound:
            return False

    def write(
        self,
        df: pl.DataFrame,
        layer: str,
        name: str,
        mode: WriteMode = "replace",
        *,
        partition_by: str | None = None,
        cluster_by: Sequence[str] = (),
    ) -> int:
        self._require_writable()
        self.create_schema(layer)
        buffer = io.BytesIO()
        df.write_parquet(buffer)
        size = buffer.tell()
        buffer.seek(0)
        job = self.client.load_table_from_file(
            buffer,
            self.table_id(layer, name),
            size=size,
            job_config=load_job_config(df.schema, mode, partition_by, cluster_by),
            location=self.settings.bq_location,
        )
        job.result()
        return df.height


# ------------------------------------------------------------------------------------------
def open_warehouse(
    settings: Settings | None = None, *, read_only: bool = True, wait_seconds: float | None = None
) -> Warehouse:
    """`wait_seconds`: how long to wait for the DuckDB lock (default: READER_WAIT_SECONDS for
    a reader, WRITER_WAIT_SECONDS for a writer, which readers must never make fail)."""
    settings = settings or get_settings()
    if settings.target == "bigquery":
        return BigQueryWarehouse(settings, read_only)
    if wait_seconds is None:
        wait_seconds = READER_WAIT_SECONDS if read_only else WRITER_WAIT_SECONDS
    return DuckDBWarehouse(settings, read_only, wait_seconds=wait_seconds)


@contextmanager
def connect(
    settings: Settings | None = None, *, read_only: bool = True, wait_seconds: float | None = None
) -> Iterator[Warehouse]:
    """Open the configured warehouse; read-only unless asked. Closes on exit."""
    wh = open_warehouse(settings, read_only=read_only, wait_seconds=wait_seconds)
    try:
        yield wh
    finally:
        wh.close()


# ------------------------------------------------------------------------------------------
# Build into a copy, publish with one rename
# ------------------------------------------------------------------------------------------
def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _checkpoint(settings: Settings, path: Path) -> None:
    """Fold a write-ahead log into its file, so the file alone is the database."""
    if _wal(path).exists():
        with connect(settings.with_overrides(duckdb_path=path), read_only=False) as wh:
            wh.execute("checkpoint")


@contextmanager
def build_then_publish(settings: Settings) -> Iterator[Settings]:
    """Settings whose DuckDB file is a private copy of the warehouse; on a clean exit the copy
    replaces the warehouse in one atomic rename, on an error (or a kill) it is discarded and the
    warehouse is left as it was.

    Readers keep the file they opened (an open file survives a rename on POSIX) and see the
    new warehouse from their next open: never a half-built one, and they never hold a lock the
    build needs. The copy costs disk space (the warehouse twice, for the run) and a file copy.
    One build at a time: a second pipeline waits for the first to publish. BigQuery: the
    settings as they are (its jobs do not lock out readers)."""
    if settings.target != "duckdb":
        yield settings
        return
    live = settings.duckdb_path
    building = live.with_name(live.name + ".building")
    live.parent.mkdir(parents=True, exist_ok=True)
    with live.with_name(live.name + ".build-lock").open("w") as lock:
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseLockedError(
                        f"another pipeline run is building {live}; wait for it to finish"
                    ) from None
                time.sleep(0.5)
        for stale in (building, _wal(building)):  # a run killed before it published
            stale.unlink(missing_ok=True)
        guard: Warehouse | None = None
        try:
            if live.exists():
                _checkpoint(settings, live)  # a crashed writer's log belongs to the old file
                # Held read-only until the copy is published: readers share it, but a writer
                # on the file itself (a stage run alone) waits, so nothing it writes is lost
                # under the rename, and the copy is never taken mid-write.
                guard = DuckDBWarehouse(settings, read_only=True, wait_seconds=PUBLISH_WAIT_SECONDS)
                shutil.copyfile(live, building)
            yield settings.with_overrides(duckdb_path=building)
            if building.exists():
                _checkpoint(settings, building)
                building.replace(live)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(live) from None
            raise
        finally:
            if guard is not None:
                guard.close()
            for leftover in (building, _wal(building)):
                leftover.unlink(missing_ok=True)
