"""Each function invoked through the worker with the input the host would send, on real backends.

The embedded backend (SQLite files) plays Service Bus, Cosmos DB and Data Explorer, so every
assertion is about an outcome a user would see: the HTTP answer, the queued message, the
stored and enriched event, the analytics row.
"""

from __future__ import annotations

import gzip
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from tests.conformance import host_data
from tests.conformance.conftest import DeployedApp, failure, succeeded
from tests.conformance.host_data import QueuedMessage

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLIENT = {"x-forwarded-for": "203.0.113.7:51234", "user-agent": "conformance/1.0"}


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    """By lower-case name: HTTP header names are case-insensitive, and the host treats them so."""
    body: Any


async def call(app: DeployedApp, name: str, request: Any) -> HttpAnswer:
    """Invoke an HTTP function and read its `$return` as the host would."""
    response = await app.worker.invoke(app.function_id(name), {"req": request})
    assert succeeded(response), failure(response)
    http = response.return_value.http
    kind = http.body.WhichOneof("data")
    raw = http.body.bytes if kind == "bytes" else http.body.string.encode()
    headers = {name.lower(): value for name, value in http.headers.items()}
    return HttpAnswer(int(http.status_code), headers, json.loads(raw) if raw else None)


async def post_events(app: DeployedApp, events: list[dict[str, Any]]) -> HttpAnswer:
    body = json.dumps(events).encode()
    request = host_data.http_request(
        "POST", "/api/events", body=body, headers={**CLIENT, "Content-Type": "application/json"}
    )
    return await call(app, "ingest_events", request)


def new_events(tenant: str, count: int) -> list[dict[str, Any]]:
    return [
        {"eventType": "page_view", "tenantId": tenant, "correlationId": f"c-{index}", "url": f"/page/{index}"}
        for index in range(count)
    ]


def queued(received: Any) -> QueuedMessage:
    """What the extension knows of a message the embedded queue delivered."""
    message = received.message
    return QueuedMessage(
        body=message.body,
        message_id=message.message_id,
        sequence_number=received.sequence_number,
        enqueued_time=datetime.fromtimestamp(received.enqueued_at, UTC),
        delivery_count=received.delivery_count,
        lock_token=received.lock_token,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        subject=message.subject,
        application_properties=dict(message.application_properties),
    )


async def deliver_queue(
    app: DeployedApp, body_form: Literal["collection_bytes", "collection_string"] = "collection_bytes"
) -> list[QueuedMessage]:
    """Receive what is queued and hand it to `process_event` as one batch, then settle it as the
    host does with `autoCompleteMessages`: complete on success."""
    queue = app.container().embedded_queue
    received = await queue.receive(100)
    assert received, "nothing was queued"
    batch = [queued(message) for message in received]
    data, metadata = host_data.service_bus_batch(batch, body_form=body_form)
    response = await app.worker.invoke(app.function_id("process_event"), {"messages": data}, metadata)
    assert succeeded(response), failure(response)
    assert await queue.complete_many([message.lock_token for message in received]) == []
    return batch


async def test_posting_events_answers_202_and_queues_them(deployed_app: DeployedApp) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    answer = await post_events(deployed_app, new_events(tenant, 2))

    assert answer.status == 202, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    assert "ratelimit-remaining" in answer.headers
    assert answer.body["accepted"] == 2
    event_ids = [result["eventId"] for result in answer.body["results"]]
    assert all(uuid.UUID(event_id) for event_id in event_ids)
    queued_ids = {message.message_id for message in await deployed_app.container().embedded_queue.peek(100)}
    assert {f"{tenant}/{event_id}" for event_id in event_ids} <= queued_ids


async def test_health_checks_every_dependency(deployed_app: DeployedApp) -> None:
    answer = await call(deployed_app, "health", host_data.http_request("GET", "/api/health", headers=CLIENT))

    assert answer.status == 200, answer.body
    assert answer.body["status"] == "healthy"
    assert set(answer.body["checks"]) == {"queue", "rateLimitStore", "eventStore", "analytics", "clientKey"}


async def test_liveness_answers_without_dependencies(deployed_app: DeployedApp) -> None:
    answer = await call(deployed_app, "health_live", host_data.http_request("GET", "/api/health/live", headers=CLIENT))

    assert answer.status == 200, answer.body
    assert answer.body == {"status": "healthy"}


async def test_the_openapi_document_is_served(deployed_app: DeployedApp) -> None:
    request = host_data.http_request("GET", "/api/openapi.json", headers=CLIENT)
    answer = await call(deployed_app, "openapi", request)

    assert answer.status == 200
    assert answer.body["openapi"].startswith("3.1")
    assert "/api/events" in answer.body["paths"]


