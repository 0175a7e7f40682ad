"""Change-feed leases for the local host, in a SQLite file shared by every instance.

As the Cosmos DB change feed processor keeps them in its lease container: one lease per
(function, feed range), holding its `owner` (an instance's id, or none), its `checkpoint`
(the sequence number of the last change done with), `renewed_at` (the time of its last
write) and a `version` that every write increments (the ETag).

Every write is conditional, as the processor's are (`If-Match` on the ETag, and on a 412 a
re-read and a second try): the write names the version it read; when that version is gone,
the lease is read again and the write goes ahead only if the owner is still the one it
expected, otherwise it raises `LeaseLostError`. Each write is one SQLite write transaction,
so the re-read and the second try cannot be overtaken. Every write stamps `renewed_at`.

- `acquire(lease, owner)`: take a lease read as unowned, expired, or owned by someone to
  steal from; lost if another instance took it first.
- `renew`, `checkpoint`, `release`: only while still the owner, else lost: an instance whose
  lease was taken over never checkpoints over the new owner.

A checkpoint never moves backwards. Files written before leases had owners (one row per
function in `leases`) are read once: every range of the function starts from that checkpoint.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from shared.adapters.sqlite.worker import SqliteWorker

__all__ = ["Lease", "LeaseLostError", "LeaseStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    sequence   INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS feed_leases (
    function   TEXT NOT NULL,
    feed_range INTEGER NOT NULL,
    owner      TEXT,
    checkpoint INTEGER NOT NULL,
    renewed_at REAL NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (function, feed_range)
);
"""
# `leases` is the single checkpoint per function of earlier versions, kept to be read once.

_COLUMNS = "function, feed_range, owner, checkpoint, renewed_at, version"


class LeaseLostError(Exception):
    """The lease is owned by another instance now (or by nobody, when this one was to own it)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as last read or written."""

    function: str
    feed_range: int
    owner: str | None
    checkpoint: int
    renewed_at: float
    """Seconds since the epoch of the lease's last write (the lease document's timestamp)."""
    version: int
    """Incremented by every write: the ETag a conditional write names."""

    def expired(self, now: float, expiration: float) -> bool:
        """Free to take: unowned, or not written for longer than `expiration` seconds."""
        return not self.owner or self.renewed_at + expiration < now


class LeaseStore:
    """The leases of every change-feed function, in one SQLite file."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """`clock` stamps every write (seconds since the epoch, comparable across processes)."""
        self.path = path
        self._clock = clock
        self._worker = SqliteWorker(path, lambda c: c.executescript(_SCHEMA), name="leases")

    def now(self) -> float:
        """The time leases are stamped with, to judge their expiry by."""
        return self._clock()

    async def ensure(self, function: str, feed_ranges: Iterable[int]) -> None:
        """Create the leases `function` lacks, unowned, from its old single checkpoint if it had one."""
        ranges = list(feed_ranges)
        now = self._clock()

        def create(connection: sqlite3.Connection) -> None:
            row = connection.execute("SELECT sequence FROM leases WHERE name = ?", (function,)).fetchone()
            start = int(row[0]) if row else 0
            connection.executemany(
                f"INSERT OR IGNORE INTO feed_leases ({_COLUMNS}) VALUES (?, ?, NULL, ?, ?, 1)",
                [(function, feed_range, start, now) for feed_range in ranges],
            )

        await self._worker.run(create)

    async def read_all(self, function: str) -> list[Lease]:
        """Every lease of `function`, by range."""

        def read(connection: sqlite3.Connection) -> list[Lease]:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM feed_leases WHERE function = ? ORDER BY feed_range", (function,)
            ).fetchall()
            return [_lease(row) for row in rows]

        return await self._worker.run(read)

    async def checkpoints(self, function: str) -> dict[int, int]:
        """Each range's checkpoint for `function`."""
        return {lease.feed_range: lease.checkpoint for lease in await self.read_all(function)}

    async def acquire(self, lease: Lease, owner: str) -> Lease:
        """Make `owner` the owner of `lease`, unless its owner changed since it was read."""
        return await self._write(lease, expected_owner=lease.owner, owner=owner)

    async def renew(self, lease: Lease) -> Lease:
        """Stamp the lease as alive; `LeaseLostError` if its owner is no longer `lease.owner`."""
        return await self._write(lease, expected_owner=lease.owner, owner=lease.owner)

    async def checkpoint(self, lease: Lease, sequence: int) -> Lease:
        """Record that the range is done up to `sequence`, only while `lease.owner` still owns it."""
        return await self._write(lease, expected_owner=lease.owner, owner=lease.owner, checkpoint=sequence)

    async def release(self, lease: Lease) -> Lease:
        """Leave the lease unowned (for another instance to take at once), if still its owner."""
        return await self._write(lease, expected_owner=lease.owner, owner=None)

    def close(self) -> None:
        self._worker.close()

    async def _write(
        self, lease: Lease, *, expected_owner: str | None, owner: str | None, checkpoint: int | None = None
    ) -> Lease:
        now = self._clock()

        def write(connection: sqlite3.Connection) -> Lease:
            current = lease
            for _ in range(2):
                target = max(current.checkpoint, checkpoint) if checkpoint is not None else current.checkpoint
                updated = connection.execute(
                    "UPDATE feed_leases SET owner = ?, checkpoint = ?, renewed_at = ?, version = version + 1"
                    " WHERE function = ? AND feed_range = ? AND version = ?",
                    (owner, target, now, lease.function, lease.feed_range, current.version),
                ).rowcount
                if updated == 1:
                    return replace(current, owner=owner, checkpoint=target, renewed_at=now, version=current.version + 1)
                # The version read is gone (the precondition failed): read the lease again.
                row = connection.execute(
                    f"SELECT {_COLUMNS} FROM feed_leases WHERE function = ? AND feed_range = ?",
                    (lease.function, lease.feed_range),
                ).fetchone()
                if row is None:
                    raise LeaseLostError(f"the lease of {lease.function} range {lease.feed_range} is gone")
                current = _lease(row)
                if current.owner != expected_owner:
                    raise LeaseLostError(
                        f"the lease of {lease.function} range {lease.feed_range} is owned by {current.owner!r} now"
                    )
            raise AssertionError("unreachable: the second write names the version just read")  # pragma: no cover

        return await self._worker.run(write)


def _lease(row: tuple[str, int, str | None, int, float, int]) -> Lease:
    function, feed_range, owner, checkpoint, renewed_at, version = row
    return Lease(function, int(feed_range), owner, int(checkpoint), float(renewed_at), int(version))
