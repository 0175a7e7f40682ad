"""Group commit: jobs queued together share a transaction but fail alone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from shared.adapters.sqlite.worker import LazySqliteWorker, SqliteWorker, SqliteWorkerClosedError, open_connection


def schema(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TABLE IF NOT EXISTS items (n INTEGER PRIMARY KEY)")


def insert(n: int) -> object:
    return lambda connection: connection.execute("INSERT INTO items (n) VALUES (?)", (n,)).rowcount


async def test_a_failing_job_rolls_back_alone(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "db.sqlite3", schema)
    try:
        # GIVEN jobs queued at once, one of which violates the primary key
        jobs = [insert(1), insert(2), insert(1), insert(3)]

        results = await asyncio.gather(*(worker.run(job) for job in jobs), return_exceptions=True)  # type: ignore[arg-type]

        # THEN only that one failed, and its neighbours are committed
        assert [isinstance(r, sqlite3.IntegrityError) for r in results] == [False, False, True, False]
        rows = await worker.run(lambda c: [r[0] for r in c.execute("SELECT n FROM items ORDER BY n")])
        assert rows == [1, 2, 3]
    finally:
        worker.close()


async def test_results_are_committed_and_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    worker = SqliteWorker(path, schema)
    try:
        await asyncio.gather(*(worker.run(insert(n)) for n in range(200)))  # type: ignore[arg-type]

        with contextlib.closing(sqlite3.connect(path)) as other:
            assert other.execute("SELECT count(*) FROM items").fetchone()[0] == 200
    finally:
        worker.close()


async def test_a_locked_database_fails_the_transaction_instead_of_hanging_forever(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    worker = SqliteWorker(path, schema)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")

        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await worker.run(insert(1))  # type: ignore[arg-type]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        worker.close()


async def test_a_closed_worker_refuses_jobs(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "db.sqlite3", schema)
    worker.close()

    with pytest.raises(SqliteWorkerClosedError):
        await worker.run(insert(1))  # type: ignore[arg-type]


def test_a_bad_schema_fails_the_constructor(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        SqliteWorker(tmp_path / "db.sqlite3", lambda c: c.execute("CREATE TABLE broken ("))


def open_descriptors_on(path: Path) -> list[str]:
    """This process's open file descriptors on `path` (Linux: /proc/self/fd)."""
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                found.append(fd.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads open descriptors from /proc")
def test_a_file_that_cannot_be_opened_as_a_store_is_not_left_open(tmp_path: Path) -> None:
    # GIVEN a file that is not a SQLite database
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"not a database" * 100)

    # WHEN opening it fails, and the error is kept (as a future or a log record keeps it)
    with pytest.raises(sqlite3.DatabaseError) as kept:
        open_connection(path)

    # THEN the file is closed already, not whenever the error is collected
    assert kept.value is not None
    assert open_descriptors_on(path) == []


async def test_a_writer_waits_its_turn_behind_another_workers_transaction_instead_of_timing_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two workers on one file (as two host instances have), whose SQLite busy timeout is short
    monkeypatch.setattr("shared.adapters.sqlite.worker.BUSY_TIMEOUT_SECONDS", 0.2)
    path = tmp_path / "db.sqlite3"
    first = SqliteWorker(path, schema)
    second = SqliteWorker(path, schema)
    try:
        holding = asyncio.Event()

        def long_transaction(connection: sqlite3.Connection) -> None:
            connection.execute("INSERT INTO items (n) VALUES (1)")
            asyncio.run_coroutine_threadsafe(_set(holding), loop)
            time.sleep(1.0)  # five busy timeouts

        loop = asyncio.get_running_loop()
        held = asyncio.ensure_future(first.run(long_transaction))
        await holding.wait()

        # WHEN the second writes while the first's transaction runs
        written = await second.run(lambda c: c.execute("INSERT INTO items (n) VALUES (2)").rowcount)

        # THEN it waited for the turn and wrote (SQLite's busy handler alone gave up: "database is locked")
        assert written == 1
        await held
        rows = await second.run(lambda c: [r[0] for r in c.execute("SELECT n FROM items ORDER BY n")])
        assert rows == [1, 2]
    finally:
        first.close()
        second.close()


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_a_lazy_worker_opens_on_first_use_and_stays_closed_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "folder" / "lazy.sqlite3"
    lazy = LazySqliteWorker(path, lambda c: c.execute("CREATE TABLE t (x)"), name="lazy-test")
    assert not path.exists()

    await lazy.run(lambda c: c.execute("INSERT INTO t VALUES (1)"))
    assert path.exists()
    await lazy.close()

    with pytest.raises(SqliteWorkerClosedError):
        await lazy.run(lambda c: c.execute("SELECT x FROM t").fetchall())
    assert lazy.closed
