"""Reconciliation over real embedded stores, and the `cloudscale reconcile`/`query`/`report` commands.

Events are stored with an injected clock so they land in chosen hours, and reach analytics
the way the change-feed stage sends them (the feed's documents through `AnalyticsFeedService`).
Rows are then lost on purpose by deleting them from the analytics file directly.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from changefeed.reconcile import HOUR, RESEND_BATCH, HourDifference, Reconciler
from changefeed.service import AnalyticsFeedService
from cloudscale_local.cli.main import main
from cloudscale_local.host.changefeed_trigger import to_documents
from shared.adapters.analytics.embedded_analytics import EmbeddedAnalyticsStore
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.domain.analytics import AnalyticsRow
from shared.domain.stored_event import StoredEvent
from shared.telemetry import AnalyticsMetrics

H10 = datetime(2026, 3, 1, 10, tzinfo=UTC)

Invoke = Callable[..., Result]


def event_id(n: int) -> str:
    return str(uuid.UUID(int=n))


def stored_event(
    n: int,
    *,
    received_at: datetime,
    tenant: str = "acme",
    event_type: str = "page_view",
    reasons: Sequence[str] = (),
) -> StoredEvent:
    return StoredEvent.from_document(
        {
            "id": event_id(n),
            "eventId": event_id(n),
            "tenantId": tenant,
            "eventType": event_type,
            "timestamp": received_at.isoformat(),
            "url": f"/page/{n}",
            "properties": {"n": n},
            "enrichment": {
                "clientNetwork": "198.51.100.0/24",
                "receivedAt": received_at.isoformat(),
                "processedAt": (received_at + timedelta(milliseconds=200)).isoformat(),
                "queueLatencyMs": 200.0,
            },
            "fraud": {
                "score": 0.5 * len(reasons),
                "suspicious": bool(reasons),
                "reasons": [
                    {"rule": code.lower(), "code": code, "weight": 0.5, "description": code} for code in reasons
                ],
            },
        }
    )


class SettableClock:
    """The event store's clock, set to the commit time wanted before each save."""

    def __init__(self) -> None:
        self.now = H10.timestamp()

    def __call__(self) -> float:
        return self.now


class RecordingSink:
    """The real analytics store as the reconciler's sink, keeping each batch it was handed."""

    def __init__(self, inner: EmbeddedAnalyticsStore) -> None:
        self.inner = inner
        self.batches: list[list[AnalyticsRow]] = []

    @property
    def resent(self) -> set[str]:
        return {row.event_id for batch in self.batches for row in batch}

    async def write(self, rows: Sequence[AnalyticsRow]) -> None:
        self.batches.append(list(rows))
        await self.inner.write(rows)

    async def check(self) -> None:
        await self.inner.check()

    async def close(self) -> None: ...


class Pipeline:
    """An event store and an analytics store in one folder, fed like the running pipeline feeds them."""

    def __init__(self, data_dir: Path, *, analytics_at: datetime | None = None) -> None:
        self.clock = SettableClock()
        self.store = EmbeddedEventStore(data_dir / "events.sqlite3", clock=self.clock)
        self.analytics_path = data_dir / "analytics.sqlite3"
        self.analytics = (
            EmbeddedAnalyticsStore(self.analytics_path, clock=analytics_at.timestamp)
            if analytics_at
            else EmbeddedAnalyticsStore(self.analytics_path)
        )
        self.sink = RecordingSink(self.analytics)
        self.reconciler = Reconciler(self.store, self.analytics, self.sink)
        meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("test")
        self._feed = AnalyticsFeedService(self.analytics, AnalyticsMetrics(meter))
        self._cursor = 0

    async def store_at(self, when: datetime, event: StoredEvent) -> None:
        self.clock.now = when.timestamp()
        assert await self.store.save(event) is True

    async def run_change_feed(self) -> None:
        """Everything stored since the last run into analytics, as the change-feed trigger delivers it."""
        while changes := await self.store.changes(self._cursor, 100):
            await self._feed.handle([document.to_dict() for document in to_documents(changes)])
            self._cursor = changes[-1].sequence

    def lose(self, numbers: Iterable[int]) -> None:
        """Delete rows from the analytics file behind the store's back."""
        connection = sqlite3.connect(self.analytics_path, isolation_level=None)
        try:
            ids = [event_id(n) for n in numbers]
            deleted = connection.execute(
                f"DELETE FROM events WHERE EventId IN ({', '.join('?' * len(ids))})", ids
            ).rowcount
            assert deleted == len(ids)
        finally:
            connection.close()

    def rows(self) -> dict[str, dict[str, Any]]:
        """The analytics rows by event id, without the arrival time."""
        connection = sqlite3.connect(f"{self.analytics_path.as_uri()}?mode=ro", uri=True)
        connection.row_factory = sqlite3.Row
        try:
            found = [dict(row) for row in connection.execute("SELECT * FROM events")]
        finally:
            connection.close()
        counts = Counter(row["EventId"] for row in found)
        assert max(counts.values(), default=1) == 1, f"an event has more than one row: {counts}"
        return {row["EventId"]: {k: v for k, v in row.items() if k != "AnalyticsAt"} for row in found}

    async def close(self) -> None:
        await self.store.close()
        await self.analytics.close()


