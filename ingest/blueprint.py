"""The ingest stage's HTTP functions: `POST /api/events`, the health routes, `GET /api/openapi.json`.

Function bodies only translate: HTTP in, the use case, HTTP out (`ingest.http` holds every
status and header). Errors the use case raises become their status codes; anything
unexpected becomes a JSON 500 with no detail (the detail goes to the log).
"""

from __future__ import annotations

import logging
import time

import azure.functions as func

from ingest.errors import IngestError
from ingest.health import readiness
from ingest.http import (
    NO_STORE,
    accepted_response,
    error_response,
    ingest_request,
    internal_error_response,
    json_response,
    misconfigured_response,
    readiness_response,
    unavailable_response,
)
from ingest.openapi import openapi_document
from shared.assembly import ingest_endpoint, readiness_probes
from shared.settings import SettingsError
from shared.telemetry import invocation_span

__all__ = ["bp"]

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated


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
        return json_response(200, {"status": "healthy"}, NO_STORE)


@bp.function_name("health_ready")
@bp.route(route="health/ready", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health_ready(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Readiness: can this instance accept events? See `ingest.health` for what each check proves.

    503 when the queue or the rate-limit store cannot take writes, or the client-key secret cannot be read;
    200 `degraded` when only the event store or analytics is down (the queue absorbs that).
    The answer carries a status and a reason code per check, never error text.
    """
    with invocation_span(context, "readiness check"):
        return readiness_response(await readiness(readiness_probes))


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """`GET /api/health/ready` under its older name (the deployment's smoke test and outputs use it)."""
    with invocation_span(context, "health check"):
        return readiness_response(await readiness(readiness_probes))


@bp.function_name("health_details")
@bp.route(route="health/details", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health_details(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Readiness with each failure's error text, for operators (a function key on Azure)."""
    with invocation_span(context, "health details"):
        return readiness_response(await readiness(readiness_probes), detailed=True)


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The OpenAPI 3.1 document of this API."""
    with invocation_span(context, "openapi document"):
        return json_response(200, openapi_document())


async def _ingest(req: func.HttpRequest) -> func.HttpResponse:
    started = time.perf_counter()
    try:
        endpoint = ingest_endpoint()
    except SettingsError:
        logger.exception("ingest is misconfigured")
        return misconfigured_response()
    except OSError:
        # Building the services touches the data folder (the client-key secret, store files):
        # a full disk or a missing permission is an outage to retry, not a fault of the request.
        logger.exception("ingest could not start its services")
        return unavailable_response()
    try:
        response = accepted_response(await endpoint.use_case.ingest(ingest_request(req, endpoint.trusted_proxies)))
    except IngestError as error:
        response = error_response(error)
    except SettingsError:
        # The tenant registry is built on the first keyed request; its settings may be wrong.
        logger.exception("ingest is misconfigured")
        response = misconfigured_response()
    except Exception:
        # A fault of ours, not the client's: answered here (not left to the host) so it is
        # counted like every other answer and the caller sees no detail; the log has the traceback.
        logger.exception("ingest failed unexpectedly")
        response = internal_error_response()
    endpoint.answer_time.record(time.perf_counter() - started, {"status_code": response.status_code})
    return response
