"""Deleting personal data from a SQLite file so that its bytes are gone, not only unlinked.

Every embedded store that deletes personal data (the event store's erasures, the analytics
file's erasures and retention, the queue's removed dead letters) does it the same two steps,
all of them through this module:

1. `PRAGMA secure_delete=ON` on its connection (`enable_secure_delete`), set, never assumed
   (a per-connection setting whose build default differs: Debian's SQLite has it on,
   python.org's does not). A plain `DELETE` leaves the row's bytes in the page's free space
   and on the freelist until something reuses them; with the pragma SQLite overwrites deleted
   content with zeros (https://www.sqlite.org/pragma.html#pragma_secure_delete).
2. After the deleting transaction committed, `PRAGMA wal_checkpoint(TRUNCATE)`. In WAL mode
   the zeroed pages are appended to the `-wal` file, and the frames written before (which
   hold the row as it was) stay there; a plain checkpoint copies the newest pages into the
   database file but keeps the log's length, so old frames stay readable. TRUNCATE copies
   every frame back and truncates the log to zero bytes
   (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint).

The checkpoint cannot finish while another connection (another host process, the CLI) reads
a snapshot older than the log's end, or writes: each attempt waits for them a short while
(SQLite's busy handler), a few attempts are made, and then a warning is logged and False
returned, never an error: the rows are deleted either way, and the old frames are
overwritten as the log is reused. `WalTruncation` keeps such a truncation owed, so the
store's next delete (even one that removes nothing) tries again.

Two ways to run it, for where the caller is:
- `truncate_wal(connection, path)`: on the store's own writer connection, in its writer
  thread after the commit (`SqliteWorker`'s `after_commit`), where no other writer of this
  process can interleave; `WalTruncation` wraps it with the owed bookkeeping.
- `truncate_wal_file(path)`: on a connection of its own, from any thread, under the file's
  `WriterTurn` so the stores' writers queue behind it instead of spinning in SQLite's busy
  handler.
Blocks the filesystem freed by the truncation are the filesystem's business (an encrypted
disk covers them).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from shared.adapters.sqlite.worker import WriterTurn

__all__ = ["WalTruncation", "enable_secure_delete", "truncate_wal", "truncate_wal_file"]

logger = logging.getLogger(__name__)

CHECKPOINT_ATTEMPTS = 4
"""Attempts of `truncate_wal` (in a writer thread, which is blocked meanwhile: about a second)."""
CHECKPOINT_BUSY_MS = 250
"""How long each attempt of `truncate_wal` waits for other connections (SQLite's busy handler)."""
_PAUSE_SECONDS = 0.01


def enable_secure_delete(connection: sqlite3.Connection) -> None:
    """Make this connection overwrite what it deletes with zeros (a per-connection setting)."""
    connection.execute("PRAGMA secure_delete=ON")


def truncate_wal(connection: sqlite3.Connection, path: Path) -> bool:
    """Checkpoint the whole log of `path` into the file and truncate it; True if that finished.

    On `connection`, outside a transaction. Tried `CHECKPOINT_ATTEMPTS` times, each waiting
    `CHECKPOINT_BUSY_MS` for other connections; the connection's own busy timeout is restored
    after. False and a warning when still blocked; raises `sqlite3.Error` for anything but a
    busy file.
    """
    patience = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
    connection.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
    try:
        return _attempt(path, lambda: _checkpoint(connection), CHECKPOINT_ATTEMPTS, _PAUSE_SECONDS)
    finally:
        connection.execute(f"PRAGMA busy_timeout={patience}")


def truncate_wal_file(path: Path, *, attempts: int = 5, pause_seconds: float = 0.1, busy_seconds: float = 1.0) -> bool:
    """`truncate_wal` on a connection of its own, under the file's `WriterTurn`.

    Blocking (run it in a thread). Each attempt waits up to `busy_seconds` for other
    processes' readers and writers, `pause_seconds` apart; False and a warning after
    `attempts` blocked ones. Raises `sqlite3.Error` for anything but a busy file (a missing
    or damaged file).
    """
    turn = WriterTurn(path)

    def once() -> bool:
        with turn, contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=busy_seconds)) as db:
            return _checkpoint(db)

    try:
        return _attempt(path, once, attempts, pause_seconds)
    finally:
        turn.close()


class WalTruncation:
    """When a store's writer thread owes its file a log truncation.

    Touched on the writer thread only: `deleted` by the jobs of a transaction, `after_commit`
    by the worker's after-commit hook. A truncation blocked by a reader stays owed, and the
    next delete (even one that removes nothing) tries again, never every write (each attempt
    waits for the reader). A new one owes a truncation: a killed predecessor may have left one.
    """

    def __init__(self, path: Path) -> None:
        """For the SQLite file at `path` (named in the warning)."""
        self.path = path
        self._due = False
        # Owed from the start: a process killed between a delete's commit and its truncation
        # left the deleted rows in the log, and nothing else says so; the first delete of this
        # one (an erasure run again finds nothing, yet comes here) truncates it.
        self._owed = True

    def deleted(self, rows: int) -> None:
        """A job of the current transaction deleted `rows` rows: truncate after its commit."""
        if rows or self._owed:
            self._due = True

    def after_commit(self, connection: sqlite3.Connection) -> None:
        """Truncate the log if a delete in the committed transaction asked for it."""
        if self._due:
            self._due = False
            self._owed = not truncate_wal(connection, self.path)


def _checkpoint(connection: sqlite3.Connection) -> bool:
    """One `wal_checkpoint(TRUNCATE)`: True if the log was emptied, False if a connection blocked it."""
    try:
        busy, _log_frames, _checkpointed = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError as exc:
        # Another connection is checkpointing, or holds the lock past the busy timeout.
        if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise
        return False
    return not busy


def _attempt(path: Path, checkpoint: Callable[[], bool], attempts: int, pause_seconds: float) -> bool:
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause_seconds)
        if checkpoint():
            return True
    logger.warning(
        "%s: the write-ahead log could not be truncated (another connection kept reading or writing the file);"
        " pages deleted before stay in %s-wal until the log is reused or truncated",
        path,
        path.name,
    )
    return False
