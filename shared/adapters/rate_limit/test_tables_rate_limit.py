"""`TableRateLimitStore` against the real Azurite Table emulator: what only Table Storage has
(ETag races, pruning, settings, transport errors). What both adapters must do is in
`test_rate_limit_contract`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from azure.data.tables import TableClient as SyncTableClient
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.rate_limit.table_entities import escape_key
from shared.adapters.rate_limit.tables_rate_limit import TableRateLimitStore, create_table_rate_limit_store
from shared.adapters.rate_limit.test_rate_limit_contract import NOW, admit, read_state, reserving
from shared.domain.ratelimit import BucketLimits, ClientDecision, ClientState, SlotWindow, admit_client
from shared.ports import ContentionError, RateLimitStoreError
from shared.settings import load_settings
from tests.integration.table_clients import fresh_table_name, table_scoped_client, unreachable_table_client

MakeStore = Callable[[], TableRateLimitStore]


@pytest.fixture
def table_name() -> str:
    return fresh_table_name("rl")


@pytest.fixture
async def make_store(azurite_table_connection_string: str, table_name: str) -> AsyncIterator[MakeStore]:
    """Builds stores with their own TableClient (as separate instances of the app would have)."""
    stores: list[TableRateLimitStore] = []

    def make() -> TableRateLimitStore:
        client = TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name)
        stores.append(TableRateLimitStore(client))
        return stores[-1]

    yield make
    for store in stores:
        await store.close()


def test_escaping_keeps_keys_apart_and_is_reversible() -> None:
    """Table keys forbid / \\ # ?; escaping `%` too keeps two keys from meeting (the contract suite
    stores such keys apart on both adapters)."""
    assert escape_key("a/b") != escape_key("a%2Fb")
    assert (escape_key("a/b"), escape_key("a%2Fb")) == ("a%2Fb", "a%252Fb")


def rival_write(connection_string: str, table_name: str, client_key: str) -> None:
    """Another instance updating the client's entity, synchronously, from inside a `change`."""
    with SyncTableClient.from_connection_string(connection_string, table_name=table_name) as rival:
        entity = rival.get_entity(f"client:{escape_key(client_key)}", "state")
        entity["recent"] = json.dumps(SlotWindow(((int(NOW), 2),)).to_list())
        rival.update_entity(entity, mode=UpdateMode.REPLACE)


@pytest.mark.azurite
async def test_a_write_between_read_and_write_is_retried_not_lost(
    make_store: MakeStore, azurite_table_connection_string: str, table_name: str
) -> None:
    store = make_store()
    limits = BucketLimits(capacity=100, refill_per_second=1.0)
    await store.update_client("198.51.100.1", admit(limits, NOW))
    calls = 0

    def admit_after_a_rival_write(state: ClientState | None) -> tuple[ClientState, ClientDecision]:
        nonlocal calls
        calls += 1
        if calls == 1:  # our ETag is stale from here on
            rival_write(azurite_table_connection_string, table_name, "198.51.100.1")
        return admit_client(state, limits, NOW)

    decision = await store.update_client("198.51.100.1", admit_after_a_rival_write)

    assert calls == 2  # the first write hit 412 and `change` ran again on the fresh state
    assert decision.requests_last_minute == 3  # the rival's 2 plus ours


@pytest.mark.azurite
async def test_losing_every_race_raises_contention_error(azurite_table_connection_string: str, table_name: str) -> None:
    client = TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name)
    store = TableRateLimitStore(client, max_attempts=3)
    limits = BucketLimits(capacity=100, refill_per_second=1.0)
    calls = 0

    def always_overtaken(state: ClientState | None) -> tuple[ClientState, ClientDecision]:
        nonlocal calls
        calls += 1
        rival_write(azurite_table_connection_string, table_name, "198.51.100.2")
        return admit_client(state, limits, NOW)

    try:
        await store.update_client("198.51.100.2", admit(limits, NOW))
        with pytest.raises(ContentionError):
            await store.update_client("198.51.100.2", always_overtaken)
    finally:
        await store.close()
    assert calls == 3


@pytest.mark.azurite
async def test_concurrent_updates_race_for_the_etag_and_are_all_applied(
    make_store: MakeStore,
) -> None:
    stores = [make_store() for _ in range(4)]
    limits = BucketLimits(capacity=1_000, refill_per_second=1e-9)
    applied = 0

    def count_applications(state: ClientState | None) -> tuple[ClientState, ClientDecision]:
        nonlocal applied
        applied += 1
        return admit_client(state, limits, NOW)

    async def worker(store: TableRateLimitStore) -> None:
        # Sequential calls keep all four instances writing the entity round after round.
        for _ in range(5):
            await store.update_client("192.0.2.10", count_applications)

    await asyncio.gather(*(worker(store) for store in stores for _ in range(5)))

    final = await read_state(stores[0], "192.0.2.10")
    assert final.recent.total(NOW) == 100  # every one of the 100 updates landed once
    assert final.bucket.tokens == pytest.approx(900)
    assert applied > 100  # some writes lost the ETag race and were re-applied to fresh state


