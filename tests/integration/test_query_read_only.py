"""`cloudscale query` can read the analytics store and write nothing, anywhere.

Runs the real command on a store the real adapter made; a refused statement must leave the
data folder exactly as it was, and say why.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloudscale_local.cli.main import main
from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE
from tests.analytics_store import analytics_folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder holding an (empty) analytics store, as `cloudscale run` leaves it."""
    return analytics_folder(tmp_path)


def query(data_dir: Path, sql: str) -> Result:
    environment = {"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(data_dir)}
    result = CliRunner().invoke(main, ["query", "--json", sql], env=environment)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def files(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its size, but the store's WAL index and log.

    Those two are SQLite's own: any reader of a WAL database creates them beside it (and the
    running host always has them); no statement writes them on a user's behalf.
    """
    return {
        str(path.relative_to(folder)): path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file() and not path.name.endswith(("-wal", "-shm"))
    }


def journal_mode(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        connection.close()


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH DATABASE '{elsewhere}/attached.sqlite3' AS other",
        "VACUUM INTO '{elsewhere}/copy.sqlite3'",
        "VACUUM",
        "CREATE TABLE stolen (x)",
        "CREATE TEMP TABLE scratch (x)",
        "INSERT INTO events (EventId) VALUES ('x')",
        "DELETE FROM events",
        "PRAGMA journal_mode=delete",
        "PRAGMA query_only=OFF",
        "PRAGMA user_version=7",
    ],
)
def test_a_statement_that_would_write_is_refused_and_writes_nothing(
    data_dir: Path, tmp_path: Path, statement: str
) -> None:
    # GIVEN another folder the statement names, and everything on disk before it runs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = files(tmp_path)

    result = query(data_dir, statement.format(elsewhere=elsewhere))

    assert result.exit_code == 1
    assert "the query failed" in result.stderr
    assert "only SELECT" in result.stderr
    assert files(tmp_path) == before
    assert journal_mode(data_dir / ANALYTICS_FILE) == "wal"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT count(*) AS n FROM events", [{"n": 0}]),
        ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT i FROM n", None),
        ("SELECT value FROM json_each('[1, 2]')", [{"value": 1}, {"value": 2}]),
        ("SELECT name FROM pragma_table_info('events') WHERE name = 'EventId'", [{"name": "EventId"}]),
    ],
)
def test_reading_still_works(data_dir: Path, sql: str, expected: list[dict[str, object]] | None) -> None:
    result = query(data_dir, sql)

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows == (expected if expected is not None else [{"i": 1}, {"i": 2}, {"i": 3}])


def test_the_table_can_be_described(data_dir: Path) -> None:
    result = query(data_dir, "PRAGMA table_info(events)")

    assert result.exit_code == 0, result.output
    assert "EventId" in {row["name"] for row in json.loads(result.stdout)}
