"""The OpenAPI document served at `GET /api/openapi.json` (`ingest.openapi`).

It must be a valid OpenAPI 3.1 document, describe the event contract exactly, and quote the
same limits as the validation code.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from ingest.openapi import openapi_document
from shared.domain.events import (
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW,
    MAX_PAST_AGE,
    MAX_PROPERTIES_DEPTH,
    MAX_PROPERTIES_KEYS,
    MAX_PROPERTY_KEY_LENGTH,
    TENANT_ID_PATTERN,
)
from shared.domain.stored_event import StoredEvent

CONTRACT_FIELDS = {
    "eventType",
    "tenantId",
    "eventId",
    "correlationId",
    "timestamp",
    "userId",
    "sessionId",
    "url",
    "properties",
    "anonymousId",
    "name",
    "groupId",
    "previousId",
    "traits",
    "context",
    "originalTimestamp",
    "sentAt",
}
SEED = {"eventType": "page_view", "correlationId": "test-1", "tenantId": "acme", "url": "/home"}


@pytest.fixture
def document() -> dict[str, Any]:
    # A copy: the function caches one dict, and a test must not be able to change it for others.
    return copy.deepcopy(openapi_document())


@pytest.fixture
def event_schema(document: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"]["Event"]
    return schema


@pytest.fixture
def ingest(document: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"]["/api/events"]["post"]
    return operation


@pytest.fixture
def request_validator(document: dict[str, Any], ingest: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator for request bodies, resolving refs into the document's components."""
    body_schema = ingest["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({"components": document["components"], **body_schema})


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"

    OpenAPIV31SpecValidator(document).validate()


def test_the_document_is_stable_across_calls() -> None:
    assert openapi_document() == openapi_document()


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    schemas = document["components"]["schemas"]
    for ref in refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_the_event_schema_lists_the_contract_fields_and_forbids_others(event_schema: dict[str, Any]) -> None:
    assert set(event_schema["properties"]) == CONTRACT_FIELDS
    assert sorted(event_schema["required"]) == ["eventType", "tenantId"]
    assert event_schema["additionalProperties"] is False


def test_the_event_schema_quotes_the_string_limits(event_schema: dict[str, Any]) -> None:
    def string_schema(field: str) -> dict[str, Any]:
        schema: dict[str, Any] = event_schema["properties"][field]
        options = schema.get("anyOf", [schema])
        [string] = [option for option in options if option.get("type") == "string"]
        assert isinstance(string, dict)
        return string

    bounded = ["eventType", "tenantId", "correlationId", "userId", "sessionId", "url"]
    limits = {field: string_schema(field)["maxLength"] for field in bounded}
    assert limits == {
        "eventType": 64,
        "tenantId": 64,
        "correlationId": 128,
        "userId": 128,
        "sessionId": 128,
        "url": 2048,
    }
    assert string_schema("eventId")["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"
    assert string_schema("timestamp")["format"] == "date-time"
    assert string_schema("tenantId")["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def test_the_documented_limits_match_the_constants(ingest: dict[str, Any], event_schema: dict[str, Any]) -> None:
    body = ingest["requestBody"]
    [_, batch] = body["content"]["application/json"]["schema"]["oneOf"]
    assert (batch["minItems"], batch["maxItems"]) == (1, MAX_BATCH_EVENTS)
    assert str(MAX_BATCH_EVENTS) in ingest["summary"]
    assert f"at most {MAX_BODY_BYTES} bytes" in body["description"]
    assert f"at most {MAX_EVENT_BYTES} bytes" in body["description"]

    too_large = ingest["responses"]["413"]["description"]
    assert f"{MAX_BODY_BYTES // (1024 * 1024)} MiB" in too_large
    assert f"{MAX_EVENT_BYTES // 1024} KiB" in too_large
    assert f"{MAX_BATCH_EVENTS} events" in too_large

    properties = event_schema["properties"]["properties"]["description"]
    assert f"at most {MAX_PROPERTIES_KEYS} keys" in properties
    assert f"at most {MAX_PROPERTIES_DEPTH} deep" in properties
    assert f"at most {MAX_PROPERTY_KEY_LENGTH} characters" in properties

    timestamp = event_schema["properties"]["timestamp"]["description"]
    assert f"{int(MAX_FUTURE_SKEW.total_seconds() // 3600)} h ahead" in timestamp
    assert f"{MAX_PAST_AGE.days} days old" in timestamp


def test_the_seed_example_and_a_batch_of_it_fit_the_request_schema(request_validator: Draft202012Validator) -> None:
    request_validator.validate(SEED)
    request_validator.validate([SEED] * MAX_BATCH_EVENTS)


@pytest.mark.parametrize(
    "body",
    [
        {**SEED, "price": 1},
        {"eventType": "page_view"},
        {**SEED, "tenantId": "a" * 65},
        {**SEED, "tenantId": "-acme"},
        [],
        [SEED] * (MAX_BATCH_EVENTS + 1),
    ],
    ids=["unknown-field", "missing-tenant", "tenant-too-long", "tenant-pattern", "empty-batch", "batch-too-long"],
)
def test_bodies_the_api_rejects_do_not_fit_the_request_schema(
    request_validator: Draft202012Validator, body: Any
) -> None:
    assert not request_validator.is_valid(body)


def test_the_ingest_responses_are_documented(ingest: dict[str, Any]) -> None:
    responses = ingest["responses"]

    assert set(responses) == {"202", "400", "401", "403", "413", "415", "429", "500", "503"}
    assert set(responses["429"]["headers"]) == {
        "RateLimit-Policy",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Retry-After",
    }
    assert "Retry-After" in responses["503"]["headers"]
    assert set(responses["202"]["headers"]) == {
        "RateLimit-Policy",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    }


def test_the_accepted_response_schema_uses_the_contract_names(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    assert set(schemas["IngestResponseBody"]["required"]) == {"accepted", "rejected", "results"}
    assert "eventId" in schemas["AcceptedEventBody"]["properties"]
    assert set(schemas["FieldErrorBody"]["properties"]) == {"field", "message", "type"}


@pytest.fixture
def read_event(document: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"]["/api/events/{tenantId}/{eventId}"]["get"]
    return operation


def test_the_read_route_is_documented_with_its_answers(read_event: dict[str, Any]) -> None:
    assert set(read_event["responses"]) == {"200", "400", "401", "403", "404", "503"}
    assert read_event["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StoredEvent"
    }
    assert "Retry-After" in read_event["responses"]["503"]["headers"]
    assert {parameter["name"]: parameter["in"] for parameter in read_event["parameters"]} == {
        "tenantId": "path",
        "eventId": "path",
    }
    assert read_event["security"] == [{"writeKeyBearer": []}, {"writeKeyBasic": []}]


def test_the_read_routes_tenant_pattern_is_the_routes_own(read_event: dict[str, Any]) -> None:
    (tenant,) = [parameter for parameter in read_event["parameters"] if parameter["name"] == "tenantId"]

    # Anchored for ECMA-262, the document's regex dialect, where `$` is the end of the text
    # (Python's `$` would also pass a trailing newline: the route itself uses fullmatch).
    assert tenant["schema"]["pattern"] == f"^{TENANT_ID_PATTERN}$"
    validator = Draft202012Validator(tenant["schema"])
    assert validator.is_valid("acme-1.eu_west")
    for refused in ("", "-acme", "a" * 65, "ac me"):
        assert not validator.is_valid(refused), refused


def test_a_stored_document_fits_the_documented_200(document: dict[str, Any]) -> None:
    stored = StoredEvent.from_document(
        {
            "id": "1f0c0000-0000-4000-8000-000000000001",
            "eventId": "1f0c0000-0000-4000-8000-000000000001",
            "tenantId": "acme",
            "eventType": "page_view",
            "timestamp": "2026-01-31T12:00:00Z",
            "url": "/home",
            "properties": {"cart": {"items": [1, 2]}},
            "enrichment": {
                "clientNetwork": "203.0.113.0/24",
                "userAgent": "curl/8.5.0",
                "agent": {"browser": "curl", "isBot": False},
                "receivedAt": "2026-01-31T12:00:00Z",
                "processedAt": "2026-01-31T12:00:01Z",
                "queueLatencyMs": 1000.0,
            },
            "fraud": {
                "score": 0.8,
                "suspicious": True,
                "reasons": [{"rule": "ip-velocity", "code": "VELOCITY_IP_MINUTE", "weight": 0.8, "description": "x"}],
            },
        }
    )
    schemas = document["components"]["schemas"]
    validator = Draft202012Validator({**schemas["StoredEvent"], "components": {"schemas": schemas}})

    validator.validate(stored.to_document())
    assert not validator.is_valid({**stored.to_document(), "unexpected": 1})


def _health_validator(schema_name: str) -> Draft202012Validator:
    schemas = openapi_document()["components"]["schemas"]
    return Draft202012Validator({**schemas[schema_name], "components": {"schemas": schemas}})


def test_the_health_schema_describes_degraded_and_refuses_error_text() -> None:
    anonymous = _health_validator("HealthBody")
    degraded: dict[str, Any] = {
        "status": "degraded",
        "checks": {"queue": {"status": "healthy"}, "analytics": {"status": "unhealthy", "reason": "timeout"}},
    }

    assert anonymous.is_valid(degraded)
    leaking = copy.deepcopy(degraded)
    leaking["checks"]["analytics"]["error"] = "could not open /srv/data/analytics.sqlite3"
    assert not anonymous.is_valid(leaking), "anonymous answers carry no error text"
    assert _health_validator("HealthDetailsBody").is_valid(leaking)


def test_every_health_route_is_documented_and_details_need_a_key() -> None:
    paths = openapi_document()["paths"]

    assert {"/api/health", "/api/health/live", "/api/health/ready", "/api/health/details"} <= set(paths)
    assert paths["/api/health/details"]["get"]["security"] == [{"functionKey": []}]
    assert paths["/api/health/ready"]["get"]["security"] == []  # public


def test_every_operation_names_its_security(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "security" in operation, f"{method} {path} names no security"
            for requirement in operation["security"]:
                assert set(requirement) <= set(schemes), f"{method} {path}: {requirement}"


def test_sending_and_reading_events_take_a_write_key_as_bearer_or_basic_user_name(
    document: dict[str, Any], ingest: dict[str, Any]
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["writeKeyBearer"] == {**schemes["writeKeyBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["writeKeyBasic"] == {**schemes["writeKeyBasic"], "type": "http", "scheme": "basic"}
    assert (schemes["writeKeyQuery"]["in"], schemes["writeKeyQuery"]["name"]) == ("query", "writeKey")
    read = document["paths"]["/api/events/{tenantId}/{eventId}"]["get"]
    assert {"writeKeyBearer": []} in ingest["security"]
    assert {"writeKeyBasic": []} in ingest["security"]
    assert {"writeKeyQuery": []} in ingest["security"]
    assert read["security"] == [{"writeKeyBearer": []}, {"writeKeyBasic": []}]  # server keys: never in a URL
    for operation in (ingest, read):
        assert {"401", "403"} <= set(operation["responses"])
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert "tenant" in ingest["responses"]["429"]["description"]


def test_the_segment_api_is_documented_with_its_limits_and_a_basic_challenge(document: dict[str, Any]) -> None:
    from ingest.segment.reader import MAX_BATCH_BODY_BYTES, MAX_MESSAGE_BYTES
    from ingest.segment_blueprint import CALLS

    batch = document["paths"]["/api/v1/batch"]["post"]
    single = document["paths"]["/api/v1/{call}"]["post"]
    [call] = single["parameters"]

    assert set(call["schema"]["enum"]) == set(CALLS) - {"batch", "b"}
    assert str(MAX_BATCH_BODY_BYTES) in batch["requestBody"]["description"]
    assert str(MAX_MESSAGE_BYTES) in single["requestBody"]["description"]
    for operation in (batch, single):
        assert {"writeKeyBasic": []} in operation["security"]
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["description"].startswith("Basic")
        assert "code" in document["components"]["schemas"]["SegmentError"]["required"]


def test_post_events_documents_the_text_plain_body_a_beacon_sends(document: dict[str, Any]) -> None:
    content = document["paths"]["/api/events"]["post"]["requestBody"]["content"]
    assert sorted(content) == ["application/json", "text/plain"]
    assert content["text/plain"] == content["application/json"]


@pytest.mark.parametrize("path", ["/api/v1/batch", "/api/v1/{call}"])
def test_the_segment_api_documents_every_media_type_it_takes_and_the_key_in_the_url(
    document: dict[str, Any], path: str
) -> None:
    operation = document["paths"][path]["post"]
    assert sorted(operation["requestBody"]["content"]) == [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
    ]
    assert {"writeKeyQuery": []} in operation["security"]
