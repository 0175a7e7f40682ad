"""The process stage through the local host: POST, then the stored, scored, enriched event."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from shared.adapters.event_queue.dead_letter_table import DeadLetterRow
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.delivery import outage_bound_seconds
from shared.domain.envelope import QueueMessage, event_message_id
from tests.e2e.conftest import REPO, LocalHost
from tests.e2e.test_ingest_api import SEED_EXAMPLE, new_ip, post

pytestmark = pytest.mark.e2e

TRUSTED_LOOPBACK = {"CLOUDSCALE_TRUSTED_PROXIES": "127.0.0.1/32,::1/128"}


def wait_for_stored(client: httpx.Client, tenant_id: str, event_id: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET the stored event, polling until it is there or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/events/{tenant_id}/{event_id}")
        if response.status_code == 200:
            document: dict[str, Any] = response.json()
            return document
        assert response.status_code == 404, response.text
        if time.monotonic() > deadline:
            pytest.fail(f"event {event_id} was not stored within {timeout} s")
        time.sleep(0.05)


def accepted_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 202, response.text
    return [result["eventId"] for result in response.json()["results"]]


def with_queue(host: LocalHost, action: Callable[[EmbeddedQueue], Any]) -> Any:
    """Run `action` on the host's queue file from this (another) process, as a second client would."""

    async def run() -> Any:
        queue = EmbeddedQueue(host.data_dir / "queue.sqlite3")
        try:
            return await action(queue)
        finally:
            queue.close()

    return asyncio.run(run())


def dead_letters(host: LocalHost) -> list[DeadLetterRow]:
    result: list[DeadLetterRow] = with_queue(host, lambda queue: queue.dead_letters(1000))
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.e2e.conftest import start_host

    running = start_host(tmp_path_factory.mktemp("data"), **TRUSTED_LOOPBACK)
    yield running
    running.stop()


def test_a_posted_event_is_stored_enriched_and_scored_within_two_seconds(pipeline: LocalHost) -> None:
    ip = new_ip()
    with pipeline.client() as client:
        [event_id] = accepted_ids(post(client, SEED_EXAMPLE, ip))
        document = wait_for_stored(client, "acme", event_id, timeout=2.0)

    assert document["id"] == document["eventId"] == event_id
    assert document["tenantId"] == "acme"
    assert document["eventType"] == "page_view"
    assert document["url"] == "/home"
    assert document["correlationId"] == "test-1"
    enrichment = document["enrichment"]
    # The client IP is stored anonymised to its /24, never as sent.
    assert enrichment["clientNetwork"] == ip.rsplit(".", 1)[0] + ".0/24"
    assert ip not in orjson.dumps(document).decode()
    assert enrichment["userAgent"].startswith("python-httpx/")
    assert enrichment["agent"]["isBot"] is False
    assert enrichment["queueLatencyMs"] >= 0
    assert enrichment["receivedAt"] <= enrichment["processedAt"]
    assert document["fraud"] == {"score": 0.0, "suspicious": False, "reasons": []}


def test_the_eleventh_and_twelfth_request_in_a_minute_are_suspicious(pipeline: LocalHost) -> None:
    ip = new_ip()
    with pipeline.client() as client:
        event_ids = [accepted_ids(post(client, SEED_EXAMPLE, ip))[0] for _ in range(12)]
        documents = [wait_for_stored(client, "acme", event_id, timeout=5.0) for event_id in event_ids]
        metrics = client.get("/metrics").text

    verdicts = [document["fraud"]["suspicious"] for document in documents]
    assert verdicts == [False] * 10 + [True, True]
    for document in documents[10:]:
        codes = [reason["code"] for reason in document["fraud"]["reasons"]]
        assert codes == ["VELOCITY_IP_MINUTE"]
        assert document["fraud"]["score"] >= 0.6
    assert 'cloudscale_fraud_detected_total{otel_scope_name="cloudscale"' in metrics
    assert 'rule="ip-velocity"' in metrics
    # The security alert is logged without the raw IP.
    alerts = [line for line in pipeline.output if "suspicious event" in line]
    assert any(event_ids[10] in line for line in alerts)
    assert not any(ip in line for line in alerts)


def test_a_bot_user_agent_is_flagged(pipeline: LocalHost) -> None:
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    with pipeline.client() as client:
        response = client.post(
            "/api/events",
            content=orjson.dumps(SEED_EXAMPLE),
            headers={"Content-Type": "application/json", "X-Forwarded-For": new_ip(), "User-Agent": googlebot},
        )
        document = wait_for_stored(client, "acme", accepted_ids(response)[0])
    assert document["enrichment"]["agent"]["isBot"] is True
    assert document["fraud"]["suspicious"] is True
    assert [reason["code"] for reason in document["fraud"]["reasons"]] == ["BOT_USER_AGENT"]


