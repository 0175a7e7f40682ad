"""Cosmos DB: keyless, and the containers exactly as the code defines and the triggers expect."""

from __future__ import annotations

import ast
import json

from shared.adapters.event_store.cosmos_container import EVENTS_CONTAINER
from shared.settings import Settings
from tests.infra.bicep import INFRA_DIR, REPO_ROOT, at, calls, infra_file, literal, text

COSMOS = "modules/cosmos.bicep"


def lease_container_of_the_change_feed_trigger() -> str:
    tree = ast.parse((REPO_ROOT / "changefeed" / "blueprint.py").read_text(encoding="utf-8"))
    [name] = [
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "lease_container_name" and isinstance(keyword.value, ast.Constant)
    ]
    assert isinstance(name, str)
    return name


def test_local_auth_is_disabled() -> None:
    properties = at(infra_file(COSMOS).resource("account").body, "properties")
    assert literal(at(properties, "disableLocalAuth")) is True
    assert literal(at(properties, "disableKeyBasedMetadataWriteAccess")) is True


def test_serverless_is_a_capability_of_the_serverless_mode_only() -> None:
    cosmos = infra_file(COSMOS)
    assert text(cosmos.variables()["serverless"]) == "throughputMode == 'serverless'"
    capabilities = text(at(cosmos.resource("account").body, "properties", "capabilities"))
    assert capabilities.startswith("serverless ?")
    assert "'EnableServerless'" in capabilities
    allowed = cosmos.params()["throughputMode"].decorators["allowed"]
    assert allowed is not None
    assert set(literal(allowed)) == {"serverless", "autoscale"}


def test_the_database_and_container_names_are_the_app_defaults() -> None:
    params = infra_file(COSMOS).params()
    for param, field in (("databaseName", "cosmos_database"), ("eventsContainerName", "cosmos_container")):
        default = params[param].default
        assert default is not None
        assert literal(default) == Settings.model_fields[field].default


def test_the_events_container_is_the_code_s_definition() -> None:
    """Partition key /tenantId, TTL 30 days, `properties` left out of the index: the code's own."""
    cosmos = infra_file(COSMOS)
    [[path]] = calls(cosmos.variables()["eventsContainer"], "loadJsonContent")
    definition_file = (INFRA_DIR / "modules" / literal(path)).resolve()
    definition = json.loads(definition_file.read_text(encoding="utf-8"))
    assert definition == EVENTS_CONTAINER.properties()
    assert definition["partitionKey"]["paths"] == ["/tenantId"]
    assert definition["defaultTtl"] == 2_592_000
    resource = text(at(cosmos.resource("events").body, "properties", "resource"))
    assert resource == "union({ id: eventsContainerName }, eventsContainer)"


def test_the_leases_container_is_the_one_the_trigger_names() -> None:
    cosmos = infra_file(COSMOS)
    leases = cosmos.resource("leases")
    assert literal(cosmos.variables()["leasesContainerName"]) == lease_container_of_the_change_feed_trigger()
    assert text(at(leases.body, "name")) == "leasesContainerName"
    assert literal(at(leases.body, "properties", "resource", "partitionKey", "paths")) == ["/id"]


def test_autoscale_sets_throughput_and_serverless_none() -> None:
    events = infra_file(COSMOS).resource("events")
    options = text(at(events.body, "properties", "options"))
    assert options.startswith("serverless ? {} :")
    assert "maxThroughput: autoscaleMaxThroughput" in options
