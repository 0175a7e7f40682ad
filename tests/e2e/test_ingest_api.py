"""`POST /api/events` and friends through the local host over a real socket."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.envelope import QueueMessage, event_message_id
from tests.e2e.conftest import INGEST_ONLY, LocalHost

pytestmark = pytest.mark.e2e

SEED_EXAMPLE = {"eventType": "page_view", "correlationId": "test-1", "tenantId": "acme", "url": "/home"}
_ips = (f"198.51.100.{n}" for n in itertools.count(1))


def new_ip() -> str:
    """A client address of its own for each test, so buckets are not shared."""
    return next(_ips)


def post(client: httpx.Client, body: Any, ip: str, content_type: str = "application/json") -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/api/events", content=content, headers={"Content-Type": content_type, "X-Forwarded-For": ip})


def queued(host: LocalHost) -> dict[str, QueueMessage]:
    """Messages waiting in the host's embedded queue, by message id."""

    async def peek() -> list[QueueMessage]:
        queue = EmbeddedQueue(host.data_dir / "queue.sqlite3")
        try:
            return await queue.peek(100_000)
        finally:
            queue.close()

    return {m.message_id: m for m in asyncio.run(peek())}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert body["message"]
    assert isinstance(body["details"], list)
    return body


def test_the_seed_example_is_accepted_and_queued(host: LocalHost) -> None:
    with host.client() as client:
        response = post(client, SEED_EXAMPLE, new_ip())

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == 0
    event_id = body["results"][0]["eventId"]
    message = queued(host)[event_message_id("acme", event_id)]
    envelope = orjson.loads(message.body)
    assert envelope["schemaVersion"] == 2
    assert envelope["event"]["eventId"] == event_id
    assert envelope["event"]["tenantId"] == "acme"
    assert envelope["event"]["correlationId"] == "test-1"
    assert envelope["event"]["timestamp"]
    assert envelope["ipRequestsLastMinute"] == 1
    assert "traceparent" in envelope["traceContext"]
    assert message.application_properties["tenantId"] == "acme"
    assert message.application_properties["eventType"] == "page_view"


def test_the_client_ip_comes_from_a_trusted_proxy_header_and_is_queued_only_anonymised(host: LocalHost) -> None:
    ip, other = new_ip(), new_ip()
    with host.client() as client:
        ids = [post(client, SEED_EXAMPLE, address).json()["results"][0]["eventId"] for address in (ip, ip, other)]

    envelopes = [orjson.loads(queued(host)[event_message_id("acme", event_id)].body) for event_id in ids]
    assert {envelope["clientNetwork"] for envelope in envelopes} == {ip.rsplit(".", 1)[0] + ".0/24"}
    assert envelopes[0]["clientKey"] == envelopes[1]["clientKey"] != envelopes[2]["clientKey"]
    assert all(ip not in queued(host)[event_message_id("acme", event_id)].body.decode() for event_id in ids)


def test_a_batch_with_one_bad_event_accepts_the_rest(host: LocalHost) -> None:
    batch = [SEED_EXAMPLE, {"eventType": "click"}, {**SEED_EXAMPLE, "eventType": "purchase", "color": "red"}]

    with host.client() as client:
        response = post(client, batch, new_ip())

    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 2)
    first, second, third = body["results"]
    assert first["status"] == "accepted"
    assert second == {
        "index": 1,
        "status": "rejected",
        "errors": [{"field": "tenantId", "message": "Field required", "type": "missing"}],
    }
    assert third["status"] == "rejected"
    assert third["errors"][0]["field"] == "color"
    assert "properties" in third["errors"][0]["message"]
    assert event_message_id("acme", first["eventId"]) in queued(host)


def test_a_given_event_id_is_kept_end_to_end(host: LocalHost) -> None:
    event_id = "6f1c1a8e-3c1b-4a53-9d2f-0c8e5b6a7d90"
    with host.client() as client:
        response = post(client, {**SEED_EXAMPLE, "eventId": event_id}, new_ip())

    assert response.json()["results"][0]["eventId"] == event_id
    assert event_message_id("acme", event_id) in queued(host)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"eventType": ', "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "malformed_json"),
        (b"[]", "application/json", 400, "malformed_json"),
        (b"42", "application/json", 400, "malformed_json"),
        (b'{"eventType": "page_view"}', "application/json", 400, "invalid_events"),
        (b'[{"tenantId": "acme"}, 7]', "application/json", 400, "invalid_events"),
        (orjson.dumps(SEED_EXAMPLE), "text/html", 415, "unsupported_media_type"),
        (b'{"eventType": ', "text/plain;charset=UTF-8", 400, "malformed_json"),
        (orjson.dumps(SEED_EXAMPLE), "application/xml", 415, "unsupported_media_type"),
        (orjson.dumps([SEED_EXAMPLE] * 501), "application/json", 413, "payload_too_large"),
        (
            orjson.dumps({**SEED_EXAMPLE, "properties": {"blob": "x" * 40_000}}),
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            orjson.dumps([{**SEED_EXAMPLE, "properties": {"blob": "x" * 30_000}}] * 40),
            "application/json",
            413,
            "payload_too_large",
        ),
    ],
    ids=[
        "truncated",
        "empty",
        "empty-batch",
        "scalar",
        "invalid",
        "all-invalid",
        "html",
        "beacon-truncated",
        "xml",
        "batch-501",
        "event-over-32k",
        "body-over-1mib",
    ],
)
def test_bad_requests_get_a_clear_4xx(host: LocalHost, body: bytes, content_type: str, status: int, code: str) -> None:
    with host.client() as client:
        response = post(client, body, new_ip(), content_type=content_type)

    assert_error(response, status, code)


