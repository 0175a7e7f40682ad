"""`TableTenantRegistry` against the real Azurite Table emulator: what only Table Storage has
(the ETag guard of the live-key cap, settings, the composition root, transport errors). What both
registries must do is in `test_registry_contract`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

import pytest
from azure.data.tables import TableClient as SyncTableClient
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.tenants.tables_registry import (
    REGISTRY_PARTITION,
    TableTenantRegistry,
    create_table_tenant_registry,
)
from shared.adapters.tenants.test_registry_contract import new_key, tenant
from shared.ports import RegistryConflictError, TenantRegistryError
from shared.settings import load_settings
from tests.integration.table_clients import fresh_table_name, table_scoped_client, unreachable_table_client


@pytest.fixture
def table_name() -> str:
    return fresh_table_name("tenants")


class RivalBeforeEachCommit(TableClient):
    """A table client that lets `rival` write just before each transaction is sent: after
    `add_key` read the tenant and counted its keys, the window the ETag guards."""

    rival: Callable[[], None] = staticmethod(lambda: None)
    commits = 0

    async def submit_transaction(self, operations: Any, **kwargs: Any) -> Any:
        self.commits += 1
        self.rival()
        return await super().submit_transaction(operations, **kwargs)


def rival_before_each_commit(connection_string: str, table_name: str) -> RivalBeforeEachCommit:
    # `from_connection_string` builds the subclass it is called on, though typed as the base.
    return cast(RivalBeforeEachCommit, RivalBeforeEachCommit.from_connection_string(connection_string, table_name))


def rival_adds_a_live_key(connection_string: str, table_name: str) -> Callable[[], None]:
    """Another writer's `add_key` for tenant acme, done raw: the tenant entity rewritten (a new
    ETag) and a live server key inserted."""

    def add() -> None:
        with SyncTableClient.from_connection_string(connection_string, table_name=table_name) as rival:
            entity = rival.get_entity(REGISTRY_PARTITION, "tenant:acme")
            rival.update_entity(entity, mode=UpdateMode.REPLACE)
            rival.create_entity(
                {
                    "PartitionKey": REGISTRY_PARTITION,
                    "RowKey": f"key:{uuid.uuid4().hex[:16]}",
                    "TenantId": "acme",
                    "Kind": "server",
                    "Status": "active",
                    "KeyHash": "0" * 64,
                    "CreatedAt": tenant().created_at,
                    "Origins": "[]",
                }
            )

    return add


@pytest.mark.azurite
async def test_a_key_added_between_read_and_commit_is_counted_on_the_retry(
    azurite_table_connection_string: str, table_name: str
) -> None:
    client = rival_before_each_commit(azurite_table_connection_string, table_name)
    registry = TableTenantRegistry(client)
    try:
        await registry.create_tenant(tenant())
        await registry.add_key(new_key().record, max_live_per_kind=2)
        rival_once = rival_adds_a_live_key(azurite_table_connection_string, table_name)
        client.rival = lambda: rival_once() if client.commits == 1 else None
        client.commits = 0

        with pytest.raises(RegistryConflictError, match="has 2 live server keys"):
            await registry.add_key(new_key().record, max_live_per_kind=2)

        assert client.commits == 1  # the commit hit 412, and the count read again saw the rival's key
        assert sum(key.active for key in await registry.list_keys("acme")) == 2
    finally:
        await registry.close()


@pytest.mark.azurite
async def test_losing_every_race_is_a_registry_error_not_a_conflict(
    azurite_table_connection_string: str, table_name: str
) -> None:
    client = rival_before_each_commit(azurite_table_connection_string, table_name)
    registry = TableTenantRegistry(client, max_attempts=3)
    try:
        await registry.create_tenant(tenant())

        def bump_tenant() -> None:
            with SyncTableClient.from_connection_string(
                azurite_table_connection_string, table_name=table_name
            ) as rival:
                rival.update_entity(rival.get_entity(REGISTRY_PARTITION, "tenant:acme"), mode=UpdateMode.REPLACE)

        client.rival = bump_tenant
        with pytest.raises(TenantRegistryError, match="kept changing") as error:
            await registry.add_key(new_key().record, max_live_per_kind=100)

        assert not isinstance(error.value, RegistryConflictError)  # transient: trying again may work
        assert client.commits == 3
        assert await registry.list_keys("acme") == []
    finally:
        await registry.close()


@pytest.mark.azurite
async def test_the_registry_built_from_settings_uses_the_named_table_in_the_storage_account(
    azurite_table_connection_string: str, table_name: str
) -> None:
    settings = load_settings(
        {"AzureWebJobsStorage": azurite_table_connection_string, "CLOUDSCALE_TENANTS_TABLE": table_name}
    )
    registry = create_table_tenant_registry(settings)
    try:
        await registry.check()
        await registry.create_tenant(tenant())
    finally:
        await registry.close()
    with SyncTableClient.from_connection_string(azurite_table_connection_string, table_name=table_name) as raw:
        assert raw.get_entity(REGISTRY_PARTITION, "tenant:acme")["Status"] == "active"


async def test_identity_based_registry_connects_nothing_until_used() -> None:
    settings = load_settings({"CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://example.invalid"})
    registry = create_table_tenant_registry(settings)
    await registry.close()


async def test_an_unreachable_table_raises_the_port_error() -> None:
    registry = TableTenantRegistry(unreachable_table_client("tenants"))
    try:
        with pytest.raises(TenantRegistryError) as read_error:
            await registry.get_key("a" * 16)
        with pytest.raises(TenantRegistryError) as add_error:
            await registry.add_key(new_key().record, max_live_per_kind=2)
        with pytest.raises(TenantRegistryError):
            await registry.check()
    finally:
        await registry.close()

    for error in (read_error.value, add_error.value):
        assert not isinstance(error, RegistryConflictError)
        assert error.__cause__ is not None  # the SDK error is chained, not leaked


@pytest.mark.azurite
async def test_a_principal_allowed_on_the_table_only_uses_the_existing_table(
    azurite_table_connection_string: str, table_name: str
) -> None:
    registry = TableTenantRegistry(table_scoped_client(azurite_table_connection_string, table_name))
    try:
        await registry.create_tenant(tenant())
        assert await registry.get_tenant("acme") == tenant()
    finally:
        await registry.close()
