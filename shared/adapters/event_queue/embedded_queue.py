"""A durable queue in a SQLite file, with Service Bus peek-lock semantics.

What the local host needs from a broker, and no more:

- `send` commits messages durably (group commit, see `SqliteWorker`); a message whose id is
  already waiting is dropped, as Service Bus duplicate detection would drop it.
- `receive` locks up to N messages for `lock_seconds` and counts the delivery. A message
  not completed before its lock expires becomes visible again.
- `complete` removes it; `abandon` releases the lock at once; `renew_lock` extends it;
  `dead_letter` moves it to the dead-letter queue with a reason.
- Once a message has been delivered `max_delivery_count` times, the next delivery attempt
  moves it to the dead-letter queue instead, with reason `MaxDeliveryCountExceeded`.

`EmbeddedPublisher` adapts the queue to the `EventPublisher` port.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from shared.adapters.event_queue.queue_integrity import check_queue_file, current_sequence, record_high_water
from shared.adapters.sqlite.worker import SqliteWorker
from shared.domain.envelope import QueueMessage
from shared.ports import PortError, PublishError

__all__ = [
    "DeadLetteredMessage",
    "EMBEDDED_QUEUE_FILE",
    "EmbeddedDeadLetterSink",
    "EmbeddedPublisher",
    "EmbeddedQueue",
    "MessageLockLostError",
    "MessageStillQueuedError",
    "ReceivedMessage",
    "MAX_DELIVERY_COUNT_EXCEEDED",
]

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
EMBEDDED_QUEUE_FILE = "queue.sqlite3"
"""The queue file's name in the data folder (`CLOUDSCALE_DATA_DIR`)."""

logger = logging.getLogger(__name__)

_SCHEMA = """
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

_COLUMNS = "seq, message_id, body, content_type, subject, correlation_id, properties, enqueued_at, delivery_count"


class MessageStillQueuedError(PortError):
    """A dead letter cannot be replayed while a message with its id is still in the queue."""


class MessageLockLostError(PortError):
    """The lock token is unknown or its lock expired; the message may be redelivered."""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A locked message. Settle it with its `lock_token`."""

    message: QueueMessage
    sequence_number: int
    enqueued_at: float
    delivery_count: int
    lock_token: str
    locked_until: float


@dataclass(frozen=True, slots=True)
class DeadLetteredMessage:
    message: QueueMessage
    sequence_number: int
    enqueued_at: float
    delivery_count: int
    dead_lettered_at: float
    reason: str
    description: str | None


