"""A SQLite connection that can only read, whatever SQL it is given.

`mode=ro` alone leaves doors open: `ATTACH` opens (and creates) other files read-write,
`VACUUM INTO` writes a copy of the database anywhere, and pragmas change the connection.
So the connection is also `query_only`, and an authorizer allows reading and nothing else:
a statement is refused while it is prepared, before it runs, so a refused statement never
touches the disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["READ_ONLY_MESSAGE", "open_read_only", "refused_as_a_write"]

READ_ONLY_MESSAGE = (
    "the store is read-only here: only SELECT (and WITH ... SELECT) statements are allowed, "
    "not ATTACH, VACUUM, pragmas that change anything, or writes"
)

# What a query may do: read tables, call SQL functions, recurse in a CTE.
_ALLOWED = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE})
# Pragmas that only describe the schema, allowed without an argument (`PRAGMA table_info(events)`
# passes its table as the argument, so these are matched by name and their argument is not a value).
_DESCRIBING_PRAGMAS = frozenset({"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo"})
# A table-valued function (`json_each`, `pragma_table_info`) declares its columns when first
# used, which SQLite reports as updates of the schema table; nothing is written (the file is
# opened read-only and `query_only` is on, so a real update of the schema would fail anyway).
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"})


def open_read_only(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """Open `path` so that nothing run on the connection can write any file.

    Raises `sqlite3.Error` when the file cannot be opened.
    """
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout)
    try:
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(_authorize)
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def refused_as_a_write(error: sqlite3.Error) -> bool:
    """Whether `error` is the authorizer (or `query_only`) refusing a statement."""
    # sqlite3 says "not authorized" or "authorization denied" depending on the statement.
    text = str(error).lower()
    return "authoriz" in text or "readonly" in text or "read-only" in text


def _authorize(action: int, arg1: str | None, arg2: str | None, database: str | None, source: str | None) -> int:
    if action in _ALLOWED:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _DESCRIBING_PRAGMAS and database is None:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in _SCHEMA_TABLES:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY
