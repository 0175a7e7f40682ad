"""`EventStore` on Azure Cosmos DB for NoSQL (also runs against a Cosmos DB emulator).

One document per event in the container described by `EVENTS_CONTAINER`: id = `eventId`,
partition key = `tenantId`. `save` is `create_item`, which Cosmos DB refuses with 409 Conflict
when (tenant, id) already exists, so a redelivered message changes nothing and the change
feed sees each event once (an upsert would write it again and feed it again).

Error mapping (the process stage retries `EventStoreError` with backoff, never dead-letters
for it):

- 409 on save: already stored, `save` returns False. 404 on get: not stored, None.
- 429: throttled, `EventStoreError` with `retry_after` from `x-ms-retry-after-ms`.
- everything else, including 404 for a missing database or container (a configuration
  problem, not the message's fault), 408, 449, 5xx, connection errors and timeouts:
  `EventStoreError`.

Erasing a subject (`SubjectEventStore`) deletes document by document, waiting out 429s by
their hint for up to `THROTTLE_BUDGET_SECONDS` without progress; its queries are in `cosmos_subjects`.
The module is longer than most because the store's three roles (save and read, history by
commit time, by subject) share one client, its lifecycle and its error mapping.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceExistsError, CosmosResourceNotFoundError

from shared.adapters.event_store import cosmos_subjects
from shared.adapters.event_store.cosmos_subjects import (
    ThrottleBudget,
    first_ids,
    instant,
    retry_after_seconds,
    subject_condition,
    subject_parameters,
    wait_out_throttling,
)
from shared.domain.privacy import Subject
from shared.domain.stored_event import StoredEvent
from shared.ports import EventStoreError
from shared.settings import Settings

__all__ = ["CLIENT_OPTIONS", "CosmosEventStore", "create_cosmos_event_store"]

T = TypeVar("T")

CLIENT_OPTIONS: Final[dict[str, Any]] = {
    # The SDK's defaults retry a throttled (429) request up to 9 times over up to 30 s before
    # raising. We want a throttled or failing store to reach our own backoff and circuit
    # breaker quickly, so they see a sustained outage as one and stop hammering the account:
    # `retry_total` caps the SDK's retries of a 429 (and of connection errors) at 3, and
    # `retry_backoff_max` stops its 429 retries once they have waited 5 s in all (it is also
    # the longest pause between connection retries).
    "retry_total": 3,
    "retry_backoff_max": 5,
}
"""Keyword arguments every `CosmosClient` of the event store is built with."""

SAVE_CONCURRENCY: Final = 32
"""Concurrent `create_item` requests of one `save_many`: enough to hide the round trip,
few enough that a batch does not burst past the account's provisioned throughput."""

DELETE_CONCURRENCY: Final = 16
"""Concurrent `delete_item` requests of one erasure page."""

THROTTLE_BUDGET_SECONDS: Final = 60.0
"""How long an erasure waits out throttling (429s, each for its retry-after hint) without any
request succeeding before it fails with `EventStoreError` (and is run again later: deleting is idempotent)."""

_THROTTLED = 429