class EmbeddedQueue:
    """A peek-lock queue with a dead-letter queue in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        lock_seconds: float = 30.0,
        max_delivery_count: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.lock_seconds = lock_seconds
        self.max_delivery_count = max_delivery_count
        self._clock = clock
        self._acknowledged = 0
        self._worker = SqliteWorker(path, self._open, name="embedded-queue", after_commit=self._mark_acknowledged)
        self._arrival_listeners: list[Callable[[], None]] = []

    def _open(self, connection: sqlite3.Connection) -> None:
        connection.executescript(_SCHEMA)
        # Refuse a damaged file, or one that lost messages acknowledged before (queue_integrity).
        self._acknowledged = check_queue_file(connection, self.path)

    def _mark_acknowledged(self, connection: sqlite3.Connection) -> None:
        # In the worker, after the commit and before any sender hears of it: the mark never
        # trails a message a producer was told is queued (a crash may leave it behind the
        # file, never ahead of it).
        sequence = current_sequence(connection)
        if sequence > self._acknowledged:
            record_high_water(self.path, sequence)
            self._acknowledged = sequence

    def on_arrival(self, listener: Callable[[], None]) -> None:
        """Call `listener` (in the sender's event loop) after each send committed: a consumer in
        this process wakes at once instead of polling. Sends from other processes are not seen."""
        self._arrival_listeners.append(listener)

    async def send(self, messages: Sequence[QueueMessage]) -> None:
        """Commit `messages` durably; return only once they are on disk."""
        now = self._clock()
        rows = [
            (
                m.message_id,
                m.body,
                m.content_type,
                m.subject,
                m.correlation_id,
                orjson.dumps(m.application_properties),
                now,
            )
            for m in messages
        ]

        def insert(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "INSERT OR IGNORE INTO messages"
                " (message_id, body, content_type, subject, correlation_id, properties, enqueued_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._worker.run(insert)
        for listener in self._arrival_listeners:
            listener()

    async def receive(self, max_messages: int = 1) -> list[ReceivedMessage]:
        """Lock and return up to `max_messages` visible messages, oldest first."""
        now = self._clock()
        locked_until = now + self.lock_seconds

        def take(connection: sqlite3.Connection) -> list[ReceivedMessage]:
            received: list[ReceivedMessage] = []
            while len(received) < max_messages:
                rows = connection.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE locked_until <= ? ORDER BY seq LIMIT ?",
                    (now, max_messages - len(received)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    if row[8] >= self.max_delivery_count:
                        _move_to_dead_letters(connection, row[0], now, MAX_DELIVERY_COUNT_EXCEEDED, None)
                        logger.warning(
                            "message %s was delivered %d times without success; moved to the dead-letter queue (%s)",
                            row[1],
                            row[8],
                            MAX_DELIVERY_COUNT_EXCEEDED,
                        )
                        continue
                    token = _lock_token(row[0])
                    connection.execute(
                        "UPDATE messages SET lock_token = ?, locked_until = ?, delivery_count = delivery_count + 1"
                        " WHERE seq = ?",
                        (token, locked_until, row[0]),
                    )
                    received.append(
                        ReceivedMessage(
                            message=_message(row),
                            sequence_number=row[0],
                            enqueued_at=row[7],
                            delivery_count=row[8] + 1,
                            lock_token=token,
                            locked_until=locked_until,
                        )
                    )
            return received

        return await self._worker.run(take)

    async def peek(self, max_messages: int = 100) -> list[QueueMessage]:
        """The oldest messages, locked or not, without locking them or counting a delivery."""

        def read(connection: sqlite3.Connection) -> list[QueueMessage]:
            rows = connection.execute(f"SELECT {_COLUMNS} FROM messages ORDER BY seq LIMIT ?", (max_messages,))
            return [_message(row) for row in rows]

        return await self._worker.run(read)

    async def complete(self, lock_token: str) -> None:
        """Remove a message that was processed."""
        await self._settle_one(lock_token, _delete)

    async def complete_many(self, lock_tokens: Sequence[str]) -> list[str]:
        """Remove processed messages in one transaction; return the tokens whose lock was lost."""
        return await self._settle(lock_tokens, _delete)

    async def abandon(self, lock_token: str) -> None:
        """Release the lock now so the message is delivered again."""
        await self._settle_one(lock_token, _unlock)

    async def abandon_many(self, lock_tokens: Sequence[str]) -> list[str]:
        """`abandon` for a batch, in one transaction; return the tokens whose lock was lost."""
        return await self._settle(lock_tokens, _unlock)

    async def renew_lock(self, lock_token: str) -> float:
        """Extend the lock by `lock_seconds` from now; return the new expiry."""
        until = self._clock() + self.lock_seconds
        await self._settle_one(lock_token, _lock_until(until))
        return until

    async def renew_locks(self, lock_tokens: Sequence[str]) -> list[str]:
        """`renew_lock` for a batch, in one transaction; return the tokens whose lock was lost."""
        return await self._settle(lock_tokens, _lock_until(self._clock() + self.lock_seconds))

    async def dead_letter(self, lock_token: str, reason: str, description: str | None = None) -> None:
        """Move a message that can never succeed to the dead-letter queue."""
        await self._settle_one(
            lock_token, lambda connection, seq, now: _move_to_dead_letters(connection, seq, now, reason, description)
        )

    async def park(self, message: QueueMessage, reason: str, description: str | None = None) -> None:
        """Copy a message into the dead-letter queue while it stays locked for its consumer.

        The process stage parks a poison message, then its host completes the original.
        The copy keeps the queued message's sequence number, so parking the same delivery
        again (after a crash before the completion) replaces the copy instead of doubling it.
        A message no longer in the queue is parked under a fresh sequence number.
        """
        now = self._clock()
        properties = orjson.dumps(message.application_properties)

        def copy(connection: sqlite3.Connection) -> None:
            row = connection.execute("SELECT seq FROM messages WHERE message_id = ?", (message.message_id,)).fetchone()
            if row is not None:
                _copy_to_dead_letters(connection, row[0], now, reason, description)
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
                    properties,
                    now,
                ),
            )
            _move_to_dead_letters(connection, int(cursor.lastrowid or 0), now, reason, description)

        await self._worker.run(copy)

    async def dead_letter_by_sequence(self, sequence_number: int) -> DeadLetteredMessage | None:
        """One dead-lettered message, or None."""
        rows = await self._worker.run(
            lambda c: c.execute(
                f"SELECT {_COLUMNS}, dead_lettered_at, reason, description FROM dead_letters WHERE seq = ?",
                (sequence_number,),
            ).fetchall()
        )
        return _dead_lettered(rows[0]) if rows else None

    async def resubmit(self, sequence_number: int) -> bool:
        """Move a dead-lettered message back onto the queue, delivery count reset.

        Returns False if there is no such dead letter. Raises `MessageStillQueuedError`, and
        keeps the dead letter, while a message with its id is still in the queue: that may be
        the very delivery that parked it, about to be completed, and replaying into it would
        drop the copy.
        """
        now = self._clock()

        def move(connection: sqlite3.Connection) -> bool:
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

        resubmitted = await self._worker.run(move)
        for listener in self._arrival_listeners:
            listener()
        return resubmitted

    async def depth(self) -> int:
        """Messages waiting or in flight (not dead-lettered)."""
        return await self._worker.run(lambda c: int(c.execute("SELECT count(*) FROM messages").fetchone()[0]))

    def read_depth(self) -> int:
        """`depth()` for synchronous callers (metric callbacks), on a short-lived read connection."""
        return self._read_count("messages")

    def read_dead_letter_depth(self) -> int:
        """`dead_letter_depth()` for synchronous callers (metric callbacks)."""
        return self._read_count("dead_letters")

    def _read_count(self, table: str) -> int:
        with contextlib.closing(sqlite3.connect(self.path, timeout=5.0)) as connection:
            return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    async def dead_letter_depth(self) -> int:
        return await self._worker.run(lambda c: int(c.execute("SELECT count(*) FROM dead_letters").fetchone()[0]))

    async def dead_letters(self, limit: int = 100) -> list[DeadLetteredMessage]:
        """The oldest dead-lettered messages, for inspection."""

        def read(connection: sqlite3.Connection) -> list[DeadLetteredMessage]:
            rows = connection.execute(
                f"SELECT {_COLUMNS}, dead_lettered_at, reason, description FROM dead_letters ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [_dead_lettered(row) for row in rows]

        return await self._worker.run(read)

    async def check(self) -> None:
        """Commit a write (one row rewritten): a full disk or a held lock fails it, as it fails publishes.

        A read alone would pass on a full disk while every publish fails. The probe waits in
        the writer's queue like any publish, so a busy queue makes it slow, not failed.
        """
        now = self._clock()
        await self._worker.run(
            lambda c: c.execute("INSERT OR REPLACE INTO health_probe (id, written_at) VALUES (1, ?)", (now,))
        )

    def close(self) -> None:
        """Finish pending writes and close the file."""
        self._worker.close()

    async def _settle_one(self, lock_token: str, action: _SettleAction) -> None:
        if await self._settle([lock_token], action):
            raise MessageLockLostError("the message's lock expired or the lock token is unknown")

    async def _settle(self, lock_tokens: Sequence[str], action: _SettleAction) -> list[str]:
        """Apply `action` to each message still locked by its token; return the tokens that were not."""
        now = self._clock()

        def settle(connection: sqlite3.Connection) -> list[str]:
            lost: list[str] = []
            for token in lock_tokens:
                seq = _locked_seq(token)
                held = (
                    seq is not None
                    and connection.execute(
                        "SELECT 1 FROM messages WHERE seq = ? AND lock_token = ? AND locked_until > ?",
                        (seq, token, now),
                    ).fetchone()
                )
                if seq is None or not held:
                    lost.append(token)
                else:
                    action(connection, seq, now)
            return lost

        return await self._worker.run(settle)


def _lock_token(seq: int) -> str:
    # The sequence number leads the token so settling finds the row by primary key (a
    # search by token would scan a deep queue); the random part makes it unguessable and
    # different for every delivery.
    return f"{seq}.{uuid.uuid4().hex}"


def _locked_seq(lock_token: str) -> int | None:
    seq, dot, _ = lock_token.partition(".")
    return int(seq) if dot and seq.isascii() and seq.isdecimal() else None


_SettleAction = Callable[[sqlite3.Connection, int, float], object]


def _delete(connection: sqlite3.Connection, seq: int, now: float) -> object:
    return connection.execute("DELETE FROM messages WHERE seq = ?", (seq,))


def _unlock(connection: sqlite3.Connection, seq: int, now: float) -> object:
    return connection.execute("UPDATE messages SET lock_token = NULL, locked_until = 0 WHERE seq = ?", (seq,))


def _lock_until(until: float) -> _SettleAction:
    def extend(connection: sqlite3.Connection, seq: int, now: float) -> object:
        return connection.execute("UPDATE messages SET locked_until = ? WHERE seq = ?", (until, seq))

    return extend


def _move_to_dead_letters(
    connection: sqlite3.Connection, seq: int, now: float, reason: str, description: str | None
) -> None:
    _copy_to_dead_letters(connection, seq, now, reason, description)
    connection.execute("DELETE FROM messages WHERE seq = ?", (seq,))


def _copy_to_dead_letters(
    connection: sqlite3.Connection, seq: int, now: float, reason: str, description: str | None
) -> None:
    connection.execute(
        f"INSERT OR REPLACE INTO dead_letters ({_COLUMNS}, dead_lettered_at, reason, description)"
        f" SELECT {_COLUMNS}, ?, ?, ? FROM messages WHERE seq = ?",
        (now, reason, description, seq),
    )


def _dead_lettered(row: tuple[Any, ...]) -> DeadLetteredMessage:
    return DeadLetteredMessage(
        message=_message(row),
        sequence_number=row[0],
        enqueued_at=row[7],
        delivery_count=row[8],
        dead_lettered_at=row[9],
        reason=row[10],
        description=row[11],
    )


def _message(row: tuple[Any, ...]) -> QueueMessage:
    return QueueMessage(
        message_id=str(row[1]),
        body=bytes(row[2]),
        content_type=str(row[3]) if row[3] is not None else "application/json",
        subject=row[4] if isinstance(row[4], str) else None,
        correlation_id=row[5] if isinstance(row[5], str) else None,
        application_properties=orjson.loads(row[6]),
    )


class EmbeddedPublisher:
    """`EventPublisher` over the embedded queue."""

    def __init__(self, queue: EmbeddedQueue) -> None:
        self.queue = queue

    async def publish(self, messages: Sequence[QueueMessage]) -> None:
        try:
            await self.queue.send(messages)
        except (sqlite3.Error, OSError) as exc:
            raise PublishError(f"the embedded queue could not store the messages: {exc}") from exc

    async def check(self) -> None:
        try:
            await self.queue.check()
        except (sqlite3.Error, OSError) as exc:
            raise PublishError(f"the embedded queue is unavailable: {exc}") from exc

    async def close(self) -> None:
        self.queue.close()


class EmbeddedDeadLetterSink:
    """`DeadLetterSink` over the embedded queue's own dead-letter queue."""

    def __init__(self, queue: EmbeddedQueue) -> None:
        self.queue = queue

    async def dead_letter(self, message: QueueMessage, reason: str, description: str) -> None:
        try:
            await self.queue.park(message, reason, description)
        except (sqlite3.Error, OSError) as exc:
            raise PortError(f"the embedded dead-letter queue could not store the message: {exc}") from exc

    async def close(self) -> None:
        """The queue is closed by its owner (the container)."""
