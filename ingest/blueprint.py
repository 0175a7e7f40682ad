"""The ingest stage's HTTP functions: `POST /api/events`, the health routes, `GET /api/openapi.json`.

Function bodies only translate: HTTP in, the use case, HTTP out. Errors the use case
raises become their status codes; anything unexpected becomes a JSON 500 with no detail
(the detail goes to the log).
"""

from __future__ import annotations

import logging
import time

import azure.functions as func

from ingest.errors import IngestError, RateLimitedError
from ingest.health import HealthReport, check_readiness, misconfigured_report
from ingest.http import accepted_response, error_response, ingest_request, json_response
from ingest.openapi import openapi_document
from ingest.wiring import ingest_services
from shared.bootstrap import get_container
from shared.settings import SettingsError
from shared.telemetry import invocation_span

__all__ = ["bp"]

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated

_NO_STORE = {"Cache-Control": "no-store"}


@bp.function_name("ingest_events")
@bp.route(route="events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def ingest_events(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Validate, rate-limit and queue one event or a batch."""
    with invocation_span(context, "ingest events"):
        return await _ingest(req)


@bp.function_name("health_live")
@bp.route(route="health/live", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health_live(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Liveness: the process answers HTTP. Calls no dependency, so an outage never restarts it."""
    with invocation_span(context, "liveness check"):
        return json_response(200, {"status": "healthy"}, _NO_STORE)


@bp.function_name("health_ready")
@bp.route(route="health/ready", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health_ready(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Readiness: can this instance accept events? See `ingest.health` for what each check proves.

    503 when a dependency ingest needs (the queue, the rate-limit store) cannot take writes;
    200 `degraded` when only the event store or analytics is down (the queue absorbs that).
    The answer carries a status and a reason code per check, never error text.
    """
    with invocation_span(context, "readiness check"):
        report = await _readiness()
        return json_response(report.status_code, report.public(), _NO_STORE)


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """`GET /api/health/ready` under its older name (the deployment's smoke test and outputs use it)."""
    with invocation_span(context, "health check"):
        report = await _readiness()
        return json_response(report.status_code, report.public(), _NO_STORE)


@bp.function_name("health_details")
@bp.route(route="health/details", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health_details(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Readiness with each failure's error text, for operators (a function key on Azure)."""
    with invocation_span(context, "health details"):
        report = await _readiness()
        return json_response(report.status_code, report.detailed(), _NO_STORE)


async def _readiness() -> HealthReport:
    try:
        container = get_container()
    except SettingsError:
        logger.exception("the app is misconfigured")
        return misconfigured_report()
    return await check_readiness(container)


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
    except OSError:
        # Building the services touches the data folder (the client-key secret, store files):
        # a full disk or a missing permission is an outage to retry, not a fault of the request.
        logger.exception("ingest could not start its services")
        return json_response(
            503,
            {
                "error": "unavailable",
                "message": "the service cannot accept events right now; retry later",
                "details": [],
            },
            {"Retry-After": "5"},
        )
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
