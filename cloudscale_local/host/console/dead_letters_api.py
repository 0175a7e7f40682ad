"""The dead letters, with their reasons, and replay one at a time (what `cloudscale dlq` does, over HTTP).

- `GET /dashboard/api/dead-letters`: the oldest `LIST_LIMIT`, each with its reason, description
  and message body (parsed when it is JSON);
- `POST /dashboard/api/dead-letters/{id}/replay`: put that one back on the events queue (the
  page asks for a confirmation first); 404 when it is no longer there.

Both go through the `DeadLetterBrowser` port, as `cloudscale dlq` does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
    message = dead_letter.message
    try:
        body: Any = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        body = None
    return {
        "id": dead_letter.id,
        "source": dead_letter.source,
        "messageId": dead_letter.message_id,
        "reason": dead_letter.reason,
        "description": dead_letter.description,
        "deliveryCount": dead_letter.delivery_count,
        "enqueuedAt": _iso(dead_letter.enqueued_at),
        "deadLetteredAt": _iso(dead_letter.dead_lettered_at),
        "body": body,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
