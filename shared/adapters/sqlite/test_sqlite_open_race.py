"""Several processes opening the same new SQLite file at once, as `cloudscale run` and the CLI do.

Every embedded store opens its file through `SqliteWorker`, which switches it to WAL. Two
connections switching a new file at the same instant can meet in SQLite's deadlock
avoidance, which answers "database is locked" at once instead of waiting out the busy
timeout. These tests open fresh files from many processes released together by a barrier,
round after round, and require every open to succeed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

import shared.adapters.sqlite.worker as sqlite_worker
from shared.adapters.sqlite.worker import SqliteWorker, open_connection

PROCESSES = 8
ROUNDS = 300
"""Before the fix about one round in sixty failed on a 2-core machine: 300 rounds miss it rarely."""

BARRIER_SECONDS = 60.0


def _schema(connection: sqlite3.Connection) -> None:
    # What every embedded store's setup does: idempotent DDL, run by each opener.
    connection.executescript(
        """
        CREATE TABLE IF NOT EXISTS items (n INTEGER PRIMARY KEY, label TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS items_by_label ON items (label);
        """
    )


def _open_each_round(folder: str, rounds: int, barrier: Barrier, results: Any) -> None:
    """In a child process: every round, wait for the others, then open that round's new file."""
    errors: list[str] = []
    for round_ in range(rounds):
        barrier.wait(BARRIER_SECONDS)
        try:
            SqliteWorker(Path(folder) / f"round-{round_}.sqlite3", _schema, name="open-race").close()
        except (sqlite3.Error, OSError) as exc:
            errors.append(f"round {round_}: {exc!r}")
    results.put(errors)


def test_many_processes_open_the_same_new_file_at_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # no fork: the test process has threads
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=_open_each_round, args=(str(tmp_path), ROUNDS, barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        errors = [error for _ in processes for error in results.get(timeout=120)]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

    assert errors == [], f"{len(errors)} of {PROCESSES * ROUNDS} opens failed, e.g. {errors[:3]}"
    # (sqlite3's context manager ends a transaction; closing() closes the connection)
    with contextlib.closing(sqlite3.connect(tmp_path / f"round-{ROUNDS - 1}.sqlite3")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_opening_gives_up_within_its_bound_when_the_file_stays_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file another connection holds exclusively for longer than the busy timeout: the open
    # must fail in bounded time (and say the database is locked), not wait forever.
    monkeypatch.setattr(sqlite_worker, "BUSY_TIMEOUT_SECONDS", 0.5)
    path = tmp_path / "held.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("CREATE TABLE held (n INTEGER)")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_connection(path)
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert 0.45 <= elapsed <= 2 * 0.5 + 0.5
