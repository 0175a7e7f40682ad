"""The ingest stage's HTTP functions: `POST /api/events`, the health routes, `GET /api/openapi.json`.

Function bodies only translate: HTTP in, the use case, HTTP out (`ingest.http` holds every
status and header). Errors the use case raises become their status codes; anything
unexpected becomes a JSON 500 with no detail (the detail goes to the log).
"""

from __future__ import annotations

import azure.functions as func

from ingest.health import readiness
from ingest.http import (
    NO_STORE,
    answer_ingest,
    json_response,
    readiness_response,
)
from ingest.openapi import openapi_document
from shared.assembly import ingest_endpoint, readiness_probes
from shared.telemetry import invocation_span

__all__ = ["bp"]


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
    return await answer_ingest(req, ingest_endpoint)
