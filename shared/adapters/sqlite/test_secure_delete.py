"""`secure_delete` and the WAL truncation on a real SQLite file, whatever SQLite's build default is.

Some builds (Debian's) compile `SQLITE_SECURE_DELETE` in, so a store that forgot the pragma would
pass there and leak elsewhere: these tests start from `secure_delete=OFF` explicitly. Both ways
of truncating are checked alike: on the writer's own connection (`truncate_wal`, what the event
store and analytics run after a commit) and on a connection of its own (`truncate_wal_file`,
what the queue runs after removing dead letters).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.adapters.sqlite import secure_delete
from shared.adapters.sqlite.secure_delete import WalTruncation, enable_secure_delete, truncate_wal, truncate_wal_file
from shared.adapters.sqlite.worker import BUSY_TIMEOUT_SECONDS, open_connection

MARKER = b"marker-5f1c0e7a"

Truncate = Callable[[sqlite3.Connection, Path], bool]


def on_own_connection(connection: sqlite3.Connection, path: Path) -> bool:
    return truncate_wal(connection, path)


def on_separate_connection(_connection: sqlite3.Connection, path: Path) -> bool:
    return truncate_wal_file(path, attempts=2, pause_seconds=0.01, busy_seconds=0.05)


BOTH_WAYS = pytest.mark.parametrize("truncate", [on_own_connection, on_separate_connection])


def files_bytes(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def delete_marked_row(path: Path, truncate: Truncate, *, secure: bool) -> bytes:
    """Store rows with one marked in the middle of a page, delete it, truncate the log; the files' bytes."""
    with contextlib.closing(open_connection(path)) as connection:
        connection.execute("PRAGMA secure_delete=OFF")
        if secure:
            enable_secure_delete(connection)
        connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
        with connection:
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO rows (id, body) VALUES (?, ?)",
                [(n, (MARKER if n == 20 else b"kept") + b"." * 300) for n in range(40)],
            )
        connection.execute("DELETE FROM rows WHERE id = 20")
        assert truncate(connection, path) is True
        assert path.with_name(path.name + "-wal").stat().st_size == 0
        return files_bytes(path)


@BOTH_WAYS
def test_secure_delete_and_the_truncated_log_leave_no_trace(tmp_path: Path, truncate: Truncate) -> None:
    assert MARKER not in delete_marked_row(tmp_path / "secure.sqlite3", truncate, secure=True)


def test_without_secure_delete_the_deleted_bytes_stay_in_the_file(tmp_path: Path) -> None:
    # What the test above guards against: a plain DELETE only unlinks the row.
    assert MARKER in delete_marked_row(tmp_path / "plain.sqlite3", on_own_connection, secure=False)


@contextlib.contextmanager
def reader_on_an_old_snapshot(path: Path, writer: sqlite3.Connection) -> Iterator[None]:
    """Another connection reading a snapshot older than the log's end (as the CLI may be)."""
    with contextlib.closing(open_connection(path)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM rows").fetchone()
        writer.execute("INSERT INTO rows VALUES (2)")
        yield
        reader.execute("COMMIT")


@BOTH_WAYS
def test_truncating_gives_up_with_a_warning_while_a_reader_holds_an_old_snapshot(
    tmp_path: Path, truncate: Truncate, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(secure_delete, "CHECKPOINT_ATTEMPTS", 2)
    monkeypatch.setattr(secure_delete, "CHECKPOINT_BUSY_MS", 50)
    path = tmp_path / "busy.sqlite3"
    with contextlib.closing(open_connection(path)) as writer:
        writer.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY)")
        writer.execute("INSERT INTO rows VALUES (1)")
        with reader_on_an_old_snapshot(path, writer):
            assert truncate(writer, path) is False

        assert any("could not be truncated" in record.getMessage() for record in caplog.records)
        assert truncate(writer, path) is True
        # The writer's busy timeout is its own again after the checkpoint's short one.
        assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == int(BUSY_TIMEOUT_SECONDS * 1000)


def test_a_blocked_truncation_is_owed_to_the_next_delete_even_one_that_removes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secure_delete, "CHECKPOINT_ATTEMPTS", 1)
    monkeypatch.setattr(secure_delete, "CHECKPOINT_BUSY_MS", 50)
    path = tmp_path / "owed.sqlite3"
    truncation = WalTruncation(path)
    wal = path.with_name(path.name + "-wal")
    with contextlib.closing(open_connection(path)) as writer:
        writer.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY)")
        # A new one owes a truncation (a killed predecessor may have left one): paid here.
        truncation.deleted(0)
        truncation.after_commit(writer)
        writer.execute("INSERT INTO rows VALUES (1)")
        # Nothing deleted: nothing to truncate.
        truncation.deleted(0)
        truncation.after_commit(writer)
        assert wal.stat().st_size > 0
        # A delete while a reader blocks the truncation: the log stays, the truncation is owed.
        with reader_on_an_old_snapshot(path, writer):
            truncation.deleted(writer.execute("DELETE FROM rows WHERE id = 1").rowcount)
            truncation.after_commit(writer)
        assert wal.stat().st_size > 0
        # The next delete truncates, though it removed nothing.
        truncation.deleted(0)
        truncation.after_commit(writer)
        assert wal.stat().st_size == 0
