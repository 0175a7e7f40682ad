"""Start-up as the host drives it: the worker imports the package, indexes and loads every function.

What the metadata response says is what the host builds its triggers from on Azure: the
binding types and directions, the `%SETTING%` expressions it resolves from app settings,
batch cardinality, the HTTP routes and the retry policy.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

import pytest

from tests.conformance import protos
from tests.conformance.conftest import DeployedApp, failure, succeeded

HTTP_OUT = {"name": "$return", "type": "http", "direction": "OUT"}

EXPECTED_BINDINGS: dict[str, list[dict[str, Any]]] = {
    "ingest_events": [
        {
            "name": "req",
            "type": "httpTrigger",
            "direction": "IN",
            "route": "events",
            "methods": ["POST"],
            "authLevel": "ANONYMOUS",
        },
        HTTP_OUT,
    ],
    "segment_api": [
        {
            "name": "req",
            "type": "httpTrigger",
            "direction": "IN",
            "route": "v1/{call}",
            "methods": ["POST"],
            "authLevel": "ANONYMOUS",
        },
        HTTP_OUT,
    ],
    "health": [
        {"name": "req", "type": "httpTrigger", "direction": "IN", "route": "health", "methods": ["GET"]},
        HTTP_OUT,
    ],
    "health_live": [
        {"name": "req", "type": "httpTrigger", "direction": "IN", "route": "health/live", "methods": ["GET"]},
        HTTP_OUT,
    ],
    "health_ready": [
        {"name": "req", "type": "httpTrigger", "direction": "IN", "route": "health/ready", "methods": ["GET"]},
        HTTP_OUT,
    ],
    "health_details": [
        {
            "name": "req",
            "type": "httpTrigger",
            "direction": "IN",
            "route": "health/details",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
        },
        HTTP_OUT,
    ],
    "openapi": [
        {"name": "req", "type": "httpTrigger", "direction": "IN", "route": "openapi.json", "methods": ["GET"]},
        HTTP_OUT,
    ],
    "get_event": [
        {
            "name": "req",
            "type": "httpTrigger",
            "direction": "IN",
            "route": "events/{tenantId}/{eventId}",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
        },
        HTTP_OUT,
    ],
    "process_event": [
        {
            "name": "messages",
            "type": "serviceBusTrigger",
            "direction": "IN",
            "queueName": "%CLOUDSCALE_EVENTS_QUEUE%",
            "connection": "ServiceBusConnection",
            "cardinality": "MANY",
        }
    ],
    "events_to_analytics": [
        {
            "name": "documents",
            "type": "cosmosDBTrigger",
            "direction": "IN",
            "connection": "CosmosDBConnection",
            "databaseName": "%CLOUDSCALE_COSMOS_DATABASE%",
            "containerName": "%CLOUDSCALE_COSMOS_CONTAINER%",
            "leaseContainerName": "leases",
            "createLeaseContainerIfNotExists": False,
            "feedPollDelay": 500,
            "maxItemsPerInvocation": 100,
        }
    ],
    "reconcile_analytics": [
        {
            "name": "timer",
            "type": "timerTrigger",
            "direction": "IN",
            "schedule": "0 15 * * * *",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ],
    "create_erasure": [
        {
            "name": "req",
            "type": "httpTrigger",
            "direction": "IN",
            "route": "privacy/erasures",
            "methods": ["POST"],
            "authLevel": "ADMIN",
        },
        HTTP_OUT,
    ],
    "get_erasure": [
        {
            "name": "req",
            "type": "httpTrigger",
            "direction": "IN",
            "route": "privacy/erasures/{erasureId}",
            "methods": ["GET"],
            "authLevel": "ADMIN",
        },
        HTTP_OUT,
    ],
    "privacy_erasures": [
        {
            "name": "timer",
            "type": "timerTrigger",
            "direction": "IN",
            "schedule": "%CLOUDSCALE_ERASURE_SCHEDULE%",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ],
}


def test_the_worker_initialises_from_the_deployment_package(deployed_app: DeployedApp) -> None:
    assert succeeded(deployed_app.init), failure(deployed_app.init)
    loaded_from = sys.modules["function_app"].__file__
    assert loaded_from is not None
    assert loaded_from.startswith(str(deployed_app.package)), "the app must be imported from the package copy"
    for module in ("cloudscale_local", "tests.conformance.apps"):
        assert not (deployed_app.package / module.replace(".", "/")).exists(), f"{module} is not deployed"


def test_every_function_is_indexed(deployed_app: DeployedApp) -> None:
    assert succeeded(deployed_app.metadata), failure(deployed_app.metadata)
    assert deployed_app.metadata.use_default_metadata_indexing is False
    assert set(deployed_app.functions) == set(EXPECTED_BINDINGS)


@pytest.mark.parametrize("name", sorted(EXPECTED_BINDINGS))
def test_bindings_are_what_the_host_builds_triggers_from(deployed_app: DeployedApp, name: str) -> None:
    function = deployed_app.functions.get(name)
    assert function is not None, f"{name} was not indexed: {deployed_app.init.result.exception.message}"
    expected = EXPECTED_BINDINGS[name]
    raw = {binding["name"]: binding for binding in (json.loads(text) for text in function.raw_bindings)}
    assert set(raw) == {binding["name"] for binding in expected}
    for binding in expected:
        actual = raw[binding["name"]]
        assert {key: actual.get(key) for key in binding} == binding
        info = function.bindings[binding["name"]]
        assert info.type == binding["type"]
        direction = protos.BindingInfo.out if binding["direction"] == "OUT" else protos.BindingInfo.Direction.in_
        assert info.direction == direction
    assert function.language == "python"
    assert function.script_file.endswith("function_app.py")


def test_only_the_change_feed_has_a_retry_policy(deployed_app: DeployedApp) -> None:
    functions = deployed_app.functions
    retry = functions["events_to_analytics"].retry_options
    assert retry.retry_strategy == protos.RpcRetryOptions.exponential_backoff
    assert retry.max_retry_count == 12
    assert retry.minimum_interval == timedelta(seconds=1)
    assert retry.maximum_interval == timedelta(minutes=5)
    others = [name for name, function in functions.items() if function.HasField("retry_options")]
    assert others == ["events_to_analytics"]


@pytest.mark.parametrize("name", sorted(EXPECTED_BINDINGS))
def test_every_function_loads(deployed_app: DeployedApp, name: str) -> None:
    loaded = deployed_app.loads.get(name)
    assert loaded is not None, f"{name} was not indexed"
    assert succeeded(loaded), failure(loaded)
    assert loaded.function_id == deployed_app.function_id(name)
