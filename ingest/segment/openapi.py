"""The Segment-compatible API in the OpenAPI document (`ingest.openapi` adds these paths and schemas)."""

from __future__ import annotations

from typing import Any, Final

from ingest.openapi_security import WRITE_KEY_OR_QUERY_SECURITY
from ingest.segment.mapping import CALL_TYPES, DROPPED_FIELDS
from ingest.segment.reader import MAX_BATCH_BODY_BYTES, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES

__all__ = ["SEGMENT_SCHEMAS", "segment_paths"]

_TEXT_OR_NUMBER: Final = {"type": ["string", "number", "null"]}
_TIME: Final = {"type": ["string", "null"], "description": "ISO 8601 with an offset."}
_OBJECT: Final = {"type": ["object", "null"]}

SEGMENT_SCHEMAS: Final[dict[str, Any]] = {
    "SegmentMessage": {
        "type": "object",
        "description": (
            "One Segment call (README, 'Segment-compatible API', has the mapping into our event). "
            f"{', '.join(sorted(DROPPED_FIELDS))} are accepted and not stored; any other field not listed "
            "here is rejected (unknown_field)."
        ),
        "properties": {
            "type": {"enum": list(CALL_TYPES), "description": "Required in a batch; a single call's is its route."},
            "messageId": {**_TEXT_OR_NUMBER, "description": "Becomes eventId (a UUID, or 1-63 characters)."},
            "userId": _TEXT_OR_NUMBER,
            "anonymousId": _TEXT_OR_NUMBER,
            "groupId": _TEXT_OR_NUMBER,
            "previousId": _TEXT_OR_NUMBER,
            "event": {"type": ["string", "null"], "description": "A track call's event name (required there)."},
            "name": {"type": ["string", "null"], "description": "A page's or screen's name."},
            "category": {"type": ["string", "null"], "description": "A page's or screen's category."},
            "properties": _OBJECT,
            "traits": _OBJECT,
            "context": _OBJECT,
            "timestamp": _TIME,
            "originalTimestamp": _TIME,
            "sentAt": _TIME,
            "tenantId": {"type": "string", "description": "Not Segment's: checked against the key's tenant."},
            **{field: {} for field in sorted(DROPPED_FIELDS)},
        },
        "additionalProperties": False,
    },
    "SegmentBatch": {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/SegmentMessage"},
                "minItems": 1,
                "maxItems": MAX_BATCH_MESSAGES,
            },
            "sentAt": _TIME,
            "context": {"type": ["object", "null"], "description": "Merged under each message's context."},
            "integrations": {},
            "writeKey": {"type": ["string", "null"]},
            "_metadata": {},
            "timestamp": {},
        },
        "additionalProperties": False,
    },
    "SegmentSuccess": {
        "type": "object",
        "required": ["success"],
        "properties": {
            "success": {"const": True},
            "accepted": {"type": "integer", "description": "Only when some messages were rejected."},
            "rejected": {"type": "integer"},
            "errors": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/RejectedEventBody"},
                "description": "Each rejected message by its index, with field errors named by Segment's path.",
            },
        },
    },
    "SegmentError": {
        "type": "object",
        "required": ["error", "code", "message", "details"],
        "properties": {
            "error": {"type": "string"},
            "code": {"type": "string", "description": "= error: the field Segment's SDKs read."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
    },
}
"""The schemas the Segment paths reference, beside the document's own (`RejectedEventBody`)."""

_CHALLENGE: Final = 'Basic realm="cloudscale", Bearer realm="cloudscale"'
_MEDIA_TYPES: Final = ("application/json", "text/plain", "application/x-www-form-urlencoded")
"""What the API reads as JSON (`ingest.segment.reader`): rudder-sdk-node labels its JSON as a form."""
_ERROR: Final = {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentError"}}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": _ERROR, **({"headers": headers} if headers else {})}


def _operation(
    operation_id: str, summary: str, body_schema: str, limit: int, retry_after: dict[str, Any]
) -> dict[str, Any]:
    body = {"schema": {"$ref": f"#/components/schemas/{body_schema}"}}
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": (
            "Segment's HTTP Tracking API: the write key as the Basic user name (or Bearer); a browser key may "
            "also come as the body's writeKey or as `?writeKey=`. The body is JSON under any of the media types "
            "listed (rudder-sdk-node labels its JSON as a form), and may be gzip (`Content-Encoding: gzip`)."
        ),
        "security": WRITE_KEY_OR_QUERY_SECURITY,
        "requestBody": {
            "required": True,
            "description": f"At most {limit} bytes once inflated.",
            "content": {media: {**body} for media in _MEDIA_TYPES},
        },
        "responses": {
            "200": {
                "description": "The accepted messages are durably queued (and the rejected ones listed).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentSuccess"}}},
            },
            "400": _error("Not JSON of this shape, or every message rejected (see details)."),
            "401": _error(
                "No write key, or a malformed or unknown one.",
                {
                    "WWW-Authenticate": {
                        "schema": {"type": "string"},
                        "description": 'Basic realm="cloudscale", Bearer ...',
                    }
                },
            ),
            "403": _error("A revoked key, a suspended tenant, or a browser key from another origin."),
            "404": _error("No such call (`/api/v1/{call}` only)."),
            "413": _error(
                f"Over {limit} bytes inflated, a batch message over {MAX_MESSAGE_BYTES} bytes, or over "
                f"{MAX_BATCH_MESSAGES} messages."
            ),
            "415": _error("Not application/json, text/plain or application/x-www-form-urlencoded; or not gzip."),
            "429": _error("Rate limited (per client, per tenant, globally); nothing was taken.", retry_after),
            "503": _error("A dependency is unavailable; nothing was accepted.", retry_after),
            "500": _error("A fault of the service; details only in its log."),
        },
    }


def segment_paths(retry_after: dict[str, Any]) -> dict[str, Any]:
    """`/api/v1/batch` and `/api/v1/{call}` (the single calls, and analytics.js's short paths)."""
    calls = [*CALL_TYPES, *(call[0] for call in CALL_TYPES)]
    single = _operation("segmentCall", "One Segment call", "SegmentMessage", MAX_MESSAGE_BYTES, retry_after)
    single["parameters"] = [
        {
            "name": "call",
            "in": "path",
            "required": True,
            "schema": {"enum": calls},
            "description": "The call; `t`, `p`, `s`, `i`, `g`, `a` are analytics.js's short paths (`b` is batch).",
        }
    ]
    batch = _operation(
        "segmentBatch",
        "A batch of Segment calls (also at /api/v1/b)",
        "SegmentBatch",
        MAX_BATCH_BODY_BYTES,
        retry_after,
    )
    return {"/api/v1/batch": {"post": batch}, "/api/v1/{call}": {"post": single}}
