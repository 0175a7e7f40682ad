"""Erasing a data subject on Data Explorer: the real azure-kusto-data client against local endpoints.

Two scripted servers (`tests/integration/kusto_server.py`) stand for the cluster's two
endpoints, so each test sees which endpoint got what: queries go to the engine, purges to the
data-management (ingestion) endpoint, as Data Explorer requires.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest

from shared.adapters.analytics.kusto_eraser import KustoAnalyticsEraser, create_kusto_eraser, obfuscated
from shared.domain.privacy import Subject
from shared.ports import AnalyticsEraser, AnalyticsErasure, AnalyticsSinkError
from shared.settings import load_settings
from tests.integration.kusto_server import (
    KustoServer,
    Reply,
    StaticTokenCredential,
    kusto_error,
    purge_operation_id,
    run_kusto_server,
    v2_frames,
)

DATABASE = "cloudscale-tests"
ALICE = Subject("acme", "userId", "alice-42")


@pytest.fixture
def engine() -> Iterator[KustoServer]:
    with run_kusto_server() as running:
        yield running


@pytest.fixture
def ingest() -> Iterator[KustoServer]:
    with run_kusto_server() as running:
        yield running


@pytest.fixture
async def eraser(engine: KustoServer, ingest: KustoServer) -> AsyncIterator[KustoAnalyticsEraser]:
    settings = load_settings(
        {
            "CLOUDSCALE_KUSTO_CLUSTER_URI": engine.url,
            "CLOUDSCALE_KUSTO_INGEST_URI": ingest.url,
            "CLOUDSCALE_KUSTO_DATABASE": DATABASE,
        }
    )
    made = create_kusto_eraser(settings, credential=StaticTokenCredential())
    yield made
    await made.close()


def found(count: int) -> Reply:
    """The engine's answer to `... | count`."""
    return Reply(200, v2_frames({"Count": "long"}, [[count]]))


