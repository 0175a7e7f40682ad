"""`GET /api/events/{tenantId}/{eventId}`: what the route refuses before it reads the store."""

from __future__ import annotations

import uuid

import azure.functions as func
import orjson
import pytest

from process.blueprint import _get_event


def get(tenant_id: str, event_id: str) -> func.HttpRequest:
    return func.HttpRequest(
        "GET",
        f"http://127.0.0.1/api/events/{tenant_id}/{event_id}",
        body=b"",
        route_params={"tenantId": tenant_id, "eventId": event_id},
    )


@pytest.mark.parametrize("tenant_id", ["acme\n", "acme\r\n", "", "-acme", "a" * 65, "ac me", "acme/x"])
async def test_a_malformed_tenant_is_refused_with_400(tenant_id: str) -> None:
    response = await _get_event(get(tenant_id, str(uuid.uuid4())))

    assert response.status_code == 400
    assert orjson.loads(response.get_body())["error"] == "invalid_tenant_id"


@pytest.mark.parametrize("event_id", ["not a uuid", "", "-1234", "x" * 64])
async def test_an_event_id_that_is_neither_a_uuid_nor_a_text_id_is_refused_with_400(event_id: str) -> None:
    response = await _get_event(get("acme", event_id))

    assert response.status_code == 400
    assert orjson.loads(response.get_body())["error"] == "invalid_event_id"
