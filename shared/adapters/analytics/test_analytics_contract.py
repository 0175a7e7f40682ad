"""The `AnalyticsSink` contract, run against both adapters: the embedded SQLite table, and Data
Explorer through the real `azure-kusto-ingest` client against `tests/integration/kusto_server.py`.

The local endpoint records what arrives and has no table behind it, so "what the store holds"
is read per adapter (`Analytics.held`): the embedded table's rows, or the rows Data Explorer
received, one per (`TenantId`, `EventId`) as its deduplicating view (`arg_max(...) by EventId`)
shows them. What only one adapter does (streaming and its fallback, the wire format, schema
upgrades of the SQLite file) is in `test_kusto_sink` and `test_embedded_analytics`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.adapters.analytics.embedded_analytics import ANALYTICS_TABLE, EmbeddedAnalyticsStore
from shared.adapters.analytics.kusto_sink import create_kusto_sink
from shared.adapters.analytics.test_kusto_sink import row
from shared.domain.analytics import AnalyticsRow
from shared.ports import AnalyticsSink, AnalyticsSinkError
from shared.settings import load_settings
from tests.integration.kusto_server import StaticTokenCredential, run_kusto_server

Key = tuple[str, str]


@dataclass
class Analytics:
    """One adapter under test, and how to read what its store holds: event type per (tenant, event)."""

    sink: AnalyticsSink
    held: Callable[[], dict[Key, str]]


@pytest.fixture(params=["embedded", "kusto"])
async def analytics(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Analytics]:
    if request.param == "embedded":
        path = tmp_path / "analytics.sqlite3"

        def held_in_the_table() -> dict[Key, str]:
            if not path.exists():
                return {}
            with contextlib.closing(sqlite3.connect(path)) as connection:
                rows = connection.execute(f"SELECT TenantId, EventId, EventType FROM {ANALYTICS_TABLE}").fetchall()
            return {(str(tenant), str(event)): str(kind) for tenant, event, kind in rows}

        sink: AnalyticsSink = EmbeddedAnalyticsStore(path)
        yield Analytics(sink, held_in_the_table)
        await sink.close()
        return
    with run_kusto_server() as server:

        def received_by_data_explorer() -> dict[Key, str]:
            # Later rows win, as the view's arg_max keeps one row per event.
            lines = [line for ingest in server.ingests for line in ingest.lines]
            return {(line["TenantId"], line["EventId"]): line["EventType"] for line in lines}

        settings = load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": server.url, "CLOUDSCALE_KUSTO_DATABASE": "contract"})
        sink = create_kusto_sink(settings, credential=StaticTokenCredential())
        yield Analytics(sink, received_by_data_explorer)
        await sink.close()


def keys(*rows: AnalyticsRow) -> dict[Key, str]:
    return {(r.tenant_id, r.event_id): r.event_type for r in rows}


async def test_a_batch_is_held_one_row_per_event(analytics: Analytics) -> None:
    rows = [row(1), row(2, event_type="purchase", suspicious=True, fraud_reasons=("VELOCITY_IP_MINUTE",)), row(3)]

    await analytics.sink.write(rows)

    assert analytics.held() == keys(*rows)


async def test_an_empty_batch_changes_nothing(analytics: Analytics) -> None:
    await analytics.sink.write([])

    assert analytics.held() == {}


async def test_two_tenants_using_one_event_id_are_two_events(analytics: Analytics) -> None:
    acme, globex = row(7), row(7, tenant_id="globex", event_type="click")

    await analytics.sink.write([acme, globex])

    assert analytics.held() == keys(acme, globex)


async def test_a_batch_delivered_again_leaves_one_row_per_event(analytics: Analytics) -> None:
    # GIVEN a batch written, then retried after a failure (at least once)
    first = [row(1), row(2)]
    await analytics.sink.write(first)

    # WHEN it comes again with a new neighbour
    await analytics.sink.write([*first, row(3)])

    # THEN every event is held once
    assert analytics.held() == keys(row(1), row(2), row(3))


async def test_check_passes_on_a_reachable_store(analytics: Analytics) -> None:
    await analytics.sink.check()


async def test_a_closed_sink_refuses_with_the_port_error(analytics: Analytics) -> None:
    await analytics.sink.write([row(1)])

    await analytics.sink.close()

    with pytest.raises(AnalyticsSinkError, match="closed"):
        await analytics.sink.write([row(2)])
    with pytest.raises(AnalyticsSinkError, match="closed"):
        await analytics.sink.check()
    assert analytics.held() == keys(row(1))
