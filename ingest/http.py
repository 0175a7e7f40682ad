"""The ingest stage's HTTP edge: requests into the use case's terms, its outcomes into responses.

Every status code and header of the ingest API is decided here: the use case (`ingest.service`)
returns an outcome or raises an `IngestError`, the health policy (`ingest.health`) returns a
report, and this module maps them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import azure.functions as func
from opentelemetry import trace
from opentelemetry.metrics import Histogram

from ingest.client_ip import IpNetwork, client_ip
from ingest.credentials import presented_key
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
from ingest.health import HealthReport
from ingest.rate_limiter import RateLimitDecision
from ingest.service import BodyReader, IngestOutcome, IngestRequest, IngestService
from shared.http import error_response as api_error_response
from shared.http import json_response
from shared.settings import SettingsError

__all__ = [
    "NO_STORE",
    "REALM",
    "IngestEndpoint",
    "accepted_response",
    "answer_ingest",
    "error_response",
    "ingest_request",
    "internal_error_response",
    "json_response",
    "misconfigured_response",
    "rate_limit_headers",
    "readiness_response",
    "status_for",
    "unavailable_response",
    "www_authenticate",
]

logger = logging.getLogger(__name__)

NO_STORE: Final = {"Cache-Control": "no-store"}

REALM: Final = "cloudscale"
"""The realm every `WWW-Authenticate` challenge names."""

_STATUS: Final[dict[type[IngestError], int]] = {
    UnsupportedMediaTypeError: 415,
    PayloadTooLargeError: 413,
    MalformedJsonError: 400,
    InvalidEventsError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    RateLimitedError: 429,
    UnavailableError: 503,
}


@dataclass(frozen=True, slots=True)
class IngestEndpoint:
    """What `POST /api/events` runs: the use case, and what only the HTTP edge needs around it."""

    use_case: IngestService
    trusted_proxies: Sequence[IpNetwork]
    """Proxies whose `X-Forwarded-For` entries are believed (`ingest.client_ip`)."""
    answer_time: Histogram
    """`cloudscale_ingestion_duration_seconds`: labelled by status code, which only this edge knows."""


def ingest_request(req: func.HttpRequest, trusted_proxies: Sequence[IpNetwork]) -> IngestRequest:
    """What the use case needs from the request.

    Not the `traceparent` header: the host's request activity continues it already, and the
    function runs under that activity (`shared.telemetry.invocation_span`). Reading it here
    again would make the app's spans siblings of the host's request instead of its children.

    `Authorization` and `?writeKey=` become the presented key (`ingest.credentials`), which
    raises `UnauthorizedError` for a malformed header or a server key in the URL. The key is
    kept in the request only: never logged, never in a span.
    """
    headers = req.headers
    return IngestRequest(
        body=req.get_body(),
        content_type=headers.get("content-type"),
        client_ip=client_ip(headers.get("x-forwarded-for"), trusted_proxies),
        user_agent=headers.get("user-agent"),
        write_key=presented_key(headers.get("authorization"), req.params.get("writeKey")),
        origin=headers.get("origin"),
    )


def rate_limit_headers(decision: RateLimitDecision) -> dict[str, str]:
    """The `RateLimit-*` headers (IETF draft), plus `Retry-After` when refused.

    The policy's comment names the unit: the per-client limit counts events, the global one
    requests.
    """
    headers = {
        "RateLimit-Policy": decision.policy,
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_seconds),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_seconds)
    return headers


def accepted_response(outcome: IngestOutcome) -> func.HttpResponse:
    """202: the accepted events are durably queued; one result per event."""
    body = {
        "accepted": outcome.accepted,
        "rejected": outcome.rejected,
        "results": [result.to_dict() for result in outcome.results],
    }
    return json_response(202, body, rate_limit_headers(outcome.rate_limit))


def status_for(error: IngestError) -> int:
    """The HTTP status of a failed request (400 for an error this table does not name)."""
    for kind in type(error).__mro__:
        if kind in _STATUS:
            return _STATUS[kind]
    return 400


def error_response(error: IngestError, *, challenge: Sequence[str] | None = None) -> func.HttpResponse:
    """The API's error shape `{error, message, details}` under the error's status and headers.

    `challenge`: the schemes a 401's `WWW-Authenticate` names, when the endpoint's differ from
    the error's own (the Segment-compatible API challenges with `Basic` too).
    """
    body = {"error": error.code, "message": error.message, "details": error.details}
    headers = _headers(error)
    if challenge is not None and isinstance(error, UnauthorizedError):
        headers["WWW-Authenticate"] = www_authenticate(challenge)
    return json_response(status_for(error), body, headers)


def www_authenticate(schemes: Sequence[str]) -> str:
    """The challenges of a 401, one per scheme: `Bearer realm="cloudscale"` (RFC 6750, RFC 7617)."""
    return ", ".join(f'{scheme} realm="{REALM}"' for scheme in schemes)


def _headers(error: IngestError) -> dict[str, str]:
    if isinstance(error, UnauthorizedError):
        return {"WWW-Authenticate": www_authenticate(error.schemes)}
    if isinstance(error, RateLimitedError):
        return rate_limit_headers(error.decision)
    if isinstance(error, InvalidEventsError):
        return rate_limit_headers(error.rate_limit)
    if isinstance(error, UnavailableError):
        return {"Retry-After": str(error.retry_after_seconds)}
    return {}


def internal_error_response() -> func.HttpResponse:
    """500 for a fault of ours, with no detail (the log has it)."""
    return api_error_response(500, "internal_error", "the request failed unexpectedly; retry later")


def misconfigured_response() -> func.HttpResponse:
    """503 while the app's settings are invalid: an operator must act, so retry in a minute."""
    return api_error_response(503, "misconfigured", "the service is misconfigured; see its log", retry_after=60)


