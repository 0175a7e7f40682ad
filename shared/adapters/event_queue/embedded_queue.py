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
- Deleted rows are overwritten with zeros (`secure_delete`); `truncate_log` empties the
  write-ahead log after removing dead letters, so no copy of them stays in the -wal file.

The dead-letter table's jobs are in `dead_letter_table`, the file's tables in `queue_schema`;
what stays here (past the usual module length) is the queue's one public surface, each method
a few lines over its SQL.
`EmbeddedPublisher` (`embedded_publisher`) adapts the queue to the `EventPublisher` port, and
`shared.adapters.dead_letters.embedded` to the dead-letter ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from shared.adapters.event_queue import dead_letter_table
from shared.adapters.event_queue.dead_letter_table import (
    DeadLetterRow,
    MessageStillQueuedError,
    move_to_dead_letters,
)
from shared.adapters.event_queue.queue_integrity import check_queue_file, current_sequence, record_high_water
from shared.adapters.event_queue.queue_schema import COLUMNS, SCHEMA, message_from_row
from shared.adapters.sqlite.secure_delete import enable_secure_delete, truncate_wal_file
from shared.adapters.sqlite.worker import SqliteWorker
from shared.domain.dead_letter_reasons import MAX_DELIVERY_COUNT_EXCEEDED
from shared.domain.envelope import QueueMessage
from shared.ports import PortError

__all__ = [
    "EMBEDDED_QUEUE_FILE",
    "EmbeddedQueue",
    "MessageLockLostError",
    "MessageStillQueuedError",
    "LockedMessage",
]

EMBEDDED_QUEUE_FILE = "queue.sqlite3"
"""The queue file's name in the data folder (`CLOUDSCALE_DATA_DIR`)."""

logger = logging.getLogger(__name__)


class MessageLockLostError(PortError):
    """The lock token is unknown or its lock expired; the message may be redelivered."""


@dataclass(frozen=True, slots=True)
class LockedMessage:
    """A locked message. Settle it with its `lock_token`."""

    message: QueueMessage
    sequence_number: int
    enqueued_at: float
    delivery_count: int
    lock_token: str
    locked_until: float


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
        # Every delete (a completed message, a removed dead letter) overwrites the row with
        # zeros: bodies name people, and an erased person's must not stay readable in the
        # file's free space. `truncate_log` removes the copies left in the -wal file.
        enable_secure_delete(connection)
        connection.executescript(SCHEMA)
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

    async def receive(self, max_messages: int = 1) -> list[LockedMessage]:
        """Lock and return up to `max_messages` visible messages, oldest first."""
        now = self._clock()
        locked_until = now + self.lock_seconds

        def take(connection: sqlite3.Connection) -> list[LockedMessage]:
            received: list[LockedMessage] = []
            while len(received) < max_messages:
                rows = connection.execute(
                    f"SELECT {COLUMNS} FROM messages WHERE locked_until <= ? ORDER BY seq LIMIT ?",
                    (now, max_messages - len(received)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    if row[8] >= self.max_delivery_count:
                        move_to_dead_letters(connection, row[0], now, MAX_DELIVERY_COUNT_EXCEEDED, None)
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
                        LockedMessage(
                            message=message_from_row(row),
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
            rows = connection.execute(f"SELECT {COLUMNS} FROM messages ORDER BY seq LIMIT ?", (max_messages,))
            return [message_from_row(row) for row in rows]

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
        await self._settle_one(lock_token, lambda c, seq, now: move_to_dead_letters(c, seq, now, reason, description))

    async def park(self, message: QueueMessage, reason: str, description: str | None = None) -> None:
        """Copy a message into the dead-letter queue while it stays locked for its consumer.

        The process stage parks a poison message, then its host completes the original.
        The copy keeps the queued message's sequence number, so parking the same delivery
        again (after a crash before the completion) replaces the copy instead of doubling it.
        A message no longer in the queue is parked under a fresh sequence number.
        """
        now = self._clock()
        await self._worker.run(lambda connection: dead_letter_table.park(connection, message, now, reason, description))

    async def dead_letter_by_sequence(self, sequence_number: int) -> DeadLetterRow | None:
        """One dead-lettered message, or None."""
        return await self._worker.run(lambda c: dead_letter_table.read_dead_letter(c, sequence_number))

    async def resubmit(self, sequence_number: int) -> bool:
        """Move a dead-lettered message back onto the queue, delivery count reset.

        Returns False if there is no such dead letter. Raises `MessageStillQueuedError`, and
        keeps the dead letter, while a message with its id is still in the queue: that may be
        the very delivery that parked it, about to be completed, and replaying into it would
        drop the copy.
        """
        now = self._clock()
        resubmitted = await self._worker.run(lambda c: dead_letter_table.resubmit(c, sequence_number, now))
        for listener in self._arrival_listeners:
            listener()
        return resubmitted

    async def remove_dead_letters(self, sequence_numbers: Sequence[int]) -> int:
        """Delete these dead letters for good (their bytes zeroed); return how many there were.

        Copies of their pages may remain in the -wal file until `truncate_log`.
        """
        return await self._worker.run(lambda c: dead_letter_table.remove(c, sequence_numbers))

    async def truncate_log(self, *, busy_seconds: float = 1.0) -> bool:
        """Copy the write-ahead log into the file and empty it (`truncate_wal_file`), so what
        was deleted before has no copy left in the -wal file. False, and a warning logged,
        when another connection kept it from finishing for a few times `busy_seconds`."""
        return await asyncio.to_thread(truncate_wal_file, self.path, busy_seconds=busy_seconds)

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

    async def dead_letters(self, limit: int = 100) -> list[DeadLetterRow]:
        """The oldest dead-lettered messages, for inspection."""
        return await self._worker.run(lambda connection: dead_letter_table.read_dead_letters(connection, limit))

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
