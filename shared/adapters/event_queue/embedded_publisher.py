"""`EventPublisher` on the embedded queue: what ingest publishes to under the local host."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.envelope import QueueMessage
from shared.ports import PublishError

__all__ = ["EmbeddedPublisher"]


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
