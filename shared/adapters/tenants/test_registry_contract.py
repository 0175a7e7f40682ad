"""The `TenantRegistry` contract, run against both adapters: SQLite, and Table Storage on Azurite.

Each test may build several registries over the same state (`make_registry`), as separate
instances of the app (or an operator's CLI beside them) would have: on SQLite, registries on
one file; on Azurite, registries with their own `TableClient` on one table.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.tenants.embedded_registry import REGISTRY_FILE, EmbeddedTenantRegistry
from shared.adapters.tenants.tables_registry import TableTenantRegistry
from shared.domain.write_keys import IssuedKey, KeyKind, Tenant, issue_key
from shared.ports import RegistryConflictError, TenantRegistry
from tests.integration.table_clients import fresh_table_name

T0 = datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=UTC)


@dataclass
class Registries:
    """Builds registries over one shared state, and reads that state raw."""

    make: Callable[[], TenantRegistry]
    raw_text: Callable[[], Awaitable[str]]
    """Everything stored, as text: the SQLite file's bytes and dump, or every entity of the table."""


@pytest.fixture(params=["embedded", pytest.param("tables", marks=pytest.mark.azurite)])
async def registries(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Registries]:
    built: list[TenantRegistry] = []
    if request.param == "tables":
        connection_string: str = request.getfixturevalue("azurite_table_connection_string")
        table_name = fresh_table_name("tenants")

        def build() -> TenantRegistry:
            return TableTenantRegistry(TableClient.from_connection_string(connection_string, table_name=table_name))

        async def raw_text() -> str:
            async with TableClient.from_connection_string(connection_string, table_name=table_name) as client:
                return repr([dict(entity) async for entity in client.list_entities()])

    else:
        path = tmp_path / REGISTRY_FILE

        def build() -> TenantRegistry:
            return EmbeddedTenantRegistry(path)

        async def raw_text() -> str:
            with closing(sqlite3.connect(path)) as connection:
                dump = "\n".join(connection.iterdump())
            return dump + path.read_bytes().decode("latin-1")

    def make() -> TenantRegistry:
        built.append(build())
        return built[-1]

    yield Registries(make, raw_text)
    for registry in built:
        await registry.close()


def tenant(tenant_id: str = "acme", events_per_minute: int | None = None) -> Tenant:
    return Tenant(tenant_id, "active", T0, events_per_minute)


def new_key(tenant_id: str = "acme", kind: KeyKind = "server", *, origins: tuple[str, ...] = ()) -> IssuedKey:
    if kind == "browser" and not origins:
        origins = ("https://shop.example",)
    return issue_key(tenant_id, kind, created_at=T0, origins=origins, label="web frontend")


async def test_tenants_are_created_read_listed_and_updated(registries: Registries) -> None:
    writer, reader = registries.make(), registries.make()
    await writer.create_tenant(tenant("zeta"))
    await writer.create_tenant(tenant("acme", events_per_minute=3_000_000_000))

    assert await reader.get_tenant("acme") == tenant("acme", events_per_minute=3_000_000_000)
    assert await reader.get_tenant("nobody") is None
    assert [t.tenant_id for t in await reader.list_tenants()] == ["acme", "zeta"]

    await writer.update_tenant(Tenant("acme", "suspended", T0, None))
    assert await reader.get_tenant("acme") == Tenant("acme", "suspended", T0, None)
    await writer.update_tenant(Tenant("acme", "active", T0, 1_200))
    assert await reader.get_tenant("acme") == tenant("acme", events_per_minute=1_200)


async def test_an_existing_tenant_cannot_be_created_and_a_missing_one_not_updated(registries: Registries) -> None:
    registry = registries.make()
    await registry.create_tenant(tenant())
    with pytest.raises(RegistryConflictError, match="exists already"):
        await registry.create_tenant(tenant(events_per_minute=5_000))
    with pytest.raises(RegistryConflictError, match="no tenant 'other'"):
        await registry.update_tenant(tenant("other"))
    assert await registry.get_tenant("acme") == tenant()


async def test_a_key_is_stored_and_read_back_by_id_and_by_tenant(registries: Registries) -> None:
    writer, reader = registries.make(), registries.make()
    await writer.create_tenant(tenant())
    await writer.create_tenant(tenant("other"))
    server = new_key()
    browser = new_key(kind="browser", origins=("https://shop.example", "http://localhost:3000"))
    later = issue_key("acme", "server", created_at=T0 + timedelta(seconds=1))
    for issued in (later, server, browser):
        await writer.add_key(issued.record, max_live_per_kind=2)
    await writer.add_key(new_key("other").record, max_live_per_kind=2)

    assert await reader.get_key(browser.record.key_id) == browser.record
    assert await reader.get_key("a" * 16) is None
    listed = await reader.list_keys("acme")
    assert [k.key_id for k in listed] == [*sorted([server.record.key_id, browser.record.key_id]), later.record.key_id]
    assert set(listed) == {server.record, browser.record, later.record}
    assert await reader.list_keys("nobody") == []


