"""`AnalyticsSink` on Azure Data Explorer (Kusto), with `azure-kusto-ingest`.

Rows go to the `Events` table through the SDK's `ManagedStreamingIngestClient`: streaming
ingestion to the cluster (engine) endpoint, so rows are queryable within seconds; the client
itself retries a transient failure (three attempts, jittered backoff) and then, or at once
for a body over 4 MB, falls back to queued ingestion through the ingestion (DM) endpoint.
The body is MULTIJSON, one `AnalyticsRow.to_json_dict()` object per line, read by the
`EventsJsonMapping` mapping (`changefeed/kusto/events.kql`, applied by `cloudscale
kusto-setup`). Duplicates (a batch retried after a failure) land in the raw table and the
`EventsDedup` materialized view keeps one row per (`TenantId`, `EventId`).

Why a thread: `azure-kusto-ingest` has no `aio` client (only `azure-kusto-data` has an `aio`
query client), so each ingest runs the synchronous client in `asyncio.to_thread`, keeping
the event loop free. The client's HTTP session pools connections and is shared by those
threads. A cancelled `write` cannot stop its thread: the ingest may still complete, which
at-least-once delivery and the view's deduplication already allow for.

One client per process, built on first use (nothing connects at construction). Every SDK
error, the managed client's fallback included, becomes `AnalyticsSinkError`.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import orjson
from azure.core.credentials import AccessToken
from azure.core.exceptions import AzureError
from azure.kusto.data import KustoClient, KustoConnectionStringBuilder
from azure.kusto.data.data_format import DataFormat, IngestionMappingKind
from azure.kusto.data.exceptions import KustoError
from azure.kusto.ingest import IngestionProperties, IngestionStatus, ManagedStreamingIngestClient, StreamDescriptor
from requests import RequestException

from shared.adapters.analytics.kusto_schema import EVENTS_MAPPING, EVENTS_TABLE
from shared.domain.analytics import AnalyticsRow
from shared.ports import AnalyticsSinkError
from shared.settings import Settings, SettingsError

__all__ = [
    "APPLICATION_NAME",
    "SDK_ERRORS",
    "KustoAnalyticsSink",
    "KustoCredential",
    "KustoEndpoints",
    "create_kusto_sink",
    "describe_sdk_error",
    "kusto_connection",
    "kusto_endpoints",
    "multijson_body",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

APPLICATION_NAME: Final = "CloudScale"
"""Sent as the `x-ms-app` header, so `.show commands` and `.show queries` name the caller."""

SDK_ERRORS: Final = (KustoError, AzureError, RequestException, OSError)
"""What the SDK raises: its own errors, azure-core's (the credential, the queued path's
storage clients), `requests` errors it does not wrap, and socket-level errors."""

_CLUSTER_URI_SETTING: Final = "CLOUDSCALE_KUSTO_CLUSTER_URI"
_INGEST_URI_SETTING: Final = "CLOUDSCALE_KUSTO_INGEST_URI"
_INGEST_PREFIX: Final = "ingest-"


class KustoCredential(Protocol):
    """A synchronous token credential, as the Kusto SDK uses it (`DefaultAzureCredential` is one).

    The SDK calls `get_token` from its worker threads and `close` when its client closes.
    """

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """An access token for `scopes`."""
        ...

    def close(self) -> None:
        """Release the credential's resources."""
        ...


@dataclass(frozen=True, slots=True)
class KustoEndpoints:
    """The two endpoints of a Data Explorer cluster, each `scheme://host[:port]`."""

    engine: str
    """The cluster (query) URI: streaming ingestion and management commands."""
    ingest: str
    """The ingestion (DM) URI: queued ingestion, the managed client's fallback."""


