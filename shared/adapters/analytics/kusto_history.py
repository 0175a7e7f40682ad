"""`AnalyticsHistory` on Data Explorer: what reconciliation reads from the `EventsDedup` view.

Two queries, both over the deduplicated materialized view (so a row ingested twice counts
once) and both by `StoredAt`, the event store's commit time, which is what the event store
side of reconciliation counts by. Window bounds are passed as query parameters, never
pasted into the query text.

`azure-kusto-data`'s synchronous client runs in a worker thread, like the sink's, with the
same synchronous credential.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from azure.kusto.data import ClientRequestProperties, KustoClient

from shared.adapters.analytics.kusto_schema import EVENTS_VIEW
from shared.adapters.analytics.kusto_sink import (
    SDK_ERRORS,
    KustoCredential,
    KustoEndpoints,
    kusto_connection,
    kusto_endpoints,
)
from shared.ports import AnalyticsSinkError
from shared.settings import Settings

__all__ = ["EVENT_KEYS_QUERY", "HOURLY_COUNTS_QUERY", "KustoAnalyticsHistory", "create_kusto_history"]

T = TypeVar("T")

_WINDOW = "declare query_parameters(windowStart:datetime, windowEnd:datetime);\n"
HOURLY_COUNTS_QUERY: Final = (
    _WINDOW + f"{EVENTS_VIEW}\n| where StoredAt >= windowStart and StoredAt < windowEnd\n"
    "| summarize Events = count() by Hour = bin(StoredAt, 1h)"
)
EVENT_KEYS_QUERY: Final = (
    _WINDOW + f"{EVENTS_VIEW}\n| where StoredAt >= windowStart and StoredAt < windowEnd\n| project TenantId, EventId"
)


class KustoAnalyticsHistory:
    """Reads the analytics store by commit time; see the module docstring."""

    def __init__(self, endpoints: KustoEndpoints, *, database: str, credential: KustoCredential | None = None) -> None:
        """Nothing connects here; `credential` as for `KustoAnalyticsSink` (owned and closed)."""
        self.database = database
        self._endpoints = endpoints
        self._credential = credential
        self._client: KustoClient | None = None

    async def hourly_counts(self, start: datetime, end: datetime) -> dict[datetime, int]:
        rows = await self._query("count events per hour", HOURLY_COUNTS_QUERY, start, end)
        return {_utc(row["Hour"]): int(row["Events"]) for row in rows}

    async def event_keys(self, start: datetime, end: datetime) -> set[tuple[str, str]]:
        rows = await self._query("list event ids", EVENT_KEYS_QUERY, start, end)
        return {(str(row["TenantId"]), str(row["EventId"])) for row in rows}

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]  # closes the credential it was given
        elif self._credential is not None:
            self._credential.close()

    async def _query(self, action: str, query: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        properties = ClientRequestProperties()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        # Parameter values are CSL literals of the declared type.
        properties.set_parameter("windowStart", _datetime_literal(start))
        properties.set_parameter("windowEnd", _datetime_literal(end))

        def run() -> list[dict[str, Any]]:
            response = self._connected().execute_query(self.database, query, properties)
            table = response.primary_results[0]
            return [row.to_dict() for row in table]

        return await self._call(action, run)

    async def _call(self, action: str, function: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(function)
        except SDK_ERRORS as exc:
            raise AnalyticsSinkError(f"Data Explorer database {self.database}: could not {action}: {exc}") from exc

    def _connected(self) -> KustoClient:
        if self._client is None:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            self._client = KustoClient(kusto_connection(self._endpoints.engine, self._credential))
        return self._client


def create_kusto_history(settings: Settings, *, credential: KustoCredential | None = None) -> KustoAnalyticsHistory:
    """The history reader for `settings`' cluster and database (`SettingsError` if unset)."""
    return KustoAnalyticsHistory(kusto_endpoints(settings), database=settings.kusto_database, credential=credential)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _datetime_literal(value: datetime) -> str:
    return f"datetime({value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"
