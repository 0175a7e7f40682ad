"""Browsing and replaying dead-lettered messages: the port behind `cloudscale dlq`.

A dead letter is a message the pipeline gave up on. There are two kinds, and an operator
handles both the same way (look, fix the cause, replay):

- *poison* messages the process stage parked because they can never succeed
  (`UndecodableMessage`, `UnknownSchemaVersion`, `SchemaInvalid`);
- messages the *broker* dead-lettered (`MaxDeliveryCountExceeded` after repeated transient
  failures, or an expired time to live).

On Service Bus they live in two places (the poison queue, and the events queue's
dead-letter sub-queue; see `shared.adapters.dead_letters.servicebus_browser`). The embedded queue
keeps both in its one `dead_letters` table, so every embedded dead letter has source
`dead-letter` and its reason tells the kinds apart.

Replaying puts a message back on the events queue (embedded: under its own message id;
Service Bus: under an id derived from the dead letter, see `replay_message`), so a replay
repeated (or one that ran twice after a crash) is dropped by duplicate detection or stored
once by the idempotent event store.

This is a tool-side port: only the CLI uses it, so it lives here rather than in `shared.ports`.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from shared.adapters.event_queue.embedded_queue import EMBEDDED_QUEUE_FILE, DeadLetteredMessage, EmbeddedQueue
from shared.domain.envelope import QueueMessage
from shared.ports import PortError
from shared.settings import Settings

__all__ = [
    "DeadLetter",
    "DeadLetterBrowser",
    "DeadLetterSource",
    "EmbeddedDeadLetterBrowser",
    "ProgressCallback",
    "ReplayProgress",
    "ReplayResult",
    "embedded_queue_path",
    "open_dead_letter_browser",
]

DeadLetterSource = Literal["dead-letter", "poison"]
"""`poison`: parked by the process stage (Service Bus poison queue). `dead-letter`: a
dead-letter queue proper (Service Bus: the events queue's sub-queue; embedded: every one)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message, as an operator sees it.

    `id` is what the user types back to `show` or `replay` it: the embedded queue's sequence
    number (`"42"`), or the Service Bus source and sequence number (`"dlq-42"`, `"poison-7"`),
    since the two Service Bus queues number their messages independently. Times are UTC;
    None where the backend does not record them.
    """

    id: str
    source: DeadLetterSource
    message: QueueMessage
    """The message as it was sent (the dead-letter reason properties removed): what replay sends."""
    reason: str | None
    description: str | None
    delivery_count: int | None
    """Deliveries before it was dead-lettered (None for Service Bus poison messages: not recorded)."""
    enqueued_at: datetime | None
    dead_lettered_at: datetime | None

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def body(self) -> bytes:
        return self.message.body


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Reported once before a replay starts (`done == 0`, `dead_letter is None`) and after each message."""

    total: int
    """Messages the replay is looking for (the ids given, or every dead letter when it started)."""
    done: int
    """Messages replayed so far."""
    dead_letter: DeadLetter | None = None
    """The message just replayed."""


ProgressCallback = Callable[[ReplayProgress], None]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did: the messages now back on the events queue, and the ids it could not find."""

    replayed: tuple[DeadLetter, ...] = ()
    not_found: tuple[str, ...] = ()
    """Requested ids not in the dead-letter queue (a wrong id, or already replayed)."""


class DeadLetterBrowser(Protocol):
    """Look at dead-lettered messages and put them back on the events queue.

    Every method raises `PortError` when the backend fails.
    """

    async def list(self, limit: int) -> Sequence[DeadLetter]:
        """Up to `limit` dead letters, oldest first, without locking or counting a delivery."""
        ...

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """The dead letter with this id, or None (an unknown or malformed id is simply not found)."""
        ...

    async def replay(
        self, dead_letter_ids: Sequence[str] | None, on_progress: ProgressCallback | None = None
    ) -> ReplayResult:
        """Send the given dead letters (None: every one there now) back to the events queue, then remove them.

        Each message is removed only after the events queue durably took it, so a failure
        part-way leaves the rest (and the failed one) in the dead-letter queue; running the
        same replay again is harmless. Raises `PortError` on the first failure.
        """
        ...

    async def close(self) -> None: ...


class EmbeddedDeadLetterBrowser:
    """`DeadLetterBrowser` over the embedded queue's dead-letter table."""

    def __init__(self, queue: EmbeddedQueue, *, close_queue: bool = True) -> None:
        """`close_queue`: whether `close()` closes the queue (True when the browser opened it)."""
        self.queue = queue
        self._close_queue = close_queue

    async def list(self, limit: int) -> Sequence[DeadLetter]:
        with _translated("read"):
            return [_from_embedded(dead) for dead in await self.queue.dead_letters(limit)]

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        sequence_number = _embedded_sequence_number(dead_letter_id)
        if sequence_number is None:
            return None
        with _translated("read"):
            dead = await self.queue.dead_letter_by_sequence(sequence_number)
        return _from_embedded(dead) if dead is not None else None

    async def replay(
        self, dead_letter_ids: Sequence[str] | None, on_progress: ProgressCallback | None = None
    ) -> ReplayResult:
        report = on_progress or _ignore
        wanted = await self._targets(dead_letter_ids)
        report(ReplayProgress(total=len(wanted), done=0))
        replayed: list[DeadLetter] = []
        not_found: list[str] = []
        for dead_letter_id in wanted:
            dead_letter = await self.get(dead_letter_id)
            sequence_number = _embedded_sequence_number(dead_letter_id)
            if dead_letter is None or sequence_number is None:
                not_found.append(dead_letter_id)
                continue
            with _translated("replay"):
                moved = await self.queue.resubmit(sequence_number)
            if not moved:  # replayed by someone else between the read and the move
                not_found.append(dead_letter_id)
                continue
            replayed.append(dead_letter)
            report(ReplayProgress(total=len(wanted), done=len(replayed), dead_letter=dead_letter))
        return ReplayResult(replayed=tuple(replayed), not_found=tuple(not_found))

    async def close(self) -> None:
        if self._close_queue:
            self.queue.close()

    async def _targets(self, dead_letter_ids: Sequence[str] | None) -> builtins.list[str]:
        if dead_letter_ids is not None:
            return list(dict.fromkeys(dead_letter_ids))  # each once, in the order given
        # "All" means the ones there now: a message dead-lettered again while the replay runs
        # (the cause is not fixed yet) waits for the next replay instead of looping.
        with _translated("read"):
            count = await self.queue.dead_letter_depth()
            return [str(dead.sequence_number) for dead in await self.queue.dead_letters(count)] if count else []


def embedded_queue_path(settings: Settings) -> Path:
    """Where the embedded queue of `settings` lives."""
    return settings.data_dir.resolve() / EMBEDDED_QUEUE_FILE


def open_dead_letter_browser(settings: Settings) -> DeadLetterBrowser:
    """The browser for `settings.backend`. Connects lazily on Azure; raises `PortError` if there is nothing to browse.

    Embedded: the queue file under `settings.data_dir` must already exist. A missing file
    most likely means the wrong `CLOUDSCALE_DATA_DIR` (or folder), and creating an empty
    queue there would only hide that.
    """
    if settings.backend == "azure":
        # Imported here so the embedded path never loads the Azure SDK.
        from shared.adapters.dead_letters.servicebus_browser import create_service_bus_dead_letter_browser

        return create_service_bus_dead_letter_browser(settings)
    path = embedded_queue_path(settings)
    if not path.is_file():
        raise PortError(
            f"No embedded queue at {path}: nothing was ever queued there. "
            "Set CLOUDSCALE_DATA_DIR to the data folder of the host (`cloudscale run` prints it)."
        )
    try:
        queue = EmbeddedQueue(
            path, lock_seconds=settings.queue_lock_seconds, max_delivery_count=settings.queue_max_delivery_count
        )
    except (sqlite3.Error, OSError) as exc:
        raise PortError(f"Cannot open the embedded queue at {path}: {exc}") from exc
    return EmbeddedDeadLetterBrowser(queue)


def _from_embedded(dead: DeadLetteredMessage) -> DeadLetter:
    return DeadLetter(
        id=str(dead.sequence_number),
        source="dead-letter",
        message=dead.message,
        reason=dead.reason,
        description=dead.description,
        delivery_count=dead.delivery_count,
        enqueued_at=datetime.fromtimestamp(dead.enqueued_at, UTC),
        dead_lettered_at=datetime.fromtimestamp(dead.dead_lettered_at, UTC),
    )


def _embedded_sequence_number(dead_letter_id: str) -> int | None:
    text = dead_letter_id.strip()
    return int(text) if text.isascii() and text.isdigit() else None


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise PortError(f"The embedded dead-letter queue could not {action}: {exc}") from exc


def _ignore(progress: ReplayProgress) -> None:
    """The default progress callback."""
