"""`KustoAnalyticsSink` with the real `azure-kusto-ingest` client against a local endpoint.

`tests/integration/kusto_server.py` answers on 127.0.0.1 as Data Explorer's REST API does
and records what arrives; a static-token credential stands in for `DefaultAzureCredential`.

Nothing leaves the machine: the cluster URI is the loopback server, and so is the ingestion
(DM) URI the managed client falls back to (a loopback cluster serves both, see
`kusto_endpoints`). When a test makes streaming fail transiently, the fallback's first step,
`.get ingestion resources` on the DM, reaches the same server, which fails it; the queued
path's storage uploads are never reached, because they need the resources it did not give.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from shared.adapters.analytics.kusto_sink import KustoAnalyticsSink, create_kusto_sink
from shared.domain.analytics import ANALYTICS_COLUMNS, AnalyticsRow
from shared.ports import AnalyticsSink, AnalyticsSinkError
from shared.settings import load_settings
from tests.analytics_store import analytics_row
from tests.integration.azurite import free_port
from tests.integration.kusto_server import KustoServer, Reply, StaticTokenCredential, kusto_error, run_kusto_server

DATABASE = "cloudscale-tests"
STREAMING_ATTEMPTS = 3
"""How often the managed client tries streaming before it gives up or falls back."""


def row(n: int, **changes: Any) -> AnalyticsRow:
    moment = datetime(2025, 3, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=n)
    return analytics_row(
        n, moment, processed_after=timedelta(milliseconds=250), stored_after=timedelta(milliseconds=300), **changes
    )


@pytest.fixture
def kusto() -> Iterator[KustoServer]:
    with run_kusto_server() as server:
        yield server


@pytest.fixture
def credential() -> StaticTokenCredential:
    return StaticTokenCredential()


@pytest.fixture
async def sink(kusto: KustoServer, credential: StaticTokenCredential) -> AsyncIterator[KustoAnalyticsSink]:
    settings = load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": kusto.url, "CLOUDSCALE_KUSTO_DATABASE": DATABASE})
    sink = create_kusto_sink(settings, credential=credential)
    yield sink
    await sink.close()


def ingest_attempts(kusto: KustoServer) -> int:
    return sum(path.startswith("POST /v1/rest/ingest/") for path in kusto.paths)


# --- what arrives ----------------------------------------------------------------------------


async def test_a_batch_arrives_as_one_streaming_request_with_one_json_line_per_row(
    sink: KustoAnalyticsSink, kusto: KustoServer
) -> None:
    rows = [row(1), row(2, suspicious=True, fraud_reasons=("VELOCITY_IP_MINUTE",)), row(3, properties=None)]

    await sink.write(rows)

    [request] = kusto.ingests
    assert (request.database, request.table) == (DATABASE, "Events")
    assert request.query == {"streamFormat": "multijson", "mappingName": "EventsJsonMapping"}
    assert request.headers["content-encoding"] == "gzip"
    assert len(request.lines) == len(rows)
    for line, sent in zip(request.lines, rows, strict=True):
        assert list(line) == [name for name, _ in ANALYTICS_COLUMNS]
        assert line == sent.to_json_dict()


async def test_requests_carry_the_credentials_token_for_the_kusto_scope(
    sink: KustoAnalyticsSink, kusto: KustoServer, credential: StaticTokenCredential
) -> None:
    await sink.write([row(1)])

    assert kusto.ingests[0].headers["authorization"] == f"Bearer {credential.token}"
    assert set(credential.scopes) == {"https://kusto.kusto.windows.net/.default"}
    assert kusto.ingests[0].headers["x-ms-app"] == "CloudScale"


async def test_batches_reuse_one_client(sink: KustoAnalyticsSink, kusto: KustoServer) -> None:
    for n in range(3):
        await sink.write([row(n)])

    assert [request.lines[0]["EventId"] for request in kusto.ingests] == [row(n).event_id for n in range(3)]
    # The cloud metadata is read once per process and cluster, not per batch.
    assert kusto.paths.count("GET /v1/rest/auth/metadata") <= 1


async def test_an_empty_batch_sends_nothing(sink: KustoAnalyticsSink, kusto: KustoServer) -> None:
    await sink.write([])

    assert kusto.paths == []


async def test_the_body_is_gzip_on_the_wire(sink: KustoAnalyticsSink, kusto: KustoServer) -> None:
    rows = [row(1), row(2)]

    await sink.write(rows)

    [request] = kusto.ingests
    assert request.raw.startswith(b"\x1f\x8b")  # the gzip magic number
    assert gzip.decompress(request.raw) == b"\n".join(orjson.dumps(sent.to_json_dict()) for sent in rows)


# --- failures --------------------------------------------------------------------------------


async def test_a_transient_outage_falls_back_to_queued_ingestion_and_surfaces_as_the_port_error(
    sink: KustoAnalyticsSink, kusto: KustoServer
) -> None:
    kusto.ingest_reply = kusto_error(503, "ServiceUnavailable", "engine busy", permanent=False)
    kusto.mgmt_reply = kusto_error(503, "ServiceUnavailable", "data management busy", permanent=False)

    with pytest.raises(AnalyticsSinkError, match="data management busy") as error:
        await sink.write([row(1)])

    assert error.value.__cause__ is not None
    # Streaming was retried by the client, then it asked the DM (this same server) for its
    # queued-ingestion resources, which failed: nothing went anywhere else.
    assert ingest_attempts(kusto) == STREAMING_ATTEMPTS
    assert [command.command for command in kusto.commands] == [".get ingestion resources"]


async def test_a_permanent_error_is_not_sent_through_the_queue(sink: KustoAnalyticsSink, kusto: KustoServer) -> None:
    kusto.ingest_reply = kusto_error(400, "BadRequest_MappingNotFound", "mapping not found", permanent=True)

    with pytest.raises(AnalyticsSinkError, match="mapping not found"):
        await sink.write([row(1)])

    assert kusto.commands == []


async def test_a_server_error_without_a_kusto_error_body_is_the_port_error(
    sink: KustoAnalyticsSink, kusto: KustoServer
) -> None:
    kusto.ingest_reply = Reply(500, "upstream exploded")

    with pytest.raises(AnalyticsSinkError, match="500"):
        await sink.write([row(1)])

    assert ingest_attempts(kusto) == STREAMING_ATTEMPTS
    assert kusto.commands == []


async def test_a_refused_connection_is_the_port_error(credential: StaticTokenCredential) -> None:
    # Nothing listens on this port.
    settings = load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": f"http://127.0.0.1:{free_port()}"})
    sink = create_kusto_sink(settings, credential=credential)
    try:
        with pytest.raises(AnalyticsSinkError, match="KustoNetworkError") as write_error:
            await sink.write([row(1)])
        with pytest.raises(AnalyticsSinkError) as check_error:
            await sink.check()
    finally:
        await sink.close()

    for error in (write_error.value, check_error.value):
        assert type(error) is AnalyticsSinkError
        assert error.__cause__ is not None  # the SDK error is chained, not leaked


# --- check and close -------------------------------------------------------------------------


async def test_check_runs_show_version_on_the_database(sink: KustoAnalyticsSink, kusto: KustoServer) -> None:
    await sink.check()

    assert [(command.database, command.command) for command in kusto.commands] == [(DATABASE, ".show version")]


async def test_check_on_a_failing_cluster_is_the_port_error(sink: KustoAnalyticsSink, kusto: KustoServer) -> None:
    kusto.mgmt_reply = kusto_error(503, "ServiceUnavailable", "down for maintenance", permanent=False)

    with pytest.raises(AnalyticsSinkError, match="down for maintenance"):
        await sink.check()


async def test_close_closes_the_credential_and_later_calls_fail(
    kusto: KustoServer, credential: StaticTokenCredential
) -> None:
    sink: AnalyticsSink = create_kusto_sink(
        load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": kusto.url}), credential=credential
    )
    await sink.write([row(1)])

    await sink.close()
    await sink.close()

    assert credential.closed >= 1
    with pytest.raises(AnalyticsSinkError, match="closed"):
        await sink.write([row(2)])
    with pytest.raises(AnalyticsSinkError, match="closed"):
        await sink.check()
    assert len(kusto.ingests) == 1


async def test_an_unused_sink_closes_its_credential(credential: StaticTokenCredential) -> None:
    sink = create_kusto_sink(
        load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": "https://cluster.example.invalid"}), credential=credential
    )

    await sink.close()

    assert credential.closed == 1
