"""`AnalyticsSink` in a SQLite file: the embedded stand-in for Data Explorer.

One row per event in table `events`, with Data Explorer's column names (so a query reads
the same in both places, SQLite being case-insensitive about names) plus `AnalyticsAt`,
when the row arrived here (Data Explorer's `ingestion_time()`). An event is
(`TenantId`, `EventId`): a unique index on the pair, and `write` is an `INSERT OR IGNORE`, so
a batch delivered twice leaves one row per event (what the materialized view does on Data
Explorer) while two tenants' events with the same id are two rows.

A file made before that index existed has `EventId` as its primary key, which would drop the
second tenant's row; opening it rebuilds the table under the new key, keeping every row. A file
made before a column was added to `ANALYTICS_COLUMNS` gets it (empty in its old rows) when
opened, as `.create-merge table` does on Data Explorer.

Writes go through a `SqliteWorker` (group commit, WAL), so `cloudscale query` can read the
file from another process while the host writes it.

Personal data: rows carry user ids, URLs and properties, so the file is opened with
`PRAGMA secure_delete=ON` (a deleted row's bytes are overwritten with zeros, not left in the
page's free space) and, after a delete that removed rows, the write-ahead log is checkpointed
and truncated (`PRAGMA wal_checkpoint(TRUNCATE)`), because the log still holds the pages as
they were before the delete (both in `shared.adapters.sqlite.secure_delete`). Erasing a data
subject (`erase_subject_rows`) and retention (rows whose `StoredAt` is older than
`retention_days`, Data Explorer's retention policy here) both delete this way. Retention is
checked when the file is opened and then at most once an hour, on a write.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from shared.adapters.sqlite.secure_delete import WalTruncation, enable_secure_delete
from shared.adapters.sqlite.worker import LazySqliteWorker
from shared.domain.analytics import ANALYTICS_COLUMNS, SUBJECT_COLUMNS, AnalyticsRow
from shared.domain.privacy import Subject
from shared.ports import AnalyticsErasure, AnalyticsSinkError

__all__ = ["ANALYTICS_FILE", "ANALYTICS_TABLE", "EmbeddedAnalyticsStore", "prepare_schema", "time_text"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

ANALYTICS_TABLE = "events"
ANALYTICS_FILE = "analytics.sqlite3"
"""The file's name in the data folder (`CLOUDSCALE_DATA_DIR`)."""

RETENTION_CHECK_SECONDS: Final = 3600.0
"""How often (at most) a write also deletes the rows retention has expired."""

_SQLITE_TYPES = {"string": "TEXT", "datetime": "TEXT", "bool": "INTEGER", "real": "REAL", "dynamic": "TEXT"}
_COLUMN_NAMES = [name for name, _ in ANALYTICS_COLUMNS]


# Datetimes are stored as RFC 3339 UTC text with a fixed shape ("...Z"), so they sort and
# compare as text, and SQLite's date functions read them.
def _create_table(name: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (\n"
        + ",\n".join(f"    {column} {_SQLITE_TYPES[kind]}" for column, kind in ANALYTICS_COLUMNS)
        + ",\n    AnalyticsAt TEXT NOT NULL\n);\n"
    )


_INDEXES = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS {ANALYTICS_TABLE}_identity ON {ANALYTICS_TABLE} (TenantId, EventId);\n"
    f"CREATE INDEX IF NOT EXISTS {ANALYTICS_TABLE}_stored ON {ANALYTICS_TABLE} (StoredAt);\n"
    f"CREATE INDEX IF NOT EXISTS {ANALYTICS_TABLE}_received ON {ANALYTICS_TABLE} (ReceivedAt);\n"
)
_REBUILT = f"{ANALYTICS_TABLE}_rebuilt"
_ALL_COLUMNS = ", ".join([*_COLUMN_NAMES, "AnalyticsAt"])

_INSERT = (
    f"INSERT OR IGNORE INTO {ANALYTICS_TABLE} ({', '.join(_COLUMN_NAMES)}, AnalyticsAt)"
    f" VALUES ({', '.join('?' * (len(_COLUMN_NAMES) + 1))})"
)