@pytest.mark.azurite
async def test_windows_older_than_an_hour_are_deleted(
    make_store: MakeStore, azurite_table_connection_string: str, table_name: str
) -> None:
    await make_store().exchange_window("gone", SlotWindow(), NOW - 7_200, reserving(0))
    await make_store().exchange_window("recent", SlotWindow(), NOW - 600, reserving(0))

    client = TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name)
    current = TableRateLimitStore(client, first_prune_after_seconds=0)
    try:
        await current.exchange_window("current", SlotWindow(), NOW, reserving(0))
    finally:
        await current.close()

    async with TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name) as raw:
        left = {entity["RowKey"] async for entity in raw.query_entities("PartitionKey eq 'window'")}
    assert left == {"recent", "current"}


@pytest.mark.azurite
async def test_a_new_instance_does_not_prune_on_its_first_exchange(
    make_store: MakeStore, azurite_table_connection_string: str, table_name: str
) -> None:
    # The first exchange is the one an instance's first request waits for.
    await make_store().exchange_window("gone", SlotWindow(), NOW - 7_200, reserving(0))
    await make_store().exchange_window("current", SlotWindow(), NOW, reserving(0))

    async with TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name) as raw:
        left = {entity["RowKey"] async for entity in raw.query_entities("PartitionKey eq 'window'")}
    assert left == {"gone", "current"}


@pytest.mark.azurite
async def test_check_proves_a_write_without_touching_rate_limit_state(
    make_store: MakeStore, azurite_table_connection_string: str, table_name: str
) -> None:
    store = make_store()

    # WHEN readiness checks the store twice
    await store.check()
    await store.check()

    # THEN it wrote (one fixed entity, replaced; a read alone passes while writes are refused)
    async with TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name) as raw:
        entities = [entity async for entity in raw.list_entities()]
    assert [(entity["PartitionKey"], entity["RowKey"]) for entity in entities] == [("health", "probe")]
    # AND no instance mistakes it for a peer's window
    assert await store.exchange_window("a", SlotWindow(), NOW, lambda _peers: 0) == []


@pytest.mark.azurite
async def test_store_built_from_settings_reaches_the_emulator(
    azurite_table_connection_string: str, table_name: str
) -> None:
    settings = load_settings(
        {"AzureWebJobsStorage": azurite_table_connection_string, "CLOUDSCALE_RATE_LIMIT_TABLE": table_name}
    )
    store = create_table_rate_limit_store(settings)
    try:
        await store.check()
    finally:
        await store.close()


async def test_identity_based_store_connects_nothing_until_used() -> None:
    settings = load_settings({"CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://example.invalid"})
    store = create_table_rate_limit_store(settings)
    await store.close()


async def test_an_unreachable_table_raises_the_port_error() -> None:
    store = TableRateLimitStore(unreachable_table_client("ratelimits"))
    try:
        with pytest.raises(RateLimitStoreError) as update_error:
            await store.update_client("192.0.2.1", admit(BucketLimits(10, 1.0), NOW))
        with pytest.raises(RateLimitStoreError) as check_error:
            await store.check()
        with pytest.raises(RateLimitStoreError):
            await store.exchange_window("instance", SlotWindow(), NOW, reserving(0))
    finally:
        await store.close()

    for error in (update_error.value, check_error.value):
        assert not isinstance(error, ContentionError)
        assert error.__cause__ is not None  # the SDK error is chained, not leaked


@pytest.mark.azurite
async def test_clients_idle_past_the_bucket_refill_and_velocity_window_are_deleted(
    azurite_table_connection_string: str, table_name: str
) -> None:
    limits = BucketLimits(capacity=5, refill_per_second=0.5)
    client = TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name)
    store = TableRateLimitStore(client, client_idle_seconds=600.0, first_prune_after_seconds=0)
    try:
        await store.update_client("idle", admit(limits, NOW - 601))
        await store.update_client("active", admit(limits, NOW - 599))

        await store.exchange_window("instance", SlotWindow(), NOW, reserving(0))
    finally:
        await store.close()

    async with TableClient.from_connection_string(azurite_table_connection_string, table_name=table_name) as raw:
        left = {entity["PartitionKey"] async for entity in raw.query_entities("RowKey eq 'state'")}
    assert left == {"client:active"}


@pytest.mark.azurite
async def test_a_principal_allowed_on_the_table_only_uses_the_existing_table(
    azurite_table_connection_string: str, table_name: str
) -> None:
    store = TableRateLimitStore(table_scoped_client(azurite_table_connection_string, table_name))
    try:
        await store.check()
    finally:
        await store.close()
