"""The `EventStore` contract, run against both adapters: SQLite on a real file, and Cosmos DB
on the real cosmosdb-server emulator. Cosmos-only behaviour (the container definition, error
mapping of throttling and outages) follows at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from azure.cosmos.aio import ContainerProxy, CosmosClient

from shared.adapters.event_store import cosmos_subjects, embedded_event_store
from shared.adapters.event_store.cosmos_container import EVENTS_CONTAINER, ensure_events_container
from shared.adapters.event_store.cosmos_event_store import CLIENT_OPTIONS, CosmosEventStore, create_cosmos_event_store
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.domain.privacy import Subject
from shared.domain.stored_event import StoredEvent
from shared.ports import EventStore, EventStoreError, StoredEventHistory, SubjectEventStore
from shared.settings import load_settings
from tests.integration.azurite import free_port
from tests.integration.cosmosdb_server import connection_string
from tests.integration.scripted_cosmos import metadata_response, serve_gateway

DATABASE = "cloudscale-tests"


def stored_event(n: int = 1, *, tenant: str = "acme", event_id: str | None = None, **fields: Any) -> StoredEvent:
    """A complete stored event; `fields` override top-level document fields (JSON names)."""
    event_id = event_id or str(uuid.UUID(int=n))
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": tenant,
            "eventType": "purchase",
            "timestamp": f"2025-03-01T12:00:{n % 60:02d}+00:00",
            "correlationId": f"corr-{n}",
            "userId": "user-7",
            "url": "/checkout",
            "properties": {"amount": 49.9, "currency": "EUR", "items": [{"sku": "A-1", "qty": 2}]},
            "enrichment": {
                "clientNetwork": "203.0.113.0/24",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "agent": {"browser": "Firefox", "browserVersion": "128.0", "os": "Linux"},
                "receivedAt": "2025-03-01T12:00:00.250000+00:00",
                "processedAt": "2025-03-01T12:00:00.500000+00:00",
                "queueLatencyMs": 250.0,
            },
            "fraud": {
                "score": 0.4,
                "suspicious": False,
                "reasons": [
                    {"rule": "ip-velocity", "code": "VELOCITY_IP_MINUTE", "weight": 0.4, "description": "many"}
                ],
            },
            "traceContext": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            **fields,
        }
    )


@dataclass
class Backend:
    """A store under test, plus a raw view of what it holds (not through the adapter)."""

    store: EventStore
    raw: Callable[[str, str], Awaitable[dict[str, Any]]]
    """The stored record of (tenant, id) with the store's own bookkeeping (seq/stored_at, _etag/_ts)."""


# --- the two adapters ---------------------------------------------------------------------------


def embedded_backend(path: Path) -> Backend:
    # Every save reads a different time, so an overwritten row would show a new stored_at.
    store = EmbeddedEventStore(path, clock=iter(range(1_000, 1_000_000)).__next__)

    async def raw(tenant_id: str, event_id: str) -> dict[str, Any]:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            seq, stored_at, document = connection.execute(
                "SELECT seq, stored_at, document FROM events WHERE tenant_id = ? AND event_id = ?",
                (tenant_id, event_id),
            ).fetchone()
        return {"seq": seq, "stored_at": stored_at, **orjson.loads(document)}

    return Backend(store, raw)


def cosmos_settings(conn_str: str, container: str) -> dict[str, str]:
    return {
        "CosmosDBConnection": conn_str,
        "CLOUDSCALE_COSMOS_VERIFY_TLS": "false",  # cosmosdb-server's certificate is self-signed
        "CLOUDSCALE_COSMOS_DATABASE": DATABASE,
        "CLOUDSCALE_COSMOS_CONTAINER": container,
    }


@dataclass
class CosmosSetup:
    """A fresh events container on the emulator, and a plain SDK client to look behind the adapter."""

    conn_str: str
    client: CosmosClient
    container: ContainerProxy


@contextlib.asynccontextmanager
async def fresh_events_container(conn_str: str) -> AsyncIterator[CosmosSetup]:
    """A new container per test, created as local setup creates it, deleted afterwards."""
    async with CosmosClient.from_connection_string(conn_str, connection_verify=False) as client:
        container = await ensure_events_container(client, DATABASE, f"events-{uuid.uuid4().hex[:12]}")
        try:
            yield CosmosSetup(conn_str, client, container)
        finally:
            await client.get_database_client(DATABASE).delete_container(container)


@pytest.fixture
async def cosmos(cosmosdb_connection_string: str) -> AsyncIterator[CosmosSetup]:
    async with fresh_events_container(cosmosdb_connection_string) as setup:
        yield setup