def test_a_redelivered_message_changes_nothing(pipeline: LocalHost) -> None:
    # GIVEN a stored event
    with pipeline.client() as client:
        [event_id] = accepted_ids(post(client, SEED_EXAMPLE, new_ip()))
        first = wait_for_stored(client, "acme", event_id)
        # WHEN its queue message is delivered again (sent again after it was completed)
        body = orjson.dumps(
            {
                "schemaVersion": 1,
                "event": {**SEED_EXAMPLE, "eventId": event_id, "url": "/changed"},
                "receivedAt": first["enrichment"]["receivedAt"],
                "clientIp": "192.0.2.1",
                "ipRequestsLastMinute": 99,
            }
        )
        with_queue(pipeline, lambda queue: queue.send([QueueMessage(message_id=event_id, body=body)]))
        deadline = time.monotonic() + 5
        while with_queue(pipeline, lambda queue: queue.depth()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = wait_for_stored(client, "acme", event_id)
        metrics = client.get("/metrics").text
    # THEN the redelivery was processed (the queue drained, counted as a duplicate)...
    assert with_queue(pipeline, lambda queue: queue.depth()) == 0
    assert 'outcome="duplicate"' in metrics
    # ...and the stored document is the first one, untouched
    assert second == first
    assert dead_letters(pipeline) == [] or all(d.message.message_id != event_id for d in dead_letters(pipeline))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00 not json", "UndecodableMessage"),
        (b'{"schemaVersion": 3, "event": {}}', "UnknownSchemaVersion"),
        (b'{"schemaVersion": 1, "event": {"eventType": "x"}, "receivedAt": "2026-01-01T00:00:00Z"}', "SchemaInvalid"),
    ],
)
def test_a_poison_message_is_dead_lettered_with_its_reason(pipeline: LocalHost, body: bytes, reason: str) -> None:
    message_id = f"poison-{uuid.uuid4()}"
    with_queue(pipeline, lambda queue: queue.send([QueueMessage(message_id=message_id, body=body)]))

    deadline = time.monotonic() + 5
    while not (parked := [d for d in dead_letters(pipeline) if d.message.message_id == message_id]):
        assert time.monotonic() < deadline, "the poison message never reached the dead-letter queue"
        time.sleep(0.1)
    assert parked[0].reason == reason
    assert parked[0].description
    assert parked[0].message.body == body
    # Parked on its first delivery, not after burning every retry; and gone from the queue.
    assert parked[0].delivery_count == 1
    deadline = time.monotonic() + 5
    while any(m.message_id == message_id for m in with_queue(pipeline, lambda queue: queue.peek(1000))):
        assert time.monotonic() < deadline, "the poison message was not completed"
        time.sleep(0.1)


def test_a_thirty_second_store_outage_loses_and_dead_letters_nothing(host_factory: Callable[..., LocalHost]) -> None:
    # GIVEN a running pipeline
    host = host_factory(**TRUSTED_LOOPBACK)
    with host.client() as client:
        [warm] = accepted_ids(post(client, SEED_EXAMPLE, new_ip()))
        wait_for_stored(client, "acme", warm)

        # WHEN another process holds the event store's write lock for 30 s...
        with event_store_outage(host):
            # ...while producers keep sending
            event_ids: list[str] = []
            for n in range(40):
                event_ids += accepted_ids(post(client, [SEED_EXAMPLE] * 5, f"203.0.113.{n + 1}"))
            # (the event store being down degrades the pipeline but not ingest: health stays 200)
            health = client.get("/api/health")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "degraded"
            assert health.json()["checks"]["eventStore"]["status"] == "unhealthy"
            assert health.json()["checks"]["queue"] == {"status": "healthy"}
            time.sleep(30)

        # THEN once it is back, every event is stored exactly once, soon, and nothing is dead-lettered
        for event_id in event_ids:
            wait_for_stored(client, "acme", event_id, timeout=30)
        metrics = client.get("/metrics").text
    assert len(event_ids) == 200
    assert dead_letters(host) == []
    assert "cloudscale_processing_retries_total{" in metrics
    stored = sqlite3.connect(host.data_dir / "events.sqlite3")
    try:
        count = stored.execute(
            f"SELECT count(*) FROM events WHERE event_id IN ({','.join('?' * len(event_ids))})", event_ids
        ).fetchone()[0]
    finally:
        stored.close()
    assert count == len(event_ids)


