"""Deleting personal data from a SQLite file so that its bytes are gone, not only unlinked.

A plain `DELETE` leaves the row's bytes in the freed space of its page (and on the freelist)
until something reuses it, and in WAL mode every earlier version of the page stays in the
`-wal` file until a checkpoint resets the log. So an embedded store that erases a person:

1. turns on `PRAGMA secure_delete` on its connection (`enable_secure_delete`): SQLite then
   overwrites deleted content and freed pages with zeros (https://www.sqlite.org/pragma.html#pragma_secure_delete);
2. after the deleting transaction committed, runs `PRAGMA wal_checkpoint(TRUNCATE)`
   (`truncate_wal`): the zeroed pages are copied into the database file over the old ones,
   and the log, with every older copy of those pages, is truncated to zero bytes
   (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint).

The checkpoint cannot finish while another connection (another host process, the CLI) reads
an older snapshot: it is tried again for a short while, then left to the next checkpoint
with a warning. The erasure itself stands either way: the rows are deleted, and SQLite's
automatic checkpoints overwrite the old pages later. Blocks the filesystem freed by the
truncation are the filesystem's business (an encrypted disk covers them).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from shared.adapters.sqlite.worker import BUSY_TIMEOUT_SECONDS

__all__ = ["enable_secure_delete", "truncate_wal"]

logger = logging.getLogger(__name__)

CHECKPOINT_ATTEMPTS = 8
# Each attempt waits this long for readers and writers (SQLite's busy handler); the writer
# thread is blocked meanwhile, so the whole is kept to about two seconds.
_CHECKPOINT_BUSY_MS = 250


def enable_secure_delete(connection: sqlite3.Connection) -> None:
    """Make this connection overwrite what it deletes with zeros (a per-connection setting)."""
    connection.execute("PRAGMA secure_delete=ON")


def truncate_wal(connection: sqlite3.Connection, path: Path) -> bool:
    """Checkpoint the whole log into the database file and truncate it; True if that finished.

    Call it outside a transaction. While other connections keep it from finishing it is tried
    again `CHECKPOINT_ATTEMPTS` times; then a warning is logged and False returned (never an
    error: the deletion it follows has committed).
    """
    connection.execute(f"PRAGMA busy_timeout={_CHECKPOINT_BUSY_MS}")
    try:
        for _attempt in range(CHECKPOINT_ATTEMPTS):
            try:
                busy, _log_frames, _checkpointed = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                busy = 1
            if not busy:
                return True
            time.sleep(0.01)
    finally:
        connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    logger.warning(
        "%s: the write-ahead log could not be truncated after deleting (another connection is reading);"
        " the deleted rows' old pages stay in %s-wal until the next checkpoint",
        path,
        path.name,
    )
    return False
