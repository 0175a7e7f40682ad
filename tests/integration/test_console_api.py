"""The console's JSON API and its access rules, over real stores (SQLite files), through ASGI.

GIVEN kept live events, a stored event and a dead letter in real embedded stores, WHEN the
console is asked over HTTP (httpx's ASGI transport, which sets the peer and the Host header as
a socket would), THEN it answers what `cloudscale dlq` and the live-event log say, and refuses
every caller that is not this machine's own page with 403 and a JSON reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cloudscale_local.host.console import CONSOLE_HEADER, ConsoleSources, build_console
from cloudscale_local.host.gateway import AsgiApp
from shared.adapters.dead_letters.embedded import EmbeddedDeadLetterBrowser
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.adapters.live_events.embedded import EmbeddedLiveEvents
from shared.domain.envelope import QueueMessage
from shared.domain.live_events import LiveEvent, LiveEventReason
from shared.domain.stored_event import StoredEvent

BASE = "http://127.0.0.1:7071"
POST_HEADERS = {CONSOLE_HEADER: "1"}


def stored_event(event_id: str, tenant: str = "acme") -> StoredEvent:
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": tenant,
            "eventType": "page_view",
            "timestamp": "2026-03-01T12:00:00+00:00",
            "url": "/home",
            "enrichment": {
                "clientNetwork": "127.0.0.0/24",
                "receivedAt": "2026-03-01T12:00:00+00:00",
                "processedAt": "2026-03-01T12:00:01+00:00",
                "queueLatencyMs": 4.0,
            },
            "fraud": {
                "score": 0.6,
                "suspicious": True,
                "reasons": [
                    {"rule": "ip-velocity", "code": "VELOCITY_IP_MINUTE", "weight": 0.6, "description": "fast"}
                ],
            },
        }
    )


def accepted(tenant: str, event_type: str, event_id: str) -> LiveEvent:
    return LiveEvent(
        at=datetime.now(UTC),
        outcome="accepted",
        api="events",
        status=202,
        tenant_id=tenant,
        event_type=event_type,
        event_id=event_id,
        event={"eventType": event_type, "tenantId": tenant, "eventId": event_id, "writeKey": "secret"},
    )


def rejected(tenant: str) -> LiveEvent:
    return LiveEvent(
        at=datetime.now(UTC),
        outcome="rejected",
        api="events",
        status=400,
        tenant_id=tenant,
        reasons=(LiveEventReason("missing", "Field required", "eventType"),),
        event={"tenantId": tenant},
    )


def transport(app: AsgiApp, peer: str) -> httpx.ASGITransport:
    """The app over ASGI, called from `peer` (httpx's transport types the ASGI callables more loosely)."""
    return httpx.ASGITransport(app=app, client=(peer, 50000))  # type: ignore[arg-type]


@dataclass
class Console:
    app: AsgiApp
    client: httpx.AsyncClient
    live: EmbeddedLiveEvents
    queue: EmbeddedQueue
    stored_id: str


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    live = EmbeddedLiveEvents(tmp_path / "live-events.sqlite3", kept=100)
    store = EmbeddedEventStore(tmp_path / "events.sqlite3")
    queue = EmbeddedQueue(tmp_path / "queue.sqlite3")
    browser = EmbeddedDeadLetterBrowser(queue)
    stored_id = str(uuid.uuid4())
    await store.save(stored_event(stored_id))
    live.record([accepted("acme", "page_view", stored_id), rejected("acme"), accepted("globex", "purchase", "e-2")])
    await live.flush()
    await queue.park(
        QueueMessage(message_id="m-1", body=json.dumps({"event": {"tenantId": "acme"}}).encode()),
        "SchemaInvalid",
        "event.eventType: Field required",
    )

    async def read_metrics() -> bytes:
        return b""

    app, _ = build_console(
        ConsoleSources(
            live_events=lambda: live,
            event_store=lambda: store,
            dead_letters=lambda: browser,
            read_metrics=read_metrics,
        )
    )
    async with httpx.AsyncClient(transport=transport(app, "127.0.0.1"), base_url=BASE) as client:
        yield Console(app, client, live, queue, stored_id)
    await live.close()
    await store.close()
    await browser.close()


# --- the JSON API -----------------------------------------------------------------------------


async def test_all_lists_the_kept_events_newest_first_without_the_write_key(console: Console) -> None:
    answer = await console.client.get("/dashboard/api/all")
    assert answer.status_code == 200
    events = answer.json()["events"]
    assert [(e["tenantId"], e["outcome"]) for e in events] == [
        ("globex", "accepted"),
        ("acme", "rejected"),
        ("acme", "accepted"),
    ]
    assert all("writeKey" not in (e["event"] or {}) for e in events)


async def test_good_and_bad_split_by_outcome_and_bad_carries_the_reasons(console: Console) -> None:
    good = (await console.client.get("/dashboard/api/good")).json()["events"]
    bad = (await console.client.get("/dashboard/api/bad")).json()["events"]
    assert {e["outcome"] for e in good} == {"accepted"}
    assert len(good) == 2
    assert [e["reasons"] for e in bad] == [[{"code": "missing", "message": "Field required", "field": "eventType"}]]


async def test_tenant_type_and_limit_filter(console: Console) -> None:
    by_tenant = (await console.client.get("/dashboard/api/all", params={"tenant": "acme"})).json()["events"]
    assert {e["tenantId"] for e in by_tenant} == {"acme"}
    by_type = (await console.client.get("/dashboard/api/all", params={"type": "purchase"})).json()["events"]
    assert [e["eventId"] for e in by_type] == ["e-2"]
    limited = (await console.client.get("/dashboard/api/all", params={"limit": "1"})).json()["events"]
    assert [e["tenantId"] for e in limited] == ["globex"]


@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1"])
async def test_a_bad_limit_is_400(console: Console, limit: str) -> None:
    answer = await console.client.get("/dashboard/api/all", params={"limit": limit})
    assert answer.status_code == 400
    assert answer.json()["error"] == "bad_request"


async def test_reset_forgets_every_kept_event(console: Console) -> None:
    answer = await console.client.post("/dashboard/api/reset", headers=POST_HEADERS)
    assert answer.json() == {"removed": 3}
    assert (await console.client.get("/dashboard/api/all")).json()["events"] == []


async def test_a_stored_event_is_its_document_with_the_fraud_result(console: Console) -> None:
    answer = await console.client.get(f"/dashboard/api/events/acme/{console.stored_id}")
    assert answer.status_code == 200
    document = answer.json()
    assert document["eventId"] == console.stored_id
    assert document["fraud"]["reasons"][0]["code"] == "VELOCITY_IP_MINUTE"


async def test_an_event_not_stored_yet_is_404_saying_so(console: Console) -> None:
    # Same id, another tenant: identity is (tenantId, eventId).
    answer = await console.client.get(f"/dashboard/api/events/globex/{console.stored_id}")
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "message": "not stored yet"}