class CosmosEventStore:
    """Stored events in one Cosmos DB container; see the module docstring for the semantics."""

    def __init__(
        self,
        connect: Callable[[], CosmosClient],
        *,
        database: str,
        container: str,
        credential: AsyncTokenCredential | None = None,
        throttle_budget: float = THROTTLE_BUDGET_SECONDS,
    ) -> None:
        """Nothing connects here.

        `connect` builds the process's one `CosmosClient`; it is called on first use (inside
        the event loop that uses it), and again only if connecting failed.
        `credential`: closed together with the client, if given. `throttle_budget`: seconds an
        erasure waits out throttling without progress (`THROTTLE_BUDGET_SECONDS`).
        """
        self.database = database
        self.container = container
        self._connect = connect
        self._credential = credential
        self._client: CosmosClient | None = None
        self._container: ContainerProxy | None = None
        self._connecting = asyncio.Lock()
        self._closed = False
        self._throttle_budget = throttle_budget

    async def save(self, event: StoredEvent) -> bool:
        """`create_item`: True if it created the document, False if (tenant, id) was already there."""
        async with self._guard("store an event") as container:
            try:
                await container.create_item(event.to_document())
            except CosmosResourceExistsError:
                return False
            return True

    async def save_many(self, events: Sequence[StoredEvent]) -> list[bool]:
        """`save` for each event, at most `SAVE_CONCURRENCY` requests at a time.

        Cosmos DB has no multi-document insert across partitions (a transactional batch
        holds one partition key), so each event is its own `create_item`; they run
        concurrently. Every one is awaited before an error is raised, so none is left
        running behind the caller's retry.
        """
        limit = asyncio.Semaphore(SAVE_CONCURRENCY)

        async def save_one(event: StoredEvent) -> bool:
            async with limit:
                return await self.save(event)

        outcomes = await asyncio.gather(*(save_one(event) for event in events), return_exceptions=True)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            unexpected = next((f for f in failures if not isinstance(f, EventStoreError)), None)
            if unexpected is not None:
                # Not a store failure (a defect, a cancellation): never retried as if transient.
                raise unexpected
            throttled = [f.retry_after for f in failures if isinstance(f, EventStoreError) and f.retry_after]
            first = failures[0]
            raise EventStoreError(
                f"{len(failures)} of {len(events)} events could not be stored: {first}",
                retry_after=max(throttled) if throttled else None,
            ) from first
        return [bool(outcome) for outcome in outcomes]

    async def get(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        """Point read in the tenant's partition; the store's own fields (`_etag`, `_ts`, ...) are dropped."""
        async with self._guard("read an event") as container:
            try:
                document = await container.read_item(event_id, partition_key=tenant_id)
            except CosmosResourceNotFoundError:
                return None
        return StoredEvent.from_document(dict(document))

    async def hourly_counts(self, start: datetime, end: datetime) -> dict[datetime, int]:
        """Events stored per hour of `_ts` (the commit time, whole seconds) in [start, end).

        One cross-partition `COUNT` per hour: each is answered from the index, and a window
        is a day or two of hours at most.
        """
        counts: dict[datetime, int] = {}
        async with self._guard("count stored events") as container:
            for hour_start, hour_end in _hours(start, end):
                query = container.query_items(
                    "SELECT VALUE COUNT(1) FROM c WHERE c._ts >= @start AND c._ts < @end",
                    parameters=[
                        {"name": "@start", "value": math.ceil(hour_start.timestamp())},
                        {"name": "@end", "value": math.ceil(hour_end.timestamp())},
                    ],
                )
                # `SELECT VALUE COUNT(1)` yields bare numbers (one per partition range), not documents.
                values: list[Any] = [value async for value in query]
                number = sum(int(value) for value in values)
                if number:
                    counts[hour_start.replace(minute=0, second=0, microsecond=0)] = number
        return counts

    async def stored_between(self, start: datetime, end: datetime) -> list[tuple[StoredEvent, datetime]]:
        """Every event with `_ts` in [start, end), with its commit time (cross-partition query)."""
        async with self._guard("read stored events") as container:
            query = container.query_items(
                "SELECT * FROM c WHERE c._ts >= @start AND c._ts < @end",
                parameters=[
                    {"name": "@start", "value": math.ceil(start.timestamp())},
                    {"name": "@end", "value": math.ceil(end.timestamp())},
                ],
            )
            documents = [dict(document) async for document in query]
        return [
            (StoredEvent.from_document(document), datetime.fromtimestamp(int(document["_ts"]), UTC))
            for document in documents
        ]

    async def count_subject_events(self, subject: Subject) -> int:
        """`SELECT VALUE COUNT(1)` in the tenant's partition."""
        async with self._guard("count a subject's events") as container:
            query = container.query_items(
                f"SELECT VALUE COUNT(1) FROM c WHERE {subject_condition(subject)}",
                parameters=subject_parameters(subject),
                partition_key=subject.tenant_id,
            )
            values: list[Any] = [value async for value in query]
        return sum(int(value) for value in values)

    async def subject_events(self, subject: Subject) -> AsyncIterator[StoredEvent]:
        """Every event of the subject, oldest `timestamp` first (ties by id), a page of documents at a time.

        Not `ORDER BY c.timestamp`: Cosmos DB orders the timestamp as text, which is not time
        order for a producer's offsets (`+02:00`) nor for fractions (`12:00:00Z` sorts after
        `12:00:00.5Z`). So the ids and timestamps come first (small: only they are held), are
        sorted by instant, and the documents are then read a page at a time by id.
        """
        async with self._guard("list a subject's events") as container:
            query = container.query_items(
                f"SELECT c.id, c.timestamp FROM c WHERE {subject_condition(subject)}",
                parameters=subject_parameters(subject),
                partition_key=subject.tenant_id,
            )
            keys = sorted([(instant(item.get("timestamp")), str(item["id"])) async for item in query])
        for start in range(0, len(keys), cosmos_subjects.SUBJECT_PAGE_SIZE):
            ids = [event_id for _, event_id in keys[start : start + cosmos_subjects.SUBJECT_PAGE_SIZE]]
            async with self._guard("read a subject's events") as container:
                query = container.query_items(
                    "SELECT * FROM c WHERE c.tenantId = @tenant AND ARRAY_CONTAINS(@ids, c.id)",
                    parameters=[{"name": "@tenant", "value": subject.tenant_id}, {"name": "@ids", "value": ids}],
                    partition_key=subject.tenant_id,
                )
                by_id = {str(document["id"]): dict(document) async for document in query}
            for event_id in ids:
                if event_id in by_id:  # else deleted since it was listed
                    yield StoredEvent.from_document(by_id[event_id])

    async def erase_subject_events(self, subject: Subject) -> int:
        """Delete the subject's documents: the ids a page at a time, then each document.

        The page query is asked again from the start after each page is deleted (what was
        deleted is no longer in it), so no continuation token outlives a page, and an
        erasure run again finds only what is left.
        """
        deleted = 0
        budget = ThrottleBudget(self._throttle_budget)
        while True:
            async with self._guard("list a subject's events") as container:
                ids = await wait_out_throttling(budget, functools.partial(first_ids, container, subject))
            removed = await self._delete_ids(subject.tenant_id, ids, budget) if ids else 0
            deleted += removed
            if not removed:
                # Nothing listed, or everything listed was gone already (a query that lags its
                # deletes would otherwise be asked forever).
                return deleted

    async def delete_events(self, tenant_id: str, event_ids: Sequence[str]) -> int:
        """Delete each of these documents in the tenant's partition; a missing one counts 0."""
        unique = sorted(set(event_ids))
        return await self._delete_ids(tenant_id, unique, ThrottleBudget(self._throttle_budget)) if unique else 0

    async def _delete_ids(self, tenant_id: str, ids: Sequence[str], budget: ThrottleBudget) -> int:
        """Delete documents by id, at most `DELETE_CONCURRENCY` at a time; how many were there."""
        limit = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def delete_one(event_id: str) -> bool:
            async with limit, self._guard("delete an event") as container:
                try:
                    await wait_out_throttling(budget, lambda: container.delete_item(event_id, partition_key=tenant_id))
                except CosmosResourceNotFoundError:
                    return False  # already gone: a rerun, or the TTL
                return True

        outcomes = await asyncio.gather(*(delete_one(event_id) for event_id in ids), return_exceptions=True)
        failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failure is not None:
            raise failure
        return sum(1 for outcome in outcomes if outcome is True)

    async def check(self) -> None:
        """Read the container's properties: proves the account answers and the container exists."""
        async with self._guard("check the container") as container:
            await container.read()

    async def close(self) -> None:
        """Close the client and the credential, if owned. Later calls raise `EventStoreError`."""
        if self._closed:
            return
        self._closed = True
        client, self._client, self._container = self._client, None, None
        try:
            if client is not None:
                await client.close()
        finally:
            if self._credential is not None:
                await self._credential.close()

    @asynccontextmanager
    async def _guard(self, action: str) -> AsyncIterator[ContainerProxy]:
        """Connect on first use and turn every SDK and transport error into `EventStoreError`."""
        try:
            yield await self._connected()
        except AzureError as exc:
            raise _store_error(exc, f"could not {action} in {self.database}/{self.container}") from exc

    async def _connected(self) -> ContainerProxy:
        if self._container is not None:
            return self._container
        async with self._connecting:
            if self._closed:
                raise EventStoreError("the Cosmos DB event store is closed")
            if self._container is None:
                self._client, self._container = await self._open()
            return self._container

    async def _open(self) -> tuple[CosmosClient, ContainerProxy]:
        try:
            client = self._connect()
        except Exception as exc:  # a malformed setting: the store is unusable, not the message
            # The cause is chained; its text is left out of ours because it may quote the key.
            raise EventStoreError(
                f"the Cosmos DB client could not be built ({type(exc).__name__}): check CosmosDBConnection"
                " or CosmosDBConnection__accountEndpoint"
            ) from exc
        try:
            # What `async with CosmosClient(...)` does on entry: open the HTTP pipeline and
            # read the account's regions.
            await client.__aenter__()
            container = client.get_database_client(self.database).get_container_client(self.container)
            # Fails here, clearly, if the container is missing (rather than as a 404 that `get`
            # would mistake for "not stored"); the SDK caches the properties for later calls.
            await container.read()
        except BaseException:
            await client.close()
            raise
        return client, container


def create_cosmos_event_store(settings: Settings) -> CosmosEventStore:
    """Build the store from settings: the identity-based endpoint if set, else the connection string."""
    options = {**CLIENT_OPTIONS, "connection_verify": settings.cosmos_verify_tls}
    database, container = settings.cosmos_database, settings.cosmos_container
    endpoint = settings.cosmos_endpoint
    if endpoint:
        # Imported here: azure.identity is only needed for identity-based access.
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        return CosmosEventStore(
            lambda: CosmosClient(endpoint, credential, **options),
            database=database,
            container=container,
            credential=credential,
        )
    connection_string = settings.cosmos_connection_string
    if not connection_string:
        raise ValueError("Set CosmosDBConnection__accountEndpoint or CosmosDBConnection")
    return CosmosEventStore(
        lambda: CosmosClient.from_connection_string(connection_string, **options),
        database=database,
        container=container,
    )


def _store_error(exc: AzureError, problem: str) -> EventStoreError:
    if isinstance(exc, CosmosHttpResponseError):
        status = f"{exc.status_code}" + (f".{exc.sub_status}" if exc.sub_status else "")
        retry_after = retry_after_seconds(exc) if exc.status_code == _THROTTLED else None
        detail = _service_message(exc.http_error_message or exc.message)
        return EventStoreError(f"Cosmos DB {problem} (status {status}){detail}", retry_after=retry_after)
    return EventStoreError(f"Cosmos DB {problem}: {type(exc).__name__}: {exc.message}")


def _service_message(text: object) -> str:
    """The first line of the service's message (its body is JSON with a `message`, often multi-line)."""
    message = str(text or "")
    with suppress(ValueError):
        body = json.loads(message)
        if isinstance(body, dict) and body.get("message"):
            message = str(body["message"])
    first_line = message.strip().split("\n", 1)[0][:200]
    return f": {first_line}" if first_line else ""


def _hours(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at whole hours (UTC)."""
    pieces: list[tuple[datetime, datetime]] = []
    cursor = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while cursor < end:
        next_hour = cursor.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        pieces.append((cursor, min(next_hour, end)))
        cursor = next_hour
    return pieces
