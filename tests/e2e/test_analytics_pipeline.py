"""The change-feed stage through the local host: stored events reach the analytics store."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.e2e.conftest import LocalHost
from tests.e2e.test_ingest_api import SEED_EXAMPLE, new_ip, post
from tests.e2e.test_process_pipeline import TRUSTED_LOOPBACK, accepted_ids, cloudscale, wait_for_stored

pytestmark = pytest.mark.e2e

EVENT_TYPES = ("page_view", "click", "purchase", "error")


def analytics_rows(host: LocalHost, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    path = host.data_dir / "analytics.sqlite3"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
        try:
            return connection.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError:  # the table is created with the first write
            return []


def wait_for_count(host: LocalHost, expected: int, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        rows = analytics_rows(host, "SELECT count(*) FROM events")
        count = rows[0][0] if rows else 0
        if count >= expected or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.05)


def test_a_posted_event_is_in_analytics_within_two_seconds(host_factory: Callable[..., LocalHost]) -> None:
    host = host_factory(**TRUSTED_LOOPBACK)
    with host.client() as client:
        [event_id] = accepted_ids(post(client, SEED_EXAMPLE, new_ip()))
        accepted_at = time.monotonic()
        deadline = accepted_at + 2.0
        while not (
            rows := analytics_rows(
                host, "SELECT EventType, TenantId, Url, Suspicious FROM events WHERE EventId = ?", event_id
            )
        ):
            assert time.monotonic() < deadline, "the event did not reach analytics within 2 s"
            time.sleep(0.02)
        metrics = client.get("/metrics").text
    assert rows == [("page_view", "acme", "/home", 0)]
    assert "cloudscale_analytics_lag_seconds_count{" in metrics
    assert 'since="received"' in metrics


def test_a_thousand_events_in_batches_are_queryable_and_reported_by_type(
    host_factory: Callable[..., LocalHost],
) -> None:
    # GIVEN 1,000 events of four types, posted in batches of 100 from ten clients
    host = host_factory(**TRUSTED_LOOPBACK)
    with host.client() as client:
        for batch in range(10):
            events = [
                {**SEED_EXAMPLE, "eventType": EVENT_TYPES[n % len(EVENT_TYPES)], "tenantId": f"tenant-{n % 3}"}
                for n in range(batch * 100, batch * 100 + 100)
            ]
            assert len(accepted_ids(post(client, events, new_ip()))) == 100

    # THEN `cloudscale query` counts them all, and `cloudscale report` shows them by type
    assert wait_for_count(host, 1000, within=30) == 1000
    counted = cloudscale(host, "query", "SELECT count(*) AS events FROM events", "--json")
    assert counted.returncode == 0, counted.stderr
    assert orjson.loads(counted.stdout) == [{"events": 1000}]
    reported = cloudscale(host, "report", "--json")
    assert reported.returncode == 0, reported.stderr
    report = orjson.loads(reported.stdout)
    by_type: dict[str, int] = {}
    for row in report["eventsPerTypePerMinute"]:
        by_type[row["eventType"]] = by_type.get(row["eventType"], 0) + row["events"]
    assert by_type == dict.fromkeys(EVENT_TYPES, 250)
    assert sum(row["events"] for row in report["topTenants"]) == 1000
    assert report["ingestToAnalyticsLagSeconds"]["events"] == 1000
    assert report["ingestToAnalyticsLagSeconds"]["p99"] is not None
    table = cloudscale(host, "report")
    assert table.returncode == 0, table.stderr
    assert "purchase" in table.stdout


def test_reconciliation_refills_a_dropped_row(host_factory: Callable[..., LocalHost]) -> None:
    # GIVEN events stored and in analytics
    host = host_factory(**TRUSTED_LOOPBACK)
    with host.client() as client:
        event_ids = accepted_ids(post(client, [SEED_EXAMPLE] * 3, new_ip()))
        for event_id in event_ids:
            wait_for_stored(client, "acme", event_id)
    assert wait_for_count(host, 3, within=5) == 3

    # WHEN one row goes missing from analytics
    with contextlib.closing(sqlite3.connect(host.data_dir / "analytics.sqlite3")) as connection:
        connection.execute("DELETE FROM events WHERE EventId = ?", (event_ids[1],))
        connection.commit()

    # THEN reconciliation finds and re-sends exactly that one
    result = cloudscale(host, "reconcile", "--settle-seconds", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["resent"] == 1
    assert analytics_rows(host, "SELECT count(*) FROM events WHERE EventId = ?", event_ids[1]) == [(1,)]
    again = orjson.loads(cloudscale(host, "reconcile", "--settle-seconds", "0", "--json").stdout)
    assert again["resent"] == 0


def test_the_feed_resumes_from_its_checkpoint_after_a_restart(host_factory: Callable[..., LocalHost]) -> None:
    # GIVEN events stored while the analytics function was off
    off = {"AzureWebJobs.events_to_analytics.Disabled": "true", **TRUSTED_LOOPBACK}
    host = host_factory(**off)
    with host.client() as client:
        first = accepted_ids(post(client, [SEED_EXAMPLE] * 50, new_ip()))
        for event_id in first:
            wait_for_stored(client, "acme", event_id, timeout=10)
    assert host.stop() == 0
    assert wait_for_count(host, 1, within=0) == 0

    # WHEN the host starts again with it on, and more events arrive
    restarted = host_factory(host.data_dir, **TRUSTED_LOOPBACK)
    with restarted.client() as client:
        second = accepted_ids(post(client, [SEED_EXAMPLE] * 50, new_ip()))

    # THEN analytics catches up with everything, once each
    assert wait_for_count(restarted, 100, within=15) == 100
    stored_ids = {row[0] for row in analytics_rows(restarted, "SELECT EventId FROM events")}
    assert stored_ids == set(first) | set(second)
