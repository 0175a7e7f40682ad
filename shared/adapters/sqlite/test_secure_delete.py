"""`secure_delete` and the WAL truncation on a real SQLite file, whatever SQLite's build default is.

Some builds (Debian's) compile `SQLITE_SECURE_DELETE` in, so a store that forgot the pragma would
pass there and leak elsewhere: these tests start from `secure_delete=OFF` explicitly.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from shared.adapters.sqlite.secure_delete import enable_secure_delete, truncate_wal
from shared.adapters.sqlite.worker import open_connection

MARKER = b"marker-5f1c0e7a"


def delete_marked_row(path: Path, *, secure: bool) -> bytes:
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
        assert truncate_wal(connection, path) is True
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_secure_delete_and_the_truncated_log_leave_no_trace(tmp_path: Path) -> None:
    assert MARKER not in delete_marked_row(tmp_path / "secure.sqlite3", secure=True)


def test_without_secure_delete_the_deleted_bytes_stay_in_the_file(tmp_path: Path) -> None:
    # What the test above guards against: a plain DELETE only unlinks the row.
    assert MARKER in delete_marked_row(tmp_path / "plain.sqlite3", secure=False)


def test_truncate_wal_gives_up_with_a_warning_while_a_reader_holds_an_old_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "busy.sqlite3"
    with contextlib.closing(open_connection(path)) as writer, contextlib.closing(open_connection(path)) as reader:
        writer.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY)")
        writer.execute("INSERT INTO rows VALUES (1)")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM rows").fetchone()
        writer.execute("INSERT INTO rows VALUES (2)")

        assert truncate_wal(writer, path) is False

        reader.execute("COMMIT")
        assert truncate_wal(writer, path) is True
        # The busy timeout is back to the store's own after the checkpoint's short one.
        assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert any("could not be truncated" in record.getMessage() for record in caplog.records)
