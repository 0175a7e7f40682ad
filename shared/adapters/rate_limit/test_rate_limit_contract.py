"""The `RateLimitStore` contract, run against both adapters: SQLite, and Table Storage on Azurite.

Each test builds several stores over the same state (`make_store`), as separate instances
of the app would have: on SQLite, stores on one file; on Azurite, stores with their own
`TableClient` on one table. What only one adapter has (Table Storage's ETag races, pruning,
idle clients on SQLite) is in `test_tables_rate_limit` and `test_embedded_rate_limit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.rate_limit.embedded_rate_limit import EmbeddedRateLimitStore
from shared.adapters.rate_limit.tables_rate_limit import TableRateLimitStore
from shared.domain.ratelimit import BucketLimits, ClientDecision, ClientState, PeerWindow, SlotWindow, admit_client
from shared.ports import RateLimitStore
from tests.integration.table_clients import fresh_table_name

MakeStore = Callable[[], RateLimitStore]

NOW = 1_700_000_000.0


@pytest.fixture(params=["embedded", pytest.param("tables", marks=pytest.mark.azurite)])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """Builds stores that share one state, each with its own connection (as separate instances)."""
    stores: list[RateLimitStore] = []
    if request.param == "tables":
        connection_string: str = request.getfixturevalue("azurite_table_connection_string")
        table_name = fresh_table_name("rl")

        def build() -> RateLimitStore:
            return TableRateLimitStore(TableClient.from_connection_string(connection_string, table_name=table_name))

    else:

        def build() -> RateLimitStore:
            # Its idle-client sweep reads the clock: the tests' fixed time, not today's, which
            # would find every client of theirs idle for years.
            return EmbeddedRateLimitStore(tmp_path / "ratelimit.sqlite3", clock=lambda: NOW)

    def make() -> RateLimitStore:
        stores.append(build())
        return stores[-1]

    yield make
    for store in stores:
        await store.close()


async def read_state(store: RateLimitStore, client_key: str) -> ClientState:
    """The stored state, via an update that changes nothing."""

    def unchanged(state: ClientState | None) -> tuple[ClientState, ClientState]:
        assert state is not None
        return state, state

    return await store.update_client(client_key, unchanged)


def admit(limits: BucketLimits, now: float) -> Callable[[ClientState | None], tuple[ClientState, ClientDecision]]:
    return lambda state: admit_client(state, limits, now)


def reserving(amount: int, seen: list[list[str]] | None = None) -> Callable[[Sequence[PeerWindow]], int]:
    """A `reserve` callback that claims `amount` and records which instances it was shown."""

    def reserve(peers: Sequence[PeerWindow]) -> int:
        if seen is not None:
            seen.append(sorted(peer.instance_id for peer in peers))
        return amount

    return reserve


async def state_seen_by_first_update(store: RateLimitStore, client_key: str) -> ClientState | None:
    """The state `change` is given on an update (None: the store holds nothing for the client)."""
    seen: list[ClientState | None] = []

    def record(state: ClientState | None) -> tuple[ClientState, str]:
        seen.append(state)
        return admit_client(state, BucketLimits(capacity=5, refill_per_second=0.5), NOW)[0], "result"

    assert await store.update_client(client_key, record) == "result"
    return seen[0]


async def test_a_new_client_starts_from_nothing_and_the_change_returns_its_result(make_store: MakeStore) -> None:
    assert await state_seen_by_first_update(make_store(), "198.51.100.77") is None


async def test_client_state_round_trips_through_the_store(make_store: MakeStore) -> None:
    limits = BucketLimits(capacity=5, refill_per_second=0.5)
    writer, reader = make_store(), make_store()

    first = await writer.update_client("203.0.113.7", admit(limits, NOW))
    second = await writer.update_client("203.0.113.7", admit(limits, NOW + 0.5))
    # A second store (own client, nothing cached) sees what the first one wrote.
    third = await reader.update_client("203.0.113.7", admit(limits, NOW + 1.0))

    assert (first.bucket.allowed, first.bucket.remaining, first.requests_last_minute) == (True, 4, 1)
    assert (second.bucket.remaining, second.requests_last_minute) == (3, 2)  # 4 + 0.25 refilled - 1 = 3.25
    assert (third.bucket.remaining, third.requests_last_minute) == (2, 3)  # 3.25 + 0.25 - 1 = 2.5
    assert third.bucket.retry_after == 0

    state = await read_state(reader, "203.0.113.7")
    assert state.bucket.tokens == pytest.approx(2.5)
    assert state.bucket.updated_at == NOW + 1.0
    assert state.recent == SlotWindow(((int(NOW), 2), (int(NOW) + 1, 1)))


async def test_keys_with_any_characters_are_stored_apart(make_store: MakeStore) -> None:
    store = make_store()
    limits = BucketLimits(capacity=10, refill_per_second=1.0)
    keys = ["2001:db8::1", "a/b", "a%2Fb", "a\\b#c?d", "tab\there", "ctl\x7f\x85", ""]

    for _ in range(2):
        for key in keys:
            await store.update_client(key, admit(limits, NOW))
    key_counts = {key: (await store.update_client(key, admit(limits, NOW))).requests_last_minute for key in keys}

    assert key_counts == dict.fromkeys(keys, 3)


async def test_concurrent_updates_from_several_instances_are_all_applied(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    limits = BucketLimits(capacity=1_000, refill_per_second=1e-9)

    async def worker(store: RateLimitStore) -> None:
        # Sequential calls keep all four instances writing the entity round after round.
        for _ in range(5):
            await store.update_client("192.0.2.10", admit(limits, NOW))

    await asyncio.gather(*(worker(store) for store in stores for _ in range(5)))

    final = await read_state(stores[0], "192.0.2.10")
    assert final.recent.total(NOW) == 100  # every one of the 100 updates landed once
    assert final.bucket.tokens == pytest.approx(900)


async def test_four_instances_hammering_one_ip_admit_exactly_the_capacity(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    # The time is fixed, so nothing refills: the bound is exact, not "capacity plus refill".
    limits = BucketLimits(capacity=100, refill_per_second=0.001)

    decisions = await asyncio.gather(
        *(store.update_client("192.0.2.99", admit(limits, NOW)) for store in stores for _ in range(60))
    )

    assert sum(d.bucket.allowed for d in decisions) == 100
    assert max(d.requests_last_minute for d in decisions) == 240


async def test_exchange_window_reads_the_others_then_writes_its_claim(make_store: MakeStore) -> None:
    a, b, stale = make_store(), make_store(), make_store()
    await stale.exchange_window("instance-stale", SlotWindow(((int(NOW) - 100, 7),)), NOW - 100, reserving(0))
    await a.exchange_window("instance-a", SlotWindow(((int(NOW) - 5, 1),)), NOW - 5, reserving(10))
    # Written twice: the later record replaces the earlier one.
    await a.exchange_window("instance-a", SlotWindow(((int(NOW) - 5, 1), (int(NOW), 2))), NOW, reserving(20))

    seen: list[list[str]] = []
    peers = await b.exchange_window("instance/b", SlotWindow(((int(NOW) + 1, 3),)), NOW + 1, reserving(30, seen))

    # b's claim is computed from what it read, before its own record was written
    assert seen == [["instance-a"]]  # stale is older than the 60 s retention
    [record_a] = peers
    assert record_a.window == SlotWindow(((int(NOW) - 5, 1), (int(NOW), 2)))
    assert (record_a.exchanged_at, record_a.reserved) == (NOW, 20)
    # and the next reader sees b's window and claim
    [record_b] = [
        p
        for p in await a.exchange_window("instance-a", SlotWindow(), NOW + 2, reserving(0))
        if p.instance_id == "instance/b"
    ]
    assert (record_b.window, record_b.exchanged_at, record_b.reserved) == (
        SlotWindow(((int(NOW) + 1, 3),)),
        NOW + 1,
        30,
    )


async def test_check_proves_a_write_without_touching_rate_limit_state(make_store: MakeStore) -> None:
    store = make_store()

    # WHEN readiness checks the store twice
    await store.check()
    await store.check()

    # THEN no instance mistakes the probe for a peer's window, and no client has state
    assert await store.exchange_window("a", SlotWindow(), NOW, reserving(0)) == []
    assert await state_seen_by_first_update(store, "198.51.100.77") is None
