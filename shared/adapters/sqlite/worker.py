"""One SQLite connection on its own thread, serving asyncio callers with group commit.

Embedded adapters need durable commits (202 means the event is on disk) without blocking
the event loop, and they need them fast. Each `SqliteWorker` owns one connection on one
thread. Jobs queued while a transaction is being written wait, and then run together in the
next transaction: one `COMMIT` (one fsync) for all of them, each inside its own SAVEPOINT
so a failing job rolls back alone and its neighbours still commit.

Timeline of a group commit::

    caller A: run(job_a) ──┐
    caller B: run(job_b) ──┼─> thread: BEGIN IMMEDIATE; SAVEPOINT; job_a; RELEASE;
    caller C: run(job_c) ──┘           SAVEPOINT; job_b; RELEASE; ...; COMMIT
                                        └─> A, B and C resume, each with its own result

Every job's result is handed back only after the COMMIT succeeded, so a caller that got
a result knows its write is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "LazySqliteWorker",
    "SqliteWorker",
    "SqliteWorkerClosedError",
    "StoreFileError",
    "WriterTurn",
    "check_readable",
    "open_connection",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)


class StoreFileError(sqlite3.DatabaseError):
    """An embedded store's file cannot be used as it is; the message names it and says what to do.

    A `sqlite3.DatabaseError`, so the adapters that translate SQLite's errors into their port's
    errors translate this one too.
    """


MAX_JOBS_PER_TRANSACTION = 512
# How long a transaction waits for another process's write lock before failing. Writers
# hold it for milliseconds; a caller waiting longer is better told to retry (a 503) than
# left hanging.
BUSY_TIMEOUT_SECONDS = 5.0


class SqliteWorkerClosedError(sqlite3.Error):
    """The worker was closed; no more jobs are taken."""


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()


class WriterTurn:
    """Whose turn it is to write a SQLite file, among the workers of every process on this machine.

    SQLite serialises writers with its own lock, but a writer that finds it taken waits in
    SQLite's busy handler, which sleeps 1, 2, 5, 10 ... 100 ms between tries while the others
    take the lock again and again: with several host instances writing one file hard (ingest
    inserting batches while the process stage receives and deletes), a writer could wait out
    the whole busy timeout and its request got 503. So each worker first takes an exclusive
    `flock` on a lock file beside the database, held from `BEGIN IMMEDIATE` to `COMMIT`: the
    kernel wakes a waiter the moment it is released, and SQLite's own lock is then free
    whenever one of ours asks. Other connections (the CLI) still meet SQLite's lock and its
    busy timeout. A turn lasts one transaction, which never waits for another of ours, so it
    is bounded by the transaction's own time (and the busy timeout, against the CLI); the
    kernel releases the lock of a process that dies, however it dies.
    """

    def __init__(self, database: Path) -> None:
        """Open (creating) `<database>.writer-lock`; raises `OSError` when it cannot be."""
        self.path = database.with_name(database.name + ".writer-lock")
        self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        fcntl.flock(self._descriptor, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self._descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (ending the turn if one is held)."""
        with contextlib.suppress(OSError):
            os.close(self._descriptor)


