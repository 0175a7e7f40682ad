"""`LiveEventLog` in a SQLite file under the data folder: the last N accepted and N rejected events.

Shared by every host process (each appends; any reads), so the dashboard, `cloudscale tail`
and `/dashboard/api/*` see one stream whichever instance took the request. `seq` is the row
id, so it increases in the order rows were stored, across processes.

Ingest's `record` only appends to a bounded deque per outcome (a request pays a few
microseconds, whatever the load); a flush scheduled `FLUSH_DELAY_SECONDS` later turns the
newest of them into rows on the store's writer thread, then trims each outcome to its newest
`kept`. Under a flood only the newest `kept` of a flush period are ever serialised.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import orjson

from shared.adapters.sqlite.secure_delete import WalTruncation, enable_secure_delete
from shared.adapters.sqlite.worker import LazySqliteWorker
from shared.domain.live_events import LIVE_EVENT_OUTCOMES, LiveEvent, LiveEventFilter, LiveEventOutcome, LiveEventReason
from shared.domain.privacy import SubjectField

__all__ = ["FLUSH_DELAY_SECONDS", "LIVE_EVENTS_FILE", "EmbeddedLiveEvents", "LiveEventsFile"]

logger = logging.getLogger(__name__)

LIVE_EVENTS_FILE: Final = "live-events.sqlite3"
FLUSH_DELAY_SECONDS: Final = 0.1
"""How long recorded events wait to be stored: the bound on how late a watcher sees one."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    api         TEXT NOT NULL,
    status      INTEGER NOT NULL,
    tenant_id   TEXT,
    event_type  TEXT,
    event_id    TEXT,
    reasons     TEXT NOT NULL,
    event       TEXT
);
CREATE INDEX IF NOT EXISTS live_events_by_outcome ON live_events (outcome, seq);
"""

_COLUMNS = "seq, at, outcome, api, status, tenant_id, event_type, event_id, reasons, event"


def _setup(connection: sqlite3.Connection) -> None:
    # Rejected items may hold whatever a producer sent: deleted rows are overwritten, not left in free pages.
    enable_secure_delete(connection)
    # What is kept for watching may be lost in a power cut (not in a crash: WAL): no fsync on
    # each commit, ten times a second under load, unlike the stores whose writes are promised.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(_SCHEMA)


class EmbeddedLiveEvents:
    """The live-event log of `path`, keeping the newest `kept` events of each outcome."""

    def __init__(self, path: Path, kept: int) -> None:
        self.path = path
        self.kept = kept
        # Erasures delete a subject's rows: their bytes must leave the write-ahead log too.
        self._wal_truncation = WalTruncation(path)
        self._worker = LazySqliteWorker(
            path, _setup, name="live-events", after_commit=self._wal_truncation.after_commit
        )
        self._pending: dict[LiveEventOutcome, collections.deque[LiveEvent]] = {
            outcome: collections.deque(maxlen=kept) for outcome in LIVE_EVENT_OUTCOMES
        }
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self._failing = False

    def record(self, events: Sequence[LiveEvent]) -> None:
        """Queue `events` for the next flush (`LiveEventLog.record`)."""
        if self._worker.closed or not events:
            return
        for event in events:
            self._pending[event.outcome].append(event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # No loop (a synchronous caller): stored by the next flush or at close.
        # A flush scheduled on a loop that has ended never runs: schedule one on this loop.
        if self._flush_handle is None or self._flush_loop is not loop:
            self._flush_handle = loop.call_later(FLUSH_DELAY_SECONDS, self._start_flush)
            self._flush_loop = loop

    def _start_flush(self) -> None:
        self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self._flush_logged())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except (sqlite3.Error, OSError) as exc:
            # Watching is best effort: a full disk must not fail ingest, and the next flush tries
            # again. Warned once until a flush succeeds (under load a flush runs ten times a second).
            if not self._failing:
                logger.warning("live events not stored (%s): %s; not logged again until they are", self.path.name, exc)
            self._failing = True
        else:
            self._failing = False

    async def flush(self) -> None:
        """Store what was recorded so far, then trim each outcome to the newest `kept`."""
        batch = [event for outcome in LIVE_EVENT_OUTCOMES for event in self._pending[outcome]]
        for pending in self._pending.values():
            pending.clear()
        if not batch:
            return
        batch.sort(key=lambda event: event.at)
        kept = self.kept

        def store(connection: sqlite3.Connection) -> None:
            # Serialised here, on the writer thread: off the request's path and off the event loop.
            rows = [_row(event) for event in batch]
            connection.executemany(
                f"INSERT INTO live_events ({_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            for outcome in LIVE_EVENT_OUTCOMES:
                connection.execute(
                    "DELETE FROM live_events WHERE outcome = ? AND seq <= "
                    "(SELECT seq FROM live_events WHERE outcome = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (outcome, outcome, kept),
                )

        await self._worker.run(store)

    async def latest(self, limit: int, where: LiveEventFilter | None = None) -> list[LiveEvent]:
        """The newest `limit` kept events matching `where`, newest first."""
        clause, params = _where(where)
        sql = f"SELECT {_COLUMNS} FROM live_events {clause} ORDER BY seq DESC LIMIT ?"
        rows = await self._worker.run(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [_event(row) for row in rows]

    async def after(self, seq: int, limit: int, where: LiveEventFilter | None = None) -> list[LiveEvent]:
        """Kept events stored after `seq` and matching `where`, oldest first, at most `limit`."""
        clause, params = _where(where, after=seq)
        sql = f"SELECT {_COLUMNS} FROM live_events {clause} ORDER BY seq LIMIT ?"
        rows = await self._worker.run(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [_event(row) for row in rows]

    async def last_seq(self) -> int:
        """The `seq` of the newest kept event (0 when none): where a follower starts."""
        row = await self._worker.run(lambda c: c.execute("SELECT max(seq) FROM live_events").fetchone())
        return int(row[0] or 0)

    async def reset(self) -> int:
        """Forget every kept event (and what waits to be stored); the number of rows removed."""
        for pending in self._pending.values():
            pending.clear()

        def forget(connection: sqlite3.Connection) -> int:
            deleted = connection.execute("DELETE FROM live_events").rowcount
            self._wal_truncation.deleted(deleted)
            return deleted

        return await self._worker.run(forget)

    async def erase_subject(self, tenant_id: str, field: SubjectField, value: str) -> int:
        """Delete the kept events of one data subject, overwriting their bytes; the number removed.

        The subject is `field` (`userId` / `anonymousId`) equal to `value` in the kept event's
        body (a number sent as the identifier matches its text), in `tenant_id` or in no known
        tenant (a rejected item that named none: it may be anyone's). What waits to be stored is
        stored first, so nothing recorded before the call escapes it.
        """
        await self.flush()
        path = f"$.{field}"

        def erase(connection: sqlite3.Connection) -> int:
            deleted = connection.execute(
                "DELETE FROM live_events WHERE (tenant_id = ? OR tenant_id IS NULL) AND event IS NOT NULL"
                " AND json_valid(event) AND CAST(json_extract(event, ?) AS TEXT) = ?",
                (tenant_id, path, value),
            ).rowcount
            self._wal_truncation.deleted(deleted)
            return deleted

        return await self._worker.run(erase)

    async def close(self) -> None:
        """Store what is pending, then close the file."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for task in list(self._flushing):
            with contextlib.suppress(Exception):
                await task
        if not self._worker.closed:
            await self._flush_logged()
        await self._worker.close()


class LiveEventsFile:
    """The kept events of `path` read by another process (`cloudscale tail`, `cloudscale live show`).

    Synchronous and read-only: the file is opened `mode=ro` with `query_only`, so a reader never
    creates it, changes it or takes its write lock, however often it polls. A file whose table
    is not created yet reads as empty. Raises `sqlite3.Error` when the file cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            self._connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error:
            self._connection.close()
            raise

    def latest(self, limit: int, where: LiveEventFilter | None = None) -> list[LiveEvent]:
        """The newest `limit` kept events matching `where`, newest first."""
        clause, params = _where(where)
        return self._select(f"SELECT {_COLUMNS} FROM live_events {clause} ORDER BY seq DESC LIMIT ?", [*params, limit])

    def after(self, seq: int, limit: int, where: LiveEventFilter | None = None) -> list[LiveEvent]:
        """Kept events stored after `seq` and matching `where`, oldest first, at most `limit`."""
        clause, params = _where(where, after=seq)
        return self._select(f"SELECT {_COLUMNS} FROM live_events {clause} ORDER BY seq LIMIT ?", [*params, limit])

    def last_seq(self) -> int:
        """The `seq` of the newest kept event (0 when none)."""
        try:
            row = self._connection.execute("SELECT max(seq) FROM live_events").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
        return int(row[0] or 0)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> LiveEventsFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _select(self, sql: str, params: list[object]) -> list[LiveEvent]:
        try:
            rows = self._connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # Created a moment ago by a host that has not written its schema yet.
            raise
        return [_event(row) for row in rows]


def _where(where: LiveEventFilter | None, *, after: int | None = None) -> tuple[str, list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    if after is not None:
        conditions.append("seq > ?")
        params.append(after)
    if where is not None:
        for column, value in (
            ("tenant_id", where.tenant_id),
            ("event_type", where.event_type),
            ("outcome", where.outcome),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), params


def _row(event: LiveEvent) -> tuple[object, ...]:
    try:
        stored = _document_json(event)
    except (TypeError, ValueError) as exc:
        # A rejected item may nest deeper than the encoder goes (orjson stops at 255 levels, the
        # parser at 1024): it is kept without its body (its reasons say why it was rejected),
        # never allowed to fail the flush of its neighbours.
        logger.debug("a kept event's body cannot be stored: %s", exc)
        stored = None
    return (
        event.at.isoformat(),
        event.outcome,
        event.api,
        event.status,
        event.tenant_id,
        event.event_type,
        event.event_id,
        orjson.dumps([reason.to_dict() for reason in event.reasons]).decode(),
        stored,
    )


def _document_json(event: LiveEvent) -> str | None:
    document = event.document()
    return None if document is None else orjson.dumps(document, default=str).decode()


def _event(row: tuple[object, ...]) -> LiveEvent:
    seq, at, outcome, api, status, tenant_id, event_type, event_id, reasons, event = row
    return LiveEvent(
        seq=int(str(seq)),
        at=datetime.fromisoformat(str(at)),
        outcome="accepted" if outcome == "accepted" else "rejected",
        api=str(api),
        status=int(str(status)),
        tenant_id=None if tenant_id is None else str(tenant_id),
        event_type=None if event_type is None else str(event_type),
        event_id=None if event_id is None else str(event_id),
        reasons=tuple(
            LiveEventReason(str(r["code"]), str(r["message"]), None if r.get("field") is None else str(r["field"]))
            for r in orjson.loads(str(reasons))
        ),
        event=None if event is None else orjson.loads(str(event)),
    )