def cosmos_backend(setup: CosmosSetup) -> Backend:
    async def raw(tenant_id: str, event_id: str) -> dict[str, Any]:
        return dict(await setup.container.read_item(event_id, partition_key=tenant_id))

    store = create_cosmos_event_store(load_settings(cosmos_settings(setup.conn_str, setup.container.id)))
    return Backend(store, raw)


@pytest.fixture(params=["embedded", pytest.param("cosmos", marks=pytest.mark.cosmosdb)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "embedded":
            backend = embedded_backend(tmp_path / "events.sqlite3")
        else:
            # Only the Cosmos parameter starts (or needs) the emulator.
            conn_str: str = request.getfixturevalue("cosmosdb_connection_string")
            backend = cosmos_backend(await stack.enter_async_context(fresh_events_container(conn_str)))
        stack.push_async_callback(backend.store.close)
        yield backend


@pytest.fixture(params=["embedded", pytest.param("cosmos", marks=pytest.mark.cosmosdb)])
async def unreachable_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    """A store whose backing service cannot be used at all."""
    store: EventStore
    if request.param == "embedded":
        # Where the folder should be there is a file: nothing can be created under it (this
        # holds even for root, unlike a read-only folder).
        (tmp_path / "blocked").write_text("not a folder")
        store = EmbeddedEventStore(tmp_path / "blocked" / "events.sqlite3")
    else:
        # Nothing listens on this port.
        settings = cosmos_settings(connection_string(free_port()), "events")
        store = create_cosmos_event_store(load_settings(settings))
    yield store
    await store.close()


# --- the contract -------------------------------------------------------------------------------


async def test_a_saved_event_reads_back_equal(backend: Backend) -> None:
    event = stored_event(1)

    assert await backend.store.save(event) is True

    assert await backend.store.get("acme", event.id) == event


async def test_saving_the_same_id_again_changes_nothing(backend: Backend) -> None:
    # GIVEN a stored event
    first = stored_event(1)
    assert await backend.store.save(first) is True
    before = await backend.raw("acme", first.id)

    # WHEN a redelivery stores it again, even with different content
    again = stored_event(1, eventType="page_view", properties={"changed": True})
    saved = await backend.store.save(again)

    # THEN nothing was written: same document, same bookkeeping (seq/stored_at, _etag/_ts)
    assert saved is False
    assert await backend.raw("acme", first.id) == before
    assert await backend.store.get("acme", first.id) == first


async def test_the_same_event_id_in_two_tenants_is_two_documents(backend: Backend) -> None:
    event_id = str(uuid.uuid4())
    acme = stored_event(1, tenant="acme", event_id=event_id)
    globex = stored_event(2, tenant="globex", event_id=event_id, eventType="click")

    assert await backend.store.save(acme) is True
    assert await backend.store.save(globex) is True

    assert await backend.store.get("acme", event_id) == acme
    assert await backend.store.get("globex", event_id) == globex


async def test_a_missing_event_is_none(backend: Backend) -> None:
    await backend.store.save(stored_event(1))

    assert await backend.store.get("acme", str(uuid.uuid4())) is None


async def test_an_event_is_not_found_under_another_tenant(backend: Backend) -> None:
    event = stored_event(1, tenant="acme")
    await backend.store.save(event)

    assert await backend.store.get("globex", event.id) is None


async def test_check_passes_on_a_working_store(backend: Backend) -> None:
    await backend.store.check()


async def test_concurrent_saves_of_one_id_store_it_once(backend: Backend) -> None:
    results = await asyncio.gather(*(backend.store.save(stored_event(1, correlationId=f"c{n}")) for n in range(8)))

    assert sorted(results) == [False] * 7 + [True]


async def test_save_many_stores_the_new_and_reports_the_already_stored(backend: Backend) -> None:
    # GIVEN one event already stored
    old = stored_event(1)
    assert await backend.store.save(old) is True

    # WHEN a batch holds it again among new events of two tenants
    new = [stored_event(2), stored_event(3, tenant="globex")]
    saved = await backend.store.save_many([new[0], stored_event(1, correlationId="again"), new[1]])

    # THEN the result says which this call stored, in order, and every event reads back once
    assert saved == [True, False, True]
    assert await backend.store.get("acme", old.id) == old
    assert await backend.store.get("acme", new[0].id) == new[0]
    assert await backend.store.get("globex", new[1].id) == new[1]


async def test_an_unreachable_store_raises_the_port_error(unreachable_store: EventStore) -> None:
    with pytest.raises(EventStoreError) as save_error:
        await unreachable_store.save(stored_event(1))
    with pytest.raises(EventStoreError) as get_error:
        await unreachable_store.get("acme", str(uuid.UUID(int=1)))
    with pytest.raises(EventStoreError) as check_error:
        await unreachable_store.check()
    with pytest.raises(EventStoreError) as batch_error:
        await unreachable_store.save_many([stored_event(2), stored_event(3)])

    for error in (save_error.value, get_error.value, check_error.value, batch_error.value):
        assert type(error) is EventStoreError
        assert error.__cause__ is not None  # the SDK or sqlite3 error is chained, not leaked
        assert error.retry_after is None


async def test_a_closed_store_raises_the_port_error(backend: Backend) -> None:
    await backend.store.save(stored_event(1))
    await backend.store.close()

    with pytest.raises(EventStoreError):
        await backend.store.save(stored_event(2))
    with pytest.raises(EventStoreError):
        await backend.store.get("acme", str(uuid.UUID(int=1)))


# --- Cosmos DB only -----------------------------------------------------------------------------


@pytest.mark.cosmosdb
async def test_the_events_container_is_created_as_defined(cosmos: CosmosSetup) -> None:
    # The emulator keeps TTL settings but never expires anything, so the properties are the test.
    properties = await cosmos.container.read()

    assert properties["partitionKey"]["paths"] == ["/tenantId"]
    assert properties["defaultTtl"] == 2_592_000
    policy = properties["indexingPolicy"]
    assert policy["includedPaths"] == [{"path": "/*"}]
    assert {"path": "/properties/*"} in policy["excludedPaths"]
    assert {"path": '/"_etag"/?'} in policy["excludedPaths"]
    assert {key: properties[key] for key in EVENTS_CONTAINER.properties()} == EVENTS_CONTAINER.properties()

    # Running local setup again leaves the existing container as it is.
    again = await ensure_events_container(cosmos.client, DATABASE, cosmos.container.id)
    assert (await again.read())["_rid"] == properties["_rid"]


@pytest.mark.cosmosdb
async def test_a_stored_document_is_keyed_by_event_id_in_the_tenant_partition(cosmos: CosmosSetup) -> None:
    backend = cosmos_backend(cosmos)
    event = stored_event(3, tenant="initech")
    try:
        await backend.store.save(event)
    finally:
        await backend.store.close()

    document = await cosmos.container.read_item(event.id, partition_key="initech")

    assert (document["id"], document["eventId"], document["tenantId"]) == (event.id, event.id, "initech")
    assert StoredEvent.from_document(dict(document)) == event


@pytest.mark.cosmosdb
async def test_a_missing_container_is_a_store_error_not_a_missing_event(cosmosdb_connection_string: str) -> None:
    store = create_cosmos_event_store(load_settings(cosmos_settings(cosmosdb_connection_string, "no-such-container")))
    try:
        with pytest.raises(EventStoreError, match="no-such-container"):
            await store.get("acme", str(uuid.UUID(int=1)))
        with pytest.raises(EventStoreError):
            await store.save(stored_event(1))
        with pytest.raises(EventStoreError):
            await store.check()
    finally:
        await store.close()


async def test_a_malformed_connection_string_is_a_store_error_that_does_not_echo_it() -> None:
    store = create_cosmos_event_store(load_settings({"CosmosDBConnection": "AccountKey=c2VjcmV0;"}))
    try:
        with pytest.raises(EventStoreError) as error:
            await store.save(stored_event(1))
    finally:
        await store.close()

    assert "c2VjcmV0" not in str(error.value)


async def test_an_identity_based_store_connects_nothing_until_used() -> None:
    settings = load_settings({"CosmosDBConnection__accountEndpoint": "https://example.invalid:443/"})
    store = create_cosmos_event_store(settings)
    await store.close()


# A scripted Cosmos DB gateway for the faults the emulator cannot produce: throttling and outages.


@dataclass
class ScriptedCosmos:
    url: str
    writes: list[float]
    """One entry (the time) per create-document request received."""


@pytest.fixture
async def scripted_cosmos() -> AsyncIterator[ScriptedCosmos]:
    """Answers like a Cosmos DB gateway: account and container metadata, then 429 for every
    write (asking for 20 ms) and 503 for every read."""
    writes: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        metadata = metadata_response(request)
        if metadata is not None:
            return metadata
        if len(request.path.rstrip("/").split("/")[1:]) == 5 and request.method == "POST":  # .../docs
            writes.append(time.monotonic())
            return web.json_response(
                {"code": "TooManyRequests", "message": "Request rate is large.\r\nActivityId: 1"},
                status=429,
                headers={"x-ms-retry-after-ms": "20", "x-ms-substatus": "3200"},
            )
        return web.json_response({"code": "ServiceUnavailable", "message": "try later"}, status=503)

    async with serve_gateway(handle) as url:
        yield ScriptedCosmos(url, writes)


@pytest.fixture
async def scripted_store(scripted_cosmos: ScriptedCosmos) -> AsyncIterator[CosmosEventStore]:
    store = CosmosEventStore(
        lambda: CosmosClient(scripted_cosmos.url, "a2V5", **CLIENT_OPTIONS), database="db", container="events"
    )
    yield store
    await store.close()


async def test_throttling_surfaces_quickly_with_the_retry_after_hint(
    scripted_store: CosmosEventStore, scripted_cosmos: ScriptedCosmos
) -> None:
    with pytest.raises(EventStoreError) as error:
        await scripted_store.save(stored_event(1))

    assert error.value.retry_after == pytest.approx(0.020)
    assert "429" in str(error.value)
    # The SDK retried a few times (CLIENT_OPTIONS), then left the rest to our own backoff.
    assert len(scripted_cosmos.writes) == 1 + CLIENT_OPTIONS["retry_total"]


async def test_a_throttled_batch_is_one_store_error_with_the_retry_after_hint(
    scripted_store: CosmosEventStore, scripted_cosmos: ScriptedCosmos
) -> None:
    with pytest.raises(EventStoreError) as error:
        await scripted_store.save_many([stored_event(n) for n in range(3)])

    assert error.value.retry_after == pytest.approx(0.020)
    assert str(error.value).startswith("3 of 3 events could not be stored")
    # Every event was tried (none left running behind the error)
    assert len(scripted_cosmos.writes) == 3 * (1 + CLIENT_OPTIONS["retry_total"])


async def test_an_unavailable_service_is_a_store_error_without_a_hint(scripted_store: CosmosEventStore) -> None:
    with pytest.raises(EventStoreError) as error:
        await scripted_store.get("acme", str(uuid.UUID(int=1)))

    assert "503" in str(error.value)
    assert error.value.retry_after is None


# --- history by commit time (reconciliation) ----------------------------------------------------


def commit_time(raw: dict[str, Any]) -> datetime:
    """The store's own commit time of a raw record: `stored_at` (embedded) or `_ts` (Cosmos DB)."""
    return datetime.fromtimestamp(float(raw["stored_at"] if "stored_at" in raw else raw["_ts"]), UTC)


async def test_history_counts_and_lists_events_by_commit_time(backend: Backend) -> None:
    # GIVEN three events in two tenants
    events = [stored_event(1), stored_event(2), stored_event(3, tenant="globex")]
    for event in events:
        assert await backend.store.save(event) is True
    times = [commit_time(await backend.raw(event.tenant_id, event.id)) for event in events]
    history = cast(StoredEventHistory, backend.store)
    start, end = min(times) - timedelta(hours=2), max(times) + timedelta(hours=2)

    # WHEN the history of a window around them is read
    counts = await history.hourly_counts(start, end)
    listed = await history.stored_between(start, end)

    # THEN every event is counted once, in whole-hour buckets, and listed with its commit time
    assert sum(counts.values()) == 3
    assert all((hour.minute, hour.second, hour.microsecond) == (0, 0, 0) for hour in counts)
    assert sorted(event.id for event, _ in listed) == sorted(event.id for event in events)
    assert {event.id: at for event, at in listed} == {event.id: at for event, at in zip(events, times, strict=True)}
    # AND a window that ends before the first commit sees none of them
    assert await history.hourly_counts(start, min(times)) == {}
    assert await history.stored_between(start, min(times)) == []


# --- by data subject (export and erasure) -------------------------------------------------------


def subject_store(backend: Backend) -> SubjectEventStore:
    return cast(SubjectEventStore, backend.store)


async def test_a_subjects_events_are_counted_exported_oldest_first_and_erased(backend: Backend) -> None:
    # GIVEN user-7's events in acme, saved out of time order, with an offset and a fraction
    # (as text "12:00:00Z" would sort after "12:00:00.500Z", and "13:30+02:00" after both)
    mine = [
        stored_event(1, timestamp="2025-03-01T12:00:00+00:00"),
        stored_event(2, timestamp="2025-03-01T13:30:00+02:00"),  # 11:30 UTC: the oldest
        stored_event(3, timestamp="2025-03-01T11:59:59.500000+00:00"),
        stored_event(4, timestamp="2025-03-01T12:00:00.250000+00:00"),
    ]
    # AND the same user id in another tenant, another user, and an anonymous id in acme
    others = [
        stored_event(5, tenant="globex"),
        stored_event(6, userId="user-8"),
        stored_event(7, userId=None, anonymousId="user-7"),
    ]
    await backend.store.save_many([*mine, *others])
    subject = Subject("acme", "userId", "user-7")
    store = subject_store(backend)

    # WHEN the subject is counted and exported
    count = await store.count_subject_events(subject)
    exported = [event async for event in store.subject_events(subject)]

    # THEN only its events, by instant
    assert count == 4
    assert [event.id for event in exported] == [mine[n].id for n in (1, 2, 0, 3)]
    assert exported[0] == mine[1]

    # WHEN it is erased, twice
    first = await store.erase_subject_events(subject)
    second = await store.erase_subject_events(subject)

    # THEN the first deleted its events, the second nothing; everyone else's are intact
    assert (first, second) == (4, 0)
    assert await store.count_subject_events(subject) == 0
    assert [event async for event in store.subject_events(subject)] == []
    for event in mine:
        assert await backend.store.get("acme", event.id) is None
    for event in others:
        assert await backend.store.get(event.tenant_id, event.id) == event
    assert await store.count_subject_events(Subject("globex", "userId", "user-7")) == 1
    assert await store.count_subject_events(Subject("acme", "userId", "user-8")) == 1


async def test_an_anonymous_id_is_its_own_subject(backend: Backend) -> None:
    anonymous = stored_event(1, userId=None, anonymousId="anon-1")
    identified = stored_event(2, userId="anon-1")  # a userId equal to it is someone else
    await backend.store.save_many([anonymous, identified])
    subject = Subject("acme", "anonymousId", "anon-1")
    store = subject_store(backend)

    assert await store.count_subject_events(subject) == 1
    assert [event async for event in store.subject_events(subject)] == [anonymous]
    assert await store.erase_subject_events(subject) == 1
    assert await backend.store.get("acme", identified.id) == identified


async def test_a_long_export_is_read_page_by_page_in_order(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pages of 2: five events take three pages (and one equal timestamp spans a page boundary).
    monkeypatch.setattr(embedded_event_store, "SUBJECT_PAGE_SIZE", 2)
    monkeypatch.setattr(cosmos_subjects, "SUBJECT_PAGE_SIZE", 2)
    events = [stored_event(n, timestamp=f"2025-03-01T12:00:{min(n, 3):02d}+00:00") for n in range(1, 6)]
    await backend.store.save_many(list(reversed(events)))
    subject = Subject("acme", "userId", "user-7")

    exported = [event async for event in subject_store(backend).subject_events(subject)]

    assert sorted(event.id for event in exported) == sorted(event.id for event in events)
    assert [event.timestamp for event in exported] == sorted(event.timestamp for event in events)
    # Pages of 2 erase the same five.
    assert await subject_store(backend).erase_subject_events(subject) == 5


async def test_delete_events_deletes_those_of_the_tenant_and_skips_absent_ids(backend: Backend) -> None:
    event_id = str(uuid.UUID(int=1))
    acme = [stored_event(1), stored_event(2), stored_event(3)]
    globex = stored_event(1, tenant="globex")  # the same id in another tenant
    await backend.store.save_many([*acme, globex])
    store = subject_store(backend)

    deleted = await store.delete_events("acme", [event_id, acme[1].id, str(uuid.uuid4()), event_id])

    assert deleted == 2
    assert await store.delete_events("acme", [event_id]) == 0
    assert await store.delete_events("acme", []) == 0
    assert await backend.store.get("acme", event_id) is None
    assert await backend.store.get("acme", acme[1].id) is None
    assert await backend.store.get("acme", acme[2].id) == acme[2]
    assert await backend.store.get("globex", event_id) == globex


async def test_a_subject_of_an_unreachable_store_is_a_store_error(unreachable_store: EventStore) -> None:
    store = cast(SubjectEventStore, unreachable_store)
    subject = Subject("acme", "userId", "user-7")

    with pytest.raises(EventStoreError):
        await store.count_subject_events(subject)
    with pytest.raises(EventStoreError):
        [event async for event in store.subject_events(subject)]
    with pytest.raises(EventStoreError):
        await store.erase_subject_events(subject)
    with pytest.raises(EventStoreError):
        await store.delete_events("acme", ["a"])
