"""Durable change-feed checkpoints ("leases") for the local host, in a SQLite file.

One row per change-feed function: the sequence number of the last change it is done with.
The checkpoint is written (and committed with `synchronous=FULL`) only after the function
returned, or after its retry policy was spent on a batch that kept failing (the Functions
host skips such a batch too; reconciliation re-sends it). After a crash or a restart the
feed resumes right after the last batch known to be done: a batch in flight at the crash is
delivered again (the analytics store is idempotent on (`TenantId`, `EventId`)).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shared.adapters.sqlite.worker import SqliteWorker

__all__ = ["LeaseStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    sequence   INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


class LeaseStore:
    """Checkpoints by function name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, lambda c: c.executescript(_SCHEMA), name="leases")

    async def checkpoint(self, name: str) -> int:
        """The last sequence number `name` processed (0 before its first batch)."""

        def read(connection: sqlite3.Connection) -> int:
            row = connection.execute("SELECT sequence FROM leases WHERE name = ?", (name,)).fetchone()
            return int(row[0]) if row else 0

        return await self._worker.run(read)

    async def advance(self, name: str, sequence: int) -> None:
        """Record that `name` processed everything up to `sequence` (never moves backwards)."""

        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO leases (name, sequence) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET"
                " sequence = max(sequence, excluded.sequence),"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (name, sequence),
            )

        await self._worker.run(write)

    def close(self) -> None:
        self._worker.close()