async def test_counting_asks_the_engine_about_the_deduplicated_view_with_obfuscated_identifiers(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    engine.query_replies.append(found(3))

    assert await eraser.count_subject_rows(ALICE) == 3

    [query] = engine.queries
    assert query.database == DATABASE
    assert query.query == "EventsDedup\n| where TenantId == h'acme' and UserId == h'alice-42'\n| count"
    assert ingest.queries == []
    assert ingest.commands == []


async def test_erasing_purges_the_table_then_the_view_on_the_ingestion_endpoint(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    # GIVEN three events of the subject in analytics
    engine.query_replies.append(found(3))

    # WHEN the subject is erased
    erased = await eraser.erase_subject_rows(ALICE)

    # THEN the ingestion (DM) endpoint got the two single-step purges, table first, view second ...
    predicate = "where TenantId == h'acme' and UserId == h'alice-42'"
    assert [(command.database, command.command) for command in ingest.commands] == [
        (DATABASE, f".purge table Events records in database ['{DATABASE}'] with (noregrets='true') <| {predicate}"),
        (
            DATABASE,
            f".purge materialized-view EventsDedup records in database ['{DATABASE}'] with (noregrets='true')"
            f" <| {predicate}",
        ),
    ]
    # ... the engine only the count, never a purge
    assert engine.commands == []
    assert len(engine.queries) == 1
    # AND the result says what was found and which operations are still running, and for how long
    assert erased.removed == 3
    assert erased.pending is not None
    assert f"{purge_operation_id(1)} (table Events) then {purge_operation_id(2)} (materialized-view EventsDedup)" in (
        erased.pending
    )
    assert "5 to 30 days" in erased.pending


async def test_an_anonymous_visitor_is_matched_by_the_anonymous_id_column(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    engine.query_replies.append(found(1))

    await eraser.erase_subject_rows(Subject("acme", "anonymousId", "anon-7"))

    assert "AnonymousId == h'anon-7'" in engine.queries[0].query
    assert all(
        command.command.endswith("where TenantId == h'acme' and AnonymousId == h'anon-7'")
        for command in ingest.commands
    )


ODD = "o'brien\\x\"\n\r\tend"


def test_an_identifier_is_escaped_inside_its_obfuscated_literal() -> None:
    assert obfuscated(ODD) == "h'o\\'brien\\\\x\"\\n\\r\\tend'"


async def test_the_identifier_appears_only_inside_obfuscated_literals(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    # GIVEN a subject whose id has quotes, a backslash and line breaks
    subject = Subject("acme", "userId", ODD)
    engine.query_replies.append(found(2))

    await eraser.erase_subject_rows(subject)

    texts = [engine.queries[0].query, *(command.command for command in ingest.commands)]
    assert len(texts) == 3
    literal = obfuscated(ODD)
    for text in texts:
        # The literal is there as escaped, and with every obfuscated literal taken out no part
        # of the identifier is left (the service stars out exactly those literals).
        assert f"UserId == {literal}" in text
        bare = re.sub(r"h'(?:[^'\\]|\\.)*'", "h'***'", text)
        assert "brien" not in bare
        assert "end" not in bare.replace("EventsDedup", "")
        assert bare.count("h'***'") == 2


async def test_a_subject_with_nothing_in_analytics_sends_no_purge(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    # A rerun after the purges completed (or a subject never analysed) must not purge again:
    # Data Explorer asks for few purges.
    engine.query_replies.append(found(0))

    assert await eraser.erase_subject_rows(ALICE) == AnalyticsErasure(removed=0)

    assert ingest.commands == []


async def test_while_its_purges_still_run_a_second_erasure_purges_nothing_and_says_so(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    # GIVEN an erasure whose two purges are scheduled (a purged row is counted until then)
    engine.query_replies.append(found(3))
    await eraser.erase_subject_rows(ALICE)
    first, second = purge_operation_id(1), purge_operation_id(2)
    ingest.purge_states[first] = "Completed"
    ingest.purge_states[second] = "Scheduled"

    # WHEN the erasure's verification erases again while the view's purge is still queued
    again = await eraser.erase_subject_rows(ALICE)

    # THEN it asked the ingestion endpoint for their states, counted nothing, purged nothing
    assert [command.command for command in ingest.commands[2:]] == [f".show purges {first}", f".show purges {second}"]
    assert len(engine.queries) == 1
    assert again.removed == 0
    assert again.pending is not None
    assert f"{second} still running" in again.pending

    # WHEN both completed, and one more row had slipped in meanwhile
    ingest.purge_states[second] = "Completed"
    engine.query_replies.append(found(1))
    latest = await eraser.erase_subject_rows(ALICE)

    # THEN it is purged, with two new operations, and the old ones are not asked about again
    assert latest.removed == 1
    assert [command.command.split(" <|")[0] for command in ingest.commands[4:]] == [
        f".show purges {first}",
        f".show purges {second}",
        f".purge table Events records in database ['{DATABASE}'] with (noregrets='true')",
        f".purge materialized-view EventsDedup records in database ['{DATABASE}'] with (noregrets='true')",
    ]
    engine.query_replies.append(found(0))
    ingest.purge_states[purge_operation_id(3)] = ingest.purge_states[purge_operation_id(4)] = "Completed"
    assert await eraser.erase_subject_rows(ALICE) == AnalyticsErasure(removed=0)


async def test_a_refused_purge_is_a_clear_sink_error(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    # GIVEN an identity without the database Admin role (the service refuses, permanently)
    engine.query_replies.append(found(2))
    ingest.mgmt_reply = kusto_error(403, "Forbidden", "Principal is not authorized to purge", permanent=True)

    with pytest.raises(AnalyticsSinkError) as error:
        await eraser.erase_subject_rows(ALICE)

    message = str(error.value)
    assert "purge a subject's rows from table Events" in message
    assert "permanent" in message
    assert "database Admin role" in message
    assert "enablePurge" in message
    assert DATABASE in message
    assert "alice-42" not in message
    # The view is not purged when the table's purge was refused.
    assert len(ingest.commands) == 1


async def test_a_failing_count_is_the_sink_error_and_purges_nothing(
    engine: KustoServer, ingest: KustoServer, eraser: KustoAnalyticsEraser
) -> None:
    engine.query_replies.append(Reply(400, {"error": {"code": "BadRequest", "message": "no such view"}}))

    with pytest.raises(AnalyticsSinkError, match="count a subject's rows in EventsDedup"):
        await eraser.erase_subject_rows(ALICE)

    assert ingest.commands == []


async def test_the_eraser_is_the_port_and_closes_its_credential_when_unused() -> None:
    credential = StaticTokenCredential()
    settings = load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": "https://example.westeurope.kusto.windows.net"})
    made = create_kusto_eraser(settings, credential=credential)
    port: AnalyticsEraser = made
    assert port is made

    await made.close()
    await made.close()

    assert credential.closed == 1
