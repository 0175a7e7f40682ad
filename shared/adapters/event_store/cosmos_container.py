"""The Cosmos DB container that holds stored events: its definition as data, and local setup.

On Azure the database and the container must exist before the app runs: a data-plane
identity, which is all the app has, may not create them. `EVENTS_CONTAINER` is the one
definition for whatever creates them: `ensure_events_container` (emulators, or a one-off
run with a key), and the deployment templates, which must match it.

- Partition key `/tenantId`: every read and write names its tenant, so each is a single-
  partition point operation, and one tenant's load stays on its own partitions.
- Time to live 30 days by default: old events expire without a delete job (the change feed
  has long since copied them to Data Explorer).
- Indexing: everything except `properties` (the producer's own data, arbitrary keys: indexing
  it would cost write RUs for queries nobody runs) and `_etag`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient

__all__ = ["EVENTS_CONTAINER", "ContainerDefinition", "ensure_events_container"]


@dataclass(frozen=True, slots=True)
class ContainerDefinition:
    """What a container is created with (its id comes from settings)."""

    partition_key_path: str
    default_ttl_seconds: int
    indexing_policy: Mapping[str, Any] = field(default_factory=dict)

    def properties(self) -> dict[str, Any]:
        """The container's resource properties as Cosmos DB's REST API (and ARM) names them."""
        return {
            "partitionKey": {"paths": [self.partition_key_path], "kind": "Hash", "version": 2},
            "defaultTtl": self.default_ttl_seconds,
            "indexingPolicy": _plain(self.indexing_policy),
        }


EVENTS_CONTAINER: Final = ContainerDefinition(
    partition_key_path="/tenantId",
    default_ttl_seconds=30 * 24 * 3600,  # 2,592,000 s
    indexing_policy=MappingProxyType(
        {
            "indexingMode": "consistent",
            "automatic": True,
            "includedPaths": ({"path": "/*"},),
            "excludedPaths": ({"path": "/properties/*"}, {"path": '/"_etag"/?'}),
        }
    ),
)


async def ensure_events_container(
    client: CosmosClient, database: str, container: str, definition: ContainerDefinition = EVENTS_CONTAINER
) -> ContainerProxy:
    """Create the database and the events container if absent (an existing one is left as it is).

    For emulators and local setup only: it needs control-plane rights (an account key), which
    the app's identity on Azure does not have.
    """
    database_proxy = await client.create_database_if_not_exists(database)
    return await database_proxy.create_container_if_not_exists(
        container,
        partition_key=PartitionKey(path=definition.partition_key_path),
        default_ttl=definition.default_ttl_seconds,
        indexing_policy=_plain(definition.indexing_policy),
    )


def _plain(value: Any) -> Any:
    """A deep copy made of dicts and lists (the SDK serialises its arguments with `json`)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