class EmbeddedAnalyticsStore:
    """The analytics table in one SQLite file; idempotent on (`TenantId`, `EventId`)."""

    def __init__(
        self, path: Path, *, clock: Callable[[], float] = time.time, retention_days: float | None = None
    ) -> None:
        """Nothing is opened here. `retention_days`: rows whose `StoredAt` is older are deleted
        (None keeps them forever); `clock` gives the time in seconds since the epoch."""
        self.path = path
        self.retention_days = retention_days
        self._clock = clock
        # Worker thread only: a delete truncates the log after its commit, or owes it to the next.
        self._wal_truncation = WalTruncation(path)
        self._file = LazySqliteWorker(
            path, _open_file, name="embedded-analytics", after_commit=self._wal_truncation.after_commit
        )
        self._opening = asyncio.Lock()
        self._retention_checked_at: float | None = None

    async def write(self, rows: Sequence[AnalyticsRow]) -> None:
        if not rows:
            return
        now = self._clock()
        arrived = time_text(datetime.fromtimestamp(now, UTC))
        values = [_values(row, arrived) for row in rows]
        expire = self._retention_due(now)

        def insert(connection: sqlite3.Connection) -> None:
            connection.executemany(_INSERT, values)
            if expire:
                self._expire(connection, now)

        await self._run("write to", insert)

    async def hourly_counts(self, start: datetime, end: datetime) -> dict[datetime, int]:
        """Rows per hour of `StoredAt` in [start, end): what reconciliation compares."""

        def count(connection: sqlite3.Connection) -> list[tuple[str, int]]:
            return connection.execute(
                f"SELECT substr(StoredAt, 1, 13), count(*) FROM {ANALYTICS_TABLE}"
                " WHERE StoredAt >= ? AND StoredAt < ? GROUP BY 1",
                (time_text(start), time_text(end)),
            ).fetchall()

        rows = await self._run("count rows in", count)
        return {datetime.fromisoformat(f"{hour}:00:00+00:00"): number for hour, number in rows}

    async def event_keys(self, start: datetime, end: datetime) -> set[tuple[str, str]]:
        """The (tenantId, eventId) of each event with `StoredAt` in [start, end)."""
        rows = await self._run(
            "read ids from",
            lambda connection: connection.execute(
                f"SELECT TenantId, EventId FROM {ANALYTICS_TABLE} WHERE StoredAt >= ? AND StoredAt < ?",
                (time_text(start), time_text(end)),
            ).fetchall(),
        )
        return {(str(tenant), str(event)) for tenant, event in rows}

    async def count_subject_rows(self, subject: Subject) -> int:
        """Rows of `subject` (its tenant, and its userId or anonymousId)."""
        query = f"SELECT count(*) FROM {ANALYTICS_TABLE} WHERE TenantId = ? AND {SUBJECT_COLUMNS[subject.field]} = ?"
        found = await self._run(
            "count rows in", lambda connection: connection.execute(query, (subject.tenant_id, subject.value)).fetchone()
        )
        return int(found[0])

    async def erase_subject_rows(self, subject: Subject) -> AnalyticsErasure:
        """Delete `subject`'s rows, bytes included (see the module docstring); idempotent.

        Returns once the delete is committed and the log truncated; a reader that keeps the
        log from being truncated is logged, not raised (the delete stands, and the next delete
        truncates it).
        """
        statement = f"DELETE FROM {ANALYTICS_TABLE} WHERE TenantId = ? AND {SUBJECT_COLUMNS[subject.field]} = ?"

        def delete(connection: sqlite3.Connection) -> int:
            return self._delete(connection, statement, (subject.tenant_id, subject.value))

        return AnalyticsErasure(removed=await self._run("erase rows from", delete))

    async def check(self) -> None:
        await self._run("read", lambda connection: connection.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Finish pending writes and close the file. Later calls raise `AnalyticsSinkError`."""
        await self._file.close()

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._file.closed:
            raise AnalyticsSinkError(f"the embedded analytics store {self.path} is closed")
        try:
            await self._expire_on_open()
            return await self._file.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise AnalyticsSinkError(f"could not {action} the embedded analytics store {self.path}: {exc}") from exc

    async def _expire_on_open(self) -> None:
        """On the first call: delete the rows retention has expired since the file was last open."""
        if self._retention_checked_at is not None or self.retention_days is None:
            return
        async with self._opening:
            if self._retention_checked_at is None:
                now = self._clock()
                await self._file.run(lambda connection: self._expire(connection, now))
                self._retention_checked_at = now

    def _retention_due(self, now: float) -> bool:
        """Whether this write also expires old rows (and, if so, the next hour's writes do not)."""
        if self.retention_days is None or self._retention_checked_at is None:
            return False  # never, or checked when the file opens
        if now - self._retention_checked_at < RETENTION_CHECK_SECONDS:
            return False
        self._retention_checked_at = now
        return True

    def _expire(self, connection: sqlite3.Connection, now: float) -> int:
        """Delete the rows retention has expired at `now` (worker thread)."""
        assert self.retention_days is not None
        cutoff = time_text(datetime.fromtimestamp(now - self.retention_days * 86400, UTC))
        removed = self._delete(connection, f"DELETE FROM {ANALYTICS_TABLE} WHERE StoredAt < ?", (cutoff,))
        if removed:
            logger.info("embedded analytics: %d row(s) stored before %s expired (retention)", removed, cutoff)
        return removed

    def _delete(self, connection: sqlite3.Connection, statement: str, parameters: tuple[str, ...]) -> int:
        """Run a DELETE (worker thread); if it removed rows, truncate the log after the commit."""
        removed = int(connection.execute(statement, parameters).rowcount)
        self._wal_truncation.deleted(removed)
        return removed


def _open_file(connection: sqlite3.Connection) -> None:
    """The worker's setup: deleted rows' bytes are overwritten (personal data), then the schema."""
    enable_secure_delete(connection)
    prepare_schema(connection)


def prepare_schema(connection: sqlite3.Connection) -> None:
    """Create the table and its indexes, or bring a file made by an older version up to date.

    One `BEGIN IMMEDIATE` transaction: a second process opening the same file waits, then
    finds the work done; a crash part-way leaves the old table as it was.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        _add_missing_columns(connection)
        if _keyed_on_event_id_alone(connection):
            # SQLite cannot drop a primary key in place: copy the rows into a table made
            # without it, then put that one in the old table's place (its indexes go with it).
            connection.execute(f"DROP TABLE IF EXISTS {_REBUILT}")
            connection.execute(_create_table(_REBUILT))
            connection.execute(f"INSERT INTO {_REBUILT} ({_ALL_COLUMNS}) SELECT {_ALL_COLUMNS} FROM {ANALYTICS_TABLE}")
            connection.execute(f"DROP TABLE {ANALYTICS_TABLE}")
            connection.execute(f"ALTER TABLE {_REBUILT} RENAME TO {ANALYTICS_TABLE}")
        else:
            connection.execute(_create_table(ANALYTICS_TABLE))
        for statement in filter(str.strip, _INDEXES.split(";")):
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Append the columns an existing table lacks (none when there is no table yet)."""
    present = {row[1].lower() for row in connection.execute(f"PRAGMA table_info({ANALYTICS_TABLE})")}
    if not present:
        return
    for column, kind in ANALYTICS_COLUMNS:
        if column.lower() not in present:
            connection.execute(f"ALTER TABLE {ANALYTICS_TABLE} ADD COLUMN {column} {_SQLITE_TYPES[kind]}")


def _keyed_on_event_id_alone(connection: sqlite3.Connection) -> bool:
    """True for a table made when `EventId` alone was the primary key."""
    columns = connection.execute(f"PRAGMA table_info({ANALYTICS_TABLE})").fetchall()
    # Each row: (cid, name, type, notnull, default, pk); pk > 0 marks primary key columns.
    return [row[1] for row in columns if row[5]] == ["EventId"]


def _values(row: AnalyticsRow, arrived: str) -> tuple[Any, ...]:
    record = row.to_json_dict()
    values: list[Any] = []
    for name, kind in ANALYTICS_COLUMNS:
        value = record[name]
        if kind == "dynamic":
            value = None if value is None else orjson.dumps(value).decode()
        elif kind == "bool":
            value = int(bool(value))
        elif kind == "datetime" and value is not None:
            value = time_text(datetime.fromisoformat(value))
        values.append(value)
    values.append(arrived)
    return tuple(values)


def time_text(value: datetime) -> str:
    """A time as the table stores it. Microsecond precision always, so every stored value has
    the same length and text order is time order: compare with this, never another format."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
