"""`PrivacyStore` on Azure Table Storage (also runs against the Azurite emulator).

Layout, in table `settings.privacy_table` (the tenant registry's account):

- a suppression: partition ``s.<tenant id>``, RowKey = the subject hash; Field, ErasedAt, Mode,
  LiftedAt (absent when never lifted). One partition per tenant, so reading a tenant's
  tombstones (what every instance's `SuppressionList` does once per cache period) is one
  partition query, and tenants never share a hot partition.
- an erasure record: partition ``erasures``, RowKey = the erasure id; TenantId, Field,
  SubjectHash, Suppress, CreatedAt, Status, Steps (JSON text), FinishedAt, SealedSubject,
  LeaseOwner, LeaseUntil (each absent when not set), Revision.

`replace_erasure` is optimistic: read the entity and its ETag, compare the stored Revision with
the caller's, then replace *if the ETag is unchanged*. Two runners that read the same revision
both pass the comparison, but only the first replace matches the ETag; the second gets 412 and
an `ErasureConflictError`.

Tenant ids (`TENANT_ID_PATTERN`), hex hashes and erasure ids hold none of the characters
Tables forbids in keys (/ \\ # ?).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, cast

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, TableEntity, UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.privacy.records import steps_from_json, steps_to_json
from shared.adapters.tables import Table, table_client_from_settings
from shared.domain.privacy import (
    SUBJECT_KEY_BYTES,
    ErasureRequest,
    ErasureStatus,
    SubjectField,
    Suppression,
    SuppressionMode,
)
from shared.ports import ErasureConflictError, PrivacyStoreError
from shared.settings import Settings

__all__ = ["ERASURES_PARTITION", "TablePrivacyStore", "create_table_privacy_store", "suppression_partition"]

ERASURES_PARTITION: Final = "erasures"
_HEALTH_PARTITION: Final = "health"
_KEY_PARTITION: Final = "subject-key"


def suppression_partition(tenant_id: str) -> str:
    """The partition of one tenant's tombstones."""
    return f"s.{tenant_id}"


