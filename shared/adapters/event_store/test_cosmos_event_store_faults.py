"""The Cosmos DB event store against a scripted gateway: the faults cosmosdb-server cannot produce.

Throttled erasures: 429 with `x-ms-retry-after-ms`, waited out within a budget.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from azure.cosmos.aio import CosmosClient

from shared.adapters.event_store.cosmos_event_store import CLIENT_OPTIONS, CosmosEventStore
from shared.domain.privacy import Subject
from shared.ports import EventStoreError
from tests.integration.scripted_cosmos import metadata_response, serve_gateway

SUBJECT = Subject("acme", "userId", "user-7")


@dataclass
class Gateway:
    """A scripted Cosmos DB gateway holding the ids of one subject's documents in `acme`."""

    url: str = ""
    documents: set[str] = field(default_factory=set)
    throttled_deletes: int = 0
    """How many DELETE requests to answer 429 (asking for 20 ms) before deleting."""
    delete_requests: list[float] = field(default_factory=list)
    throttle_after: int = 0
    """Deletes answered before the throttled ones start (a subject too big for one page)."""
    query_seconds: float = 0.0
    """How long each query takes to answer (a large partition under load)."""
    deleted: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        metadata = metadata_response(request)
        if metadata is not None:
            return metadata
        parts = request.path.rstrip("/").split("/")[1:]
        if len(parts) == 5 and request.method == "POST":  # a query on .../docs
            return await self._query(request)
        if len(parts) == 6 and request.method == "DELETE":  # .../docs/<id>
            self.delete_requests.append(time.monotonic())
            if self.throttled_deletes > 0 and self.deleted >= self.throttle_after:
                self.throttled_deletes -= 1
                return web.json_response(
                    {"code": "TooManyRequests", "message": "Request rate is large."},
                    status=429,
                    headers={"x-ms-retry-after-ms": "20", "x-ms-substatus": "3200"},
                )
            if parts[5] not in self.documents:
                return web.json_response({"code": "NotFound", "message": "gone"}, status=404)
            self.documents.discard(parts[5])
            self.deleted += 1
            return web.Response(status=204)
        return web.json_response({"code": "ServiceUnavailable", "message": "not scripted"}, status=503)

    async def _query(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = json.loads(await request.read())
        await asyncio.sleep(self.query_seconds)
        limit = int(request.headers.get("x-ms-max-item-count", "100"))
        if "COUNT(1)" in body["query"]:
            found: list[Any] = [len(self.documents)]
        else:
            found = [{"id": document_id} for document_id in sorted(self.documents)[:limit]]
        return web.json_response({"_rid": "gAABAIAAAAE=", "Documents": found, "_count": len(found)})


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    scripted = Gateway()
    async with serve_gateway(scripted.handle) as url:
        scripted.url = url
        yield scripted


def store_on(gateway: Gateway, *, throttle_budget: float = 60.0) -> CosmosEventStore:
    return CosmosEventStore(
        lambda: CosmosClient(gateway.url, "a2V5", **CLIENT_OPTIONS),
        database="db",
        container="events",
        throttle_budget=throttle_budget,
    )


async def test_a_throttled_erasure_waits_out_the_hints_and_deletes_everything(gateway: Gateway) -> None:
    # GIVEN five documents, and a gateway that throttles the first ten deletes (more than the
    # SDK's own retries of one request)
    gateway.documents = {f"e{n}" for n in range(5)}
    gateway.throttled_deletes = 10
    store = store_on(gateway)
    try:
        # WHEN the subject is erased
        erased = await store.erase_subject_events(SUBJECT)
    finally:
        await store.close()

    # THEN every document is deleted, each once, after the throttled attempts
    assert erased == 5
    assert gateway.documents == set()
    assert len(gateway.delete_requests) == 5 + 10


async def test_a_long_erasure_throttled_late_is_not_failed_by_the_time_spent_deleting(gateway: Gateway) -> None:
    # GIVEN a subject of three pages whose queries are slow, so that deleting takes longer
    # than the throttle budget, and a short burst of 429s (more than the SDK's own retries)
    # once two pages are deleted
    gateway.documents = {f"e{n:03}" for n in range(250)}
    gateway.query_seconds = 0.3
    gateway.throttle_after = 200
    gateway.throttled_deletes = 64  # four attempts of each of 16 concurrent deletes: past the SDK's retries
    store = store_on(gateway, throttle_budget=0.5)
    try:
        # WHEN the subject is erased
        erased = await store.erase_subject_events(SUBJECT)
    finally:
        await store.close()

    # THEN the burst is waited out (a few tens of milliseconds, well inside the budget) and
    # everything is deleted: the budget bounds waiting without progress, not the whole erasure
    assert erased == 250
    assert gateway.documents == set()


async def test_throttling_past_the_budget_is_a_store_error_with_the_hint(gateway: Gateway) -> None:
    gateway.documents = {"e1"}
    gateway.throttled_deletes = 1_000_000
    store = store_on(gateway, throttle_budget=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(EventStoreError) as error:
            await store.erase_subject_events(SUBJECT)
    finally:
        await store.close()

    assert "429" in str(error.value)
    assert error.value.retry_after == pytest.approx(0.020)
    assert gateway.documents == {"e1"}
    # Bounded by the budget (plus the SDK's own retries of the last attempt), not endless.
    assert time.monotonic() - started < 5


async def test_delete_events_counts_only_what_was_there(gateway: Gateway) -> None:
    gateway.documents = {"e1", "e2"}
    store = store_on(gateway)
    try:
        assert await store.delete_events("acme", ["e1", "missing", "e1"]) == 1
        assert await store.count_subject_events(SUBJECT) == 1
    finally:
        await store.close()

    assert gateway.documents == {"e2"}
