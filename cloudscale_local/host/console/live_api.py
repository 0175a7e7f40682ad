"""The kept live events as JSON (the Snowplow Micro idea) and an event's stored document.

- `GET /dashboard/api/good|bad|all?tenant=&type=&limit=`: the kept accepted, rejected or all
  events, newest first, `{"events": [LiveEvent.to_dict(), ...]}` (`limit` 1 to 1000, 100 by default);
- `POST /dashboard/api/reset`: forget them (`{"removed": n}`);
- `GET /dashboard/api/events/{tenantId}/{eventId}`: the stored document (enrichment and fraud
  result included), or 404 while the process stage has not stored it yet.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudscale_local.host.console.sources import ConsoleSources
from shared.domain.live_events import LiveEventFilter, LiveEventOutcome
from shared.ports import PortError

__all__ = ["MAX_LIMIT", "live_routes"]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_OUTCOMES: dict[str, LiveEventOutcome | None] = {"good": "accepted", "bad": "rejected", "all": None}


def live_routes(sources: ConsoleSources) -> list[Route]:
    """The routes above, over `sources`."""

    async def kept(request: Request) -> Response:
        outcome = _OUTCOMES[request.url.path.rsplit("/", 1)[1]]
        limit = _limit(request.query_params.get("limit"))
        if limit is None:
            return error(400, "bad_request", f"limit must be a whole number from 1 to {MAX_LIMIT}")
        log = sources.live_events()
        if log is None:
            return JSONResponse({"events": [], "kept": False})
        where = LiveEventFilter(
            tenant_id=request.query_params.get("tenant") or None,
            event_type=request.query_params.get("type") or None,
            outcome=outcome,
        )
        events = await log.latest(limit, where)
        return JSONResponse({"events": [event.to_dict() for event in events], "kept": True})

    async def reset(request: Request) -> Response:
        log = sources.live_events()
        removed = 0 if log is None else await log.reset()
        return JSONResponse({"removed": removed})

    async def stored(request: Request) -> Response:
        tenant_id, event_id = request.path_params["tenant_id"], request.path_params["event_id"]
        try:
            document = await sources.event_store().get(tenant_id, event_id)
        except PortError as exc:
            return error(503, "unavailable", f"the event store could not be read: {exc}")
        if document is None:
            return error(404, "not_found", "not stored yet")
        return JSONResponse(document.to_document())

    return [
        *(Route(f"/dashboard/api/{which}", kept, methods=["GET"]) for which in _OUTCOMES),
        Route("/dashboard/api/reset", reset, methods=["POST"]),
        Route("/dashboard/api/events/{tenant_id:str}/{event_id:str}", stored, methods=["GET"]),
    ]


def error(status: int, code: str, message: str) -> JSONResponse:
    """The console's error body: the same shape as the host's own (`error`, `message`)."""
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _limit(text: str | None) -> int | None:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if 1 <= value <= MAX_LIMIT else None
