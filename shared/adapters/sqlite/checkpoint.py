"""Emptying a SQLite file's write-ahead log, so that deleted content leaves no copy in the -wal file.

With `PRAGMA secure_delete=ON` a DELETE overwrites the row's bytes with zeros in the pages it
writes; in WAL mode those pages are appended to the -wal file, and the frames written before
(which hold the row as it was) stay there. A checkpoint copies the newest version of each page
into the database file, but the log keeps its length: the old frames beyond the point where
writing restarts can still be read. `PRAGMA wal_checkpoint(TRUNCATE)` copies every frame back
and then truncates the log to zero bytes (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint).

It has to wait until no connection writes and every reader reads the newest snapshot, so a
reader in another process (the CLI, a second host worker) can hold it up. It is tried a few
times, briefly, and otherwise left: the old frames are overwritten as the log is reused, and
the next truncation removes them. Callers log that; it is never a reason to fail.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from shared.adapters.sqlite.worker import WriterTurn

__all__ = ["truncate_wal"]


def truncate_wal(path: Path, *, attempts: int = 5, pause_seconds: float = 0.1, busy_seconds: float = 1.0) -> bool:
    """Run `PRAGMA wal_checkpoint(TRUNCATE)` on `path`; True once the log was emptied.

    Blocking (run it in a thread). Takes the file's `WriterTurn` first, so the embedded stores'
    own writers queue behind it instead of spinning in SQLite's busy handler; each attempt then
    waits up to `busy_seconds` for other processes' readers and writers. Returns False after
    `attempts` attempts that were still blocked. Raises `sqlite3.Error` for anything but a
    busy file (a missing or damaged file).
    """
    turn = WriterTurn(path)
    try:
        for attempt in range(attempts):
            if attempt:
                time.sleep(pause_seconds)
            with turn, contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=busy_seconds)) as db:
                try:
                    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                        raise
                    continue
            if not busy:
                return True
        return False
    finally:
        turn.close()
