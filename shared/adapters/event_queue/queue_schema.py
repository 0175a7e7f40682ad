"""The embedded queue's file: its tables, and a queued message read back from a row.

Both tables keep a message as it was sent (id, body, the broker-neutral headers, the
application properties as JSON) under the sequence number it was queued with, so moving a
message between them is one `INSERT ... SELECT`.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from shared.domain.envelope import QueueMessage

__all__ = ["COLUMNS", "SCHEMA", "message_from_row"]

SCHEMA: Final = """
-- One row, rewritten by each readiness probe: a committed write proves the file takes writes.
CREATE TABLE IF NOT EXISTS health_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id     TEXT NOT NULL UNIQUE,
    body           BLOB NOT NULL,
    content_type   TEXT,
    subject        TEXT,
    correlation_id TEXT,
    properties     BLOB NOT NULL,
    enqueued_at    REAL NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lock_token     TEXT UNIQUE,
    locked_until   REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (locked_until, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq              INTEGER PRIMARY KEY,
    message_id       TEXT NOT NULL,
    body             BLOB NOT NULL,
    content_type     TEXT,
    subject          TEXT,
    correlation_id   TEXT,
    properties       BLOB NOT NULL,
    enqueued_at      REAL NOT NULL,
    delivery_count   INTEGER NOT NULL,
    dead_lettered_at REAL NOT NULL,
    reason           TEXT NOT NULL,
    description      TEXT
);
"""

COLUMNS: Final = "seq, message_id, body, content_type, subject, correlation_id, properties, enqueued_at, delivery_count"
"""The columns both tables share, in the order `message_from_row` reads them."""


def message_from_row(row: tuple[Any, ...]) -> QueueMessage:
    """The message in a row that starts with `COLUMNS`."""
    return QueueMessage(
        message_id=str(row[1]),
        body=bytes(row[2]),
        content_type=str(row[3]) if row[3] is not None else "application/json",
        subject=row[4] if isinstance(row[4], str) else None,
        correlation_id=row[5] if isinstance(row[5], str) else None,
        application_properties=orjson.loads(row[6]),
    )
