"""Producers authenticate with write keys: through the local host over a real socket.

One host with keys required (`CLOUDSCALE_WRITE_KEYS=required`), a one-second key cache (the
stated revocation bound) and the smallest tenant quota, and one in open mode (the embedded
default). Tenants and keys are put into the host's registry file directly.
"""

from __future__ import annotations

import base64
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shared.domain.ratelimit import MIN_TENANT_EVENTS_PER_MINUTE
from tests.e2e.conftest import REPO, LocalHost, start_host
from tests.e2e.tenants import Registry, bearer
from tests.e2e.test_ingest_api import SEED_EXAMPLE, assert_error, new_ip
from tests.e2e.test_process_pipeline import TRUSTED_LOOPBACK, accepted_ids, cloudscale

pytestmark = pytest.mark.e2e

CACHE_SECONDS = 1.0
"""`CLOUDSCALE_WRITE_KEY_CACHE_SECONDS` of the keyed host: the bound on revocation."""


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    running = start_host(
        tmp_path_factory.mktemp("data"),
        CLOUDSCALE_WRITE_KEYS="required",
        CLOUDSCALE_WRITE_KEY_CACHE_SECONDS=str(CACHE_SECONDS),
        CLOUDSCALE_TENANT_EVENTS_PER_MINUTE=str(MIN_TENANT_EVENTS_PER_MINUTE),
        **TRUSTED_LOOPBACK,
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def registry(keyed: LocalHost) -> Registry:
    return Registry(keyed.data_dir)


def send(
    client: httpx.Client, body: Any, headers: dict[str, str] | None = None, *, params: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        "/api/events",
        content=orjson.dumps(body),
        params=params,
        headers={"Content-Type": "application/json", "X-Forwarded-For": new_ip(), **(headers or {})},
    )


def event(**fields: Any) -> dict[str, Any]:
    """The seed's example without its tenant (the key names it), with `fields` on top."""
    base = {key: value for key, value in SEED_EXAMPLE.items() if key != "tenantId"}
    return {**base, "eventId": str(uuid.uuid4()), **fields}


def read(client: httpx.Client, tenant_id: str, event_id: str, key: str | None) -> httpx.Response:
    return client.get(f"/api/events/{tenant_id}/{event_id}", headers=bearer(key) if key else {})


def wait_stored(client: httpx.Client, tenant_id: str, event_id: str, key: str, timeout: float = 10.0) -> dict[str, Any]:
    """The stored event read with `key`, polling until the process stage stored it."""
    deadline = time.monotonic() + timeout
    while True:
        response = read(client, tenant_id, event_id, key)
        if response.status_code == 200:
            document: dict[str, Any] = response.json()
            return document
        assert response.status_code == 404, response.text
        assert time.monotonic() < deadline, f"event {event_id} was not stored within {timeout} s"
        time.sleep(0.05)


def refused_within(client: httpx.Client, key: str, bound: float) -> tuple[httpx.Response, float]:
    """POST with `key` until it is refused; the refusal and how long it took. Fails after `bound` plus a margin."""
    started = time.monotonic()
    while True:
        response = send(client, event(), bearer(key))
        if response.status_code != 202:
            return response, time.monotonic() - started
        # The margin is for a loaded machine; the bound itself is asserted by the caller.
        assert time.monotonic() - started < bound + 10, "the key was still accepted long after the bound"
        time.sleep(0.05)


def test_a_request_without_a_key_is_refused_with_401_and_a_bearer_challenge(keyed: LocalHost) -> None:
    with keyed.client() as client:
        response = send(client, SEED_EXAMPLE)
    assert_error(response, 401, "missing_key")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="cloudscale"'
    assert any("write keys: required" in line for line in keyed.output), "".join(keyed.output)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer cs_sk_" + "a" * 48,  # shaped like a key, not in the registry
        "Bearer not-a-key",
        "Token abc",
        "Basic " + base64.b64encode(b"cs_sk_" + b"a" * 48 + b":a password").decode(),
        "Basic !!!",
    ],
)
def test_an_unknown_or_malformed_key_is_refused_with_401(keyed: LocalHost, authorization: str) -> None:
    with keyed.client() as client:
        response = send(client, SEED_EXAMPLE, {"Authorization": authorization})
    body = assert_error(response, 401, "invalid_key")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="cloudscale"'
    assert "cs_sk_" not in body["message"]


def test_a_server_key_in_the_url_is_refused_even_though_it_is_valid(keyed: LocalHost, registry: Registry) -> None:
    issued = registry.key(registry.tenant())
    with keyed.client() as client:
        response = send(client, event(), params={"writeKey": issued.key})
    body = assert_error(response, 401, "invalid_key")
    assert "Authorization header only" in body["message"]


