"""Ingest keeps every request's events for watching, and counts each rejected one by reason.

The real use case over the real live-event log (a SQLite file in tmp_path), an in-memory queue
and the test authenticator of `tests.unit.test_ingest_write_keys`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ingest.credentials import PresentedKey
from ingest.errors import IngestError
from ingest.http import status_for
from ingest.rate_limiter import RateLimiter
from ingest.segment.reader import segment_body_reader
from ingest.service import IngestRequest, IngestService
from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, EmbeddedLiveEvents
from shared.domain.client_identity import ClientKeyer
from shared.domain.live_events import LiveEvent, LiveEventReason
from shared.domain.ratelimit import BucketLimits
from shared.ports import PublishError
from shared.telemetry import IngestMetrics
from shared.write_key_auth import Producer
from tests.metrics import counter_values
from tests.unit.test_ingest_write_keys import SERVER_KEY, Keys, Queue
from tests.unit.test_ingest_write_keys import request as json_request
from tests.unit.test_rate_limiter import FakeClock, FakeRateLimitStore

ACME = Producer("acme", "a" * 16, "server", (), None)
REJECTED = "cloudscale_events_rejected_total"


class FailingQueue(Queue):
    async def publish(self, messages: object) -> None:
        raise PublishError("the queue is down")


@dataclass
class Setup:
    service: IngestService
    log: EmbeddedLiveEvents
    reader: InMemoryMetricReader

    async def kept(self) -> list[LiveEvent]:
        await self.log.flush()
        return await self.log.after(0, 1000)

    def rejected_counts(self) -> dict[str, float]:
        return {
            dict(attributes)["reason"]: value for attributes, value in counter_values(self.reader, REJECTED).items()
        }


Make = Callable[..., Setup]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    opened: list[tuple[RateLimiter, EmbeddedLiveEvents]] = []

    def build(*, keys_required: bool = False, queue: Queue | None = None, keep: bool = True) -> Setup:
        limiter = RateLimiter(
            FakeRateLimitStore(), ip_limits=BucketLimits(10_000, 1_000), global_per_minute=1_000_000, clock=FakeClock()
        )
        log = EmbeddedLiveEvents(tmp_path / LIVE_EVENTS_FILE, 100)
        opened.append((limiter, log))
        reader = InMemoryMetricReader()
        service = IngestService(
            limiter,
            queue or Queue(),
            ClientKeyer(b"a test secret of 32 bytes length"),
            IngestMetrics(MeterProvider(metric_readers=[reader]).get_meter("test")),
            authenticate=Keys({SERVER_KEY: ACME}),
            keys_required=keys_required,
            live_events=log if keep else None,
            status_of=status_for,
        )
        return Setup(service, log, reader)

    yield build
    for limiter, log in opened:
        await limiter.close()
        await log.close()


def raw(body: bytes, content_type: str = "application/json") -> IngestRequest:
    return IngestRequest(body, content_type, "203.0.113.5")


async def test_a_batch_keeps_its_accepted_event_and_its_rejected_item_with_reasons(make: Make) -> None:
    setup = make()
    good = {"eventType": "page_view", "tenantId": "acme", "userId": "u1"}
    bad = {"eventType": "click", "tenantId": "acme", "eventId": "bad-1", "colour": "red"}
    outcome = await setup.service.ingest(json_request([good, bad]))

    accepted, rejected = await setup.kept()
    assert (accepted.outcome, accepted.api, accepted.status) == ("accepted", "events", 202)
    assert (accepted.tenant_id, accepted.event_type, accepted.event_id) == (
        "acme",
        "page_view",
        outcome.results[0].event_id,
    )
    assert (accepted.document() or {})["userId"] == "u1"
    assert (rejected.outcome, rejected.status, rejected.tenant_id, rejected.event_type, rejected.event_id) == (
        "rejected",
        202,
        "acme",
        "click",
        "bad-1",
    )
    assert rejected.reasons == (
        LiveEventReason("extra_forbidden", "unknown field 'colour'; put custom data in 'properties'", "colour"),
    )
    assert rejected.document() == bad
    assert setup.rejected_counts() == {"extra_forbidden": 1}


async def test_a_request_with_every_event_rejected_keeps_each_with_its_own_reasons_under_400(make: Make) -> None:
    setup = make()
    with pytest.raises(IngestError):
        await setup.service.ingest(json_request([{"tenantId": "acme"}, {"eventType": "x"}]))
    first, second = await setup.kept()
    assert (first.status, first.tenant_id, [r.code for r in first.reasons]) == (400, "acme", ["missing"])
    assert (second.status, second.tenant_id, [r.field for r in second.reasons]) == (400, None, ["tenantId"])
    assert setup.rejected_counts() == {"missing": 2}


async def test_a_body_that_does_not_parse_is_kept_as_one_entry_without_an_event(make: Make) -> None:
    setup = make()
    with pytest.raises(IngestError):
        await setup.service.ingest(raw(b'{"eventType": "x", "writeKey": "cs_bk_secret'))
    [kept] = await setup.kept()
    assert (kept.outcome, kept.status, kept.event, kept.tenant_id) == ("rejected", 400, None, None)
    assert [reason.code for reason in kept.reasons] == ["malformed_json"]
    assert setup.rejected_counts() == {"malformed_json": 1}


async def test_a_wrong_media_type_is_refused_as_a_whole_with_its_status(make: Make) -> None:
    setup = make()
    with pytest.raises(IngestError):
        await setup.service.ingest(raw(b"{}", "application/xml"))
    [kept] = await setup.kept()
    assert (kept.status, kept.reasons[0].code) == (415, "unsupported_media_type")


async def test_a_request_refused_as_a_whole_keeps_each_item_for_the_tenant_it_names(make: Make) -> None:
    setup = make(keys_required=True)
    items = [{"eventType": "page_view", "tenantId": "acme"}, {"eventType": "buy", "tenantId": 7}]
    with pytest.raises(IngestError):
        await setup.service.ingest(json_request(items))
    first, second = await setup.kept()
    assert (first.status, first.tenant_id, first.event_type, first.document()) == (401, "acme", "page_view", items[0])
    assert (second.tenant_id, second.event_type) == (None, "buy")
    assert [reason.code for reason in first.reasons] == ["missing_key"]
    assert first.reasons[0].field is None
    assert setup.rejected_counts() == {"missing_key": 2}


async def test_the_producers_tenant_is_kept_for_a_keyed_request(make: Make) -> None:
    setup = make(keys_required=True)
    await setup.service.ingest(json_request([{"eventType": "x"}, {"eventType": 5}], PresentedKey(SERVER_KEY, "header")))
    accepted, rejected = await setup.kept()
    assert (accepted.tenant_id, rejected.tenant_id) == ("acme", "acme")


async def test_a_queue_outage_keeps_every_item_rejected_under_503(make: Make) -> None:
    setup = make(queue=FailingQueue())
    with pytest.raises(IngestError):
        await setup.service.ingest(json_request([{"eventType": "x", "tenantId": "acme"}, {"tenantId": "acme"}]))
    valid, invalid = await setup.kept()
    assert (valid.outcome, valid.status, [r.code for r in valid.reasons]) == ("rejected", 503, ["queue_unavailable"])
    assert (invalid.status, [r.code for r in invalid.reasons]) == (503, ["missing"])
    assert setup.rejected_counts() == {"queue_unavailable": 1, "missing": 1}


async def test_the_segment_api_keeps_its_messages_under_its_own_name_and_status(make: Make) -> None:
    setup = make()
    batch = {
        "batch": [
            {"type": "track", "event": "Signed Up", "userId": "u1", "tenantId": "acme"},
            {"type": "track", "userId": "u2", "tenantId": "acme", "context": {"ip": "198.51.100.23"}},
        ],
        "writeKey": "",
    }
    await setup.service.ingest(raw(orjson.dumps(batch)), read_body=segment_body_reader(None, content_encoding=None))
    accepted, rejected = await setup.kept()
    assert (accepted.api, accepted.status, accepted.event_type) == ("segment", 200, "track")
    assert (rejected.api, rejected.status, rejected.outcome, rejected.event_type) == (
        "segment",
        200,
        "rejected",
        "track",
    )
    assert rejected.tenant_id == "acme"
    # The message as sent, its address kept as its network only.
    assert rejected.document() == {
        "type": "track",
        "userId": "u2",
        "tenantId": "acme",
        "context": {"ip": "198.51.100.0/24"},
    }


async def test_without_a_log_rejected_events_are_still_counted(make: Make) -> None:
    setup = make(keep=False)
    await setup.service.ingest(json_request([{"eventType": "x", "tenantId": "acme"}, {"tenantId": "acme"}]))
    assert await setup.kept() == []
    assert setup.rejected_counts() == {"missing": 1}


async def test_a_log_that_cannot_write_never_breaks_ingest(make: Make, tmp_path: Path) -> None:
    (tmp_path / LIVE_EVENTS_FILE).write_bytes(b"not a database" * 100)
    setup = make()
    outcome = await setup.service.ingest(json_request({"eventType": "x", "tenantId": "acme"}))
    assert outcome.accepted == 1
    await setup.log.close()  # its flush fails, logged
    outcome = await setup.service.ingest(json_request({"eventType": "x", "tenantId": "acme"}))
    assert outcome.accepted == 1
