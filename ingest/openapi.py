"""The OpenAPI 3.1 document of the ingest API, generated from the pydantic models.

Security: every operation names its own (`security`): write keys (`SECURITY_SCHEMES`) on
sending and reading events, a function key on the operators' health details, none on the
public health routes and this document.

Request schemas come from `shared.domain.events.Event`; response schemas from the models
below, which describe exactly what `ingest.http` writes (a test validates real responses
against this document, so the two cannot drift apart).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from ingest.openapi_security import (
    SECURITY_SCHEMES,
    WRITE_KEY_OR_QUERY_SECURITY,
    WRITE_KEY_SECURITY,
    WWW_AUTHENTICATE,
)
from ingest.segment.openapi import SEGMENT_SCHEMAS, segment_paths
from shared.domain.events import (
    EVENT_ID_PATTERN,
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    TENANT_ID_PATTERN,
    Event,
)
from shared.domain.stored_event import StoredEvent

__all__ = ["openapi_document"]


class FieldErrorBody(BaseModel):
    field: str = Field(description="JSON path of the offending field; empty for the event as a whole.")
    message: str
    type: str = Field(description="A stable error type, e.g. missing, extra_forbidden, string_too_long.")


class AcceptedEventBody(BaseModel):
    index: int
    status: Literal["accepted"]
    # A UUID, or a text id such as a Segment messageId: as `Event.eventId` accepts it.
    event_id: str = Field(
        alias="eventId",
        max_length=63,
        pattern=f"^{EVENT_ID_PATTERN}$",
        description="The event's id: the one sent (a UUID or a text id), or a UUID made for it.",
    )


class RejectedEventBody(BaseModel):
    index: int
    status: Literal["rejected"]
    errors: list[FieldErrorBody]


class IngestResponseBody(BaseModel):
    """202: every accepted event is durably queued."""

    accepted: int
    rejected: int
    results: list[AcceptedEventBody | RejectedEventBody] = Field(description="One entry per event, in request order.")


class ErrorBody(BaseModel):
    error: str = Field(description="A stable error code, e.g. malformed_json, invalid_events, rate_limited.")
    message: str
    details: list[dict[str, Any]]


class CheckBody(BaseModel):
    """One dependency's probe, as anonymous callers see it: no error text."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["healthy", "unhealthy"]
    reason: Literal["timeout", "unavailable", "misconfigured"] | None = Field(
        default=None, description="Why the check failed; absent when it passed."
    )


class HealthBody(BaseModel):
    """Readiness: `degraded` (still 200) when only the event store or analytics is down."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, CheckBody]


class LivenessBody(BaseModel):
    """Liveness: the process answers; no dependency is called."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["healthy"]


class CheckDetailsBody(CheckBody):
    """One dependency's probe with the error text, for operators."""

    error: str | None = Field(default=None, description="The failure as the dependency reported it.")


