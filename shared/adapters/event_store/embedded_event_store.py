"""`EventStore` in a SQLite file, with a change feed: the embedded stand-in for Cosmos DB.

One row per stored event, unique per (tenant, event id). `save` is an INSERT OR IGNORE, so a
redelivered message changes nothing: not the document, not `stored_at`, not its sequence
number. Writes go through a `SqliteWorker` (one writer thread, group commit), so `save`
returns only once the row is durable.

`seq` is the change feed's cursor. SQLite admits one writer at a time and AUTOINCREMENT never
hands out a number twice, so sequence numbers increase in commit order: a reader that has
seen everything up to N never later finds a new row at or below N. `changes(after, limit)`
pages through the feed in that order.

The feed is split into ranges by partition key (`feed_ranges`: the tenant's stable hash, a
count fixed when the file is created), as Cosmos DB splits its change feed by partition key
range: `changes(after, limit, feed_range=r)` pages through one range, in commit order, so a
change-feed reader per range (one lease each) keeps each tenant's events in order.

Erasing a data subject deletes rows (the only deletes this file sees), with `secure_delete`
on and the write-ahead log truncated afterwards, so the bytes are gone from both files
(`shared.adapters.sqlite.secure_delete`). The feed then has gaps, which it already allows:
AUTOINCREMENT never hands a deleted row's number out again, so a reader past N still never
finds a new row at or below N.

The file is opened on first use, not at construction, so an unavailable disk surfaces as
`EventStoreError` from the call that needed it (and the next call tries again), exactly
like an unreachable Cosmos DB account.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from shared.adapters.event_store.feed_ranges import DEFAULT_FEED_RANGES, feed_range_of, prepare_feed_ranges
from shared.adapters.sqlite.secure_delete import WalTruncation, enable_secure_delete
from shared.adapters.sqlite.worker import LazySqliteWorker
from shared.domain.privacy import Subject
from shared.domain.stored_event import StoredEvent
from shared.ports import EventStoreError

__all__ = ["EVENTS_FILE", "EmbeddedEventStore", "ChangeFeedEntry"]

EVENTS_FILE = "events.sqlite3"
"""The store file's name in the data folder (`CLOUDSCALE_DATA_DIR`)."""

T = TypeVar("T")

SUBJECT_PAGE_SIZE = 1000
"""Events read per page of `subject_events` (about 1 MB): each page is one scan of the file."""

_SUBJECT_PATHS: dict[str, str] = {"userId": "$.userId", "anonymousId": "$.anonymousId"}

