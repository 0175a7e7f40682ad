"""The generated traffic: every event is one the real contract accepts, in a realistic mix."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import pytest

from cloudscale_local.loadtest.events import EVENT_WEIGHTS, BodyFactory, build_templates, client_ips, rfc3339_millis
from ingest.validation import parse_body, validate_event
from shared.domain.events import MAX_BODY_BYTES, MAX_EVENT_BYTES, Event

NOW = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


def test_every_template_is_a_valid_event_for_the_real_model() -> None:
    templates = build_templates(tenants=10)
    now = datetime.fromtimestamp(NOW, UTC)
    for template in templates:
        event = Event.model_validate(template, context={"now": now})
        assert event.event_id is None  # the factory adds a fresh one per request
        assert orjson.dumps(template).startswith(b'{"eventType":')


def test_every_body_the_factory_sends_is_accepted_by_ingest_validation() -> None:
    # Every template passes through a body at least once: 2048 templates, batches of 7.
    factory = BodyFactory(tenants=10, batch_size=7, ips=16)
    received_at = datetime.fromtimestamp(NOW, UTC)
    seen: list[str] = []
    for index in range(2048 // 7 + 1):
        body, ids = factory.body(index, NOW)
        parsed = parse_body(body)  # the ingest path's own parser
        assert parsed.is_batch
        assert [item["eventId"] for item in parsed.items] == ids
        for item in parsed.items:
            event = validate_event(item, received_at=received_at, measure_size=True)
            assert isinstance(event, Event), event
            assert event.timestamp == datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)
            assert Event.model_validate(item, context={"now": received_at}) == event
        seen += ids
    assert len(set(seen)) == len(seen)
    assert all(UUID(event_id).version == 4 for event_id in seen)


def test_a_single_event_request_is_an_object_and_every_request_gets_fresh_ids() -> None:
    factory = BodyFactory(tenants=3, batch_size=1, ips=4)
    first, [first_id] = factory.body(0, NOW)
    again, [again_id] = factory.body(0, NOW)
    assert isinstance(orjson.loads(first), dict)
    assert first_id != again_id
    assert orjson.loads(first)["eventId"] == first_id
    # Same template, new id: only the id differs.
    assert first.replace(first_id.encode(), b"") == again.replace(again_id.encode(), b"")


def test_the_mix_follows_the_weights_and_carries_realistic_properties() -> None:
    templates = build_templates(tenants=10)
    by_type = Counter(template["eventType"] for template in templates)
    assert set(by_type) == set(EVENT_WEIGHTS)
    total = sum(EVENT_WEIGHTS.values())
    for event_type, weight in EVENT_WEIGHTS.items():
        assert by_type[event_type] / len(templates) == pytest.approx(weight / total, abs=0.03)
    assert by_type.most_common(1)[0][0] == "page_view"

    purchases = [t for t in templates if t["eventType"] == "purchase"]
    for purchase in purchases:
        properties = purchase["properties"]
        assert properties["currency"] in {"EUR", "USD", "GBP", "SEK"}
        assert properties["items"]
        total_price = sum(item["price"] * item["quantity"] for item in properties["items"])
        assert properties["amount"] == pytest.approx(total_price, abs=0.01)
    errors = [t for t in templates if t["eventType"] == "error"]
    assert all(error["properties"]["message"] and error["properties"]["code"] for error in errors)
    assert all(t.get("url", "").startswith("https://") for t in templates)


def test_tenants_users_and_sessions_come_from_pools() -> None:
    templates = build_templates(tenants=4)
    tenants = Counter(template["tenantId"] for template in templates)
    assert set(tenants) == {"tenant-0", "tenant-1", "tenant-2", "tenant-3"}
    assert tenants.most_common(1)[0][0] == "tenant-0"  # skewed, as real tenants are
    users = {template["userId"] for template in templates if "userId" in template}
    assert 100 < len(users) < len(templates)  # a pool: users come back
    anonymous = [template for template in templates if "userId" not in template]
    assert anonymous  # some traffic has no user
    assert all("sessionId" not in template for template in anonymous)
    assert all(
        template["sessionId"].startswith(f"sess-{template['userId'][5:]}-")
        for template in templates
        if "userId" in template
    )


def test_the_same_seed_makes_the_same_mix_and_another_seed_another() -> None:
    assert build_templates(tenants=5, seed=1) == build_templates(tenants=5, seed=1)
    assert build_templates(tenants=5, seed=1) != build_templates(tenants=5, seed=2)


def test_a_full_batch_of_the_largest_events_fits_the_body_limit() -> None:
    largest = max(len(orjson.dumps(template)) for template in build_templates(tenants=10))
    assert largest + 64 < MAX_EVENT_BYTES
    factory = BodyFactory(tenants=10, batch_size=500, ips=1)
    body, ids = factory.body(3, NOW)
    assert len(ids) == 500
    assert len(body) < MAX_BODY_BYTES


def test_client_addresses_are_distinct_private_ones_cycled_per_request() -> None:
    ips = client_ips(300)
    assert len(set(ips)) == 300
    assert ips[0] == "10.0.0.1"
    assert ips[255] == "10.0.1.0"
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.0.0.0/8") for ip in ips)
    factory = BodyFactory(tenants=1, batch_size=1, ips=3)
    forwarded = [factory.headers(index)["X-Forwarded-For"] for index in range(7)]
    assert forwarded == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]
    headers: dict[str, Any] = factory.headers(0)
    assert headers["Content-Type"] == "application/json"
    assert "Mozilla/5.0" in headers["User-Agent"]


@pytest.mark.parametrize("count", [0, 2**24 - 1])
def test_an_impossible_number_of_addresses_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="client addresses"):
        client_ips(count)


@pytest.mark.parametrize("batch_size", [0, 501])
def test_a_batch_size_outside_the_contract_is_refused(batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch size"):
        BodyFactory(tenants=1, batch_size=batch_size, ips=1)


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    assert rfc3339_millis(NOW) == "2026-01-01T00:00:00.250Z"
    assert rfc3339_millis(NOW + 0.9999) == "2026-01-01T00:00:01.249Z"
    body, _ = BodyFactory(tenants=1, batch_size=1, ips=1).body(0, NOW + 61.5)
    stamp = orjson.loads(body)["timestamp"]
    assert stamp == rfc3339_millis(NOW + 61.5) == "2026-01-01T00:01:01.750Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)


def test_with_a_write_key_every_request_carries_it_and_every_event_takes_the_keys_tenant() -> None:
    factory = BodyFactory(tenants=10, batch_size=5, ips=4, write_key="cs_sk_" + "k" * 48)
    received_at = datetime.fromtimestamp(NOW, UTC)
    assert {factory.headers(index)["Authorization"] for index in range(4)} == {"Bearer cs_sk_" + "k" * 48}
    body, _ = factory.body(0, NOW)
    for item in parse_body(body).items:
        assert "tenantId" not in item
        event = validate_event(item, received_at=received_at, measure_size=True, tenant_id="acme")
        assert isinstance(event, Event), event
        assert event.tenant_id == "acme"


def test_without_a_write_key_no_request_carries_an_authorization_header() -> None:
    factory = BodyFactory(tenants=10, batch_size=1, ips=4)
    assert all("Authorization" not in factory.headers(index) for index in range(4))
