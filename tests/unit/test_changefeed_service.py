"""The change-feed use case with an in-memory analytics sink: rows in order, skips, failures, lag."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from changefeed.service import AnalyticsFeedService, FeedOutcome
from shared.domain.analytics import AnalyticsRow, to_analytics_row
from shared.domain.stored_event import StoredEvent
from shared.ports import AnalyticsSinkError
from shared.telemetry import AnalyticsMetrics

NOW = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)

Attributes = tuple[tuple[str, Any], ...]


class InMemoryAnalyticsSink:
    """An `AnalyticsSink` fake: keeps each batch it took; fails every write while `failure` is set."""

    def __init__(self) -> None:
        self.batches: list[list[AnalyticsRow]] = []
        self.failure: AnalyticsSinkError | None = None

    @property
    def rows(self) -> list[AnalyticsRow]:
        return [row for batch in self.batches for row in batch]

    async def write(self, rows: Sequence[AnalyticsRow]) -> None:
        if self.failure is not None:
            raise self.failure
        self.batches.append(list(rows))

    async def check(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Histogram:
    count: int
    sum: float
    min: float
    max: float


class Harness:
    def __init__(self) -> None:
        self.sink = InMemoryAnalyticsSink()
        self.reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[self.reader]).get_meter("test")
        self.service = AnalyticsFeedService(self.sink, AnalyticsMetrics(meter), clock=lambda: NOW)

    def _points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def counter(self, name: str) -> dict[Attributes, float]:
        return {tuple(sorted((point.attributes or {}).items())): point.value for point in self._points(name)}

    def histogram(self, name: str) -> dict[Attributes, Histogram]:
        found: dict[Attributes, Histogram] = {}
        for point in self._points(name):
            assert isinstance(point, HistogramDataPoint)
            found[tuple(sorted((point.attributes or {}).items()))] = Histogram(
                point.count, point.sum, point.min, point.max
            )
        return found


@pytest.fixture
def harness() -> Harness:
    return Harness()


def stored_event(n: int, *, received_at: datetime = NOW - timedelta(seconds=5)) -> StoredEvent:
    event_id = str(uuid.UUID(int=n))
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": "acme",
            "eventType": "page_view",
            "timestamp": received_at.isoformat(),
            "url": f"/page/{n}",
            "enrichment": {
                "clientNetwork": "198.51.100.0/24",
                "agent": {"browser": "Firefox", "os": "Linux"},
                "receivedAt": received_at.isoformat(),
                "processedAt": (received_at + timedelta(seconds=1)).isoformat(),
                "queueLatencyMs": 1000.0,
            },
            "fraud": {"score": 0.1, "suspicious": False},
        }
    )


def change_document(
    event: StoredEvent, *, stored_at: datetime = NOW - timedelta(seconds=2), sequence: int = 1
) -> dict[str, Any]:
    """A change-feed document as the trigger delivers it: the stored document plus the store's own fields."""
    return {
        **event.to_document(),
        "_ts": stored_at.timestamp(),
        "_rid": f"rid-{sequence}",
        "_etag": f'"etag-{sequence}"',
        "_lsn": sequence,
    }


def feed(count: int) -> tuple[list[StoredEvent], list[dict[str, Any]]]:
    events = [stored_event(n) for n in range(1, count + 1)]
    stored = [NOW - timedelta(seconds=9 - n) for n in range(count)]
    documents = [
        change_document(e, stored_at=at, sequence=n) for n, (e, at) in enumerate(zip(events, stored, strict=True), 1)
    ]
    return events, documents


async def test_a_batch_of_stored_documents_becomes_rows_in_order(harness: Harness) -> None:
    # GIVEN a batch of three stored documents, committed one second apart
    events, documents = feed(3)

    # WHEN the change feed hands it over
    outcome = await harness.service.handle(documents)

    # THEN one write took a row per document, in feed order, stamped with the store's commit time
    assert outcome == FeedOutcome(written=3, skipped=0)
    assert harness.sink.batches == [
        [
            to_analytics_row(event, datetime.fromtimestamp(doc["_ts"], UTC))
            for event, doc in zip(events, documents, strict=True)
        ]
    ]
    assert [row.stored_at for row in harness.sink.rows] == [NOW - timedelta(seconds=9 - n) for n in range(3)]
    assert harness.counter("cloudscale_analytics_rows_total") == {(): 3}
    assert harness.counter("cloudscale_analytics_skipped_total") == {}


async def test_cosmos_whole_second_ts_is_read_as_the_commit_time(harness: Harness) -> None:
    document = change_document(stored_event(1))
    document["_ts"] = 1_772_366_400  # an int, as Cosmos DB sends it

    await harness.service.handle([document])

    [row] = harness.sink.rows
    assert row.stored_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def without(document: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in names}


def good() -> dict[str, Any]:
    return change_document(stored_event(99), sequence=99)


NOT_STORED_EVENTS: dict[str, dict[str, Any]] = {
    "missing tenantId": without(good(), "tenantId"),
    "missing enrichment": without(good(), "enrichment"),
    "no _ts": without(good(), "_ts"),
    "_ts not a number": {**good(), "_ts": "yesterday"},
    "_ts null": {**good(), "_ts": None},
    "_ts not a number at all": {**good(), "_ts": float("nan")},
    "_ts beyond year 9999": {**good(), "_ts": 1e12},
    "_ts beyond time_t": {**good(), "_ts": 1e20},
    "_ts beyond the C library's range": {**good(), "_ts": 1e18},
    "a future document version": {**good(), "documentVersion": 2},
    "another writer's document": {"id": "lease-1", "owner": "host-1", "_ts": 1_772_366_400, "_lsn": 5},
    "garbage": {"hello": ["world"], "_ts": 1_772_366_400},
    "empty": {},
}