async def test_a_key_needs_its_tenant(registries: Registries) -> None:
    registry = registries.make()
    with pytest.raises(RegistryConflictError, match="no tenant 'acme'; create it first"):
        await registry.add_key(new_key().record, max_live_per_kind=2)
    assert await registry.list_keys("acme") == []


async def test_two_live_keys_per_kind_and_a_revoked_one_frees_its_slot(registries: Registries) -> None:
    registry = registries.make()
    await registry.create_tenant(tenant())
    first, second = new_key(), new_key()
    await registry.add_key(first.record, max_live_per_kind=2)
    await registry.add_key(second.record, max_live_per_kind=2)
    # The other kind has slots of its own.
    await registry.add_key(new_key(kind="browser").record, max_live_per_kind=2)

    third = new_key()
    with pytest.raises(RegistryConflictError, match="has 2 live server keys, the most it may hold; revoke one first"):
        await registry.add_key(third.record, max_live_per_kind=2)
    assert await registry.get_key(third.record.key_id) is None

    await registry.revoke_key(first.record.key_id, T0 + timedelta(minutes=1))
    await registry.add_key(third.record, max_live_per_kind=2)
    assert [k.status for k in await registry.list_keys("acme") if k.kind == "server"].count("active") == 2


async def test_racing_for_the_last_slot_exactly_one_key_wins(registries: Registries) -> None:
    setup = registries.make()
    await setup.create_tenant(tenant())
    await setup.add_key(new_key().record, max_live_per_kind=2)
    racers = [registries.make() for _ in range(4)]
    contenders = [new_key() for _ in racers]

    outcomes = await asyncio.gather(
        *(racer.add_key(issued.record, max_live_per_kind=2) for racer, issued in zip(racers, contenders, strict=True)),
        return_exceptions=True,
    )

    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(outcome, RegistryConflictError) for outcome in outcomes if outcome is not None)
    live = [k for k in await setup.list_keys("acme") if k.active]
    assert len(live) == 2


async def test_revoking_keeps_the_first_time_and_an_unknown_key_is_a_conflict(registries: Registries) -> None:
    writer, reader = registries.make(), registries.make()
    await writer.create_tenant(tenant())
    issued = new_key()
    await writer.add_key(issued.record, max_live_per_kind=2)

    revoked = await writer.revoke_key(issued.record.key_id, T0 + timedelta(hours=1))
    again = await writer.revoke_key(issued.record.key_id, T0 + timedelta(hours=2))

    assert revoked == issued.record.revoked(T0 + timedelta(hours=1))
    assert again == revoked
    assert await reader.get_key(issued.record.key_id) == revoked
    with pytest.raises(RegistryConflictError, match="no key"):
        await writer.revoke_key("b" * 16, T0)


async def test_touch_keeps_the_later_time(registries: Registries) -> None:
    registry = registries.make()
    await registry.create_tenant(tenant())
    issued = new_key()
    await registry.add_key(issued.record, max_live_per_kind=2)

    await registry.touch_key(issued.record.key_id, T0 + timedelta(minutes=5))
    await registry.touch_key(issued.record.key_id, T0 + timedelta(minutes=2))  # older: ignored
    await registry.touch_key("c" * 16, T0)  # unknown: nothing to record

    stored = await registry.get_key(issued.record.key_id)
    assert stored is not None
    assert stored.last_used_at == T0 + timedelta(minutes=5)
    assert stored.status == "active"
    await registry.touch_key(issued.record.key_id, T0 + timedelta(minutes=7))
    assert await registry.get_key(issued.record.key_id) == replace(
        issued.record, last_used_at=T0 + timedelta(minutes=7)
    )


async def test_only_hashes_are_stored(registries: Registries) -> None:
    registry = registries.make()
    await registry.create_tenant(tenant())
    issued = [new_key(), new_key(kind="browser")]
    for each in issued:
        await registry.add_key(each.record, max_live_per_kind=2)
    await registry.check()

    stored = await registries.raw_text()

    for each in issued:
        assert each.record.key_hash in stored
        assert each.key not in stored
        assert each.key.removeprefix("cs_sk_").removeprefix("cs_bk_")[16:] not in stored  # not even the secret


async def test_check_passes_on_a_writable_registry(registries: Registries) -> None:
    await registries.make().check()
