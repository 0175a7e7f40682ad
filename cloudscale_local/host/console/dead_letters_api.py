"""The dead letters, with their reasons, and replay one at a time (what `cloudscale dlq` does, over HTTP).

- `GET /dashboard/api/dead-letters`: the oldest `LIST_LIMIT`, each with its reason, description
  and message body (parsed when it is JSON);
- `POST /dashboard/api/dead-letters/{id}/replay`: put that one back on the events queue (the
  page asks for a confirmation first); 404 when it is no longer there.

Both go through the `DeadLetterBrowser` port, as `cloudscale dlq` does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudscale_local.dead_letter_view import dead_letter_summary, parsed_body
from cloudscale_local.host.console.live_api import error
from cloudscale_local.host.console.sources import ConsoleSources
from shared.ports import DeadLetter, PortError

__all__ = ["LIST_LIMIT", "dead_letter_routes"]

LIST_LIMIT = 100


def dead_letter_routes(sources: ConsoleSources) -> list[Route]:
    """The routes above, over `sources`."""

    async def listed(request: Request) -> Response:
        try:
            dead_letters = await sources.dead_letters().list(LIST_LIMIT)
        except PortError as exc:
            return error(503, "unavailable", str(exc))
        return JSONResponse({"deadLetters": [_to_dict(dead_letter) for dead_letter in dead_letters]})

    async def replay(request: Request) -> Response:
        dead_letter_id = request.path_params["dead_letter_id"]
        try:
            result = await sources.dead_letters().replay([dead_letter_id])
        except PortError as exc:
            return error(503, "unavailable", str(exc))
        if not result.replayed:
            return error(404, "not_found", f"dead letter {dead_letter_id} is not there (already replayed?)")
        return JSONResponse({"replayed": [dead_letter.id for dead_letter in result.replayed]})

    return [
        Route("/dashboard/api/dead-letters", listed, methods=["GET"]),
        Route("/dashboard/api/dead-letters/{dead_letter_id:str}/replay", replay, methods=["POST"]),
    ]


def _to_dict(dead_letter: DeadLetter) -> dict[str, Any]:
    return {**dead_letter_summary(dead_letter), "body": parsed_body(dead_letter)}
