"""`TenantRegistry` on Azure Table Storage (also runs against the Azurite emulator).

Layout: the whole registry is **one partition**, ``registry``, in table `settings.tenants_table`:

- a tenant: RowKey ``tenant:<tenant id>``; Status, CreatedAt, EventsPerMinute (absent: the
  default quota), KeysVersion (bumped by every `add_key`);
- a key: RowKey ``key:<key id>``; TenantId, Kind, Status, KeyHash, CreatedAt, Origins (JSON
  text), Label, LastUsedAt, RevokedAt (absent when not set). Never the key itself.

Why one partition: the live-key cap must hold against two operators (or two scripts) adding
keys at once, and Table Storage is atomic only within a partition (entity group
transactions). `add_key` reads the tenant entity and its ETag, *then* counts the tenant's live
keys of that kind, and commits one transaction of two operations: replace the tenant entity
with its KeysVersion + 1 *if its ETag is unchanged* and insert the key. Every `add_key` changes
the tenant's ETag, so a rival that committed after our read makes our transaction fail (412)
and we read and count again; a count read after the tenant cannot miss a key committed before
it. Nothing is half-written: there is no moment with a key inserted and the version not bumped.
The alternatives were worse: a tenant in its own partition and keys in another ("key" by id)
cannot be written together, so either a key exists briefly beyond the cap or a crash between
the two writes leaves a count that no longer matches the keys; keys in their tenant's
partition would make `get_key` (by id alone, what authentication asks) a scan of the table.

The price is one partition's throughput (about 2,000 entities a second): reads are cached per
instance for `CLOUDSCALE_WRITE_KEY_CACHE_SECONDS` and last-used writes happen at most once a
minute per key and instance, so a registry of thousands of keys stays far below it.

Key and tenant ids are safe as row keys: key ids are base32, and tenant ids
(`TENANT_ID_PATTERN`) hold none of the characters Tables forbid (/ \\ # ?).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final, cast

import orjson
from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.tables import Table, table_client_from_settings
from shared.domain.write_keys import KeyKind, KeyStatus, Tenant, TenantStatus, WriteKey
from shared.ports import RegistryConflictError, TenantRegistryError
from shared.settings import Settings

__all__ = ["REGISTRY_PARTITION", "TableTenantRegistry", "create_table_tenant_registry"]

REGISTRY_PARTITION: Final = "registry"
_TENANT: Final = "tenant:"
_TENANT_END: Final = "tenant;"
"""The first row key after every ``tenant:…`` (`;` follows `:`)."""
_KEY: Final = "key:"
_KEY_END: Final = "key;"
_HEALTH_ROW: Final = "health"
_KEY_SELECT: Final = [
    "RowKey",
    "TenantId",
    "Kind",
    "Status",
    "KeyHash",
    "CreatedAt",
    "Origins",
    "Label",
    "LastUsedAt",
    "RevokedAt",
]


class TableTenantRegistry:
    """Tenants and key hashes in one partition of one Azure table."""

    def __init__(
        self, client: TableClient, *, max_attempts: int = 8, credential: AsyncTokenCredential | None = None
    ) -> None:
        """Wrap `client`; nothing connects until first use.

        `max_attempts`: optimistic-concurrency attempts of `add_key` (and `touch_key`) before
        giving up with `TenantRegistryError`. `credential`: closed with the client, if given.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._table = Table(client, credential=credential)
        self._client = client
        self._max_attempts = max_attempts

    async def create_tenant(self, tenant: Tenant) -> None:
        async with self._guard():
            try:
                await self._client.create_entity(_tenant_entity(tenant, keys_version=0))
            except ResourceExistsError:
                raise RegistryConflictError(f"tenant {tenant.tenant_id!r} exists already") from None

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        async with self._guard():
            entity = await self._get(_TENANT + tenant_id)
        return None if entity is None else _tenant(entity)

    async def list_tenants(self) -> Sequence[Tenant]:
        async with self._guard():
            return [_tenant(entity) async for entity in self._range(_TENANT, _TENANT_END)]

    async def update_tenant(self, tenant: Tenant) -> None:
        async with self._guard():
            # Read and replace, not merge: a quota put back to the default is a property
            # removed, which a merge cannot do. CreatedAt and KeysVersion are kept as read, and
            # the ETag keeps a concurrent `add_key`'s version bump from being undone.
            for attempt in range(self._max_attempts):
                await _backoff(attempt)
                current = await self._get(_TENANT + tenant.tenant_id)
                if current is None:
                    raise RegistryConflictError(f"there is no tenant {tenant.tenant_id!r}")
                stored = _tenant(current)
                entity = _tenant_entity(
                    Tenant(tenant.tenant_id, tenant.status, stored.created_at, tenant.events_per_minute),
                    keys_version=_number(current.get("KeysVersion", 0)),
                )
                try:
                    await self._client.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return
                except ResourceModifiedError:
                    continue
            raise TenantRegistryError(f"tenant {tenant.tenant_id!r} kept changing ({self._max_attempts} attempts)")

    async def add_key(self, key: WriteKey, *, max_live_per_kind: int) -> None:
        """Insert `key` unless its tenant is missing or full; see the module docstring for why this is atomic."""
        async with self._guard():
            for attempt in range(self._max_attempts):
                await _backoff(attempt)
                # The tenant first, then the count: see the module docstring.
                tenant = await self._get(_TENANT + key.tenant_id)
                if tenant is None:
                    raise RegistryConflictError(f"there is no tenant {key.tenant_id!r}; create it first")
                live = 0
                async for _ in self._client.query_entities(
                    "PartitionKey eq @pk and RowKey ge @first and RowKey lt @last "
                    "and TenantId eq @tenant and Kind eq @kind and Status eq 'active'",
                    parameters={
                        "pk": REGISTRY_PARTITION,
                        "first": _KEY,
                        "last": _KEY_END,
                        "tenant": key.tenant_id,
                        "kind": key.kind,
                    },
                    select=["RowKey"],
                ):
                    live += 1
                if live >= max_live_per_kind:
                    raise RegistryConflictError(
                        f"tenant {key.tenant_id!r} has {live} live {key.kind} keys, the most it may hold; "
                        "revoke one first"
                    )
                bumped = dict(tenant)
                bumped["KeysVersion"] = _int64(_number(tenant.get("KeysVersion", 0)) + 1)
                try:
                    await self._client.submit_transaction(
                        [
                            (
                                "update",
                                bumped,
                                {
                                    "mode": UpdateMode.REPLACE,
                                    "etag": tenant.metadata["etag"],
                                    "match_condition": MatchConditions.IfNotModified,
                                },
                            ),
                            ("create", _key_entity(key)),
                        ]
                    )
                    return
                except TableTransactionError as exc:
                    if exc.status_code == 412:  # the tenant changed since we read it: count again
                        continue
                    if exc.status_code == 409:
                        raise RegistryConflictError(f"key {key.key_id!r} exists already") from None
                    raise
            raise TenantRegistryError(
                f"keys of tenant {key.tenant_id!r} kept changing ({self._max_attempts} attempts); try again"
            )

    async def get_key(self, key_id: str) -> WriteKey | None:
        async with self._guard():
            entity = await self._get(_KEY + key_id)
        return None if entity is None else _key(entity)

    async def list_keys(self, tenant_id: str) -> Sequence[WriteKey]:
        async with self._guard():
            keys = [
                _key(entity)
                async for entity in self._client.query_entities(
                    "PartitionKey eq @pk and RowKey ge @first and RowKey lt @last and TenantId eq @tenant",
                    parameters={"pk": REGISTRY_PARTITION, "first": _KEY, "last": _KEY_END, "tenant": tenant_id},
                    select=_KEY_SELECT,
                )
            ]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    async def revoke_key(self, key_id: str, at: datetime) -> WriteKey:
        async with self._guard():
            for attempt in range(self._max_attempts):
                await _backoff(attempt)
                entity = await self._get(_KEY + key_id)
                if entity is None:
                    raise RegistryConflictError(f"there is no key {key_id!r}")
                key = _key(entity)
                if not key.active:
                    return key  # revoked already: it keeps its first time
                revoked = key.revoked(at)
                if await self._replace_if_unchanged(_key_entity(revoked), entity):
                    return revoked
            raise TenantRegistryError(f"key {key_id!r} kept changing ({self._max_attempts} attempts)")

    async def touch_key(self, key_id: str, at: datetime) -> None:
        async with self._guard():
            for attempt in range(self._max_attempts):
                await _backoff(attempt)
                entity = await self._get(_KEY + key_id)
                if entity is None:
                    return
                key = _key(entity)
                if key.last_used_at is not None and key.last_used_at >= at:
                    return
                # Merge only LastUsedAt: a revocation racing this write must not be undone by it,
                # and the ETag keeps a later time written meanwhile from being overwritten.
                try:
                    await self._client.update_entity(
                        {"PartitionKey": REGISTRY_PARTITION, "RowKey": _KEY + key_id, "LastUsedAt": _utc(at)},
                        mode=UpdateMode.MERGE,
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return
                except ResourceModifiedError:
                    continue
                except ResourceNotFoundError:
                    return
            raise TenantRegistryError(f"key {key_id!r} kept changing ({self._max_attempts} attempts)")

    async def check(self) -> None:
        """Write one entity (RowKey ``health``): a registry that cannot take writes cannot create or revoke keys."""
        async with self._guard():
            await self._client.upsert_entity(
                {"PartitionKey": REGISTRY_PARTITION, "RowKey": _HEALTH_ROW, "WrittenAt": datetime.now(UTC)},
                mode=UpdateMode.REPLACE,
            )

    async def close(self) -> None:
        """Close the table client and the credential, if owned."""
        await self._table.close()

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Create the table on first use and turn SDK and transport errors into `TenantRegistryError`."""
        async with self._table.guarded(TenantRegistryError, "tenant registry"):
            yield

    async def _get(self, row_key: str) -> TableEntity | None:
        return await self._table.get(REGISTRY_PARTITION, row_key)

    def _range(self, first: str, last: str) -> AsyncIterator[TableEntity]:
        return self._client.query_entities(
            "PartitionKey eq @pk and RowKey ge @first and RowKey lt @last",
            parameters={"pk": REGISTRY_PARTITION, "first": first, "last": last},
        )

    async def _replace_if_unchanged(self, entity: dict[str, Any], current: TableEntity) -> bool:
        try:
            await self._client.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return False
        return True


def create_table_tenant_registry(settings: Settings) -> TableTenantRegistry:
    """Build the registry from settings, in the rate-limit table's account: the identity-based
    endpoint if set, else the `AzureWebJobsStorage` connection string."""
    client, credential = table_client_from_settings(settings, settings.tenants_table)
    return TableTenantRegistry(client, credential=credential)


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _time(value: Any) -> datetime:
    """A plain UTC `datetime` from what the SDK returns (its own `datetime` subclass)."""
    moment = cast(datetime, value).astimezone(UTC)
    return datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
        tzinfo=UTC,
    )


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _number(value: Any) -> int:
    # Int64 columns come back as `EntityProperty` in some SDK versions, as int in others.
    return int(value.value if isinstance(value, EntityProperty) else value)


def _tenant_entity(tenant: Tenant, *, keys_version: int) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": REGISTRY_PARTITION,
        "RowKey": _TENANT + tenant.tenant_id,
        "Status": tenant.status,
        "CreatedAt": _utc(tenant.created_at),
        "KeysVersion": _int64(keys_version),
    }
    if tenant.events_per_minute is not None:
        entity["EventsPerMinute"] = _int64(tenant.events_per_minute)
    return entity


def _tenant(entity: TableEntity) -> Tenant:
    quota = entity.get("EventsPerMinute")
    return Tenant(
        tenant_id=str(entity["RowKey"]).removeprefix(_TENANT),
        status=cast(TenantStatus, entity["Status"]),
        created_at=_time(entity["CreatedAt"]),
        events_per_minute=None if quota is None else _number(quota),
    )


def _key_entity(key: WriteKey) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": REGISTRY_PARTITION,
        "RowKey": _KEY + key.key_id,
        "TenantId": key.tenant_id,
        "Kind": key.kind,
        "Status": key.status,
        "KeyHash": key.key_hash,
        "CreatedAt": _utc(key.created_at),
        "Origins": orjson.dumps(list(key.origins)).decode(),
    }
    optional = {"Label": key.label, "LastUsedAt": key.last_used_at, "RevokedAt": key.revoked_at}
    for name, value in optional.items():
        if value is not None:
            entity[name] = _utc(value) if isinstance(value, datetime) else value
    return entity


def _key(entity: TableEntity) -> WriteKey:
    return WriteKey(
        key_id=str(entity["RowKey"]).removeprefix(_KEY),
        tenant_id=entity["TenantId"],
        kind=cast(KeyKind, entity["Kind"]),
        status=cast(KeyStatus, entity["Status"]),
        key_hash=entity["KeyHash"],
        created_at=_time(entity["CreatedAt"]),
        origins=tuple(orjson.loads(entity["Origins"])),
        label=entity.get("Label"),
        last_used_at=_optional_time(entity.get("LastUsedAt")),
        revoked_at=_optional_time(entity.get("RevokedAt")),
    )


async def _backoff(attempt: int) -> None:
    """No wait before the first attempt; then full jitter, so writers that just collided do not
    collide again in lockstep."""
    if attempt:
        await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