class SqliteWorker:
    """Runs functions against one SQLite database file, each in a committed transaction."""

    def __init__(
        self,
        path: Path,
        setup: Callable[[sqlite3.Connection], object],
        *,
        name: str = "sqlite",
        after_commit: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        """Open `path` (creating folders), apply durable pragmas, then run `setup` (schema).

        `after_commit(connection)` runs in the worker after each committed transaction and
        before its callers hear of it; an error there is logged, and the commit stands.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._after_commit = after_commit
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._closed = False
        ready: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, args=(setup, ready), name=name, daemon=True)
        self._thread.start()
        error = ready.get()
        if error is not None:
            raise error

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in a transaction; return its result once committed."""
        if self._closed:
            raise SqliteWorkerClosedError(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, loop, future))
        return await future

    def close(self) -> None:
        """Finish queued jobs, then close the connection. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(_STOP)
        self._thread.join()

    def _serve(
        self, setup: Callable[[sqlite3.Connection], object], ready: queue.SimpleQueue[BaseException | None]
    ) -> None:
        try:
            connection = open_connection(self.path)
        except BaseException as exc:  # handed to the constructor, which re-raises it
            ready.put(_name_the_file(self.path, exc))
            return
        try:
            turn = WriterTurn(self.path)
        except OSError as exc:
            connection.close()
            ready.put(sqlite3.OperationalError(f"cannot open {self.path}'s writer lock: {exc.strerror or exc}"))
            return
        try:
            with turn:
                setup(connection)
        except BaseException as exc:
            turn.close()
            connection.close()
            ready.put(_name_the_file(self.path, exc))
            return
        ready.put(None)
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._take_batch()
                if batch:
                    self._run_batch(connection, turn, batch)
        finally:
            turn.close()
            connection.close()

    def _take_batch(self) -> tuple[list[_Job], bool]:
        first = self._jobs.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < MAX_JOBS_PER_TRANSACTION:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return _as_jobs(batch), True
            batch.append(job)
        return _as_jobs(batch), False

    def _run_batch(self, connection: sqlite3.Connection, turn: WriterTurn, batch: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with turn:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    for job in batch:
                        outcomes.append(_run_in_savepoint(connection, job.fn))
                    connection.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                    raise
            if self._after_commit is not None:
                try:
                    self._after_commit(connection)
                except Exception:
                    logger.exception("after committing to %s", self.path)
        except BaseException as exc:
            # The transaction as a whole failed (disk full, database locked for too long):
            # nothing in it is durable, so every job in it gets the error.
            outcomes = [(False, exc)] * len(batch)
        # One wake-up per event loop for the whole batch, not one per job: each
        # `call_soon_threadsafe` writes to the loop's self-pipe (a system call, and a wake-up
        # the loop reads back), which showed in profiles at ingest's request rates.
        settlements: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            settlements.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, settled in settlements.items():
            loop.call_soon_threadsafe(_settle_all, settled)


def check_readable(path: Path) -> None:
    """Raise `StoreFileError` naming `path` if it exists and is not a readable SQLite database.

    A cheap check for startup (the header and the schema are read, not every page): it tells
    a file that is not a database, or whose schema is damaged, from an outage to ride out.
    """
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise _name_the_file(path, exc) from None


def _name_the_file(path: Path, error: BaseException) -> BaseException:
    """A damaged file becomes a `StoreFileError` naming it; other errors pass unchanged."""
    if isinstance(error, StoreFileError):
        return error
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
        damaged = StoreFileError(
            f"{path} is not a usable SQLite database ({error}). Stop the host, move the file aside (with its -wal"
            " and -shm files) and restore it from a backup, or start without it: see docs/architecture.md,"
            " 'Embedded queue'."
        )
        damaged.__cause__ = error
        return damaged
    return error


def open_connection(path: Path) -> sqlite3.Connection:
    """A connection with the settings every embedded store relies on.

    WAL lets readers in other processes (the CLI, a second host worker) work during
    writes; synchronous=FULL makes each COMMIT survive a power cut, not only a crash;
    autocommit mode (isolation_level=None) leaves transactions to us. Every embedded store
    opens its file here, so this is the one place that switches a file to WAL.

    Raises `sqlite3.OperationalError` ("database is locked") when the file stays locked for
    longer than about `BUSY_TIMEOUT_SECONDS` (at most twice that).
    """
    # `timeout` installs the busy timeout at connect, before any statement: every lock wait
    # below goes through it.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        _switch_to_wal(connection, path)
        connection.execute("PRAGMA synchronous=FULL")
    except BaseException:
        # Switching to WAL needs a lock another process may hold, or the file may not be a
        # database: close at once, or the file stays open for as long as the error is kept.
        connection.close()
        raise
    return connection


def _switch_to_wal(connection: sqlite3.Connection, path: Path) -> None:
    """`PRAGMA journal_mode=WAL`, tried again while another connection holds the lock it needs.

    On a new file the switch writes the header, so it needs the write lock. When several
    processes open the same new file at once, one can hold a read lock while another holds
    the write lock and waits for the readers to leave: SQLite then answers "database is
    locked" at once to the reader instead of calling its busy handler, because both waiting
    would deadlock (https://www.sqlite.org/c3ref/busy_handler.html: "If SQLite determines
    that invoking the busy handler could result in a deadlock, it will go ahead and return
    SQLITE_BUSY"). The reader drops its lock with the failed statement, so
    trying again a few milliseconds later succeeds; the pauses are jittered so that
    contenders do not meet again, and the whole switch is bounded by the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    pause = 0.002
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        else:
            if str(mode).lower() == "wal":
                return
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(f"{path} stayed in journal mode {mode!r}: WAL was refused")
        time.sleep(min(random.uniform(pause / 2, pause), max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.1)


def _run_in_savepoint(connection: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> tuple[bool, Any]:
    connection.execute("SAVEPOINT job")
    try:
        result = fn(connection)
    except Exception as exc:
        if not connection.in_transaction:
            # SQLite rolled the whole transaction back itself (a full disk, an I/O error: "Response
            # To Errors Within A Transaction", https://www.sqlite.org/lang_transaction.html), so the
            # savepoint is gone: the batch fails with this job's own error, not "no such savepoint".
            raise
        connection.execute("ROLLBACK TO job")
        connection.execute("RELEASE job")
        return False, exc
    connection.execute("RELEASE job")
    return True, result


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _as_jobs(items: list[_Job | object]) -> list[_Job]:
    return [item for item in items if isinstance(item, _Job)]


class LazySqliteWorker:
    """A `SqliteWorker` opened on first use, in a thread, and closed for good once closed.

    For stores the container builds in every worker process whether or not they are used:
    nothing is opened at construction; opening (which creates the file and its schema) runs
    off the event loop, and a file that cannot be opened fails the call that needed it with
    `sqlite3.Error`/`OSError` (the next call tries again), as an unreachable service would.
    After `close`, `run` raises `SqliteWorkerClosedError`.
    """

    def __init__(
        self,
        path: Path,
        setup: Callable[[sqlite3.Connection], object],
        *,
        name: str,
        after_commit: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        self.path = path
        self._setup = setup
        self._name = name
        self._after_commit = after_commit
        self._worker: SqliteWorker | None = None
        self._lock = threading.Lock()  # Not an asyncio.Lock: opening runs in a thread.
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`SqliteWorker.run`, opening the file first if this is the first call."""
        worker = self._worker
        if worker is None:
            worker = await asyncio.to_thread(self._open)
        return await worker.run(fn)

    async def close(self) -> None:
        """Finish pending jobs and close the file (joining the writer thread off the event loop)."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.close)

    def _open(self) -> SqliteWorker:
        with self._lock:
            if self._closed:
                raise SqliteWorkerClosedError(f"{self.path} is closed")
            if self._worker is None:
                self._worker = SqliteWorker(self.path, self._setup, name=self._name, after_commit=self._after_commit)
            return self._worker
