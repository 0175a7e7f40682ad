"""Erasing a user through the local host: gone from every store, kept gone, and finished after a crash.

Every wait is a poll with a deadline. The suppression cache is shortened (settle and verify
wait one cache period plus a second each), and the erasure timer fires every second.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, LiveEventsFile
from shared.bootstrap import Container
from shared.domain.envelope import QueueMessage, event_message_id
from shared.domain.stored_event import StoredEvent
from shared.settings import load_settings
from tests.e2e.conftest import REPO, LocalHost
from tests.e2e.test_analytics_pipeline import analytics_rows
from tests.e2e.test_ingest_api import new_ip, post
from tests.e2e.test_process_pipeline import TRUSTED_LOOPBACK, accepted_ids, wait_for_stored, with_queue
from tests.integration.test_erasure_runner import stored_event

pytestmark = pytest.mark.e2e

TENANT = "acme"
ERASED = "user-erased"
KEPT = ("user-kept-1", "user-kept-2")
ANONYMOUS = "anon-kept"
FAST_ERASURES = {
    **TRUSTED_LOOPBACK,
    "CLOUDSCALE_SUPPRESSION_CACHE_SECONDS": "0.5",
    "CLOUDSCALE_ERASURE_SCHEDULE": "*/1 * * * * *",
    "CLOUDSCALE_ERASURE_LEASE_SECONDS": "5",
}


def cloudscale(
    host: LocalHost, settings: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The `cloudscale` command on the host's data folder, with the host's settings."""
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", *args],
        cwd=REPO,
        env={**os.environ, **settings, "CLOUDSCALE_DATA_DIR": str(host.data_dir), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def event(user_id: str | None = None, anonymous_id: str | None = None, n: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"eventType": "page_view", "tenantId": TENANT, "url": f"/page/{n}"}
    if user_id is not None:
        body["userId"] = user_id
    if anonymous_id is not None:
        body["anonymousId"] = anonymous_id
    return body


def post_events(client: httpx.Client, events: list[dict[str, Any]]) -> list[str]:
    """POST and wait until each is stored; their ids."""
    ids = accepted_ids(post(client, events, new_ip()))
    for event_id in ids:
        wait_for_stored(client, TENANT, event_id, timeout=10)
    return ids


def analytics_by_user(host: LocalHost) -> dict[str | None, int]:
    return dict(analytics_rows(host, "SELECT UserId, count(*) FROM events GROUP BY UserId"))


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.1)


def suppressed_total(client: httpx.Client, stage: str) -> float:
    """`cloudscale_events_suppressed_total{stage=...}` from the host's `/metrics` (0 before the first)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "cloudscale_events_suppressed_total" and sample.labels.get("stage") == stage:
                return float(sample.value)
    return 0.0


def envelope(event_id: str, user_id: str, received_at: datetime) -> QueueMessage:
    """A queue message of the user's event, as ingest makes it."""
    body = {
        "schemaVersion": 2,
        "event": {**event(user_id), "eventId": event_id, "timestamp": received_at.isoformat()},
        "receivedAt": received_at.isoformat(),
        "clientNetwork": "198.51.100.0/24",
        "clientKey": "test-client",
        "ipRequestsLastMinute": 1,
    }
    return QueueMessage(message_id=event_message_id(TENANT, event_id), body=orjson.dumps(body))


def park(host: LocalHost, message: QueueMessage) -> None:
    """Park a message in the dead-letter queue, as the process stage does after a store outage."""
    with_queue(host, lambda queue: queue.park(message, "ProcessingFailed", "the event store stayed down"))