@pytest.mark.parametrize("body_form", ["collection_bytes", "collection_string"])
async def test_a_queue_batch_is_processed_stored_and_readable(
    deployed_app: DeployedApp, body_form: Literal["collection_bytes", "collection_string"]
) -> None:
    app = deployed_app
    await deliver_queue_if_any(app)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    posted = await post_events(app, new_events(tenant, 3))
    event_ids = [result["eventId"] for result in posted.body["results"]]

    batch = await deliver_queue(app, body_form)

    assert [message.message_id for message in batch] == [f"{tenant}/{event_id}" for event_id in event_ids]
    for message, event_id in zip(batch, event_ids, strict=True):
        answer = await call(
            app,
            "get_event",
            host_data.http_request(
                "GET",
                f"/api/events/{tenant}/{event_id}",
                headers=CLIENT,
                route={"tenantId": tenant, "eventId": event_id},
            ),
        )
        assert answer.status == 200, answer.body
        assert answer.body["eventId"] == event_id
        assert answer.body["fraud"]["suspicious"] is False
        enrichment = answer.body["enrichment"]
        assert enrichment["clientNetwork"] == "203.0.113.0/24"
        # The host sends EnqueuedTimeUtc without an offset; the app must read it as UTC.
        enqueued_at = datetime.fromisoformat(enrichment["enqueuedAt"])
        assert abs(enqueued_at - message.enqueued_time) < timedelta(milliseconds=1)
        assert enrichment["queueLatencyMs"] >= 0


async def test_a_poison_message_in_a_batch_is_parked_and_its_neighbours_stored(deployed_app: DeployedApp) -> None:
    app = deployed_app
    await deliver_queue_if_any(app)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    posted = await post_events(app, new_events(tenant, 2))
    good_ids = [result["eventId"] for result in posted.body["results"]]
    queue = app.container().embedded_queue
    poison_id = str(uuid.uuid4())
    await queue.send([_poison(poison_id)])

    await deliver_queue(app)

    store = app.container().event_store
    for event_id in good_ids:
        assert await store.get(tenant, event_id) is not None
    parked = {letter.message.message_id: letter for letter in await queue.dead_letters(100)}
    assert parked[poison_id].reason == "UndecodableMessage"


async def test_a_change_feed_batch_becomes_analytics_rows(deployed_app: DeployedApp) -> None:
    app = deployed_app
    await deliver_queue_if_any(app)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    posted = await post_events(app, new_events(tenant, 2))
    event_ids = {result["eventId"] for result in posted.body["results"]}
    await deliver_queue(app)
    store = app.container().event_store
    changes = [change for change in await store.changes(after=0, limit=1000) if change.event.id in event_ids]
    documents = [
        {
            **change.event.to_document(),
            "_rid": f"rid-{change.sequence}",
            "_self": f"dbs/cloudscale/colls/events/docs/{change.event.id}",
            "_etag": f'"{uuid.uuid4()}"',
            "_attachments": "attachments/",
            "_ts": int(change.stored_at),
            "_lsn": change.sequence,
        }
        for change in changes
    ]

    response = await app.worker.invoke(
        app.function_id("events_to_analytics"), {"documents": host_data.cosmos_documents(documents)}
    )

    assert succeeded(response), failure(response)
    now = datetime.now(UTC)
    in_analytics = await app.container().analytics_sink.event_keys(now - timedelta(hours=1), now + timedelta(hours=1))
    assert {(tenant, event_id) for event_id in event_ids} <= in_analytics


async def test_the_hourly_reconciliation_timer_runs(
    deployed_app: DeployedApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="changefeed.blueprint")

    response = await deployed_app.worker.invoke(
        deployed_app.function_id("reconcile_analytics"), {"timer": host_data.timer()}
    )

    assert succeeded(response), failure(response)
    assert any(record.getMessage().startswith("reconciled ") for record in caplog.records)


async def deliver_queue_if_any(app: DeployedApp) -> None:
    """Settle what earlier tests left queued, so each test's batch holds only its own messages."""
    if await app.container().embedded_queue.depth():
        await deliver_queue(app)


def _poison(message_id: str) -> Any:
    envelope = __import__("shared.domain.envelope", fromlist=["QueueMessage"])
    return envelope.QueueMessage(
        message_id=message_id, body=b"not json", content_type="application/json", subject="page_view"
    )


async def test_a_gzip_segment_batch_is_inflated_mapped_and_queued(deployed_app: DeployedApp) -> None:
    # The host hands the function the compressed bytes and their content-encoding untouched;
    # the app inflates them. No key here: the embedded backend's open mode takes the tenantId.
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    batch = {
        "batch": [
            {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "seg-1", "tenantId": tenant},
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "seg-2", "tenantId": tenant},
        ],
        "sentAt": datetime.now(UTC).isoformat(),
    }
    request = host_data.http_request(
        "POST",
        "/api/v1/batch",
        body=gzip.compress(json.dumps(batch).encode()),
        headers={**CLIENT, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        route={"call": "batch"},
    )

    answer = await call(deployed_app, "segment_api", request)

    assert (answer.status, answer.body) == (200, {"success": True})
    queued_ids = {message.message_id for message in await deployed_app.container().embedded_queue.peek(100)}
    assert {f"{tenant}/seg-1", f"{tenant}/seg-2"} <= queued_ids