@pytest.mark.parametrize("bad", NOT_STORED_EVENTS.values(), ids=NOT_STORED_EVENTS.keys())
async def test_a_document_that_is_not_a_stored_event_is_skipped_and_counted(
    harness: Harness, bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a batch with a document that is not a stored event between two that are
    events, documents = feed(2)

    # WHEN it is handled
    with caplog.at_level(logging.WARNING, logger="changefeed.service"):
        outcome = await harness.service.handle([documents[0], bad, documents[1]])

    # THEN the batch does not fail: its neighbours are written, it is left out and counted
    assert outcome == FeedOutcome(written=2, skipped=1)
    assert [row.event_id for row in harness.sink.rows] == [event.event_id for event in events]
    assert harness.counter("cloudscale_analytics_skipped_total") == {(): 1}
    assert harness.counter("cloudscale_analytics_rows_total") == {(): 2}
    assert any("not a stored event" in record.getMessage() for record in caplog.records)


UNBUILDABLE_ROWS: dict[str, dict[str, Any]] = {
    "originalTimestamp before year 1 in UTC": {**good(), "originalTimestamp": "0001-01-01T00:00:00+14:00"},
    "sentAt after year 9999 in UTC": {**good(), "sentAt": "9999-12-31T23:00:00-14:00"},
}


@pytest.mark.parametrize("bad", UNBUILDABLE_ROWS.values(), ids=UNBUILDABLE_ROWS.keys())
async def test_a_stored_event_whose_row_cannot_be_built_is_skipped_and_counted_not_retried_forever(
    harness: Harness, bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a stored event whose device time overflows in UTC, between two ordinary ones
    events, documents = feed(2)

    # WHEN the batch is handled
    with caplog.at_level(logging.WARNING, logger="changefeed.service"):
        outcome = await harness.service.handle([documents[0], bad, documents[1]])

    # THEN the batch lands without it (a retry could never build its row), and it is counted and logged
    assert outcome == FeedOutcome(written=2, skipped=1)
    assert [row.event_id for row in harness.sink.rows] == [event.event_id for event in events]
    assert harness.counter("cloudscale_analytics_skipped_total") == {(): 1}
    assert any("cannot become an analytics row" in record.getMessage() for record in caplog.records)


async def test_a_batch_of_nothing_but_other_documents_writes_no_rows(harness: Harness) -> None:
    outcome = await harness.service.handle([{"id": "x"}, {"hello": "world"}])

    assert outcome == FeedOutcome(written=0, skipped=2)
    assert harness.sink.rows == []
    assert harness.counter("cloudscale_analytics_skipped_total") == {(): 2}
    assert harness.histogram("cloudscale_analytics_lag_seconds") == {}


async def test_a_sink_failure_propagates_and_nothing_is_counted_as_written(harness: Harness) -> None:
    # GIVEN an analytics store that refuses the rows
    harness.sink.failure = AnalyticsSinkError("analytics is down")
    _, documents = feed(3)

    # WHEN a batch is handled
    with pytest.raises(AnalyticsSinkError, match="analytics is down"):
        await harness.service.handle(documents)

    # THEN the error reaches the host (which retries the batch) and nothing counts as written
    assert harness.sink.rows == []
    assert harness.counter("cloudscale_analytics_rows_total") == {}
    assert harness.histogram("cloudscale_analytics_lag_seconds") == {}

    # AND once the store is back, the retried batch is written and counted once
    harness.sink.failure = None
    assert await harness.service.handle(documents) == FeedOutcome(written=3, skipped=0)
    assert harness.counter("cloudscale_analytics_rows_total") == {(): 3}


async def test_the_lag_is_recorded_per_row_since_stored_and_since_received(harness: Harness) -> None:
    # GIVEN two events: received 5 s and 3 s before now, stored 2 s and 0.5 s before now
    documents = [
        change_document(stored_event(1, received_at=NOW - timedelta(seconds=5)), stored_at=NOW - timedelta(seconds=2)),
        change_document(
            stored_event(2, received_at=NOW - timedelta(seconds=3)), stored_at=NOW - timedelta(seconds=0.5)
        ),
    ]

    # WHEN they reach analytics at NOW
    await harness.service.handle(documents)

    # THEN each row recorded one value per kind of lag, in seconds
    assert harness.histogram("cloudscale_analytics_lag_seconds") == {
        (("since", "stored"),): Histogram(count=2, sum=2.5, min=0.5, max=2.0),
        (("since", "received"),): Histogram(count=2, sum=8.0, min=3.0, max=5.0),
    }


async def test_a_commit_time_ahead_of_the_clock_records_zero_lag_not_a_negative_one(harness: Harness) -> None:
    document = change_document(
        stored_event(1, received_at=NOW - timedelta(seconds=1)), stored_at=NOW + timedelta(seconds=3)
    )

    await harness.service.handle([document])

    lag = harness.histogram("cloudscale_analytics_lag_seconds")
    assert lag[(("since", "stored"),)] == Histogram(count=1, sum=0.0, min=0.0, max=0.0)
    assert lag[(("since", "received"),)] == Histogram(count=1, sum=1.0, min=1.0, max=1.0)