class TablePrivacyStore:
    """The `PrivacyStore` port on Table Storage."""

    def __init__(self, client: TableClient, *, credential: AsyncTokenCredential | None = None) -> None:
        """Wrap `client`; nothing connects until first use. `credential`: closed with the client, if given."""
        self._table = Table(client, credential=credential)
        self._client = client

    async def subject_key(self) -> bytes:
        """The key kept in this table (its own row), created by the first caller; a racing
        instance that loses the insert reads the winner's, so every instance hashes alike."""
        async with self._guard():
            entity = await self._get(_KEY_PARTITION, _KEY_PARTITION)
            if entity is None:
                with suppress(ResourceExistsError):
                    await self._client.create_entity(
                        {
                            "PartitionKey": _KEY_PARTITION,
                            "RowKey": _KEY_PARTITION,
                            "Key": base64.b64encode(secrets.token_bytes(SUBJECT_KEY_BYTES)).decode(),
                        }
                    )
                entity = await self._get(_KEY_PARTITION, _KEY_PARTITION)
            if entity is None:
                raise PrivacyStoreError(f"privacy table {self._client.table_name!r}: the subject key row vanished")
            return base64.b64decode(entity["Key"], validate=True)

    async def suppressions(self, tenant_id: str) -> Sequence[Suppression]:
        async with self._guard():
            found = [
                _suppression(tenant_id, entity)
                async for entity in self._client.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": suppression_partition(tenant_id)}
                )
            ]
        return sorted(found, key=lambda s: (s.erased_at, s.subject_hash))

    async def get_suppression(self, tenant_id: str, subject_hash: str) -> Suppression | None:
        async with self._guard():
            entity = await self._get(suppression_partition(tenant_id), subject_hash)
        return None if entity is None else _suppression(tenant_id, entity)

    async def save_suppression(self, suppression: Suppression) -> None:
        async with self._guard():
            await self._client.upsert_entity(_suppression_entity(suppression), mode=UpdateMode.REPLACE)

    async def create_erasure(self, request: ErasureRequest) -> None:
        async with self._guard():
            try:
                await self._client.create_entity(_erasure_entity(replace(request, revision=0)))
            except ResourceExistsError:
                raise ErasureConflictError(f"erasure {request.id!r} exists already") from None

    async def get_erasure(self, erasure_id: str) -> ErasureRequest | None:
        async with self._guard():
            entity = await self._get(ERASURES_PARTITION, erasure_id)
        return None if entity is None else _erasure(entity)

    async def list_erasures(self, *, unfinished_only: bool = False) -> Sequence[ErasureRequest]:
        query = "PartitionKey eq @pk and Status ne 'finished'" if unfinished_only else "PartitionKey eq @pk"
        async with self._guard():
            found = [
                _erasure(entity)
                async for entity in self._client.query_entities(query, parameters={"pk": ERASURES_PARTITION})
            ]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    async def replace_erasure(self, request: ErasureRequest) -> ErasureRequest:
        """See the module docstring: the revision is compared on read, the ETag on write."""
        stored = replace(request, revision=request.revision + 1)
        async with self._guard():
            current = await self._get(ERASURES_PARTITION, request.id)
            if current is None:
                raise ErasureConflictError(f"there is no erasure {request.id!r}")
            revision = _number(current.get("Revision", 0))
            if revision != request.revision:
                raise ErasureConflictError(f"erasure {request.id!r} is at revision {revision}, not {request.revision}")
            try:
                await self._client.update_entity(
                    _erasure_entity(stored),
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                raise ErasureConflictError(f"erasure {request.id!r} changed while it was being replaced") from None
        return stored

    async def check(self) -> None:
        """Write one entity: a store that cannot take writes cannot record a tombstone."""
        async with self._guard():
            await self._client.upsert_entity(
                {"PartitionKey": _HEALTH_PARTITION, "RowKey": _HEALTH_PARTITION, "WrittenAt": datetime.now(UTC)},
                mode=UpdateMode.REPLACE,
            )

    async def close(self) -> None:
        """Close the table client and the credential, if owned."""
        await self._table.close()

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Create the table on first use; SDK, transport and decoding errors become `PrivacyStoreError`."""
        try:
            async with self._table.guarded(PrivacyStoreError, "privacy"):
                yield
        except (KeyError, ValueError, TypeError) as exc:
            # A damaged entity (hand-edited, or written by another version) is a store failure.
            raise PrivacyStoreError(f"privacy table {self._client.table_name!r}: unreadable entity: {exc}") from exc

    async def _get(self, partition: str, row_key: str) -> TableEntity | None:
        return await self._table.get(partition, row_key)


def create_table_privacy_store(settings: Settings) -> TablePrivacyStore:
    """Build the store from settings, in the tenant registry's account: the identity-based
    endpoint if set, else the `AzureWebJobsStorage` connection string."""
    client, credential = table_client_from_settings(settings, settings.privacy_table)
    return TablePrivacyStore(client, credential=credential)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _time(value: Any) -> datetime:
    """A plain UTC `datetime` from what the SDK returns (its own `datetime` subclass)."""
    moment = cast(datetime, value).astimezone(UTC)
    return datetime(
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond, tzinfo=UTC
    )


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _number(value: Any) -> int:
    # Int64 columns come back as `EntityProperty` in some SDK versions, as int in others.
    return int(value.value if isinstance(value, EntityProperty) else value)


def _without_none(entity: dict[str, Any]) -> dict[str, Any]:
    # An absent property is how Tables says "not set"; a replace drops what is left out.
    return {name: value for name, value in entity.items() if value is not None}


def _suppression_entity(s: Suppression) -> dict[str, Any]:
    return _without_none(
        {
            "PartitionKey": suppression_partition(s.tenant_id),
            "RowKey": s.subject_hash,
            "Field": s.field,
            "ErasedAt": _utc(s.erased_at),
            "Mode": s.mode,
            "LiftedAt": None if s.lifted_at is None else _utc(s.lifted_at),
        }
    )


def _suppression(tenant_id: str, entity: TableEntity) -> Suppression:
    return Suppression(
        tenant_id=tenant_id,
        subject_hash=str(entity["RowKey"]),
        field=cast(SubjectField, entity["Field"]),
        erased_at=_time(entity["ErasedAt"]),
        mode=cast(SuppressionMode, entity["Mode"]),
        lifted_at=_optional_time(entity.get("LiftedAt")),
    )


def _erasure_entity(r: ErasureRequest) -> dict[str, Any]:
    return _without_none(
        {
            "PartitionKey": ERASURES_PARTITION,
            "RowKey": r.id,
            "TenantId": r.tenant_id,
            "Field": r.field,
            "SubjectHash": r.subject_hash,
            "Suppress": r.suppress,
            "CreatedAt": _utc(r.created_at),
            "Status": r.status,
            "Steps": steps_to_json(r.steps),
            "FinishedAt": None if r.finished_at is None else _utc(r.finished_at),
            "SealedSubject": r.sealed_subject,
            "LeaseOwner": r.lease_owner,
            "LeaseUntil": None if r.lease_until is None else _utc(r.lease_until),
            "Revision": EntityProperty(r.revision, EdmType.INT64),
        }
    )


def _erasure(entity: TableEntity) -> ErasureRequest:
    return ErasureRequest(
        id=str(entity["RowKey"]),
        tenant_id=entity["TenantId"],
        field=cast(SubjectField, entity["Field"]),
        subject_hash=entity["SubjectHash"],
        suppress=bool(entity["Suppress"]),
        created_at=_time(entity["CreatedAt"]),
        status=cast(ErasureStatus, entity["Status"]),
        steps=steps_from_json(entity["Steps"]),
        finished_at=_optional_time(entity.get("FinishedAt")),
        sealed_subject=entity.get("SealedSubject"),
        lease_owner=entity.get("LeaseOwner"),
        lease_until=_optional_time(entity.get("LeaseUntil")),
        revision=_number(entity.get("Revision", 0)),
    )
