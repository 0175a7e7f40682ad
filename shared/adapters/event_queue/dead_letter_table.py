"""The embedded queue's dead-letter table: moving messages in, reading them, moving them back, removing them.

Each function is a job for the queue's `SqliteWorker` (it runs inside the queue's
transaction, on its connection); `EmbeddedQueue` calls them and keeps its public methods.
A dead letter keeps its message's sequence number, so it is found, shown and replayed by it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shared.adapters.event_queue.queue_schema import COLUMNS, message_from_row
from shared.domain.envelope import QueueMessage
from shared.ports import PortError

__all__ = [
    "DeadLetterRow",
    "MessageStillQueuedError",
    "copy_to_dead_letters",
    "move_to_dead_letters",
    "park",
    "read_dead_letter",
    "read_dead_letters",
    "remove",
    "resubmit",
]

_SELECT = f"SELECT {COLUMNS}, dead_lettered_at, reason, description FROM dead_letters"


class MessageStillQueuedError(PortError):
    """A dead letter cannot be replayed while a message with its id is still in the queue."""


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A message in the dead-letter table, with why and when it got there."""

    message: QueueMessage
    sequence_number: int
    enqueued_at: float
    delivery_count: int
    dead_lettered_at: float
    reason: str
    description: str | None


def move_to_dead_letters(
    connection: sqlite3.Connection, seq: int, now: float, reason: str, description: str | None
) -> None:
    """Move the queued message `seq` into the dead-letter table."""
    copy_to_dead_letters(connection, seq, now, reason, description)
    connection.execute("DELETE FROM messages WHERE seq = ?", (seq,))


def copy_to_dead_letters(
    connection: sqlite3.Connection, seq: int, now: float, reason: str, description: str | None
) -> None:
    """Copy the queued message `seq` into the dead-letter table (replacing an earlier copy)."""
    connection.execute(
        f"INSERT OR REPLACE INTO dead_letters ({COLUMNS}, dead_lettered_at, reason, description)"
        f" SELECT {COLUMNS}, ?, ?, ? FROM messages WHERE seq = ?",
        (now, reason, description, seq),
    )


def park(
    connection: sqlite3.Connection, message: QueueMessage, now: float, reason: str, description: str | None
) -> None:
    """Copy `message` into the dead-letter table; see `EmbeddedQueue.park`."""
    row = connection.execute("SELECT seq FROM messages WHERE message_id = ?", (message.message_id,)).fetchone()
    if row is not None:
        copy_to_dead_letters(connection, row[0], now, reason, description)
        return
    # Allocate a sequence number the queue will never reuse, then move the row.
    cursor = connection.execute(
        "INSERT INTO messages (message_id, body, content_type, subject, correlation_id, properties,"
        " enqueued_at, delivery_count) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
        (
            message.message_id,
            message.body,
            message.content_type,
            message.subject,
            message.correlation_id,
            orjson.dumps(message.application_properties),
            now,
        ),
    )
    move_to_dead_letters(connection, int(cursor.lastrowid or 0), now, reason, description)


def resubmit(connection: sqlite3.Connection, sequence_number: int, now: float) -> bool:
    """Move a dead letter back onto the queue; see `EmbeddedQueue.resubmit`."""
    row = connection.execute("SELECT message_id FROM dead_letters WHERE seq = ?", (sequence_number,)).fetchone()
    if row is None:
        return False
    if connection.execute("SELECT 1 FROM messages WHERE message_id = ?", (row[0],)).fetchone():
        raise MessageStillQueuedError(
            f"message {row[0]!r} is still in the queue (being processed or waiting); "
            "replay its dead letter once it has left the queue"
        )
    connection.execute(
        "INSERT INTO messages"
        " (message_id, body, content_type, subject, correlation_id, properties, enqueued_at)"
        " SELECT message_id, body, content_type, subject, correlation_id, properties, ?"
        " FROM dead_letters WHERE seq = ?",
        (now, sequence_number),
    )
    connection.execute("DELETE FROM dead_letters WHERE seq = ?", (sequence_number,))
    return True


def remove(connection: sqlite3.Connection, sequence_numbers: Sequence[int]) -> int:
    """Delete these dead letters without replaying them; return how many there were."""
    removed = 0
    for sequence_number in dict.fromkeys(sequence_numbers):
        removed += connection.execute("DELETE FROM dead_letters WHERE seq = ?", (sequence_number,)).rowcount
    return removed


def read_dead_letter(connection: sqlite3.Connection, sequence_number: int) -> DeadLetterRow | None:
    """The dead letter with this sequence number, or None."""
    row = connection.execute(f"{_SELECT} WHERE seq = ?", (sequence_number,)).fetchone()
    return _dead_lettered(row) if row is not None else None


def read_dead_letters(connection: sqlite3.Connection, limit: int) -> list[DeadLetterRow]:
    """The oldest `limit` dead letters."""
    rows = connection.execute(f"{_SELECT} ORDER BY seq LIMIT ?", (limit,)).fetchall()
    return [_dead_lettered(row) for row in rows]


def _dead_lettered(row: tuple[Any, ...]) -> DeadLetterRow:
    return DeadLetterRow(
        message=message_from_row(row),
        sequence_number=row[0],
        enqueued_at=row[7],
        delivery_count=row[8],
        dead_lettered_at=row[9],
        reason=row[10],
        description=row[11],
    )