def test_a_server_key_in_the_url_is_refused_even_when_the_header_repeats_it(
    keyed: LocalHost, registry: Registry
) -> None:
    issued = registry.key(registry.tenant())
    with keyed.client() as client:
        response = send(client, event(), bearer(issued.key), params={"writeKey": issued.key})
    body = assert_error(response, 401, "invalid_key")
    assert "Authorization header only" in body["message"]


def test_bearer_and_basic_keys_are_accepted_and_the_event_lands_in_the_keys_tenant(
    keyed: LocalHost, registry: Registry
) -> None:
    # GIVEN a tenant with a server key
    tenant = registry.tenant()
    issued = registry.key(tenant)
    basic = "Basic " + base64.b64encode(f"{issued.key}:".encode()).decode()
    with keyed.client() as client:
        # WHEN events without a tenantId are sent with the key as a bearer token and as Basic user name
        by_bearer = accepted_ids(send(client, event(), bearer(issued.key)))
        by_basic = accepted_ids(send(client, event(), {"Authorization": basic}))
        # THEN both are stored under the key's tenant
        for event_id in by_bearer + by_basic:
            assert wait_stored(client, tenant, event_id, issued.key)["tenantId"] == tenant


def test_an_event_naming_another_tenant_is_rejected_and_nothing_lands_in_that_tenant(
    keyed: LocalHost, registry: Registry
) -> None:
    # GIVEN tenants A and B, each with a server key
    tenant_a, tenant_b = registry.tenant(), registry.tenant()
    key_a, key_b = registry.key(tenant_a).key, registry.key(tenant_b).key
    foreign, own = event(tenantId=tenant_b), event(tenantId=tenant_a)
    with keyed.client() as client:
        # WHEN A's key sends a batch with one event for B and one for A
        response = send(client, [foreign, own], bearer(key_a))
        # THEN only A's is accepted; B's is rejected by its index with a tenant_mismatch error
        assert response.status_code == 202, response.text
        results = response.json()["results"]
        assert results[0]["status"] == "rejected"
        assert results[0]["errors"] == [
            {
                "field": "tenantId",
                "message": f"this event belongs to tenant {tenant_b!r}; this key writes to tenant {tenant_a!r}",
                "type": "tenant_mismatch",
            }
        ]
        assert results[1] == {"index": 1, "status": "accepted", "eventId": own["eventId"]}
        # AND once A's event is stored, B holds nothing under either event id
        wait_stored(client, tenant_a, own["eventId"], key_a)
        assert read(client, tenant_b, foreign["eventId"], key_b).status_code == 404
        assert read(client, tenant_b, own["eventId"], key_b).status_code == 404
        # AND a request whose every event names another tenant is a 400
        assert_error(send(client, event(tenantId=tenant_b), bearer(key_a)), 400, "invalid_events")


def test_a_key_reading_another_tenants_event_gets_the_answer_of_an_event_not_stored(
    keyed: LocalHost, registry: Registry
) -> None:
    # GIVEN B's event, stored
    tenant_a, tenant_b = registry.tenant(), registry.tenant()
    key_a, key_b = registry.key(tenant_a).key, registry.key(tenant_b).key
    browser_b = registry.key(tenant_b, "browser", ("https://shop.example",)).key
    with keyed.client() as client:
        [event_id] = accepted_ids(send(client, event(), bearer(key_b)))
        wait_stored(client, tenant_b, event_id, key_b)
        missing = str(uuid.uuid4())
        # WHEN A's key reads it THEN the answer is B's own answer for an event that is not stored
        foreign = read(client, tenant_b, event_id, key_a)
        not_stored = read(client, tenant_b, missing, key_b)
        assert foreign.status_code == not_stored.status_code == 404
        expected = {**not_stored.json(), "message": not_stored.json()["message"].replace(missing, event_id)}
        assert foreign.json() == expected
        # AND without a key it is a 401, with B's browser key a 403
        assert_error(read(client, tenant_b, event_id, None), 401, "missing_key")
        assert_error(read(client, tenant_b, event_id, browser_b), 403, "server_key_required")
    # AND an operator reads it with the CLI, without a key
    result = cloudscale(keyed, "events", "get", tenant_b, event_id)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["tenantId"] == tenant_b
    assert cloudscale(keyed, "events", "get", tenant_a, event_id).returncode == 1


def test_a_revoked_key_is_refused_with_403_within_the_cache_bound(keyed: LocalHost, registry: Registry) -> None:
    # GIVEN a key that works (and is now cached by the host)
    issued = registry.key(registry.tenant())
    with keyed.client() as client:
        accepted_ids(send(client, event(), bearer(issued.key)))
        # WHEN it is revoked
        registry.revoke(issued.record.key_id)
        # THEN it is refused as revoked, within the stated bound
        response, took = refused_within(client, issued.key, CACHE_SECONDS)
    assert_error(response, 403, "key_revoked")
    assert took <= CACHE_SECONDS + 1.0, f"refused only after {took:.2f} s"