class KustoAnalyticsSink:
    """Analytics rows into a Data Explorer table; see the module docstring."""

    def __init__(
        self,
        endpoints: KustoEndpoints,
        *,
        database: str,
        table: str = EVENTS_TABLE,
        mapping: str = EVENTS_MAPPING,
        credential: KustoCredential | None = None,
    ) -> None:
        """Nothing connects here.

        `credential`: a synchronous token credential; `DefaultAzureCredential` (the managed
        identity on Azure) when None. The sink owns it: `close` closes it.
        """
        self.database = database
        self.table = table
        self.mapping = mapping
        self._endpoints = endpoints
        self._credential = credential
        self._ingest_client: ManagedStreamingIngestClient | None = None
        self._check_client: KustoClient | None = None
        self._closed = False

    async def write(self, rows: Sequence[AnalyticsRow]) -> None:
        """Ingest `rows` as one MULTIJSON body; return once streamed, or queued by the fallback.

        Both outcomes are durable: a streamed batch is committed to the table, a queued one is
        in the DM's blob and queue. Raises `AnalyticsSinkError`; the rows may have landed even
        then (a request can fail after the service committed it), so the caller's retry may
        duplicate them, which `EventsDedup` absorbs.
        """
        if not rows:
            return
        body = multijson_body(rows)
        properties = IngestionProperties(
            database=self.database,
            table=self.table,
            data_format=DataFormat.MULTIJSON,
            ingestion_mapping_kind=IngestionMappingKind.JSON,
            ingestion_mapping_reference=self.mapping,
        )
        client = self._ingest()
        # The SDK gzips the stream itself (MULTIJSON is compressible) before sending it.
        descriptor = StreamDescriptor(io.BytesIO(body), size=len(body))
        action = f"ingest {len(rows)} row(s) into {self.table}"
        result = await self._call(action, client.ingest_from_stream, descriptor, properties)
        if result.status is IngestionStatus.QUEUED:
            # Not an error (the rows are durably queued), but they show up minutes late.
            logger.warning(
                "Data Explorer streaming ingestion failed or the batch was too large; %d row(s) went through "
                "queued ingestion into %s.%s",
                len(rows),
                self.database,
                self.table,
            )

    async def check(self) -> None:
        """Run `.show version` on the cluster: proves DNS, TLS, the credential and that the engine answers."""
        client = self._check()
        await self._call("check the cluster", client.execute_mgmt, self.database, ".show version")

    async def close(self) -> None:
        """Close the clients and the credential. Later calls raise `AnalyticsSinkError`."""
        if self._closed:
            return
        self._closed = True
        clients = [client for client in (self._ingest_client, self._check_client) if client is not None]
        self._ingest_client = self._check_client = None
        # Each client closes the credential it was given (the SDK does), so it is closed here
        # only when no client was ever built. Closing is local: no request is sent.
        closers: list[Callable[[], None]] = [client.close for client in clients]
        if not clients and self._credential is not None:
            closers.append(self._credential.close)
        failure: BaseException | None = None
        for close in closers:
            try:
                close()
            except SDK_ERRORS as exc:
                failure = failure or exc
        if failure is not None:
            problem = describe_sdk_error(failure)
            raise AnalyticsSinkError(f"Closing the Data Explorer client failed: {problem}") from failure

    async def _call(self, action: str, function: Callable[..., T], *args: object) -> T:
        """Run one blocking SDK call in a worker thread; SDK errors become `AnalyticsSinkError`."""
        try:
            return await asyncio.to_thread(function, *args)
        except SDK_ERRORS as exc:
            problem = f"Data Explorer database {self.database}: could not {action}"
            raise AnalyticsSinkError(f"{problem}: {describe_sdk_error(exc)}") from exc

    def _ingest(self) -> ManagedStreamingIngestClient:
        if self._ingest_client is None:
            engine, ingest = self._connections()
            self._ingest_client = self._build(
                # Both URIs are explicit (see `kusto_endpoints`), so the SDK's own guessing
                # (adding or removing `ingest-`) is turned off.
                lambda: ManagedStreamingIngestClient(engine, ingest, auto_correct_endpoint=False)
            )
        return self._ingest_client

    def _check(self) -> KustoClient:
        if self._check_client is None:
            engine, _ = self._connections()
            self._check_client = self._build(lambda: KustoClient(engine))
        return self._check_client

    def _connections(self) -> tuple[KustoConnectionStringBuilder, KustoConnectionStringBuilder]:
        if self._closed:
            raise AnalyticsSinkError("the Data Explorer analytics sink is closed")
        if self._credential is None:
            # Imported here: only the Azure backend needs azure.identity's credential chain.
            from azure.identity import DefaultAzureCredential

            # Synchronous on purpose: the SDK calls it from its worker threads.
            self._credential = DefaultAzureCredential()
        return (
            kusto_connection(self._endpoints.engine, self._credential),
            kusto_connection(self._endpoints.ingest, self._credential),
        )

    @staticmethod
    def _build(build: Callable[[], T]) -> T:
        try:
            return build()
        except Exception as exc:  # a malformed setting: the sink is unusable, not the rows
            raise AnalyticsSinkError(f"the Data Explorer client could not be built: {describe_sdk_error(exc)}") from exc