def test_every_rejected_event_is_explained_by_index(host: LocalHost) -> None:
    with host.client() as client:
        response = post(client, [{"tenantId": "acme"}, {"eventType": "x", "tenantId": "acme", "extra": 1}], new_ip())

    body = assert_error(response, 400, "invalid_events")
    assert [(d["index"], d["errors"][0]["field"]) for d in body["details"]] == [(0, "eventType"), (1, "extra")]


def test_json_with_a_charset_is_json(host: LocalHost) -> None:
    with host.client() as client:
        response = post(client, SEED_EXAMPLE, new_ip(), content_type="application/json; charset=utf-8")

    assert response.status_code == 202


def test_the_101st_request_in_a_burst_from_one_ip_is_refused(host: LocalHost) -> None:
    ip = new_ip()
    with host.client() as client:
        started = time.monotonic()
        accepted = 0
        while (response := post(client, SEED_EXAMPLE, ip)).status_code == 202 and accepted < 200:
            accepted += 1
        elapsed = time.monotonic() - started
        other_ip = post(client, SEED_EXAMPLE, new_ip())

    # The bucket holds 100 and refills 10 per second, so a burst lasting `elapsed` seconds
    # is refused after the 100 plus whatever refilled meanwhile, and no later.
    assert 100 <= accepted <= 100 + math.ceil(elapsed * 10)
    body = assert_error(response, 429, "rate_limited")
    assert body["details"] == [{"limit": "ip"}]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Limit"] == "100"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) >= 1
    assert other_ip.status_code == 202


def test_accepted_responses_carry_rate_limit_headers(host: LocalHost) -> None:
    with host.client() as client:
        first = post(client, SEED_EXAMPLE, ip := new_ip())
        second = post(client, SEED_EXAMPLE, ip)

    assert first.headers["RateLimit-Limit"] == "100"
    assert int(first.headers["RateLimit-Remaining"]) == 99
    assert int(second.headers["RateLimit-Remaining"]) in (98, 99)  # 99 if a token refilled meanwhile


def test_health_reports_each_dependency(host: LocalHost) -> None:
    with host.client() as client:
        response = client.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "checks": {
            "queue": {"status": "healthy"},
            "rateLimitStore": {"status": "healthy"},
            "eventStore": {"status": "healthy"},
            "analytics": {"status": "healthy"},
            "clientKey": {"status": "healthy"},
        },
    }