def test_a_suspended_tenants_key_is_refused_with_403(keyed: LocalHost, registry: Registry) -> None:
    tenant = registry.tenant()
    issued = registry.key(tenant)
    registry.suspend(tenant)
    with keyed.client() as client:
        response, _ = refused_within(client, issued.key, CACHE_SECONDS)
    assert_error(response, 403, "tenant_suspended")


def test_rotation_two_live_keys_both_work_and_the_new_one_outlives_the_old(
    keyed: LocalHost, registry: Registry
) -> None:
    # GIVEN a tenant with its old key and a new one
    tenant = registry.tenant()
    old, new = registry.key(tenant), registry.key(tenant)
    with keyed.client() as client:
        # THEN both work
        accepted_ids(send(client, event(), bearer(old.key)))
        accepted_ids(send(client, event(), bearer(new.key)))
        # WHEN the old one is revoked THEN it stops working, and the new one still works
        registry.revoke(old.record.key_id)
        response, _ = refused_within(client, old.key, CACHE_SECONDS)
        assert_error(response, 403, "key_revoked")
        accepted_ids(send(client, event(), bearer(new.key)))


def test_a_tenant_over_its_quota_is_refused_while_another_tenant_is_accepted(
    keyed: LocalHost, registry: Registry
) -> None:
    # GIVEN two tenants with the smallest quota, and A has used all of it in one batch
    tenant_a, tenant_b = registry.tenant(), registry.tenant()
    key_a, key_b = registry.key(tenant_a).key, registry.key(tenant_b).key
    with keyed.client() as client:
        batch = [event() for _ in range(MIN_TENANT_EVENTS_PER_MINUTE)]
        sent_at = time.monotonic()
        assert len(accepted_ids(send(client, batch, bearer(key_a)))) == MIN_TENANT_EVENTS_PER_MINUTE
        # WHEN A sends more than its bucket can have refilled since (it refills continuously, a
        # minute's quota a minute: one event is not enough on a busy machine), from another address
        refill_per_second = MIN_TENANT_EVENTS_PER_MINUTE / 60
        more = math.ceil(refill_per_second * (time.monotonic() - sent_at)) + 1
        refused = send(client, [event() for _ in range(more)], bearer(key_a))
        # THEN it is refused by the tenant limit, with that limit's headers
        body = assert_error(refused, 429, "rate_limited")
        assert body["details"] == [{"limit": "tenant"}]
        assert refused.headers["RateLimit-Limit"] == str(MIN_TENANT_EVENTS_PER_MINUTE)
        assert int(refused.headers["RateLimit-Remaining"]) < more
        assert "events per tenant" in refused.headers["RateLimit-Policy"]
        assert int(refused.headers["Retry-After"]) >= 1
        # AND B is accepted
        accepted_ids(send(client, event(), bearer(key_b)))
        # AND the refusal is counted under its limit
        metrics = client.get("/metrics").text
    assert any(
        line.startswith("cloudscale_rate_limit_rejections_total{") and 'limit="tenant"' in line
        for line in metrics.splitlines()
    ), metrics


@pytest.fixture(scope="module")
def open_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    running = start_host(tmp_path_factory.mktemp("data"), **TRUSTED_LOOPBACK)
    yield running
    running.stop()


def test_open_mode_takes_the_seed_example_without_a_key_and_names_the_mode_in_the_banner(
    open_mode: LocalHost,
) -> None:
    with open_mode.client() as client:
        accepted_ids(send(client, SEED_EXAMPLE))
    assert any("write keys: OPTIONAL" in line for line in open_mode.output), "".join(open_mode.output)


def test_open_mode_still_checks_a_key_that_is_sent(open_mode: LocalHost) -> None:
    Registry(open_mode.data_dir)  # the registry exists, but the key is in none
    with open_mode.client() as client:
        response = send(client, SEED_EXAMPLE, bearer("cs_sk_" + "b" * 48))
    assert_error(response, 401, "invalid_key")


def test_open_mode_refuses_to_listen_beyond_loopback(tmp_path_factory: pytest.TempPathFactory) -> None:
    result = cloudscale_run_refused(tmp_path_factory.mktemp("data"), "--host", "0.0.0.0")
    assert result.returncode != 0
    assert "CLOUDSCALE_WRITE_KEYS=required" in result.stderr


def cloudscale_run_refused(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`cloudscale run` expected to refuse to start: its result, once it exited."""
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0", *args],
        cwd=REPO,
        env={**os.environ, "CLOUDSCALE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