def unavailable_response() -> func.HttpResponse:
    """503 when the stage cannot start its services (a full disk, a missing permission): retry soon."""
    return api_error_response(
        503, "unavailable", "the service cannot accept events right now; retry later", retry_after=5
    )


def _record_outcome(outcome: IngestOutcome) -> None:
    """Put the request's tenant and event counts on the invocation's span (Application Insights shows
    them; the local host prints them in the invocation's line).

    The tenant is the producer's; in open mode (no key) the tenant(s) the accepted events name.
    """
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("cloudscale.events.accepted", outcome.accepted)
    span.set_attribute("cloudscale.events.rejected", outcome.rejected)
    if outcome.producer is not None:
        span.set_attribute("cloudscale.tenant_id", outcome.producer.tenant_id)
        return
    tenants = outcome.tenants
    if tenants:
        shown = sorted(tenants)
        span.set_attribute(
            "cloudscale.tenant_id", ",".join(shown[:3]) + (f",+{len(shown) - 3}" if len(shown) > 3 else "")
        )


def _record_refusal(error: IngestError) -> None:
    """Put the counts of a refused request on the invocation's span: none accepted, and the rejected
    events when each was rejected on its own (the tenant, when a key proved it, is there already)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("cloudscale.events.accepted", 0)
    if isinstance(error, InvalidEventsError):
        span.set_attribute("cloudscale.events.rejected", len(error.details))


def readiness_response(report: HealthReport, *, detailed: bool = False) -> func.HttpResponse:
    """200 while ingest can accept (`healthy` or `degraded`), 503 when not; never cached.

    `detailed` adds each failure's error text: for operators only.
    """
    body = report.detailed() if detailed else report.public()
    return json_response(200 if report.ready else 503, body, NO_STORE)


async def answer_ingest(
    req: func.HttpRequest,
    endpoint: Callable[[], IngestEndpoint],
    *,
    body_reader: Callable[[], BodyReader | None] = lambda: None,
    accepted: Callable[[IngestOutcome], func.HttpResponse] = accepted_response,
    refused: Callable[[IngestError], func.HttpResponse] = error_response,
) -> func.HttpResponse:
    """Run the ingest use case for one request and answer it: what both ingest APIs do.

    `endpoint` gives the use case (built on first use), `body_reader` the reader of the API's
    body (None: our own JSON), `accepted` and `refused` the API's answers. Errors of the
    request become their 4xx, an outage or a misconfiguration a 503, anything unexpected a 500
    with no detail (the log has it); every answer is timed into
    `cloudscale_ingestion_duration_seconds` by its status code. The current span (the function's)
    gets the tenant and the events accepted and rejected (`cloudscale.tenant_id`,
    `cloudscale.events.accepted`, `cloudscale.events.rejected`).
    """
    started = time.perf_counter()
    try:
        built = endpoint()
    except SettingsError:
        logger.exception("ingest is misconfigured")
        return misconfigured_response()
    except OSError:
        # Building the services touches the data folder (the client-key secret, store files):
        # a full disk or a missing permission is an outage to retry, not a fault of the request.
        logger.exception("ingest could not start its services")
        return unavailable_response()
    try:
        request = ingest_request(req, built.trusted_proxies)
        outcome = await built.use_case.ingest(request, read_body=body_reader())
        _record_outcome(outcome)
        response = accepted(outcome)
    except IngestError as error:
        _record_refusal(error)
        response = refused(error)
    except SettingsError:
        # The tenant registry is built on the first keyed request; its settings may be wrong.
        logger.exception("ingest is misconfigured")
        response = misconfigured_response()
    except Exception:
        # A fault of ours, not the client's: answered here (not left to the host) so it is
        # counted like every other answer and the caller sees no detail; the log has the traceback.
        logger.exception("ingest failed unexpectedly")
        response = internal_error_response()
    built.answer_time.record(time.perf_counter() - started, {"status_code": response.status_code})
    return response