def test_metrics_count_what_happened(host: LocalHost) -> None:
    with host.client() as client:
        post(client, [SEED_EXAMPLE, SEED_EXAMPLE, {"bad": 1}], new_ip())
        metrics = client.get("/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    samples = parse_samples(metrics.text)
    assert samples[("cloudscale_events_ingested_total", 'outcome="accepted"')] >= 2
    assert samples[("cloudscale_events_ingested_total", 'outcome="rejected"')] >= 1
    assert samples[("cloudscale_ingestion_duration_seconds_count", 'status_code="202"')] >= 1
    assert samples[("cloudscale_queue_depth", "")] >= 2


def deeply_nested_event(levels: int) -> bytes:
    """An event whose properties nest `levels` objects deep, written out (orjson cannot serialise it)."""
    properties = b'{"a": ' * levels + b"1" + b"}" * levels
    return b'{"eventType": "page_view", "tenantId": "acme", "properties": ' + properties + b"}"


def test_deeply_nested_events_get_a_4xx_and_spare_their_neighbours(host: LocalHost) -> None:
    seed = orjson.dumps(SEED_EXAMPLE)
    with host.client() as client:
        single = post(client, deeply_nested_event(1000), new_ip())
        batch = post(client, b"[" + b",".join([seed, deeply_nested_event(1000), seed]) + b"]", new_ip())
        beyond_the_parser = post(client, b"[" * 5000 + b"]" * 5000, new_ip())
        metrics = client.get("/metrics")

    details = assert_error(single, 400, "invalid_events")["details"]
    assert details[0]["errors"][0]["field"] == "properties"
    assert batch.status_code == 202, batch.text[:500]
    assert [result["status"] for result in batch.json()["results"]] == ["accepted", "rejected", "accepted"]
    assert "depth" in assert_error(beyond_the_parser, 400, "malformed_json")["message"]
    assert ("cloudscale_ingestion_duration_seconds_count", 'status_code="500"') not in parse_samples(metrics.text)


def test_metrics_answer_get_only(host: LocalHost) -> None:
    with host.client() as client:
        response = client.post("/metrics", content=b"x")

    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


def test_unknown_routes_and_methods_get_json_errors(host: LocalHost) -> None:
    with host.client() as client:
        missing = client.get("/api/nothing-here")
        wrong_method = client.get("/api/events")

    assert_error(missing, 404, "not_found")
    # A method the function does not list fails the host's route match (`HttpMethodRouteConstraint`
    # in `WebScriptHostHttpRoutesManager`): 404 with no `Allow`, never 405.
    assert_error(wrong_method, 404, "not_found")
    assert "allow" not in wrong_method.headers


def test_the_openapi_document_describes_real_responses(host: LocalHost) -> None:
    with host.client() as client:
        document = client.get("/api/openapi.json").json()
        accepted = post(client, [SEED_EXAMPLE, {"x": 1}], new_ip())
        rejected = post(client, b"{", new_ip())
        health = client.get("/api/health")
        not_stored = client.get("/api/events/acme/00000000-0000-4000-8000-000000000000")

    validate(document)
    schemas = document["components"]["schemas"]

    def check(instance: Any, name: str) -> None:
        schema = {**schemas[name], "components": {"schemas": schemas}}
        Draft202012Validator(schema).validate(instance)

    check(accepted.json(), "IngestResponseBody")
    check(rejected.json(), "ErrorBody")
    check(health.json(), "HealthBody")
    assert str(not_stored.status_code) in document["paths"]["/api/events/{tenantId}/{eventId}"]["get"]["responses"]
    check(not_stored.json(), "ErrorBody")


def test_a_queue_that_cannot_take_events_gives_503_and_accepts_nothing(
    host_factory: Callable[..., LocalHost],
) -> None:
    host = host_factory(**INGEST_ONLY)
    # GIVEN another process holding the queue's write lock past the busy timeout
    blocker = sqlite3.connect(host.data_dir / "queue.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with host.client() as client:
            response = post(client, SEED_EXAMPLE, new_ip())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    body = assert_error(response, 503, "queue_unavailable")
    assert "nothing was accepted" in body["message"]
    assert int(response.headers["Retry-After"]) >= 1
    assert queued(host) == {}
    with host.client() as client:
        assert post(client, SEED_EXAMPLE, new_ip()).status_code == 202  # and it recovers


def parse_samples(text: str) -> dict[tuple[str, str], float]:
    """Prometheus text samples keyed by (name, the labels we care about)."""
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        interesting = ",".join(
            part for part in labels.rstrip("}").split(",") if part.startswith(("outcome=", "status_code=", "limit="))
        )
        samples[(name, interesting)] = samples.get((name, interesting), 0.0) + float(value)
    return samples


def test_a_client_is_limited_by_events_and_the_headers_say_so(host_factory: Callable[..., LocalHost]) -> None:
    host = host_factory(
        CLOUDSCALE_RATE_LIMIT_IP_CAPACITY="10",
        CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND="0.01",
        CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1",
        **INGEST_ONLY,
    )
    ip = new_ip()
    with host.client() as client:
        first = post(client, [SEED_EXAMPLE] * 6, ip)
        refused = post(client, [SEED_EXAMPLE] * 6, ip)
        single = post(client, SEED_EXAMPLE, ip)

    assert first.status_code == 202
    assert first.headers["RateLimit-Remaining"] == "4"
    assert first.headers["RateLimit-Policy"] == '10;w=1000;comment="events per client"'
    body = assert_error(refused, 429, "rate_limited")
    assert "6" in body["message"]
    assert int(refused.headers["Retry-After"]) == 200, "2 more tokens at 0.01 per second"
    assert single.status_code == 202, "the refused batch took no tokens"


@pytest.mark.parametrize(
    "spelling",
    ["::ffff:203.0.113.50", "::203.0.113.50", "64:ff9b::203.0.113.50", "2001:db8:50:1::{n}", "fe80::50%eth{n}"],
    ids=["mapped", "compatible", "nat64", "one-slash-64", "zones"],
)
def test_a_client_changing_its_address_spelling_keeps_its_bucket(
    host_factory: Callable[..., LocalHost], spelling: str
) -> None:
    host = host_factory(
        CLOUDSCALE_RATE_LIMIT_IP_CAPACITY="3",
        CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND="0.01",
        CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1",
        **INGEST_ONLY,
    )
    first = "203.0.113.50" if "203.0.113.50" in spelling else spelling.format(n=0)
    with host.client() as client:
        statuses = [post(client, SEED_EXAMPLE, first).status_code]
        statuses += [post(client, SEED_EXAMPLE, spelling.format(n=n + 1)).status_code for n in range(3)]

    assert statuses == [202, 202, 202, 429]


def test_bodies_that_do_not_parse_cost_one_event_each(host_factory: Callable[..., LocalHost]) -> None:
    host = host_factory(
        CLOUDSCALE_RATE_LIMIT_IP_CAPACITY="3",
        CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND="0.01",
        CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1",
        **INGEST_ONLY,
    )
    ip = new_ip()
    with host.client() as client:
        statuses = [post(client, b"{not json", ip).status_code for _ in range(4)]

    assert statuses == [400, 400, 400, 429]