LAYOUT = {n: H10 + (n - 1) // 3 * HOUR + timedelta(minutes=(5, 20, 45)[(n - 1) % 3]) for n in range(1, 10)}
"""Nine events, three per hour from 10:00 to 13:00, stored at :05, :20 and :45."""


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    opened = Pipeline(tmp_path)
    for n, stored_at in LAYOUT.items():
        await opened.store_at(stored_at, stored_event(n, received_at=stored_at - timedelta(seconds=1)))
    await opened.run_change_feed()
    yield opened
    await opened.close()


def ids(numbers: Iterable[int]) -> set[str]:
    return {event_id(n) for n in numbers}


async def test_nothing_missing_means_no_differences(pipeline: Pipeline) -> None:
    report = await pipeline.reconciler.reconcile(H10, H10 + 3 * HOUR)

    assert report.differences == []
    assert (report.hours_checked, report.resent) == (3, 0)
    assert pipeline.sink.batches == []
    assert set(pipeline.rows()) == ids(LAYOUT)


async def test_rows_lost_in_two_hours_are_resent_and_reported_per_hour(pipeline: Pipeline) -> None:
    # GIVEN analytics lost one row of the 10:00 hour and two of the 12:00 hour
    before = pipeline.rows()
    pipeline.lose([1, 8, 9])

    # WHEN the three hours are reconciled
    report = await pipeline.reconciler.reconcile(H10, H10 + 3 * HOUR)

    # THEN exactly those rows were re-sent, and each hour's difference is reported
    assert pipeline.sink.resent == ids([1, 8, 9])
    assert report.differences == [
        HourDifference(hour=H10, stored=3, in_analytics=2, resent=1),
        HourDifference(hour=H10 + 2 * HOUR, stored=3, in_analytics=1, resent=2),
    ]
    assert (report.hours_checked, report.resent) == (3, 3)
    # AND analytics holds every event once again, each row as the change feed first wrote it
    assert pipeline.rows() == before


async def test_a_window_cut_in_the_middle_of_hours_only_considers_events_inside_it(pipeline: Pipeline) -> None:
    # GIVEN lost rows at 10:05 and 10:45, and at 12:45
    pipeline.lose([1, 3, 9])

    # WHEN the window is 10:30 to 12:30
    report = await pipeline.reconciler.reconcile(H10 + timedelta(minutes=30), H10 + timedelta(hours=2, minutes=30))

    # THEN only 10:45 is inside it: counted under its whole hour, and re-sent
    assert report.differences == [HourDifference(hour=H10, stored=1, in_analytics=0, resent=1)]
    assert pipeline.sink.resent == ids([3])
    assert report.hours_checked == 3
    assert set(pipeline.rows()) == ids(LAYOUT) - ids([1, 9])

    # AND a window covering them finds the other two
    wider = await pipeline.reconciler.reconcile(H10, H10 + 3 * HOUR)
    assert wider.resent == 2
    assert set(pipeline.rows()) == ids(LAYOUT)


async def test_window_ends_are_half_open_on_both_sides(pipeline: Pipeline) -> None:
    # GIVEN a lost row stored at exactly 12:00, the end of a window and the start of the next
    await pipeline.store_at(H10 + 2 * HOUR, stored_event(50, received_at=H10 + 2 * HOUR))
    await pipeline.run_change_feed()
    pipeline.lose([50])

    # THEN [10:00, 12:00) leaves it out, [12:00, 13:00) takes it
    assert (await pipeline.reconciler.reconcile(H10, H10 + 2 * HOUR)).differences == []
    report = await pipeline.reconciler.reconcile(H10 + 2 * HOUR, H10 + 3 * HOUR)
    assert report.differences == [HourDifference(hour=H10 + 2 * HOUR, stored=4, in_analytics=3, resent=1)]
    assert pipeline.sink.resent == ids([50])


async def test_a_second_run_resends_nothing(pipeline: Pipeline) -> None:
    pipeline.lose([2, 5, 7])
    first = await pipeline.reconciler.reconcile(H10, H10 + 3 * HOUR)
    assert first.resent == 3
    batches = len(pipeline.sink.batches)

    second = await pipeline.reconciler.reconcile(H10, H10 + 3 * HOUR)

    assert second.differences == []
    assert (second.hours_checked, second.resent) == (3, 0)
    assert len(pipeline.sink.batches) == batches


async def test_many_missing_rows_are_resent_in_bounded_batches(tmp_path: Path) -> None:
    # GIVEN an hour with more lost rows than one re-send batch takes
    pipeline = Pipeline(tmp_path)
    try:
        count = RESEND_BATCH + 30
        for n in range(1, count + 1):
            await pipeline.store_at(H10 + timedelta(seconds=n), stored_event(n, received_at=H10))
        await pipeline.run_change_feed()
        pipeline.lose(range(1, count + 1))

        report = await pipeline.reconciler.reconcile(H10, H10 + HOUR)

        assert report.differences == [HourDifference(hour=H10, stored=count, in_analytics=0, resent=count)]
        assert [len(batch) for batch in pipeline.sink.batches] == [RESEND_BATCH, 30]
        assert set(pipeline.rows()) == ids(range(1, count + 1))
    finally:
        await pipeline.close()


# --- the commands, against files in CLOUDSCALE_DATA_DIR --------------------------------------

# number: (minutes before now it was received, tenant, type, reason codes); stored one second later
RECENT: dict[int, tuple[float, str, str, tuple[str, ...]]] = {
    1: (20, "acme", "page_view", ("VELOCITY_IP_MINUTE",)),
    2: (15, "acme", "purchase", ()),
    3: (10, "globex", "page_view", ("VELOCITY_IP_MINUTE", "MANY_USERS_PER_IP")),
    4: (180, "initech", "page_view", ()),  # outside the report's last hour
}
ANALYTICS_MINUTES_AGO = 5
"""Analytics took them all five minutes ago: lags of 900, 600, 300 (and 10 500) seconds."""


class Seeded:
    """The data folder the commands run on, and when its events were received and stored."""

    def __init__(self, path: Path, now: datetime) -> None:
        self.path = path
        self.now = now

    def received(self, n: int) -> datetime:
        return self.now - timedelta(minutes=RECENT[n][0])

    def stored(self, n: int) -> datetime:
        return self.received(n) + timedelta(seconds=1)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def data_dir(tmp_path: Path) -> Seeded:
    """A data folder with the four events stored and in analytics."""
    seeded = Seeded(tmp_path, datetime.now(UTC).replace(microsecond=0))

    async def seed() -> None:
        pipeline = Pipeline(tmp_path, analytics_at=seeded.now - timedelta(minutes=ANALYTICS_MINUTES_AGO))
        try:
            for n, (_, tenant, kind, reasons) in RECENT.items():
                event = stored_event(n, received_at=seeded.received(n), tenant=tenant, event_type=kind, reasons=reasons)
                await pipeline.store_at(seeded.stored(n), event)
            await pipeline.run_change_feed()
        finally:
            await pipeline.close()

    asyncio.run(seed())
    return seeded


def lose(data_dir: Seeded, numbers: Iterable[int]) -> None:
    connection = sqlite3.connect(data_dir.path / "analytics.sqlite3", isolation_level=None)
    try:
        connection.executemany("DELETE FROM events WHERE EventId = ?", [(event_id(n),) for n in numbers])
    finally:
        connection.close()


def analytics_ids(data_dir: Seeded) -> list[str]:
    connection = sqlite3.connect(data_dir.path / "analytics.sqlite3")
    try:
        return sorted(row[0] for row in connection.execute("SELECT EventId FROM events"))
    finally:
        connection.close()


@pytest.fixture
def invoke(data_dir: Seeded) -> Invoke:
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        environment = {"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(data_dir.path), **(env or {})}
        result = runner.invoke(main, list(args), env=environment)
        # Failures must be messages, never tracebacks.
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


def test_the_reconcile_command_resends_what_analytics_lost(invoke: Invoke, data_dir: Seeded) -> None:
    # GIVEN analytics lost an event from this hour's neighbourhood and one from three hours ago
    lose(data_dir, [2, 4])

    # WHEN an operator reconciles the last 24 hours
    result = invoke("reconcile", "--json", "--settle-seconds", "0")

    # THEN both are re-sent, each under the hour it was stored in
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    stored_hours = Counter(hour_of(data_dir.stored(n)) for n in RECENT)
    lost_hours = Counter(hour_of(data_dir.stored(n)) for n in (2, 4))
    assert report["resent"] == 2
    assert report["hoursChecked"] == len(stored_hours)
    assert report["differences"] == [
        {
            "hour": hour.isoformat().replace("+00:00", "Z"),
            "stored": stored_hours[hour],
            "inAnalytics": stored_hours[hour] - lost_hours[hour],
            "resent": lost_hours[hour],
            "suppressed": 0,
        }
        for hour in sorted(lost_hours)
    ]
    assert datetime.fromisoformat(report["end"]) - datetime.fromisoformat(report["start"]) <= timedelta(hours=24)
    assert analytics_ids(data_dir) == sorted(event_id(n) for n in RECENT)

    # AND a second run finds nothing to do
    again = json.loads(invoke("reconcile", "--json", "--settle-seconds", "0").stdout)
    assert (again["resent"], again["differences"]) == (0, [])


def test_the_reconcile_command_explains_itself_in_text(invoke: Invoke, data_dir: Seeded) -> None:
    lose(data_dir, [3])
    hour = hour_of(data_dir.stored(3))
    stored = sum(hour_of(data_dir.stored(n)) == hour for n in RECENT)

    first = invoke("reconcile", "--settle-seconds", "0")
    second = invoke("reconcile", "--settle-seconds", "0")

    assert first.exit_code == 0, first.output
    line = f"{hour.isoformat().replace('+00:00', 'Z')}: {stored} stored, {stored - 1} in analytics, re-sent 1"
    assert line in first.stdout
    assert "re-sent 1 event(s)" in first.stdout
    assert second.exit_code == 0, second.output
    assert "analytics holds every stored event" in second.stdout


def test_query_counts_the_rows(invoke: Invoke) -> None:
    result = invoke("query", "SELECT count(*) AS n, sum(Suspicious) AS suspicious FROM events", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": 4, "suspicious": 2}]


def test_query_prints_a_table_by_default(invoke: Invoke) -> None:
    result = invoke("query", "SELECT TenantId, count(*) AS events FROM events GROUP BY 1 ORDER BY 1")

    assert result.exit_code == 0, result.output
    for text in ("TenantId", "events", "acme", "globex", "initech"):
        assert text in result.stdout


def test_query_refuses_to_change_the_store(invoke: Invoke, data_dir: Seeded) -> None:
    result = invoke("query", "DELETE FROM events")

    assert result.exit_code == 1
    assert "the query failed" in result.stderr
    assert "read-only" in result.stderr
    assert len(analytics_ids(data_dir)) == 4


def test_a_query_that_is_not_sql_fails_with_a_message(invoke: Invoke) -> None:
    result = invoke("query", "SELEKT everything")

    assert result.exit_code == 1
    assert "the query failed" in result.stderr


@pytest.mark.parametrize("command", [("query", "SELECT 1"), ("report", "--json")])
def test_a_missing_analytics_file_is_explained(invoke: Invoke, tmp_path: Path, command: tuple[str, ...]) -> None:
    elsewhere = tmp_path / "elsewhere"

    result = invoke(*command, env={"CLOUDSCALE_DATA_DIR": str(elsewhere)})

    assert result.exit_code == 1
    assert "no analytics store at" in result.stderr
    assert "analytics.sqlite3" in result.stderr
    assert "CLOUDSCALE_DATA_DIR" in result.stderr
    assert not (elsewhere / "analytics.sqlite3").exists()


def test_report_json_has_every_section_with_numeric_lag_percentiles(invoke: Invoke) -> None:
    result = invoke("report", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {
        "sinceMinutes",
        "eventsPerTypePerMinute",
        "suspiciousByRule",
        "topTenants",
        "ingestToAnalyticsLagSeconds",
    }
    assert report["sinceMinutes"] == 60
    # Only the three events received in the last hour count
    per_minute = report["eventsPerTypePerMinute"]
    assert sum(entry["events"] for entry in per_minute) == 3
    assert sorted(entry["eventType"] for entry in per_minute) == ["page_view", "page_view", "purchase"]
    assert report["suspiciousByRule"] == [
        {"reasonCode": "VELOCITY_IP_MINUTE", "events": 2},
        {"reasonCode": "MANY_USERS_PER_IP", "events": 1},
    ]
    assert report["topTenants"] == [
        {"tenantId": "acme", "events": 2, "suspicious": 1},
        {"tenantId": "globex", "events": 1, "suspicious": 1},
    ]
    # Received 20, 15 and 10 minutes ago, in analytics 5 minutes ago: 900, 600 and 300 s
    lag = report["ingestToAnalyticsLagSeconds"]
    assert lag["events"] == 3
    for name in ("p50", "p90", "p99", "max"):
        assert isinstance(lag[name], int | float), (name, lag[name])
    assert lag["p50"] == pytest.approx(600, abs=0.01)
    assert lag["p90"] == pytest.approx(900, abs=0.01)
    assert lag["p99"] == pytest.approx(900, abs=0.01)
    assert lag["max"] == pytest.approx(900, abs=0.01)


def test_report_prints_its_sections_as_tables(invoke: Invoke) -> None:
    result = invoke("report", "--minutes", "240")

    assert result.exit_code == 0, result.output
    for title in ("Events per type per minute", "Suspicious events by rule", "Top tenants", "Ingest-to-analytics lag"):
        assert title in result.stdout
    assert "initech" in result.stdout  # four hours back includes the older event


async def test_two_tenants_events_with_one_id_are_both_reconciled(tmp_path: Path) -> None:
    # GIVEN tenants acme and globex each stored an event with the same eventId, fed to analytics
    pipeline = Pipeline(tmp_path / "tenants")
    try:
        at = H10 + timedelta(minutes=5)
        for tenant in ("acme", "globex"):
            await pipeline.store_at(at, stored_event(100, received_at=at, tenant=tenant))
        await pipeline.run_change_feed()

        def keys() -> list[tuple[str, str]]:
            connection = sqlite3.connect(pipeline.analytics_path)
            try:
                return sorted(connection.execute("SELECT TenantId, EventId FROM events").fetchall())
            finally:
                connection.close()

        both = [("acme", event_id(100)), ("globex", event_id(100))]
        assert keys() == both, "two events, two rows"
        report = await pipeline.reconciler.reconcile(H10, H10 + HOUR)
        assert (report.differences, report.resent) == ([], 0)

        # WHEN globex's row is lost (acme's, with the same eventId, stays) and the hour reconciled
        connection = sqlite3.connect(pipeline.analytics_path, isolation_level=None)
        try:
            connection.execute("DELETE FROM events WHERE TenantId = 'globex'")
        finally:
            connection.close()
        report = await pipeline.reconciler.reconcile(H10, H10 + HOUR)

        # THEN acme's row does not hide globex's loss: globex's event alone is re-sent
        assert report.differences == [HourDifference(hour=H10, stored=2, in_analytics=1, resent=1)]
        assert [(row.tenant_id, row.event_id) for batch in pipeline.sink.batches for row in batch] == [
            ("globex", event_id(100))
        ]
        assert keys() == both
    finally:
        await pipeline.close()