def dead_letter_message_ids(host: LocalHost, settings: dict[str, str]) -> list[str]:
    listed = cloudscale(host, settings, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [item["messageId"] for item in orjson.loads(listed.stdout)]


@pytest.fixture
def erasure_host(host_factory: Callable[..., LocalHost]) -> LocalHost:
    return host_factory(**FAST_ERASURES)


def test_an_erased_user_is_gone_everywhere_and_nothing_brings_them_back(erasure_host: LocalHost) -> None:
    host = erasure_host
    with host.client() as client:
        # GIVEN events of the user, of two other users and of an anonymous visitor, in store and analytics
        erased_ids = post_events(client, [event(ERASED, n=n) for n in range(5)])
        kept_ids = post_events(client, [event(user, n=n) for user in KEPT for n in range(3)])
        kept_ids += post_events(client, [event(anonymous_id=ANONYMOUS, n=9)])
        wait_for(lambda: sum(analytics_by_user(host).values()) == 12, 20, "every event in analytics")
        before = analytics_by_user(host)
        # AND a message of the user parked in the dead-letter queue
        old_received = datetime.now(UTC) - timedelta(minutes=5)
        parked_id = str(uuid.uuid4())
        park(host, envelope(parked_id, ERASED, old_received))
        assert event_message_id(TENANT, parked_id) in dead_letter_message_ids(host, FAST_ERASURES)

        # WHEN an operator erases the user
        erased = cloudscale(host, FAST_ERASURES, "erase", "--tenant", TENANT, "--user", ERASED)

        # THEN every step is reported with what it removed
        assert erased.returncode == 0, erased.stdout + erased.stderr
        assert re.search(r"events +found 5, removed 5", erased.stdout)
        assert re.search(r"analytics +found 5, removed 5", erased.stdout)
        assert re.search(r"dead_letters +found 1, removed 1", erased.stdout)
        assert ERASED not in erased.stdout
        # AND nothing of the user is readable: not by id, not in analytics, not in the dead letters
        for event_id in erased_ids:
            assert client.get(f"/api/events/{TENANT}/{event_id}").status_code == 404
        queried = cloudscale(
            host, FAST_ERASURES, "query", f"SELECT count(*) AS n FROM events WHERE UserId = '{ERASED}'", "--json"
        )
        assert queried.returncode == 0, queried.stderr
        assert orjson.loads(queried.stdout) == [{"n": 0}]
        assert event_message_id(TENANT, parked_id) not in dead_letter_message_ids(host, FAST_ERASURES)
        # AND every other user's events are intact
        for event_id in kept_ids:
            assert client.get(f"/api/events/{TENANT}/{event_id}").status_code == 200
        after = analytics_by_user(host)
        assert after == {user: count for user, count in before.items() if user != ERASED}

        # WHEN an old message of the user is delivered again, a dead letter of the user is replayed,
        # reconciliation runs and the user posts a new event
        redelivered_id = erased_ids[0]
        with_queue(host, lambda queue: queue.send([envelope(redelivered_id, ERASED, old_received)]))
        replayed_id = str(uuid.uuid4())
        park(host, envelope(replayed_id, ERASED, datetime.now(UTC)))
        [dead] = [
            item
            for item in orjson.loads(cloudscale(host, FAST_ERASURES, "dlq", "list", "--json").stdout)
            if item["messageId"] == event_message_id(TENANT, replayed_id)
        ]
        replayed = cloudscale(host, FAST_ERASURES, "dlq", "replay", dead["id"])
        assert replayed.returncode == 0, replayed.stderr
        reconciled = cloudscale(host, FAST_ERASURES, "reconcile", "--settle-seconds", "0", "--json")
        assert reconciled.returncode == 0, reconciled.stderr
        [new_id] = accepted_ids(post(client, event(ERASED, n=99), new_ip()))

        # THEN each of the three deliveries is dropped and counted as suppressed by the process stage
        wait_for(lambda: suppressed_total(client, "process") >= 3, 20, "three suppressed deliveries")
        assert suppressed_total(client, "process") == 3
        wait_for(lambda: not with_queue(host, lambda queue: queue.depth()), 10, "the queue drained")
        # AND none of them brought the user back anywhere
        for event_id in (redelivered_id, replayed_id, new_id):
            assert client.get(f"/api/events/{TENANT}/{event_id}").status_code == 404
        assert orjson.loads(reconciled.stdout)["resent"] == 0
        assert ERASED not in analytics_by_user(host)
        assert analytics_by_user(host) == after
        assert all(ERASED not in m for m in dead_letter_message_ids(host, FAST_ERASURES))


def test_the_erasure_routes_are_served_to_loopback_callers_only(erasure_host: LocalHost) -> None:
    with erasure_host.client() as client:
        relayed = client.post(
            "/api/privacy/erasures",
            json={"tenantId": TENANT, "userId": ERASED},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
        invalid = client.post("/api/privacy/erasures", json={"tenantId": TENANT, "userId": "a", "anonymousId": "b"})
        unknown = client.get("/api/privacy/erasures/er_" + "x" * 20)

    assert relayed.status_code == 403
    assert relayed.json()["error"] == "forbidden"
    assert invalid.status_code == 400
    assert invalid.json()["details"][0]["message"] == "give exactly one of userId and anonymousId"
    assert unknown.status_code == 404


def test_an_erasure_the_host_was_killed_in_is_finished_after_a_restart(host_factory: Callable[..., LocalHost]) -> None:
    # GIVEN a host whose erasures wait 4 s for the suppression caches at settle and at verify
    settings = {**FAST_ERASURES, "CLOUDSCALE_SUPPRESSION_CACHE_SECONDS": "3", "CLOUDSCALE_ERASURE_LEASE_SECONDS": "2"}
    host = host_factory(**settings)
    with host.client() as client:
        erased_ids = post_events(client, [event(ERASED, n=n) for n in range(3)])
        kept_ids = post_events(client, [event(KEPT[0], n=n) for n in range(2)])
        wait_for(lambda: sum(analytics_by_user(host).values()) == 5, 20, "every event in analytics")

        # WHEN an erasure is asked for over HTTP
        created = client.post("/api/privacy/erasures", json={"tenantId": TENANT, "userId": ERASED})
        assert created.status_code == 202, created.text
        assert created.json()["status"] == "pending"
        location = created.headers["location"]
        assert location == f"/api/privacy/erasures/{created.json()['id']}"

        # AND the host is killed once the timer's runner is past the tombstone, before it finished
        def started() -> bool:
            status = client.get(location).json()
            return bool(status["steps"]["suppress"]["done"])

        wait_for(started, 20, "the erasure started")
        status = client.get(location).json()
        host.crash()
        # (settle waits 4 s after the tombstone: the kill falls in it, before anything was deleted)
        assert status["status"] == "running"
        assert not status["steps"]["events"]["done"]
        host.stop()

    # THEN a host restarted on the same data folder finishes it (once the dead runner's lease expired)
    restarted = host_factory(data_dir=host.data_dir, **settings)
    with restarted.client() as client:
        wait_for(lambda: client.get(location).json()["status"] == "finished", 60, "the erasure finished")
        finished = client.get(location).json()
        for event_id in erased_ids:
            assert client.get(f"/api/events/{TENANT}/{event_id}").status_code == 404
        for event_id in kept_ids:
            assert client.get(f"/api/events/{TENANT}/{event_id}").status_code == 200

    # AND its counts say what went where, and its status names nobody
    # (the events ingest kept for watching too: the erased user's three are gone, the others' stay)
    assert finished["steps"]["events"] == {
        "found": 3,
        "removed": 3,
        "done": True,
        "detail": "also 3 kept live event(s) deleted",
    }
    with LiveEventsFile(restarted.data_dir / LIVE_EVENTS_FILE) as live:
        kept_users = [(event.document() or {}).get("userId") for event in live.latest(100)]
    assert ERASED not in kept_users
    assert KEPT[0] in kept_users
    assert finished["steps"]["analytics"]["found"] == 3
    assert finished["finishedAt"] is not None
    assert ERASED not in orjson.dumps(finished).decode()
    assert analytics_by_user(restarted) == {KEPT[0]: 2}


def test_reconciliation_never_sends_an_erased_users_event_and_counts_it(host_factory: Callable[..., LocalHost]) -> None:
    # GIVEN a host whose change feed is off, so analytics is filled by reconciliation alone
    settings = {**FAST_ERASURES, "AzureWebJobs.events_to_analytics.Disabled": "true"}
    host = host_factory(**settings)
    with host.client() as client:
        post_events(client, [event(ERASED, n=n) for n in range(2)])
        [kept_id] = post_events(client, [event(KEPT[0])])
    erased = cloudscale(host, settings, "erase", "--tenant", TENANT, "--user", ERASED)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    # AND an event of the user stored after the erasure deleted the others (a delivery that was
    # already past its check when the tombstone was written)
    late = stored_event(100, user_id=ERASED)
    store_directly(host, late)

    # WHEN reconciliation runs
    reconciled = cloudscale(host, settings, "reconcile", "--settle-seconds", "0", "--json")

    # THEN it sends the other user's event, leaves the erased user's out and counts it
    assert reconciled.returncode == 0, reconciled.stderr
    report = orjson.loads(reconciled.stdout)
    assert (report["resent"], report["suppressed"]) == (1, 1)
    assert [row[0] for row in analytics_rows(host, "SELECT EventId FROM events")] == [kept_id]


def store_directly(host: LocalHost, stored: StoredEvent) -> None:
    """Save an event in the host's event store from this process, as a delivery in flight would."""

    async def save() -> None:
        container = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(host.data_dir)}))
        try:
            await container.event_store.save(stored)
        finally:
            await container.close()

    asyncio.run(save())


def test_the_change_feed_drops_and_deletes_an_erased_users_late_event(erasure_host: LocalHost) -> None:
    # GIVEN an erased user
    host = erasure_host
    with host.client() as client:
        post_events(client, [event(ERASED)])
        erased = cloudscale(host, FAST_ERASURES, "erase", "--tenant", TENANT, "--user", ERASED)
        assert erased.returncode == 0, erased.stdout + erased.stderr

        # WHEN an event of theirs is stored after the erasure (a delivery that was past its check)
        late = stored_event(101, user_id=ERASED)
        store_directly(host, late)

        # THEN the change feed leaves it out of analytics, deletes it from the store and counts it
        wait_for(lambda: suppressed_total(client, "changefeed") >= 1, 20, "the change feed dropped it")
        wait_for(
            lambda: client.get(f"/api/events/{TENANT}/{late.event_id}").status_code == 404, 10, "the late event deleted"
        )
        assert suppressed_total(client, "changefeed") == 1
        assert ERASED not in analytics_by_user(host)
