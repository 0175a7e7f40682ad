"""Analytics erased by data subject on Data Explorer: `.purge` of the table and the view.

What Data Explorer prescribes for deleting personal data is the purge (docs/privacy.md quotes
the docs; https://learn.microsoft.com/azure/data-explorer/kusto/concepts/data-purge):

- The single-step form meant for applications, `.purge table T records in database D with
  (noregrets='true') <| where ...`, run on the data-management (ingestion) endpoint, never the
  engine. It needs the database Admin role and `enablePurge` on the cluster (both in
  `infra/`). It answers at once with an `OperationId`; the purge runs later, one at a time
  per cluster: records leave query results when it completes (seconds to hours), and the
  storage holding them is deleted at least 5 and at most 30 days after the command.
- The materialized view is purged separately (a table purge leaves the view's materialized
  rows), after the table, the docs' order: both are issued here, table first, and the cluster
  runs purges one at a time. A row the view materialises after its own purge ran (one that
  reached the table just before the erasure) is still counted by the next
  `count_subject_rows`, so an erasure's later verification purges it again.

Counting is a query on the engine endpoint over `EventsDedup` (one row per event, like the
embedded table and the event store, and it sees rows the view has not materialized yet).
The docs ask for few purges (1-2 per table per day), and a purged row is counted until its
purge completes, so `erase_subject_rows` purges again only when needed: not while the purges
this eraser issued for the same subject are still `Scheduled` or `InProgress` (`.show purges
<OperationId>` on the ingestion endpoint; an erasure's verification, seconds after its purge,
then sends nothing), and not when the count finds nothing (a rerun after they completed).
The operations are remembered in this process only (by a digest of the subject): after a
restart, a rerun that still counts rows purges once more, which is harmless.

The identifiers go into the text as obfuscated string literals (`h'...'`), which the service
stars out of the command and query text it keeps (`.show commands`, `.show queries`, its own
telemetry). Clients, credential and error translation are the sink's (`kusto_sink`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from functools import partial
from typing import Final, TypeVar

from azure.kusto.data import KustoClient
from azure.kusto.data.exceptions import KustoApiError, KustoServiceError

from shared.adapters.analytics.kusto_schema import EVENTS_TABLE, EVENTS_VIEW
from shared.adapters.analytics.kusto_sink import (
    SDK_ERRORS,
    KustoCredential,
    KustoEndpoints,
    describe_sdk_error,
    kusto_connection,
    kusto_endpoints,
)
from shared.domain.analytics import SUBJECT_COLUMNS
from shared.domain.privacy import Subject
from shared.ports import AnalyticsErasure, AnalyticsSinkError
from shared.settings import Settings

__all__ = [
    "PURGE_LATENCY",
    "KustoAnalyticsEraser",
    "count_query",
    "create_kusto_eraser",
    "obfuscated",
    "purge_command",
    "subject_predicate",
]

T = TypeVar("T")

PURGE_LATENCY: Final = (
    "records leave query results when each purge completes (seconds to hours, one purge at a time per "
    "cluster; `.show purges <OperationId>` on the ingestion endpoint), and storage is hard-deleted 5 to 30 "
    "days after the command"
)

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATION_ID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_RUNNING: Final = frozenset({"Scheduled", "InProgress"})
"""`.show purges` states of a purge that has not completed (nor failed, nor been canceled)."""
_ESCAPES: Final = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"})

_PERMISSION_HINT: Final = (
    "a purge needs `enablePurge` on the cluster and the database Admin role for this identity "
    "(infra/modules/kusto.bicep, infra/modules/roles.bicep)"
)


def obfuscated(value: str) -> str:
    """`value` as an obfuscated string literal: `h'...'`, with `\\`, `'` and line breaks escaped."""
    return "h'" + value.translate(_ESCAPES) + "'"


def entity_name(name: str) -> str:
    """A table, view or database name as a command names it: bracketed unless plain (`['a-b']`)."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def subject_predicate(subject: Subject) -> str:
    """`where TenantId == h'..' and UserId == h'..'`: one `where`, filters joined by `and`, as a purge requires."""
    return (
        f"where TenantId == {obfuscated(subject.tenant_id)}"
        f" and {SUBJECT_COLUMNS[subject.field]} == {obfuscated(subject.value)}"
    )


def count_query(subject: Subject, view: str = EVENTS_VIEW) -> str:
    """The query counting the subject's events (one per event: the deduplicating view)."""
    return f"{entity_name(view)}\n| {subject_predicate(subject)}\n| count"


def purge_command(kind: str, name: str, database: str, subject: Subject) -> str:
    """The single-step purge of `kind` (`table` | `materialized-view`) `name`'s rows of `subject`."""
    return (
        f".purge {kind} {entity_name(name)} records in database {entity_name(database)}"
        f" with (noregrets='true') <| {subject_predicate(subject)}"
    )


