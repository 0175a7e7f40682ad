"""The Segment-compatible API: `POST /api/v1/{batch,track,page,screen,identify,group,alias}`.

Segment's SDKs send here unchanged once their host is ours (README, "Segment-compatible
API"). One function serves every call, by its route's last segment; analytics.js's short paths
(`/v1/b`, `/v1/t`, ...) are the same calls. The body is read by `ingest.segment.reader`
(gzip, Segment's limits, the mapping into our events) and then goes through the same use case
as `POST /api/events`: the write key (HTTP Basic with the key as user name, as Segment's SDKs
send it, or Bearer), the limits, validation, durable queueing.

Answers: 200 `{"success": true}` once the accepted events are durably queued (Segment's
answer, and rudder-sdk-python takes nothing else as success), with the rejected messages
listed beside it when some were; 400 when every message was rejected or the body is not
JSON; 401 (challenging `Basic`), 403, 413, 415, 429 and 503 as on our own API.
"""

from __future__ import annotations

from typing import Final

import azure.functions as func
import orjson

from ingest.errors import IngestError, UnauthorizedError
from ingest.http import (
    answer_ingest,
    error_response,
    json_response,
    rate_limit_headers,
)
from ingest.segment.mapping import CallType
from ingest.segment.reader import segment_body_reader
from ingest.service import IngestOutcome
from shared.assembly import ingest_endpoint
from shared.telemetry import invocation_span

__all__ = ["CALLS", "bp"]


CALLS: Final[dict[str, CallType | None]] = {
    "batch": None,
    "track": "track",
    "page": "page",
    "screen": "screen",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
    # analytics.js posts to its call type's first letter (and batches to `b`).
    "b": None,
    "t": "track",
    "p": "page",
    "s": "screen",
    "i": "identify",
    "g": "group",
    "a": "alias",
}
"""Each route's call: None for a batch, whose messages name their own type."""

_CHALLENGE: Final = ("Basic", "Bearer")
"""Segment's SDKs send the key as a Basic user name; Bearer works here too."""

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated


@bp.function_name("segment_api")
@bp.route(route="v1/{call}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def segment_api(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """One Segment call or a batch of them, into our events."""
    call = req.route_params.get("call", "")
    with invocation_span(context, f"segment {call}"):
        if call not in CALLS:
            message = f"no Segment call /v1/{call[:32]}; the calls are {', '.join(list(CALLS)[:7])}"
            return json_response(404, {"error": "not_found", "code": "not_found", "message": message, "details": []})
        return await _ingest(req, CALLS[call])


def success_response(outcome: IngestOutcome) -> func.HttpResponse:
    """200 `{"success": true}`; with the rejected messages, by index, when some were."""
    body: dict[str, object] = {"success": True}
    if outcome.rejected:
        body["accepted"] = outcome.accepted
        body["rejected"] = outcome.rejected
        body["errors"] = [result.to_dict() for result in outcome.results if not result.accepted]
    return json_response(200, body, rate_limit_headers(outcome.rate_limit))


def segment_error_response(error: IngestError) -> func.HttpResponse:
    """The API's error shape plus `code`; a 401 challenges Basic first, the scheme Segment's SDKs use.

    `code` (= `error`) is what Segment's SDKs read from an error body for the error they report;
    rudder-sdk-python fails with a KeyError of its own without it.
    """
    if isinstance(error, UnauthorizedError):
        error.schemes = _CHALLENGE
    response = error_response(error)
    body = orjson.loads(response.get_body())
    return json_response(response.status_code, {**body, "code": body["error"]}, dict(response.headers))


async def _ingest(req: func.HttpRequest, call_type: CallType | None) -> func.HttpResponse:
    return await answer_ingest(
        req,
        ingest_endpoint,
        body_reader=lambda: segment_body_reader(call_type, content_encoding=req.headers.get("content-encoding")),
        accepted=success_response,
        refused=segment_error_response,
    )
