"""Dead letters on the embedded queue: the process stage's sink, and the `cloudscale dlq` browser.

The embedded queue keeps both kinds of dead letter (poison messages the process stage
parked, and those the queue dead-lettered itself after `max_delivery_count` deliveries) in
its one `dead_letters` table, so every embedded dead letter has source `dead-letter` and its
reason tells the kinds apart. Replaying moves a message back onto the queue under its own
message id; the idempotent event store keeps one document per event if it was stored before.
Removing (an erased person's) deletes the rows for good: see `EmbeddedQueue.truncate_log`.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.event_queue.dead_letter_table import DeadLetterRow
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.envelope import QueueMessage
from shared.ports import DeadLetter, PortError, ProgressCallback, ReplayProgress, ReplayResult

__all__ = ["EmbeddedDeadLetterBrowser", "EmbeddedDeadLetterSink", "open_embedded_dead_letter_browser"]


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


class EmbeddedDeadLetterBrowser:
    """`DeadLetterBrowser` over the embedded queue's dead-letter table."""

    def __init__(self, queue: EmbeddedQueue) -> None:
        """Over `queue`, which the browser then owns: `close()` closes it."""
        self.queue = queue

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

    async def remove(self, dead_letter_ids: Sequence[str]) -> int:
        """Delete these dead letters (bytes zeroed by the queue's `secure_delete`), then empty the
        queue file's write-ahead log so no earlier copy of them stays in its -wal file."""
        numbers = [number for number in map(_embedded_sequence_number, dead_letter_ids) if number is not None]
        if not numbers:
            return 0
        with _translated("remove"):
            removed = await self.queue.remove_dead_letters(numbers)
            if removed:
                await self.queue.truncate_log()
        return removed

    async def close(self) -> None:
        self.queue.close()

    async def _targets(self, dead_letter_ids: Sequence[str] | None) -> builtins.list[str]:
        if dead_letter_ids is not None:
            return list(dict.fromkeys(dead_letter_ids))  # each once, in the order given
        # "All" means the ones there now: a message dead-lettered again while the replay runs
        # (the cause is not fixed yet) waits for the next replay instead of looping.
        with _translated("read"):
            count = await self.queue.dead_letter_depth()
            return [str(dead.sequence_number) for dead in await self.queue.dead_letters(count)] if count else []


def open_embedded_dead_letter_browser(
    path: Path, *, lock_seconds: float, max_delivery_count: int
) -> EmbeddedDeadLetterBrowser:
    """The browser over the queue file at `path`, which must already exist; raises `PortError` otherwise.

    A missing file most likely means the wrong `CLOUDSCALE_DATA_DIR` (or folder), and creating
    an empty queue there would only hide that. The browser opens the file itself and closes it.
    """
    if not path.is_file():
        raise PortError(
            f"No embedded queue at {path}: nothing was ever queued there. "
            "Set CLOUDSCALE_DATA_DIR to the data folder of the host (`cloudscale run` prints it)."
        )
    try:
        queue = EmbeddedQueue(path, lock_seconds=lock_seconds, max_delivery_count=max_delivery_count)
    except (sqlite3.Error, OSError) as exc:
        raise PortError(f"Cannot open the embedded queue at {path}: {exc}") from exc
    return EmbeddedDeadLetterBrowser(queue)


def _from_embedded(dead: DeadLetterRow) -> DeadLetter:
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