class KustoAnalyticsEraser:
    """The `AnalyticsEraser` port on Data Explorer; see the module docstring."""

    def __init__(
        self,
        endpoints: KustoEndpoints,
        *,
        database: str,
        table: str = EVENTS_TABLE,
        view: str = EVENTS_VIEW,
        credential: KustoCredential | None = None,
    ) -> None:
        """Nothing connects here; `credential` as for `KustoAnalyticsSink` (owned and closed)."""
        self.database = database
        self.table = table
        self.view = view
        self.endpoints = endpoints
        self._credential = credential
        self._clients: dict[str, KustoClient] = {}
        self._closed = False
        # The purge operations issued per subject (by `_digest`), until seen finished.
        self._issued: dict[str, list[str]] = {}

    async def count_subject_rows(self, subject: Subject) -> int:
        """The subject's events still visible in analytics (a purged row stops counting when its purge completes)."""
        query = count_query(subject, self.view)

        def run() -> int:
            response = self._client(self.endpoints.engine).execute_query(self.database, query)
            rows = list(response.primary_results[0])
            return int(rows[0]["Count"]) if rows else 0

        return await self._call(f"count a subject's rows in {self.view}", run)

    async def erase_subject_rows(self, subject: Subject) -> AnalyticsErasure:
        """Purge the subject's rows from the table, then from the view; see the module docstring.

        `removed` is the count found before purging (rows this call asked to purge); `pending`
        names the purge operations and how long they take. Nothing is purged when nothing is
        found, nor while this eraser's earlier purges of the subject still run (`removed` 0,
        `pending` naming them).
        """
        digest = _digest(subject)
        earlier = self._issued.get(digest, [])
        if earlier:
            running = await self._call("read the state of earlier purges", partial(self._running, earlier))
            if running:
                listed = ", ".join(running)
                return AnalyticsErasure(
                    removed=0, pending=f"Data Explorer purge {listed} still running: {PURGE_LATENCY}"
                )
            del self._issued[digest]
        found = await self.count_subject_rows(subject)
        if found == 0:
            return AnalyticsErasure(removed=0)
        operations = []
        for kind, name in (("table", self.table), ("materialized-view", self.view)):
            command = purge_command(kind, name, self.database, subject)
            operation = await self._call(f"purge a subject's rows from {kind} {name}", partial(self._purge, command))
            self._issued.setdefault(digest, []).append(operation)
            operations.append(f"{operation} ({kind} {name})")
        return AnalyticsErasure(
            removed=found, pending=f"Data Explorer purge {' then '.join(operations)} scheduled: {PURGE_LATENCY}"
        )

    async def close(self) -> None:
        """Close the clients (each closes the credential it was given) or, if none was built, the credential."""
        if self._closed:
            return
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        try:
            for client in clients:
                client.close()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
            if not clients and self._credential is not None:
                self._credential.close()
        except SDK_ERRORS as exc:
            raise AnalyticsSinkError(f"Closing the Data Explorer client failed: {describe_sdk_error(exc)}") from exc

    def _purge(self, command: str) -> str:
        """Run one purge command on the ingestion endpoint; its `OperationId` (worker thread)."""
        response = self._client(self.endpoints.ingest).execute_mgmt(self.database, command)
        for table in response.primary_results:
            for row in table:
                return str(row["OperationId"])
        raise AnalyticsSinkError(f"Data Explorer answered a purge without an OperationId (database {self.database})")

    def _running(self, operations: list[str]) -> list[str]:
        """Those of `operations` still scheduled or in progress (worker thread, ingestion endpoint).

        An id that is not a GUID (never from the service) is not pasted into a command.
        """
        running = []
        for operation in operations:
            if not _OPERATION_ID.fullmatch(operation):
                continue
            response = self._client(self.endpoints.ingest).execute_mgmt(self.database, f".show purges {operation}")
            states = {str(row["State"]) for table in response.primary_results for row in table}
            if states & _RUNNING:
                running.append(operation)
        return running

    async def _call(self, action: str, function: Callable[[], T]) -> T:
        """Run blocking SDK calls in a worker thread; their errors become `AnalyticsSinkError`."""
        try:
            return await asyncio.to_thread(function)
        except SDK_ERRORS as exc:
            problem = f"Data Explorer database {self.database}: could not {action}: {describe_sdk_error(exc)}"
            if _permanent(exc):
                hint = f"; {_PERMISSION_HINT}" if action.startswith("purge") else ""
                problem += f" (permanent: retrying will not help{hint})"
            raise AnalyticsSinkError(problem) from exc

    def _client(self, uri: str) -> KustoClient:
        """The client of one endpoint, built on first use (worker thread; building sends nothing)."""
        if self._closed:
            raise AnalyticsSinkError("the Data Explorer analytics eraser is closed")
        client = self._clients.get(uri)
        if client is None:
            if self._credential is None:
                # Imported here: only the Azure backend needs azure.identity's credential chain.
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            client = self._clients.setdefault(uri, KustoClient(kusto_connection(uri, self._credential)))
        return client


def _digest(subject: Subject) -> str:
    """The key of a subject in this process's memory (not its identifier in clear)."""
    return hashlib.sha256(
        b"\0".join(part.encode() for part in (subject.tenant_id, subject.field, subject.value))
    ).hexdigest()


def _permanent(exc: BaseException) -> bool:
    """The service said so (`@permanent`), or refused the caller or the request (4xx other than 408/429)."""
    if isinstance(exc, KustoApiError) and exc.get_api_error().permanent:
        return True
    if isinstance(exc, KustoServiceError) and exc.http_response is not None:
        status = int(getattr(exc.http_response, "status_code", 0) or getattr(exc.http_response, "status", 0) or 0)
        return 400 <= status < 500 and status not in (408, 429)
    return False


def create_kusto_eraser(settings: Settings, *, credential: KustoCredential | None = None) -> KustoAnalyticsEraser:
    """The eraser for `settings`' cluster and database (`SettingsError` if unset); connects lazily."""
    return KustoAnalyticsEraser(kusto_endpoints(settings), database=settings.kusto_database, credential=credential)
