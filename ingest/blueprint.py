"""The ingest stage's HTTP functions: `POST /api/events`, `GET /api/health`, `GET /api/openapi.json`.

Function bodies only translate: HTTP in, the use case, HTTP out. Errors the use case
raises become their status codes; anything unexpected becomes a JSON 500 with no detail
(the detail goes to the log).
"""

from __future__ import annotations

import asyncio
import logging
import time

import azure.functions as func

from ingest.errors import IngestError, RateLimitedError
from ingest.http import accepted_response, error_response, ingest_request, json_response
from ingest.openapi import openapi_document
from ingest.wiring import ingest_services
from shared.bootstrap import get_container
from shared.settings import SettingsError
from shared.telemetry import invocation_span

__all__ = ["bp"]

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated

HEALTH_CHECK_TIMEOUT_SECONDS = 3.0
INGEST_DEPENDENCIES = frozenset({"queue", "rateLimitStore"})
"""The checks whose failure makes ingest fail (503); the others only degrade the pipeline."""


@bp.function_name("ingest_events")
@bp.route(route="events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def ingest_events(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Validate, rate-limit and queue one event or a batch."""
    with invocation_span(context, "ingest events"):
        return await _ingest(req)


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Liveness plus a real round trip to each dependency.

    503 when a dependency ingest needs (the queue, the rate-limit store) is down. The event
    store is behind the queue: while it is down ingest still accepts (the queue absorbs the
    outage), so it reports `degraded` with 200, and a load balancer keeps sending traffic.
    """
    with invocation_span(context, "health check"):
        return await _health()


async def _health() -> func.HttpResponse:
    try:
        container = get_container()
    except SettingsError:
        logger.exception("the app is misconfigured")
        return json_response(
            503,
            {
                "status": "unhealthy",
                "checks": {"settings": {"status": "unhealthy", "error": "invalid or missing settings; see the log"}},
            },
        )
    probes = {
        "queue": container.publisher.check(),
        "rateLimitStore": container.rate_limit_store.check(),
        "eventStore": container.event_store.check(),
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(probe, HEALTH_CHECK_TIMEOUT_SECONDS) for probe in probes.values()), return_exceptions=True
    )
    checks: dict[str, dict[str, str]] = {}
    for name, result in zip(probes, results, strict=True):
        if isinstance(result, BaseException):
            logger.warning("health check %s failed: %r", name, result)
            checks[name] = {"status": "unhealthy", "error": _describe(result)}
        else:
            checks[name] = {"status": "healthy"}
    failed = {name for name, check in checks.items() if check["status"] != "healthy"}
    status = "unhealthy" if failed & INGEST_DEPENDENCIES else "degraded" if failed else "healthy"
    body = {"status": status, "checks": checks}
    return json_response(503 if status == "unhealthy" else 200, body, {"Cache-Control": "no-store"})


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The OpenAPI 3.1 document of this API."""
    with invocation_span(context, "openapi document"):
        return json_response(200, openapi_document())


async def _ingest(req: func.HttpRequest) -> func.HttpResponse:
    started = time.perf_counter()
    try:
        services = ingest_services()
    except SettingsError:
        logger.exception("ingest is misconfigured")
        return json_response(503, _misconfigured(), {"Retry-After": "60"})
    metrics = services.metrics
    try:
        outcome = await services.service.ingest(ingest_request(req, services.settings))
        response = accepted_response(outcome)
        metrics.events_ingested.add(outcome.accepted, {"outcome": "accepted"})
        if outcome.rejected:
            metrics.events_ingested.add(outcome.rejected, {"outcome": "rejected"})
    except IngestError as error:
        response = error_response(error)
        if isinstance(error, RateLimitedError):
            metrics.rate_limit_rejections.add(1, {"limit": error.limit})
    except Exception:
        # A fault of ours, not the client's: answered here (not left to the host) so it is
        # counted like every other answer and the caller sees no detail; the log has the traceback.
        logger.exception("ingest failed unexpectedly")
        response = json_response(500, _internal_error())
    metrics.ingestion_duration.record(time.perf_counter() - started, {"status_code": response.status_code})
    return response


def _internal_error() -> dict[str, object]:
    return {"error": "internal_error", "message": "the request failed unexpectedly; retry later", "details": []}


def _misconfigured() -> dict[str, object]:
    return {"error": "misconfigured", "message": "the service is misconfigured; see its log", "details": []}


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {HEALTH_CHECK_TIMEOUT_SECONDS:g} s"
    return str(error) or type(error).__name__