def multijson_body(rows: Sequence[AnalyticsRow]) -> bytes:
    """The MULTIJSON ingestion body: one JSON object per row, newline-separated."""
    return b"\n".join(orjson.dumps(row.to_json_dict()) for row in rows)


def kusto_connection(uri: str, credential: KustoCredential) -> KustoConnectionStringBuilder:
    """A connection to `uri` authenticated with `credential` (Entra ID tokens, no keys)."""
    connection = KustoConnectionStringBuilder.with_azure_token_credential(uri, credential)
    connection.application_for_tracing = APPLICATION_NAME
    return connection


def kusto_endpoints(settings: Settings) -> KustoEndpoints:
    """The cluster's engine and ingestion URIs from settings; `SettingsError` names what is wrong.

    The ingestion URI is `CLOUDSCALE_KUSTO_INGEST_URI`, or the cluster URI with `ingest-` in
    front of its host. A loopback or IP-address cluster (an emulator, a test server) has no
    separate ingestion host, so its URI serves both.
    """
    if not settings.kusto_cluster_uri:
        raise SettingsError(
            f"{_CLUSTER_URI_SETTING} is required: the Data Explorer cluster, https://<cluster>.<region>.kusto.windows.net"
        )
    engine = _endpoint(settings.kusto_cluster_uri, _CLUSTER_URI_SETTING)
    host = urlsplit(engine).hostname or ""
    if host.startswith(_INGEST_PREFIX):
        raise SettingsError(
            f"{_CLUSTER_URI_SETTING} names an ingestion endpoint ({host}); set it to the cluster URI "
            f"(without '{_INGEST_PREFIX}') and, if needed, {_INGEST_URI_SETTING} to the ingestion URI"
        )
    if settings.kusto_ingest_uri:
        ingest = _endpoint(settings.kusto_ingest_uri, _INGEST_URI_SETTING)
    elif _is_address(host):
        ingest = engine
    else:
        ingest = engine.replace("://", f"://{_INGEST_PREFIX}", 1)
    return KustoEndpoints(engine, ingest)


def create_kusto_sink(settings: Settings, *, credential: KustoCredential | None = None) -> KustoAnalyticsSink:
    """Build the sink from settings; connects lazily. `credential` defaults to `DefaultAzureCredential`."""
    return KustoAnalyticsSink(kusto_endpoints(settings), database=settings.kusto_database, credential=credential)


def _endpoint(value: str, setting: str) -> str:
    """`scheme://host[:port]`; https unless the host is loopback (a bearer token goes with every request)."""
    try:
        parts = urlsplit(value.strip())
        host, _ = parts.hostname, parts.port  # reading the port validates it
    except ValueError as exc:
        raise SettingsError(f"{setting}: not a URI ({exc})") from None
    if parts.username is not None:
        # Checked first and not echoed: whatever is before the @ may be a password.
        raise SettingsError(f"{setting}: credentials do not belong in the URI (use an identity)")
    if parts.scheme not in ("https", "http") or not host:
        raise SettingsError(f"{setting}: expected https://<cluster>.<region>.kusto.windows.net (got {value!r})")
    if parts.scheme == "http" and not _is_loopback(host):
        raise SettingsError(f"{setting}: plain http is only allowed to a loopback address (got {value!r})")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise SettingsError(f"{setting}: expected the endpoint alone, without a path or query (got {value!r})")
    return f"{parts.scheme}://{parts.netloc}"


def _is_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_sdk_error(exc: BaseException) -> str:
    """The error's type and the first line of its message, bounded (service bodies can be long)."""
    text = str(exc).strip().split("\n", 1)[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