async def test_dead_letters_are_listed_with_their_reasons(console: Console) -> None:
    answer = await console.client.get("/dashboard/api/dead-letters")
    [dead] = answer.json()["deadLetters"]
    assert (dead["reason"], dead["description"]) == ("SchemaInvalid", "event.eventType: Field required")
    assert dead["body"] == {"event": {"tenantId": "acme"}}


async def test_a_dead_letter_replayed_is_back_on_the_queue_and_a_second_replay_is_404(console: Console) -> None:
    [dead] = (await console.client.get("/dashboard/api/dead-letters")).json()["deadLetters"]
    answer = await console.client.post(f"/dashboard/api/dead-letters/{dead['id']}/replay", headers=POST_HEADERS)
    assert answer.json() == {"replayed": [dead["id"]]}
    [back] = await console.queue.receive()
    assert back.message.message_id == "m-1"
    again = await console.client.post(f"/dashboard/api/dead-letters/{dead['id']}/replay", headers=POST_HEADERS)
    assert again.status_code == 404


async def test_the_page_and_its_assets_are_served_with_headers_that_keep_it_to_itself(console: Console) -> None:
    page = await console.client.get("/dashboard")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for asset in ("console.js", "charts.js", "console.css"):
        assert f"/dashboard/static/{asset}" in page.text
        assert (await console.client.get(f"/dashboard/static/{asset}")).status_code == 200


# --- who is served ------------------------------------------------------------------------------


async def refused(answer: httpx.Response, says: str) -> None:
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    assert says in answer.json()["message"]


async def test_a_caller_off_this_machine_is_refused(console: Console) -> None:
    async with httpx.AsyncClient(transport=transport(console.app, "192.0.2.7"), base_url=BASE) as client:
        await refused(await client.get("/dashboard/api/all"), "loopback clients only")


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
async def test_a_request_relayed_by_a_proxy_is_refused(console: Console, header: str) -> None:
    answer = await console.client.get("/dashboard/api/all", headers={header: "for=198.51.100.1"})
    await refused(answer, "never through a proxy")


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7071", "192.0.2.1:7071", "127.0.0.1.evil.example"])
async def test_a_host_header_naming_another_machine_is_refused(console: Console, host: str) -> None:
    # What a page on another site sends after making its name resolve to 127.0.0.1 (DNS rebinding).
    answer = await console.client.get("/dashboard/api/all", headers={"Host": host})
    await refused(answer, "Host header")


@pytest.mark.parametrize("host", ["localhost:7071", "127.0.0.1", "[::1]:7071", "127.0.0.2:80"])
async def test_loopback_names_in_the_host_header_are_served(console: Console, host: str) -> None:
    answer = await console.client.get("/dashboard/api/all", headers={"Host": host})
    assert answer.status_code == 200


async def test_a_post_from_another_origin_is_refused(console: Console) -> None:
    answer = await console.client.post(
        "/dashboard/api/reset", headers={**POST_HEADERS, "Origin": "http://evil.example"}
    )
    await refused(answer, "Origin")
    assert len((await console.client.get("/dashboard/api/all")).json()["events"]) == 3


async def test_a_post_without_the_console_header_is_refused(console: Console) -> None:
    # What a cross-site form posts: no custom header (it would need a preflight, never answered).
    answer = await console.client.post("/dashboard/api/reset", headers={"Origin": BASE})
    await refused(answer, CONSOLE_HEADER)
    dead = (await console.client.get("/dashboard/api/dead-letters")).json()["deadLetters"][0]
    await refused(await console.client.post(f"/dashboard/api/dead-letters/{dead['id']}/replay"), CONSOLE_HEADER)


async def test_a_post_from_its_own_page_is_served(console: Console) -> None:
    answer = await console.client.post("/dashboard/api/reset", headers={**POST_HEADERS, "Origin": BASE})
    assert answer.status_code == 200


async def test_no_answer_carries_a_cors_header(console: Console) -> None:
    headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    for answer in (
        await console.client.get("/dashboard/api/all", headers={"Origin": "http://evil.example"}),
        await console.client.options("/dashboard/api/reset", headers=headers),
        await console.client.post("/dashboard/api/reset", headers=headers),
    ):
        assert not [name for name in answer.headers if name.lower().startswith("access-control-")]