def cloudscale(host: LocalHost, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `cloudscale` command against the host's data folder, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", *args],
        cwd=REPO,
        env={**os.environ, "CLOUDSCALE_DATA_DIR": str(host.data_dir), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# The outage arithmetic of the README, scaled down: 2 s of store retries per delivery (the
# last attempt 0.5 s before its end), three deliveries, a 3 s lock (the budget stays within
# four fifths of it): the bound is 3 x 1.5 s = 4.5 s.
SCALED_RETRY_SECONDS = 2.0
SCALED_MAX_DELIVERIES = 3
SCALED_OUTAGE_SETTINGS = {
    "CLOUDSCALE_PROCESS_RETRY_SECONDS": str(SCALED_RETRY_SECONDS),
    "CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT": str(SCALED_MAX_DELIVERIES),
    "CLOUDSCALE_QUEUE_LOCK_SECONDS": "3",
    **TRUSTED_LOOPBACK,
}
SCALED_BOUND = outage_bound_seconds(SCALED_RETRY_SECONDS, SCALED_MAX_DELIVERIES)


@contextlib.contextmanager
def event_store_outage(host: LocalHost) -> Iterator[None]:
    """The event store down while the block runs: another process holds its write lock."""
    blocker = sqlite3.connect(host.data_dir / "events.sqlite3", isolation_level=None, timeout=10)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_an_outage_shorter_than_the_stated_bound_dead_letters_nothing(host_factory: Callable[..., LocalHost]) -> None:
    # GIVEN a host whose bound is 4.5 s
    host = host_factory(**SCALED_OUTAGE_SETTINGS)
    with host.client() as client:
        wait_for_stored(client, "acme", accepted_ids(post(client, SEED_EXAMPLE, new_ip()))[0])

        # WHEN the store is down for 60% of the bound while events arrive
        with event_store_outage(host):
            event_ids = accepted_ids(post(client, [SEED_EXAMPLE] * 20, new_ip()))
            time.sleep(0.6 * SCALED_BOUND)

        # THEN every event is stored and nothing was dead-lettered
        for event_id in event_ids:
            wait_for_stored(client, "acme", event_id, timeout=15)
    assert dead_letters(host) == []


def test_an_outage_past_the_stated_bound_dead_letters_no_sooner_and_replays_after_the_fix(
    host_factory: Callable[..., LocalHost],
) -> None:
    # GIVEN a host whose bound is 4.5 s
    host = host_factory(**SCALED_OUTAGE_SETTINGS)
    with host.client() as client:
        wait_for_stored(client, "acme", accepted_ids(post(client, SEED_EXAMPLE, new_ip()))[0])

        # WHEN the store stays down for longer than the bound
        with event_store_outage(host):
            [event_id] = accepted_ids(post(client, SEED_EXAMPLE, new_ip()))
            accepted_at = time.monotonic()
            deadline = accepted_at + 10 * SCALED_BOUND
            queued_as = event_message_id("acme", event_id)
            while not (parked := [d for d in dead_letters(host) if d.message.message_id == queued_as]):
                assert time.monotonic() < deadline, "the broker never gave up on the message"
                time.sleep(0.1)
            parked_after = time.monotonic() - accepted_at

        # THEN it is dead-lettered by the queue, with the reason, after its three deliveries:
        # not before the bound ran out, and not much later than three budgets
        assert parked[0].reason == "MaxDeliveryCountExceeded"
        assert parked[0].delivery_count == SCALED_MAX_DELIVERIES
        assert SCALED_BOUND <= parked_after <= SCALED_MAX_DELIVERIES * SCALED_RETRY_SECONDS + 5
        listed = cloudscale(host, "dlq", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [entry] = [item for item in orjson.loads(listed.stdout) if item["messageId"] == queued_as]
        assert entry["reason"] == "MaxDeliveryCountExceeded"

        # AND once the store is fixed, a replay stores it, once
        replayed = cloudscale(host, "dlq", "replay", entry["id"])
        assert replayed.returncode == 0, replayed.stderr
        document = wait_for_stored(client, "acme", event_id, timeout=5)
        assert document["eventId"] == event_id
        again = cloudscale(host, "dlq", "replay", entry["id"])
        assert again.returncode == 1
        assert entry["id"] in again.stdout + again.stderr
    assert dead_letters(host) == []


def test_no_raw_client_address_is_at_rest_in_any_store_or_log(host_factory: Callable[..., LocalHost]) -> None:
    host = host_factory(**TRUSTED_LOOPBACK)
    ipv4, ipv6 = "198.51.100.231", "2001:db8:4321:8765::abcd"
    with host.client() as client:
        # Twelve from one address: the velocity rule fires and the security log speaks.
        ids = [event_id for _ in range(12) for event_id in accepted_ids(post(client, SEED_EXAMPLE, ipv4))]
        ids += accepted_ids(post(client, [SEED_EXAMPLE] * 3, ipv6))
        documents = [wait_for_stored(client, "acme", event_id, timeout=5.0) for event_id in ids]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(analytics_ids(host, ids)) < len(ids):
            time.sleep(0.05)
    assert len(analytics_ids(host, ids)) == len(ids), "every event reached analytics"
    assert any(document["fraud"]["suspicious"] for document in documents)
    assert any("suspicious event" in line for line in host.output)
    host.stop()

    # Every file of the data folder (queue with its dead letters, rate-limit state, event
    # store, analytics, their WAL files) and the host's log.
    files = [path for path in host.data_dir.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".sqlite3") for path in files)
    for raw in (ipv4, ipv6, "2001:db8:4321:8765:0:0:0:abcd"):
        for path in files:
            assert raw.encode() not in path.read_bytes(), f"{raw} found in {path.name}"
        assert not any(raw in line for line in host.output), f"{raw} found in the log"


def analytics_ids(host: LocalHost, ids: list[str]) -> set[str]:
    path = host.data_dir / "analytics.sqlite3"
    if not path.exists():
        return set()
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
        try:
            rows = connection.execute("SELECT EventId FROM events").fetchall()
        except sqlite3.OperationalError:  # the table is created with the first write
            return set()
    return {row[0] for row in rows} & set(ids)
