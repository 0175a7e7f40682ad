"""The Cosmos DB event store's reading and erasing by data subject: its queries and its patience.

Kept apart from `cosmos_event_store` (which calls these) so each module stays one job: how a
subject's documents are found (in the tenant's partition, by `c.userId` or `c.anonymousId`),
ordered (by instant, not as text) and how long an erasure waits out throttling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.domain.privacy import Subject

__all__ = [
    "SUBJECT_PAGE_SIZE",
    "ThrottleBudget",
    "first_ids",
    "instant",
    "retry_after_seconds",
    "subject_condition",
    "subject_parameters",
    "wait_out_throttling",
]

T = TypeVar("T")

SUBJECT_PAGE_SIZE: Final = 100
"""Documents (and ids) read or deleted per page of a subject's events."""

_SUBJECT_PATHS: Final[dict[str, str]] = {"userId": "c.userId", "anonymousId": "c.anonymousId"}
_DEFAULT_THROTTLE_PAUSE = 1.0
_THROTTLED = 429
_RETRY_AFTER_MS_HEADER = "x-ms-retry-after-ms"


class ThrottleBudget:
    """How long an erasure may go on being throttled without progress: renewed by every call
    that succeeds, so a long erasure is bounded by its stalls, not by its length."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.deadline = time.monotonic() + seconds

    def renew(self) -> None:
        self.deadline = time.monotonic() + self._seconds


async def wait_out_throttling(budget: ThrottleBudget, call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, waiting out 429s with the service's hint until the budget runs out (monotonic), then raising.

    The SDK retries a 429 a few times first (`CLIENT_OPTIONS`); an erasure, unlike a save,
    has no caller to back off for it, so it keeps going as long as it makes progress.
    """
    while True:
        try:
            result = await call()
        except CosmosHttpResponseError as exc:
            if exc.status_code != _THROTTLED:
                raise
            pause = retry_after_seconds(exc) or _DEFAULT_THROTTLE_PAUSE
            if time.monotonic() + pause > budget.deadline:
                raise
            await asyncio.sleep(pause)
        else:
            budget.renew()
            return result


def retry_after_seconds(exc: CosmosHttpResponseError) -> float | None:
    value = (exc.headers or {}).get(_RETRY_AFTER_MS_HEADER)
    try:
        milliseconds = float(str(value))
    except (TypeError, ValueError):
        return None
    return max(milliseconds, 0.0) / 1000.0


async def first_ids(container: ContainerProxy, subject: Subject) -> list[str]:
    """The ids of the first page of the subject's documents (in the tenant's partition)."""
    query = container.query_items(
        f"SELECT c.id FROM c WHERE {subject_condition(subject)}",
        parameters=subject_parameters(subject),
        partition_key=subject.tenant_id,
        max_item_count=SUBJECT_PAGE_SIZE,
    )
    pages = query.by_page()
    async for page in pages:
        return [str(item["id"]) async for item in page]
    return []


def subject_condition(subject: Subject) -> str:
    """The WHERE condition of a subject's documents (with `_subject_parameters`).

    `c.tenantId = @tenant` repeats the partition key the query is scoped to: Cosmos DB needs
    it only there, but cosmosdb-server, the emulator, refuses a partition-scoped query whose
    text does not name the key, and filters by the text alone.
    """
    return f"c.tenantId = @tenant AND {_SUBJECT_PATHS[subject.field]} = @value"


def subject_parameters(subject: Subject) -> list[dict[str, object]]:
    return [{"name": "@tenant", "value": subject.tenant_id}, {"name": "@value", "value": subject.value}]


def instant(value: object) -> datetime:
    """A stored timestamp as an aware instant (the earliest one if it cannot be read)."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
