"""`RateLimitStore` in a SQLite file, shared by every host process on the machine.

Each update runs inside one `BEGIN IMMEDIATE` transaction (see `SqliteWorker`), which holds
the database's write lock, so a read-modify-write can never interleave with another
process's: no optimistic-concurrency retry is needed here, unlike on Table Storage.

Clients are keyed by their keyed hash, never their address, and a client idle for longer
than `client_idle_seconds` (bucket refilled, velocity window empty) is deleted: at most every
`sweep_seconds`, a bounded number of rows at a time, in the transaction of a client update.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import orjson

from shared.adapters.sqlite.worker import SqliteWorker
from shared.domain.ratelimit import WINDOW_SECONDS, ClientState, PeerWindow, SlotWindow, TokenBucket
from shared.ports import RateLimitStoreError

__all__ = ["EmbeddedRateLimitStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_key TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL,
    recent     BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (
    instance_id   TEXT PRIMARY KEY,
    window        BLOB NOT NULL,
    exchanged_at  REAL NOT NULL,
    reserved      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- One row, rewritten by each readiness probe: a committed write proves the file takes writes.
CREATE TABLE IF NOT EXISTS health_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at REAL NOT NULL
);
"""


class EmbeddedRateLimitStore:
    """Rate-limit state in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        peer_retention: float = WINDOW_SECONDS,
        client_idle_seconds: float = 3600.0,
        sweep_seconds: float = 60.0,
        sweep_rows: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`client_idle_seconds`: how long after its last request a client's row is deleted
        (see `shared.domain.ratelimit.idle_after`); `sweep_seconds` / `sweep_rows`: how often
        and how many rows at most per sweep."""
        self.path = path
        self._peer_retention = peer_retention
        self._client_idle = client_idle_seconds
        self._sweep_seconds = sweep_seconds
        self._sweep_rows = sweep_rows
        self._clock = clock
        self._next_sweep = float("-inf")
        self._worker = SqliteWorker(path, lambda c: c.executescript(_SCHEMA), name="embedded-rate-limit")

    async def update_client(self, client_key: str, change: Callable[[ClientState | None], tuple[ClientState, T]]) -> T:
        now = self._clock()
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + self._sweep_seconds

        def update(connection: sqlite3.Connection) -> T:
            if sweep:
                self._sweep(connection, now)
            row = connection.execute(
                "SELECT tokens, updated_at, recent FROM clients WHERE client_key = ?", (client_key,)
            ).fetchone()
            state = None
            if row is not None:
                state = ClientState(TokenBucket(row[0], row[1]), SlotWindow.from_list(orjson.loads(row[2])))
            new_state, result = change(state)
            connection.execute(
                "INSERT OR REPLACE INTO clients (client_key, tokens, updated_at, recent) VALUES (?, ?, ?, ?)",
                (
                    client_key,
                    new_state.bucket.tokens,
                    new_state.bucket.updated_at,
                    orjson.dumps(new_state.recent.to_list()),
                ),
            )
            return result

        return await self._run(update)

    def _sweep(self, connection: sqlite3.Connection, now: float) -> None:
        """Forget clients idle past `client_idle_seconds`, a bounded batch per sweep."""
        connection.execute(
            "DELETE FROM clients WHERE client_key IN (SELECT client_key FROM clients WHERE updated_at < ? LIMIT ?)",
            (now - self._client_idle, self._sweep_rows),
        )

    async def exchange_window(
        self,
        instance_id: str,
        window: SlotWindow,
        now: float,
        reserve: Callable[[Sequence[PeerWindow]], int],
    ) -> Sequence[PeerWindow]:
        def exchange(connection: sqlite3.Connection) -> list[PeerWindow]:
            # Instances gone for a whole window hold no live counts; forget them.
            connection.execute("DELETE FROM windows WHERE exchanged_at < ?", (now - self._peer_retention,))
            rows = connection.execute("SELECT instance_id, window, exchanged_at, reserved FROM windows").fetchall()
            peers = [PeerWindow(r[0], SlotWindow.from_list(orjson.loads(r[1])), r[2], r[3]) for r in rows]
            # Read and write in one transaction: on SQLite no other instance claims in between.
            connection.execute(
                "INSERT OR REPLACE INTO windows (instance_id, window, exchanged_at, reserved) VALUES (?, ?, ?, ?)",
                (instance_id, orjson.dumps(window.to_list()), now, reserve(peers)),
            )
            return peers

        return await self._run(exchange)

    async def check(self) -> None:
        """Commit a write (one row rewritten): every request writes this store, so a read is not enough."""
        now = time.time()
        await self._run(
            lambda c: c.execute("INSERT OR REPLACE INTO health_probe (id, written_at) VALUES (1, ?)", (now,))
        )

    async def close(self) -> None:
        self._worker.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._worker.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise RateLimitStoreError(f"the embedded rate-limit store failed: {exc}") from exc
