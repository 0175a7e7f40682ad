"""Reconciliation's reads from Data Explorer: the real azure-kusto-data client, a local endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from shared.adapters.analytics.kusto_history import KustoAnalyticsHistory, create_kusto_history
from shared.ports import AnalyticsSinkError
from shared.settings import load_settings
from tests.integration.azurite import free_port
from tests.integration.kusto_server import KustoServer, Reply, StaticTokenCredential, run_kusto_server, v2_frames

START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
END = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[KustoServer]:
    with run_kusto_server() as running:
        yield running


@pytest.fixture
async def history(server: KustoServer) -> AsyncIterator[KustoAnalyticsHistory]:
    settings = load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": server.url, "CLOUDSCALE_KUSTO_DATABASE": "analytics"})
    reader = create_kusto_history(settings, credential=StaticTokenCredential())
    yield reader
    await reader.close()


async def test_hourly_counts_come_from_the_deduplicated_view_by_commit_time(
    server: KustoServer, history: KustoAnalyticsHistory
) -> None:
    server.query_replies.append(
        Reply(
            200,
            v2_frames(
                {"Hour": "datetime", "Events": "long"},
                [["2026-11-24T10:00:00Z", 40], ["2026-11-24T11:00:00Z", 7]],
            ),
        )
    )

    counts = await history.hourly_counts(START, END)

    assert counts == {START: 40, datetime(2026, 11, 24, 11, tzinfo=UTC): 7}
    [query] = server.queries
    assert query.database == "analytics"
    assert "EventsDedup" in query.query
    assert "StoredAt >= windowStart and StoredAt < windowEnd" in query.query
    assert "bin(StoredAt, 1h)" in query.query
    # The window goes as parameters, never pasted into the text.
    assert query.parameters == {
        "windowStart": "datetime(2026-11-24T10:00:00.000000Z)",
        "windowEnd": "datetime(2026-11-24T12:30:00.000000Z)",
    }
    assert "2026" not in query.query


async def test_event_keys_of_a_window_name_the_tenant_and_the_event(
    server: KustoServer, history: KustoAnalyticsHistory
) -> None:
    # Two tenants may use one eventId: each is its own event, so the tenant comes back too.
    server.query_replies.append(
        Reply(
            200, v2_frames({"TenantId": "string", "EventId": "string"}, [["acme", "a"], ["globex", "a"], ["acme", "b"]])
        )
    )

    assert await history.event_keys(START, END) == {("acme", "a"), ("globex", "a"), ("acme", "b")}
    assert "project TenantId, EventId" in server.queries[0].query


async def test_a_failing_cluster_is_the_port_error(server: KustoServer, history: KustoAnalyticsHistory) -> None:
    server.query_replies.append(Reply(400, {"error": {"code": "BadRequest", "message": "no such view"}}))

    with pytest.raises(AnalyticsSinkError, match="count events per hour"):
        await history.hourly_counts(START, END)


async def test_an_unreachable_cluster_is_the_port_error() -> None:
    settings = load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": f"http://127.0.0.1:{free_port()}"})
    reader = create_kusto_history(settings, credential=StaticTokenCredential())
    try:
        with pytest.raises(AnalyticsSinkError):
            await reader.event_keys(START, END)
    finally:
        await reader.close()