# The event's timestamp as an instant (julianday(), exact to the millisecond), so that
# timestamps written with different offsets, or with and without fractions, compare by time
# and not as text.
_INSTANT = "coalesce(julianday(json_extract(document, '$.timestamp')), 0.0)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    document  BLOB NOT NULL,
    stored_at REAL NOT NULL,
    feed_range INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, event_id)
);
"""


@dataclass(frozen=True, slots=True)
class ChangeFeedEntry:
    """One entry of the change feed: a document as it was first stored.

    The stored JSON as it is, not read back through the model: Cosmos DB's change feed hands
    over documents as they are stored too, and the function validates what it takes (once,
    instead of once here and again there).
    """

    sequence: int
    stored_at: float
    document: dict[str, Any]

    @property
    def event(self) -> StoredEvent:
        """The document read as a stored event (validated at each call; raises `ValidationError`)."""
        return StoredEvent.from_document(self.document)


class EmbeddedEventStore:
    """Stored events and their change feed in one SQLite file."""

    def __init__(
        self, path: Path, *, clock: Callable[[], float] = time.time, feed_ranges: int = DEFAULT_FEED_RANGES
    ) -> None:
        """Nothing is opened here: the file (and its folder) is created on first use.

        `feed_ranges` is the change feed's range count for a new file; a file keeps the count
        it was created with.
        """
        self.path = path
        self._clock = clock
        self._wanted_ranges = feed_ranges
        self._ranges = 0  # known once the file is open
        self._file = LazySqliteWorker(path, self._prepare, name="embedded-event-store", after_commit=self._after_commit)
        self._change_listeners: list[Callable[[], None]] = []
        # Writer thread only: a committed deletion truncates the WAL (or owes it to the next).
        self._wal_truncation = WalTruncation(path)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` (in the writer's event loop) after a save stored a new event, so a
        change-feed reader in this process wakes at once instead of polling."""
        self._change_listeners.append(listener)

    async def save(self, event: StoredEvent) -> bool:
        """Store `event` unless (tenant, id) is already stored; True if this call stored it."""
        return (await self.save_many([event]))[0]

    async def save_many(self, events: Sequence[StoredEvent]) -> list[bool]:
        """`save` for each event, in one transaction (all or none are written)."""
        now = self._clock()
        rows = [(event.tenant_id, event.id, orjson.dumps(event.to_document()), now) for event in events]

        def insert(connection: sqlite3.Connection) -> list[bool]:
            return [
                connection.execute(
                    "INSERT OR IGNORE INTO events (tenant_id, event_id, document, stored_at, feed_range)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (*row, feed_range_of(row[0], self._ranges)),
                ).rowcount
                == 1
                for row in rows
            ]

        stored = await self._run("store events", insert)
        if any(stored):
            for listener in self._change_listeners:
                listener()
        return stored

    async def get(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        def read(connection: sqlite3.Connection) -> bytes | None:
            found = connection.execute(
                "SELECT document FROM events WHERE tenant_id = ? AND event_id = ?", (tenant_id, event_id)
            ).fetchone()
            return bytes(found[0]) if found is not None else None

        document = await self._run("read an event", read)
        return StoredEvent.from_document(orjson.loads(document)) if document is not None else None

    async def feed_ranges(self) -> int:
        """How many ranges the change feed is split into (fixed for the file)."""
        await self.check()
        return self._ranges

    async def changes(self, after: int, limit: int, feed_range: int | None = None) -> list[ChangeFeedEntry]:
        """Up to `limit` stored events with a sequence number above `after`, in commit order;
        only those of `feed_range` when given."""

        def read(connection: sqlite3.Connection) -> list[tuple[int, float, bytes]]:
            if feed_range is None:
                return connection.execute(
                    "SELECT seq, stored_at, document FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
                ).fetchall()
            return connection.execute(
                "SELECT seq, stored_at, document FROM events WHERE feed_range = ? AND seq > ? ORDER BY seq LIMIT ?",
                (feed_range, after, limit),
            ).fetchall()

        rows = await self._run("read the change feed", read)
        return [
            ChangeFeedEntry(sequence=seq, stored_at=stored_at, document=orjson.loads(document))
            for seq, stored_at, document in rows
        ]

    async def hourly_counts(self, start: datetime, end: datetime) -> dict[datetime, int]:
        """Stored events per hour of their commit time in [start, end)."""

        def count(connection: sqlite3.Connection) -> list[tuple[int, int]]:
            return connection.execute(
                "SELECT CAST(stored_at / 3600 AS INTEGER), count(*) FROM events"
                " WHERE stored_at >= ? AND stored_at < ? GROUP BY 1",
                (start.timestamp(), end.timestamp()),
            ).fetchall()

        rows = await self._run("count stored events", count)
        return {datetime.fromtimestamp(hour * 3600, UTC): number for hour, number in rows}

    async def stored_between(self, start: datetime, end: datetime) -> list[tuple[StoredEvent, datetime]]:
        """Every event committed in [start, end), in commit order, with its commit time."""

        def read(connection: sqlite3.Connection) -> list[tuple[float, bytes]]:
            return connection.execute(
                "SELECT stored_at, document FROM events WHERE stored_at >= ? AND stored_at < ? ORDER BY seq",
                (start.timestamp(), end.timestamp()),
            ).fetchall()

        rows = await self._run("read stored events", read)
        return [
            (StoredEvent.from_document(orjson.loads(document)), datetime.fromtimestamp(stored_at, UTC))
            for stored_at, document in rows
        ]

    async def last_sequence(self) -> int:
        """The highest sequence number stored, 0 when the store is empty."""
        return await self._run(
            "read the last sequence number",
            lambda c: int(c.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]),
        )

    async def count_subject_events(self, subject: Subject) -> int:
        """How many events of the subject are stored."""
        where, parameters = _subject_filter(subject)
        return await self._run(
            "count a subject's events",
            lambda c: int(c.execute(f"SELECT count(*) FROM events WHERE {where}", parameters).fetchone()[0]),
        )

    async def subject_events(self, subject: Subject) -> AsyncIterator[StoredEvent]:
        """Every event of the subject, oldest `timestamp` first (ties in commit order), a page at a time.

        Keyset paging on (the timestamp as an instant, seq): each page is one short read, so
        nothing holds the file between pages, and an event deleted meanwhile is simply not read.
        """
        where, parameters = _subject_filter(subject)
        after: tuple[float, int] = (-1.0, 0)  # below every instant: julianday() is positive
        while True:

            def read(connection: sqlite3.Connection, key: tuple[float, int] = after) -> list[tuple[float, int, bytes]]:
                return connection.execute(
                    f"SELECT {_INSTANT} AS instant, seq, document FROM events"
                    f" WHERE {where} AND ({_INSTANT}, seq) > (?, ?) ORDER BY instant, seq LIMIT ?",
                    (*parameters, *key, SUBJECT_PAGE_SIZE),
                ).fetchall()

            rows = await self._run("read a subject's events", read)
            for _instant, _seq, document in rows:
                yield StoredEvent.from_document(orjson.loads(document))
            if len(rows) < SUBJECT_PAGE_SIZE:
                return
            after = (rows[-1][0], rows[-1][1])

    async def erase_subject_events(self, subject: Subject) -> int:
        """Delete the subject's events, overwriting their bytes (see `shared.adapters.sqlite.secure_delete`)."""
        where, parameters = _subject_filter(subject)

        def erase(connection: sqlite3.Connection) -> int:
            deleted = connection.execute(f"DELETE FROM events WHERE {where}", parameters).rowcount
            self._wal_truncation.deleted(deleted)
            return deleted

        return await self._run("erase a subject's events", erase)

    async def delete_events(self, tenant_id: str, event_ids: Sequence[str]) -> int:
        """Delete these events of the tenant (absent ones skipped), overwriting their bytes."""
        unique = sorted(set(event_ids))

        def delete(connection: sqlite3.Connection) -> int:
            deleted = connection.executemany(
                "DELETE FROM events WHERE tenant_id = ? AND event_id = ?", [(tenant_id, i) for i in unique]
            ).rowcount
            self._wal_truncation.deleted(deleted)
            return deleted

        return await self._run("delete events", delete) if unique else 0

    async def check(self) -> None:
        """Open the file if needed and take its write lock once; raise `EventStoreError` if that fails."""
        await self._run("check the store", lambda c: c.execute("SELECT 1 FROM events LIMIT 1").fetchall())

    async def close(self) -> None:
        """Finish pending writes and close the file. Later calls raise `EventStoreError`."""
        await self._file.close()

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._file.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise EventStoreError(f"the embedded event store ({self.path}) could not {action}: {exc}") from exc

    def _prepare(self, connection: sqlite3.Connection) -> None:
        connection.executescript(_SCHEMA)
        # Only erasures delete from this file: what they delete is personal data, so its bytes are zeroed.
        enable_secure_delete(connection)
        self._ranges = prepare_feed_ranges(connection, self._wanted_ranges)

    def _after_commit(self, connection: sqlite3.Connection) -> None:
        # In the writer thread, outside any transaction (a checkpoint cannot run inside one),
        # before the erasing caller hears that its transaction committed.
        self._wal_truncation.after_commit(connection)


def _subject_filter(subject: Subject) -> tuple[str, tuple[str, str, str]]:
    """The WHERE clause (and its parameters) of one subject's events.

    The identifier is compared as JSON text (`->`, the field as the document holds it, against
    the value as orjson writes it, as `save_many` did), not as `json_extract`'s SQL text: that
    one ends at a NUL, so `u\0x` would read as `u`, and erasing `u` would delete `u\0x`'s
    events while erasing `u\0x` found nothing.

    No index serves it: erasures and exports are rare, and an index on the identifier (an
    expression index on the document) would be written by every save, the hot path, for
    them. A full scan is cheap enough: 0.32 s for 200,000 events (220 MB) on a shared
    2-core machine, so about 1.6 s per million.
    """
    return "tenant_id = ? AND document -> ? = ?", (
        subject.tenant_id,
        _SUBJECT_PATHS[subject.field],
        orjson.dumps(subject.value).decode(),
    )
