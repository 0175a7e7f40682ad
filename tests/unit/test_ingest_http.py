"""The ingest HTTP edge: every status and header the API answers with, from the use case's terms."""

from __future__ import annotations

import orjson
import pytest

from ingest.errors import (
    ForbiddenError,
    IngestError,
    InvalidEventsError,
    MalformedJsonError,
    PayloadTooLargeError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from ingest.health import CheckResult, HealthReport, ReadinessProbes, readiness
from ingest.http import error_response, readiness_response, status_for
from ingest.rate_limiter import RateLimitDecision
from shared.settings import SettingsError

ADMITTED = RateLimitDecision(
    allowed=True,
    refused_by=None,
    limit=100,
    remaining=99,
    reset_seconds=1,
    retry_after_seconds=0,
    requests_last_minute=1,
    policy='100;w=10;comment="events per client"',
)
REFUSED = RateLimitDecision(
    allowed=False,
    refused_by="global",
    limit=10_000,
    remaining=0,
    reset_seconds=3,
    retry_after_seconds=3,
    requests_last_minute=0,
    policy='10000;w=60;comment="requests, whole service"',
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnsupportedMediaTypeError("x"), 415),
        (PayloadTooLargeError("x"), 413),
        (MalformedJsonError("x"), 400),
        (InvalidEventsError("x", details=[], rate_limit=ADMITTED), 400),
        (RateLimitedError("x", decision=REFUSED), 429),
        (UnavailableError("x", code="queue_unavailable", retry_after_seconds=5), 503),
        (UnauthorizedError("x"), 401),
        (ForbiddenError("x", code="key_revoked"), 403),
        (IngestError("x"), 400),
    ],
)
def test_each_error_has_its_status(error: IngestError, status: int) -> None:
    assert status_for(error) == status
    assert error_response(error).status_code == status


def test_a_refused_request_carries_the_rate_limit_headers_and_its_retry_after() -> None:
    response = error_response(RateLimitedError("slow down", decision=REFUSED))

    assert response.headers["RateLimit-Limit"] == "10000"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["Retry-After"] == "3"
    assert orjson.loads(response.get_body()) == {
        "error": "rate_limited",
        "message": "slow down",
        "details": [{"limit": "global"}],
    }


def test_a_request_whose_events_were_all_rejected_still_reports_its_limits() -> None:
    response = error_response(InvalidEventsError("no event was accepted", details=[], rate_limit=ADMITTED))

    assert response.headers["RateLimit-Remaining"] == "99"
    assert "Retry-After" not in response.headers


def test_an_outage_tells_when_to_retry() -> None:
    response = error_response(UnavailableError("down", code="queue_unavailable", retry_after_seconds=5))

    assert response.headers["Retry-After"] == "5"
    assert orjson.loads(response.get_body())["error"] == "queue_unavailable"


@pytest.mark.parametrize(
    ("failed", "status"),
    [((), 200), (("analytics",), 200), (("queue",), 503), (("clientKey",), 503)],
)
def test_readiness_is_503_only_when_ingest_cannot_accept(failed: tuple[str, ...], status: int) -> None:
    names = ("queue", "rateLimitStore", "eventStore", "analytics", "clientKey")
    report = HealthReport(
        {name: CheckResult(False, "unavailable", "down") if name in failed else CheckResult(True) for name in names}
    )

    response = readiness_response(report)

    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert b"down" not in response.get_body(), "no error text for anonymous callers"


def test_the_operators_view_has_each_failures_error_text() -> None:
    report = HealthReport({"queue": CheckResult(False, "unavailable", "queue file is locked")})

    assert b"queue file is locked" in readiness_response(report, detailed=True).get_body()


async def test_settings_that_cannot_build_the_probes_make_the_instance_unready() -> None:
    def unbuildable() -> ReadinessProbes:
        raise SettingsError("CLOUDSCALE_BACKEND is invalid")

    report = await readiness(unbuildable)

    assert not report.ready
    assert report.public() == {
        "status": "unhealthy",
        "checks": {"settings": {"status": "unhealthy", "reason": "misconfigured"}},
    }


def test_a_401_challenges_with_the_errors_schemes_or_the_endpoints() -> None:
    own = error_response(UnauthorizedError("no key", code="missing_key"))
    assert own.headers["WWW-Authenticate"] == 'Bearer realm="cloudscale"'
    assert orjson.loads(own.get_body()) == {"error": "missing_key", "message": "no key", "details": []}
    segment = error_response(UnauthorizedError("no key"), challenge=("Basic", "Bearer"))
    assert segment.headers["WWW-Authenticate"] == 'Basic realm="cloudscale", Bearer realm="cloudscale"'


def test_a_403_has_no_challenge() -> None:
    response = error_response(ForbiddenError("revoked", code="key_revoked"))
    assert "WWW-Authenticate" not in response.headers
    assert orjson.loads(response.get_body())["error"] == "key_revoked"