class HealthDetailsBody(BaseModel):
    """Readiness with each failure's error text."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, CheckDetailsBody]


_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {
        "schema": {"type": "string"},
        "description": (
            "The limit that applies: quota, window in seconds and its unit as a comment, "
            '`100;w=10;comment="events per client"` (a request costs its events) or '
            '`10000;w=60;comment="requests, whole service"`.'
        ),
    },
    "RateLimit-Limit": {
        "schema": {"type": "integer"},
        "description": "Quota of the limit that applies, in its unit (see RateLimit-Policy).",
    },
    "RateLimit-Remaining": {
        "schema": {"type": "integer"},
        "description": "Units left before refusal (events per client, or requests globally).",
    },
    "RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Seconds until the limit is fully reset."},
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _unauthorized() -> dict[str, Any]:
    return _error("No write key (missing_key), or one that is malformed or unknown (invalid_key).", WWW_AUTHENTICATE)


def _forbidden(extra: str = "") -> dict[str, Any]:
    return _error(
        "A known key that may not do this: key_revoked, tenant_suspended, or a browser key from an origin it is "
        f"not bound to (origin_not_allowed){extra}."
    )


@cache
def openapi_document() -> dict[str, Any]:
    """The document served at `GET /api/openapi.json`."""
    _, schemas = models_json_schema(
        [
            (m, "validation" if m is Event else "serialization")
            for m in (Event, IngestResponseBody, ErrorBody, HealthBody, LivenessBody, HealthDetailsBody, StoredEvent)
        ],
        ref_template="#/components/schemas/{model}",
    )
    event_ref = {"$ref": "#/components/schemas/Event"}
    body_schema = {
        "oneOf": [event_ref, {"type": "array", "items": event_ref, "minItems": 1, "maxItems": MAX_BATCH_EVENTS}]
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CloudScale ingest API",
            "version": "1.0.0",
            "description": "Send user-behaviour events; each accepted event is durably queued for processing.",
        },
        "paths": {
            "/api/events": {
                "post": {
                    "operationId": "ingestEvents",
                    "summary": f"Send one event, or a batch of up to {MAX_BATCH_EVENTS}",
                    "security": WRITE_KEY_OR_QUERY_SECURITY,
                    "requestBody": {
                        "required": True,
                        "description": (
                            f"Body at most {MAX_BODY_BYTES} bytes; each event at most {MAX_EVENT_BYTES} bytes. "
                            "With a write key, `tenantId` may be left out (the key's tenant is filled in); an "
                            "event naming another tenant is rejected (`tenant_mismatch`). "
                            "Also accepted as text/plain (what navigator.sendBeacon sends), the body still JSON."
                        ),
                        # A beacon's text/plain body is the same JSON: one schema for both.
                        "content": {media: {"schema": body_schema} for media in ("application/json", "text/plain")},
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted: one result per event; accepted events are durably queued.",
                            "headers": _RATE_LIMIT_HEADERS,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/IngestResponseBody"}}
                            },
                        },
                        "400": _error("Malformed JSON, an empty batch, or every event rejected (see details)."),
                        "413": _error("Body over 1 MiB, an event over 32 KiB, or a batch over 500 events."),
                        "401": _unauthorized(),
                        "403": _forbidden(),
                        "415": _error("Content-Type is neither application/json nor text/plain."),
                        "429": _error(
                            "Rate limited, per client (events), per tenant (events a minute: `details` "
                            '`[{"limit": "tenant"}]`) or globally (requests); the request took nothing.'
                            " Or, with an empty body, no `Retry-After` and `X-FUNCTION-SCALEOUT: 1` instead of this"
                            " body and these headers: the Functions host's request queue for this instance was full"
                            " (host.json `extensions.http.maxOutstandingRequests`); retry with backoff.",
                            {**_RATE_LIMIT_HEADERS, **_RETRY_AFTER},
                        ),
                        "503": _error(
                            "The queue, the rate limiter or the tenant registry (for a key not cached) is "
                            "unavailable; nothing was accepted.",
                            _RETRY_AFTER,
                        ),
                        "500": _error(
                            "A fault of the service, never of the request; counted, details only in its log."
                        ),
                    },
                }
            },
            "/api/events/{tenantId}/{eventId}": {"get": _read_event_operation()},
            **segment_paths(_RETRY_AFTER),
            "/api/health/live": {
                "get": _health_operation(
                    "healthLive",
                    "Liveness: the process answers",
                    "LivenessBody",
                    (("200", "The process answers HTTP; no dependency was called."),),
                )
            },
            "/api/health/ready": {
                "get": _health_operation("healthReady", _READY_SUMMARY, "HealthBody", _READY_RESPONSES)
            },
            "/api/health": {
                "get": _health_operation("health", "The same as /api/health/ready", "HealthBody", _READY_RESPONSES)
            },
            "/api/health/details": {
                "get": {
                    **_health_operation(
                        "healthDetails",
                        "Readiness with each failure's error text, for operators",
                        "HealthDetailsBody",
                        _READY_RESPONSES,
                    ),
                    "security": [{"functionKey": []}],
                }
            },
        },
        "components": {"schemas": {**schemas["$defs"], **SEGMENT_SCHEMAS}, "securitySchemes": SECURITY_SCHEMES},
    }


_READY_SUMMARY = "Readiness: the queue and the rate-limit store take writes; the event store and analytics answer"
_READY_RESPONSES = (
    ("200", "Ingest can accept: `healthy`, or `degraded` when only the event store or analytics is down."),
    ("503", "The queue or the rate-limit store cannot take writes (or the settings are invalid): `unhealthy`."),
)


def _health_operation(
    operation_id: str, summary: str, schema: str, responses: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [],  # public: anyone may ask whether the service is up
        "responses": {
            status: {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
            }
            for status, description in responses
        },
    }


def _read_event_operation() -> dict[str, Any]:
    return {
        "operationId": "getEvent",
        "summary": "The stored event, enriched and scored: a server key of its tenant reads it",
        "security": WRITE_KEY_SECURITY,
        "parameters": [
            {
                "name": "tenantId",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{TENANT_ID_PATTERN}$"},
            },
            {
                "name": "eventId",
                "in": "path",
                "required": True,
                # The pattern matches UUIDs too: one description of both forms.
                "schema": {"type": "string", "maxLength": 63, "pattern": f"^{EVENT_ID_PATTERN}$"},
                "description": "A UUID or a text id (e.g. a Segment messageId), as accepted.",
            },
        ],
        "responses": {
            "200": {
                "description": "The stored document: the event as sent, plus enrichment and fraud verdict.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StoredEvent"}}},
            },
            "400": _error(
                "A malformed tenantId (invalid_tenant_id) or eventId (invalid_event_id): neither a UUID nor a text id."
            ),
            "401": _unauthorized(),
            "403": _forbidden("; or a browser key (server_key_required): browser keys only send"),
            "404": _error(
                "Not stored (yet): the process stage stores an event moments after it was accepted. Also the "
                "answer to another tenant's key, so a key never learns what another tenant holds."
            ),
            "503": _error("The event store is unavailable, or the service is misconfigured.", _RETRY_AFTER),
        },
    }
