"""`POST /api/privacy/erasures` and `GET /api/privacy/erasures/{erasureId}` over the embedded privacy store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import azure.functions as func
import orjson
import pytest

import function_app
from cloudscale_local.host.functions import HttpFunction, index_functions
from shared.bootstrap import Container, set_container
from shared.settings import load_settings

USER = "someone@example.com"


def route(name: str) -> HttpFunction:
    return next(function for function in index_functions(function_app.app).http if function.name == name)


async def create(body: object) -> func.HttpResponse:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    request = func.HttpRequest("POST", "http://127.0.0.1/api/privacy/erasures", body=content)
    return await route("create_erasure").invoke(request)


async def get(erasure_id: str) -> func.HttpResponse:
    request = func.HttpRequest(
        "GET",
        f"http://127.0.0.1/api/privacy/erasures/{erasure_id}",
        body=b"",
        route_params={"erasureId": erasure_id},
    )
    return await route("get_erasure").invoke(request)


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    installed = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(tmp_path)}))
    set_container(installed)
    try:
        yield installed
    finally:
        set_container(None)
        await installed.close()


async def test_an_erasure_is_recorded_pending_and_followed_by_its_location(container: Container) -> None:
    created = await create({"tenantId": "acme", "userId": USER})

    assert created.status_code == 202
    status = orjson.loads(created.get_body())
    assert status["status"] == "pending"
    assert status["mode"] == "suppress"
    assert created.headers["Location"] == f"/api/privacy/erasures/{status['id']}"
    assert USER.encode() not in created.get_body()
    followed = await get(status["id"])
    assert followed.status_code == 200
    assert orjson.loads(followed.get_body()) == status


async def test_asking_twice_for_the_same_subject_answers_the_same_erasure(container: Container) -> None:
    first = orjson.loads((await create({"tenantId": "acme", "userId": USER})).get_body())
    again = orjson.loads((await create({"tenantId": "acme", "userId": USER, "suppress": False})).get_body())
    other = orjson.loads((await create({"tenantId": "acme", "anonymousId": USER})).get_body())

    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert other["field"] == "anonymousId"


async def test_a_bad_request_gets_400_with_a_reason_per_field(container: Container) -> None:
    response = await create({"tenantId": "a/b", "userId": USER, "extra": 1})

    assert response.status_code == 400
    body = orjson.loads(response.get_body())
    assert body["error"] == "invalid_request"
    assert {detail["field"] for detail in body["details"]} == {"tenantId", "extra"}
    assert USER not in response.get_body().decode()
    assert (await create(b"{not json")).status_code == 400


@pytest.mark.parametrize("erasure_id", ["er_" + "x" * 20, "nope", "er_" + "x" * 21, "er_x\n"])
async def test_an_unknown_or_malformed_id_is_404(container: Container, erasure_id: str) -> None:
    response = await get(erasure_id)

    assert response.status_code == 404
    assert orjson.loads(response.get_body())["error"] == "not_found"


async def test_a_privacy_store_that_cannot_be_opened_is_503(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    installed = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(not_a_folder)}))
    set_container(installed)
    try:
        response = await create({"tenantId": "acme", "userId": USER})
    finally:
        set_container(None)
        await installed.close()

    assert response.status_code == 503
    assert orjson.loads(response.get_body())["error"] == "store_unavailable"
