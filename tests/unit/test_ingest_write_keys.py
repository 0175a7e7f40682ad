"""The ingest use case with write keys: where a key is read, what it admits, and in which order.

Real rate limiter over an in-memory store, an in-memory queue and an authenticator callable
standing in for the registry (its own tests are `shared/test_write_key_auth*`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ingest.credentials import PresentedKey, body_key, presented_key
from ingest.errors import ForbiddenError, RateLimitedError, UnauthorizedError, UnavailableError
from ingest.rate_limiter import RateLimiter
from ingest.service import BodyReader, IngestRequest, IngestService
from ingest.validation import FieldError, ParsedBody, Unmappable, validate_event
from shared.domain.client_identity import ClientKeyer
from shared.domain.envelope import QueueMessage
from shared.domain.events import Event
from shared.domain.ratelimit import (
    MIN_TENANT_EVENTS_PER_MINUTE,
    BucketLimits,
    tenant_bucket_key,
    tenant_idle_after,
    tenant_limits,
)
from shared.ports import TenantRegistryError
from shared.settings import SettingsError, load_settings
from shared.telemetry import IngestMetrics
from shared.write_key_auth import KeyRejectedError, Producer
from tests.unit.test_rate_limiter import FakeClock, FakeRateLimitStore

SERVER_KEY = "cs_sk_" + "a" * 16 + "b" * 32
BROWSER_KEY = "cs_bk_" + "c" * 16 + "d" * 32
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def basic(user_and_password: str) -> str:
    return "Basic " + base64.b64encode(user_and_password.encode()).decode()


# --- where a key is read from ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "query", "expected"),
    [
        (None, None, None),
        ("", None, None),
        (f"Bearer {SERVER_KEY}", None, PresentedKey(SERVER_KEY, "header")),
        (f"bearer   {SERVER_KEY} ", None, PresentedKey(SERVER_KEY, "header")),
        (basic(f"{SERVER_KEY}:"), None, PresentedKey(SERVER_KEY, "header")),
        (basic(SERVER_KEY), None, PresentedKey(SERVER_KEY, "header")),  # older Segment clients: no colon
        (None, BROWSER_KEY, PresentedKey(BROWSER_KEY, "url")),
        (f"Bearer {BROWSER_KEY}", BROWSER_KEY, PresentedKey(BROWSER_KEY, "header")),
    ],
)
def test_a_key_is_read_from_bearer_basic_or_the_url(
    authorization: str | None, query: str | None, expected: PresentedKey | None
) -> None:
    assert presented_key(authorization, query) == expected


@pytest.mark.parametrize(
    ("authorization", "query", "reason"),
    [
        (basic(f"{SERVER_KEY}:secret"), None, "empty password"),
        (basic(":"), None, "no user name"),
        ("Basic not base64!", None, "not base64"),
        ("Digest abc", None, "must be 'Bearer <key>'"),
        ("Bearer", None, "must be 'Bearer <key>'"),
        (None, SERVER_KEY, "Authorization header only"),
        (f"Bearer {SERVER_KEY}", SERVER_KEY, "Authorization header only"),  # the URL is logged all the same
        (f"Bearer {BROWSER_KEY}", "cs_bk_" + "e" * 48, "two different write keys"),
    ],
)
def test_a_malformed_header_or_a_server_key_in_the_url_is_refused_with_a_reason(
    authorization: str | None, query: str | None, reason: str
) -> None:
    with pytest.raises(UnauthorizedError) as refused:
        presented_key(authorization, query)
    assert refused.value.code == "invalid_key"
    assert reason in refused.value.message
    assert SERVER_KEY not in refused.value.message


def test_a_server_key_in_the_body_is_refused_and_a_browser_key_taken() -> None:
    assert body_key(BROWSER_KEY) == PresentedKey(BROWSER_KEY, "body")
    with pytest.raises(UnauthorizedError, match="Authorization header only"):
        body_key(SERVER_KEY, schemes=("Basic", "Bearer"))


def test_a_presented_key_never_shows_its_secret_in_its_repr() -> None:
    assert "b" * 32 not in repr(PresentedKey(SERVER_KEY, "header"))
    assert "a" * 16 in repr(PresentedKey(SERVER_KEY, "header"))


# --- the key's tenant on each event -----------------------------------------------------------


def test_an_event_without_a_tenant_takes_the_keys() -> None:
    validated = validate_event({"eventType": "click"}, received_at=NOW, measure_size=False, tenant_id="acme")
    assert isinstance(validated, Event)
    assert validated.tenant_id == "acme"


def test_an_event_naming_another_tenant_is_rejected_not_rewritten() -> None:
    validated = validate_event(
        {"eventType": "click", "tenantId": "globex"}, received_at=NOW, measure_size=False, tenant_id="acme"
    )
    assert validated == [
        FieldError(
            "tenantId", "this event belongs to tenant 'globex'; this key writes to tenant 'acme'", "tenant_mismatch"
        )
    ]


def test_an_item_another_reader_rejected_keeps_its_errors() -> None:
    errors = [FieldError("type", "no such call", "unknown_call")]
    assert validate_event(Unmappable(errors), received_at=NOW, measure_size=True, tenant_id="acme") == errors


# --- the tenant bucket ------------------------------------------------------------------------


def test_a_tenant_bucket_is_forgotten_no_later_than_a_client_is() -> None:
    # The stores sweep every entry by one bound; a tenant bucket forgotten sooner than it refills
    # from its deepest debt would forgive a tenant its debt.
    settings = load_settings({})
    for quota in (MIN_TENANT_EVENTS_PER_MINUTE, 1_000, 60_000, 10_000_000):
        assert tenant_idle_after(tenant_limits(quota), 500) <= settings.rate_limit_client_idle_seconds


def test_a_default_tenant_quota_below_one_batch_a_minute_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="CLOUDSCALE_TENANT_EVENTS_PER_MINUTE"):
        load_settings({"CLOUDSCALE_TENANT_EVENTS_PER_MINUTE": str(MIN_TENANT_EVENTS_PER_MINUTE - 1)})


def test_a_quota_below_one_batch_a_minute_counts_as_one_batch() -> None:
    assert tenant_limits(10) == BucketLimits(MIN_TENANT_EVENTS_PER_MINUTE, MIN_TENANT_EVENTS_PER_MINUTE / 60)


# --- the use case -----------------------------------------------------------------------------


class Queue:
    """An in-memory queue that records what it took."""

    def __init__(self) -> None:
        self.messages: list[QueueMessage] = []

    async def publish(self, messages: Sequence[QueueMessage]) -> None:
        self.messages.extend(messages)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Keys:
    """An authenticator over a dict of known keys; `down` makes it fail as an unreachable registry."""

    def __init__(self, known: dict[str, Producer]) -> None:
        self.known = known
        self.down = False
        self.calls = 0

    async def __call__(self, key: str) -> Producer:
        self.calls += 1
        if self.down:
            raise TenantRegistryError("registry unreachable")
        producer = self.known.get(key)
        if producer is None:
            raise KeyRejectedError("invalid_key", "the write key is not valid")
        return producer


ACME = Producer("acme", "a" * 16, "server", (), None)
SHOP = Producer("shop", "c" * 16, "browser", ("https://shop.example",), None)


@dataclass
class Setup:
    store: FakeRateLimitStore
    keys: Keys
    queue: Queue
    service: IngestService


Make = Callable[..., Setup]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    limiters: list[RateLimiter] = []

    def build(*, keys_required: bool = True, tenant_quota: int = 60_000) -> Setup:
        store = FakeRateLimitStore()
        limiter = RateLimiter(
            store, ip_limits=BucketLimits(10_000, 1_000), global_per_minute=1_000_000, clock=FakeClock()
        )
        limiters.append(limiter)
        keys = Keys({SERVER_KEY: ACME, BROWSER_KEY: SHOP})
        queue = Queue()
        metrics = IngestMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("test"))
        service = IngestService(
            limiter,
            queue,
            ClientKeyer(b"a test secret of 32 bytes length"),
            metrics,
            authenticate=keys,
            keys_required=keys_required,
            tenant_events_per_minute=tenant_quota,
        )
        return Setup(store, keys, queue, service)

    yield build
    for limiter in limiters:
        await limiter.close()


def request(body: object, key: PresentedKey | None = None, origin: str | None = None) -> IngestRequest:
    return IngestRequest(orjson.dumps(body), "application/json", "203.0.113.5", write_key=key, origin=origin)


async def test_without_a_key_a_request_is_refused_before_any_state_is_touched(make: Make) -> None:
    setup = make(keys_required=True)
    with pytest.raises(UnauthorizedError) as refused:
        await setup.service.ingest(request({"eventType": "x", "tenantId": "acme"}))
    assert refused.value.code == "missing_key"
    assert (setup.store.clients, setup.store.exchange_calls, setup.keys.calls) == ({}, 0, 0)


async def test_open_mode_takes_a_request_without_a_key_for_its_bodys_tenant(make: Make) -> None:
    setup = make(keys_required=False)
    outcome = await setup.service.ingest(request({"eventType": "x", "tenantId": "globex"}))
    assert (outcome.accepted, outcome.producer) == (1, None)
    assert not any(key.startswith("tenant/") for key in setup.store.clients)


async def test_open_mode_still_refuses_an_unknown_key(make: Make) -> None:
    setup = make(keys_required=False)
    with pytest.raises(UnauthorizedError):
        await setup.service.ingest(request({"eventType": "x"}, PresentedKey("cs_sk_" + "z" * 48, "header")))


async def test_a_keyed_request_is_charged_to_its_tenant_and_carries_its_producer(make: Make) -> None:
    setup = make()
    outcome = await setup.service.ingest(request([{"eventType": "x"}] * 3, PresentedKey(SERVER_KEY, "header")))
    assert outcome.producer == ACME
    assert setup.store.clients[tenant_bucket_key("acme")].bucket.tokens == 60_000 - 3
    assert [orjson.loads(m.body)["event"]["tenantId"] for m in setup.queue.messages] == ["acme"] * 3


async def test_a_known_key_is_refused_with_403_for_its_reason(make: Make) -> None:
    setup = make()

    async def revoked(key: str) -> Producer:
        raise KeyRejectedError("key_revoked", "write key aaaa was revoked")

    setup.service._authenticate = revoked
    with pytest.raises(ForbiddenError) as refused:
        await setup.service.ingest(request({"eventType": "x"}, PresentedKey(SERVER_KEY, "header")))
    assert refused.value.code == "key_revoked"


async def test_a_registry_outage_for_a_key_not_cached_is_a_503_to_retry(make: Make) -> None:
    setup = make()
    setup.keys.down = True
    with pytest.raises(UnavailableError) as refused:
        await setup.service.ingest(request({"eventType": "x"}, PresentedKey(SERVER_KEY, "header")))
    assert (refused.value.code, refused.value.retry_after_seconds) == ("registry_unavailable", 5)
    assert setup.queue.messages == []


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
async def test_a_browser_key_from_an_origin_it_is_not_bound_to_is_refused(make: Make, origin: str | None) -> None:
    setup = make()
    with pytest.raises(ForbiddenError) as refused:
        await setup.service.ingest(request({"eventType": "x"}, PresentedKey(BROWSER_KEY, "url"), origin))
    assert refused.value.code == "origin_not_allowed"
    # Refused before the tenant's quota was charged.
    assert tenant_bucket_key("shop") not in setup.store.clients


async def test_a_browser_key_from_its_origin_is_accepted(make: Make) -> None:
    setup = make()
    outcome = await setup.service.ingest(
        request({"eventType": "x"}, PresentedKey(BROWSER_KEY, "url"), "https://shop.example")
    )
    assert outcome.producer == SHOP


async def test_a_tenant_over_its_quota_is_refused_and_another_is_not(make: Make) -> None:
    setup = make(tenant_quota=MIN_TENANT_EVENTS_PER_MINUTE)
    setup.keys.known["cs_sk_" + "f" * 48] = Producer("globex", "f" * 16, "server", (), None)
    acme, globex = PresentedKey(SERVER_KEY, "header"), PresentedKey("cs_sk_" + "f" * 48, "header")
    await setup.service.ingest(request([{"eventType": "x"}] * MIN_TENANT_EVENTS_PER_MINUTE, acme))
    with pytest.raises(RateLimitedError) as refused:
        await setup.service.ingest(request({"eventType": "x"}, acme))
    assert (refused.value.limit, refused.value.details) == ("tenant", [{"limit": "tenant"}])
    assert refused.value.decision.policy.endswith('comment="events per tenant"')
    assert (await setup.service.ingest(request({"eventType": "x"}, globex))).accepted == 1


async def test_a_tenants_own_quota_overrides_the_default(make: Make) -> None:
    setup = make(tenant_quota=60_000)
    setup.keys.known[SERVER_KEY] = Producer("acme", "a" * 16, "server", (), 1_000)
    outcome = await setup.service.ingest(request({"eventType": "x"}, PresentedKey(SERVER_KEY, "header")))
    assert outcome.rate_limit.limit in (1_000, 10_000)  # whichever limit is closer to refusing
    assert setup.store.clients[tenant_bucket_key("acme")].bucket.tokens == 999


async def test_a_body_key_is_used_when_the_headers_have_none_and_must_match_them_otherwise(make: Make) -> None:
    setup = make()

    def with_key(key: str) -> BodyReader:
        def read(req: IngestRequest) -> ParsedBody:
            return ParsedBody([{"eventType": "x"}], is_batch=False, write_key=key)

        return read

    outcome = await setup.service.ingest(
        request({}, origin="https://shop.example"),
        read_body=with_key(BROWSER_KEY),
    )
    assert outcome.producer == SHOP
    with pytest.raises(UnauthorizedError, match="Authorization header only"):
        await setup.service.ingest(request({}), read_body=with_key(SERVER_KEY))
    with pytest.raises(UnauthorizedError, match="not the key of the Authorization header"):
        await setup.service.ingest(
            request({}, PresentedKey(SERVER_KEY, "header")),
            read_body=with_key(BROWSER_KEY),
        )
    # The same key in both places (what Segment's SDKs send) is one key.
    outcome = await setup.service.ingest(
        request({}, PresentedKey(SERVER_KEY, "header")),
        read_body=with_key(SERVER_KEY),
    )
    assert outcome.producer == ACME
