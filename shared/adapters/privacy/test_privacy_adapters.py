"""What only one privacy adapter has: the Tables layout, its ETag guard, settings, and store
failures on both turned into `PrivacyStoreError`. The shared contract is in `test_privacy_contract`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from azure.data.tables import TableClient as SyncTableClient
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.privacy.embedded_privacy import EmbeddedPrivacyStore
from shared.adapters.privacy.tables_privacy import (
    ERASURES_PARTITION,
    TablePrivacyStore,
    create_table_privacy_store,
    suppression_partition,
)
from shared.adapters.privacy.test_privacy_contract import erasure, tombstone
from shared.ports import ErasureConflictError, PrivacyStoreError
from shared.settings import load_settings
from tests.integration.table_clients import fresh_table_name, unreachable_table_client


@pytest.fixture
def table_name() -> str:
    return fresh_table_name("privacy")


class RivalBeforeEachUpdate(TableClient):
    """A client that lets `rival` write just before each update is sent: after `replace_erasure`
    read the record and compared its revision, the window the ETag guards."""

    rival: Callable[[], None] = staticmethod(lambda: None)

    async def update_entity(self, entity: Any, *args: Any, **kwargs: Any) -> Any:
        self.rival()
        return await super().update_entity(entity, *args, **kwargs)


@pytest.mark.azurite
async def test_a_rival_write_between_read_and_replace_makes_the_replace_a_conflict(
    azurite_table_connection_string: str, table_name: str
) -> None:
    client = cast(
        RivalBeforeEachUpdate, RivalBeforeEachUpdate.from_connection_string(azurite_table_connection_string, table_name)
    )
    store = TablePrivacyStore(client)

    def rival() -> None:
        # Rewrites the entity as it is (same revision): only its ETag tells it changed.
        with SyncTableClient.from_connection_string(azurite_table_connection_string, table_name=table_name) as raw:
            raw.update_entity(raw.get_entity(ERASURES_PARTITION, "e-1"), mode=UpdateMode.REPLACE)

    try:
        await store.create_erasure(erasure())
        client.rival = rival
        with pytest.raises(ErasureConflictError, match="changed while"):
            await store.replace_erasure(replace(erasure(), lease_owner="me"))
        client.rival = lambda: None
        assert (await store.get_erasure("e-1")) == erasure()
    finally:
        await store.close()


@pytest.mark.azurite
async def test_the_store_built_from_settings_keeps_tombstones_in_a_partition_per_tenant(
    azurite_table_connection_string: str, table_name: str
) -> None:
    settings = load_settings(
        {"AzureWebJobsStorage": azurite_table_connection_string, "CLOUDSCALE_PRIVACY_TABLE": table_name}
    )
    store = create_table_privacy_store(settings)
    try:
        await store.check()
        await store.save_suppression(tombstone())
        await store.create_erasure(erasure())
    finally:
        await store.close()
    with SyncTableClient.from_connection_string(azurite_table_connection_string, table_name=table_name) as raw:
        assert raw.get_entity(suppression_partition("acme"), tombstone().subject_hash)["Mode"] == "suppress"
        stored = raw.get_entity(ERASURES_PARTITION, "e-1")
        assert stored["Steps"] == "{}"
        assert "SealedSubject" not in stored


async def test_identity_based_store_connects_nothing_until_used() -> None:
    store = create_table_privacy_store(
        load_settings({"CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://example.invalid"})
    )
    await store.close()


async def test_an_unreachable_table_raises_the_port_error() -> None:
    store = TablePrivacyStore(unreachable_table_client("privacy"))
    try:
        with pytest.raises(PrivacyStoreError) as read_error:
            await store.suppressions("acme")
        with pytest.raises(PrivacyStoreError) as replace_error:
            await store.replace_erasure(erasure())
    finally:
        await store.close()
    for error in (read_error.value, replace_error.value):
        assert not isinstance(error, ErasureConflictError)
        assert error.__cause__ is not None


async def test_an_unusable_sqlite_file_raises_the_port_error(tmp_path: Path) -> None:
    path = tmp_path / "privacy.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = EmbeddedPrivacyStore(path)
    try:
        with pytest.raises(PrivacyStoreError, match="not a usable SQLite database"):
            await store.suppressions("acme")
    finally:
        await store.close()


async def test_a_damaged_erasure_row_is_a_store_error_not_a_crash(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    store = EmbeddedPrivacyStore(tmp_path / "privacy.sqlite3")
    try:
        await store.create_erasure(erasure())
        with closing(sqlite3.connect(tmp_path / "privacy.sqlite3")) as raw, raw:
            raw.execute("UPDATE erasures SET steps = 'not json'")
        with pytest.raises(PrivacyStoreError):
            await store.get_erasure("e-1")
    finally:
        await store.close()
