"""The Function App: Flex Consumption, Python 3.13, a system identity, and app settings that
cover everything the app reads without a single connection string."""

from __future__ import annotations

import json

import pytest
from tree_sitter import Node

from shared.settings import SETTING_NAMES, Settings, load_settings
from tests.infra.bicep import INFRA_DIR, NotLiteralError, at, infra_file, literal, text

CONNECTION_STRING_SETTINGS = frozenset({"ServiceBusConnection", "CosmosDBConnection", "AzureWebJobsStorage"})
# Settings the Flex Consumption plan does not support: it takes the runtime from
# functionAppConfig.runtime, the package from functionAppConfig.deployment, scale from
# functionAppConfig.scaleAndConcurrency, and has no content share.
FLEX_UNSUPPORTED_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_TIME_ZONE",
    }
)
FLEX_UNSUPPORTED_SITE_CONFIG = frozenset(
    {
        "linuxFxVersion",
        "alwaysOn",
        "functionAppScaleLimit",
        "preWarmedInstanceCount",
        "use32BitWorkerProcess",
        "netFrameworkVersion",
        "javaVersion",
        "powerShellVersion",
    }
)


def functionapp_property(*path: str) -> Node:
    return at(infra_file("modules/functionapp.bicep").resource("site").body, *path)


def app_settings() -> dict[str, Node]:
    settings = infra_file("modules/functionapp.bicep").variables()["appSettings"]
    return {
        text(item.named_children[0]): item.named_children[-1]
        for item in settings.named_children
        if item.type == "object_property"
    }


def main_argument(module: str, param: str) -> str:
    return text(at(infra_file("main.bicep").module(module).body, "params", param))


def test_the_plan_is_flex_consumption_on_linux() -> None:
    plan = infra_file("modules/functionapp.bicep").resource("plan")
    assert plan.type == "Microsoft.Web/serverfarms"
    assert literal(at(plan.body, "sku")) == {"name": "FC1", "tier": "FlexConsumption"}
    assert literal(at(plan.body, "properties", "reserved")) is True
    assert text(functionapp_property("properties", "serverFarmId")) == "plan.id"


def test_the_app_runs_python_3_11_on_linux() -> None:
    assert literal(functionapp_property("properties", "functionAppConfig", "runtime")) == {
        "name": "python",
        "version": "3.13",
    }
    assert literal(functionapp_property("kind")) == "functionapp,linux"


def test_the_app_has_a_system_assigned_identity() -> None:
    assert literal(functionapp_property("identity", "type")) == "SystemAssigned"
    principal = infra_file("modules/functionapp.bicep").outputs()["principalId"]
    assert text(principal) == "site.identity.principalId"


def test_the_package_is_read_from_blob_storage_with_the_identity() -> None:
    package = functionapp_property("properties", "functionAppConfig", "deployment", "storage")
    assert literal(at(package, "authentication")) == {"type": "SystemAssignedIdentity"}
    assert literal(at(package, "type")) == "blobContainer"
    assert text(at(package, "value")) == "deploymentContainerUrl"
    assert main_argument("functionApp", "deploymentContainerUrl") == "storage.outputs.deploymentContainerUrl"


def test_scale_settings_come_from_main_parameters() -> None:
    scale = functionapp_property("properties", "functionAppConfig", "scaleAndConcurrency")
    assert text(at(scale, "instanceMemoryMB")) == "instanceMemoryMB"
    assert text(at(scale, "maximumInstanceCount")) == "maximumInstanceCount"
    assert text(at(scale, "triggers", "http", "perInstanceConcurrency")) == "httpPerInstanceConcurrency"
    for param in ("instanceMemoryMB", "maximumInstanceCount", "httpPerInstanceConcurrency"):
        assert main_argument("functionApp", param) == param


def test_http_concurrency_per_instance_is_above_one() -> None:
    param = infra_file("main.bicep").params()["httpPerInstanceConcurrency"]
    assert param.default is not None
    assert literal(param.default) > 1
    minimum = param.decorators["minValue"]
    assert minimum is not None
    assert literal(minimum) > 1, "a parameters file must not be able to set it back to 1"
    for path in (INFRA_DIR / "parameters").glob("*.parameters.json"):
        values = json.loads(path.read_text(encoding="utf-8"))["parameters"]
        assert values.get("httpPerInstanceConcurrency", {"value": 2})["value"] > 1, path.name


def test_instance_memory_is_a_flex_size() -> None:
    param = infra_file("main.bicep").params()["instanceMemoryMB"]
    allowed = param.decorators["allowed"]
    assert allowed is not None
    assert set(literal(allowed)) <= {512, 2048, 4096}
    assert param.default is not None
    assert literal(param.default) in literal(allowed)


@pytest.mark.parametrize("name", sorted(set(SETTING_NAMES) - CONNECTION_STRING_SETTINGS))
def test_every_setting_the_app_reads_is_set(name: str) -> None:
    assert name in app_settings()


@pytest.mark.parametrize("name", sorted(CONNECTION_STRING_SETTINGS))
def test_no_connection_string_setting_is_set(name: str) -> None:
    assert name in SETTING_NAMES, "the app no longer reads it: update this test"
    assert name not in app_settings()


def test_no_setting_flex_consumption_rejects() -> None:
    assert set(app_settings()) & FLEX_UNSUPPORTED_SETTINGS == set()
    site_config = functionapp_property("properties", "siteConfig")
    keys = {text(item.named_children[0]) for item in site_config.named_children if item.type == "object_property"}
    assert keys & FLEX_UNSUPPORTED_SITE_CONFIG == set()


def test_every_app_setting_becomes_a_site_setting() -> None:
    site_settings = text(functionapp_property("properties", "siteConfig", "appSettings"))
    assert site_settings.startswith("[for setting in items(appSettings):")


def test_the_backend_is_azure() -> None:
    assert literal(app_settings()["CLOUDSCALE_BACKEND"]) == "azure"


@pytest.mark.parametrize(
    "name",
    [
        "CLOUDSCALE_RATE_LIMIT_IP_CAPACITY",
        "CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND",
        "CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE",
        "CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS",
        "CLOUDSCALE_PROCESS_RETRY_SECONDS",
        "CLOUDSCALE_COSMOS_VERIFY_TLS",
        "CLOUDSCALE_WRITE_KEY_CACHE_SECONDS",
        "CLOUDSCALE_TENANT_EVENTS_PER_MINUTE",
    ],
)
def test_written_out_settings_are_the_app_defaults(name: str) -> None:
    """Production runs on the defaults the code and README document, written out for review."""
    [field_name] = [field for field, info in Settings.model_fields.items() if info.alias == name]
    loaded = load_settings({name: literal(app_settings()[name])})
    assert getattr(loaded, field_name) == Settings.model_fields[field_name].default


def test_the_settings_load_as_the_app_would_load_them() -> None:
    """Literal values as written, the endpoints (known only at deployment) as examples."""
    endpoints = {
        "ServiceBusConnection__fullyQualifiedNamespace": "sb-example.servicebus.windows.net",
        "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://stexample.table.core.windows.net/",
        "CosmosDBConnection__accountEndpoint": "https://cosmos-example.documents.azure.com:443/",
        # A secure parameter, generated at deployment.
        "CLOUDSCALE_CLIENT_KEY_SECRET": "00000000-0000-0000-0000-000000000000",
    }
    environ = dict(endpoints)
    for name, value in app_settings().items():
        try:
            environ.setdefault(name, literal(value))
        except NotLiteralError:
            continue
    settings = load_settings(environ)
    assert settings.backend == "azure"
    assert settings.fraud_rules_file is None, "the built-in rules"


def test_the_client_key_secret_is_a_secure_parameter_generated_per_deployment() -> None:
    assert text(app_settings()["CLOUDSCALE_CLIENT_KEY_SECRET"]) == "clientKeySecret"
    param = infra_file("modules/functionapp.bicep").params()["clientKeySecret"]
    assert "secure" in param.decorators
    assert param.default is not None
    assert text(param.default) == "newGuid()"


def test_the_subject_key_secret_is_a_secure_parameter_never_generated_per_deployment() -> None:
    """A tombstone must outlive every deployment: a key made anew each time (`newGuid()`) would
    make every erased subject's events recognisable no more."""
    assert text(app_settings()["CLOUDSCALE_SUBJECT_KEY_SECRET"]) == "subjectKeySecret"
    assert main_argument("functionApp", "subjectKeySecret") == "subjectKeySecret"
    for path in ("modules/functionapp.bicep", "main.bicep"):
        param = infra_file(path).params()["subjectKeySecret"]
        assert "secure" in param.decorators, path
        assert param.default is not None
        assert literal(param.default) == "", path


def test_trusted_proxies_default_to_none_behind_the_functions_front_end() -> None:
    assert text(app_settings()["CLOUDSCALE_TRUSTED_PROXIES"]) == "trustedProxies"
    assert main_argument("functionApp", "trustedProxies") == "trustedProxies"
    default = infra_file("main.bicep").params()["trustedProxies"].default
    assert default is not None
    assert load_settings({"CLOUDSCALE_TRUSTED_PROXIES": literal(default)}).trusted_proxies == ()


@pytest.mark.parametrize(
    ("setting", "param", "source"),
    [
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "serviceBusNamespace",
            "serviceBus.outputs.fullyQualifiedNamespace",
        ),
        ("CLOUDSCALE_EVENTS_QUEUE", "eventsQueueName", "serviceBus.outputs.eventsQueueName"),
        ("CLOUDSCALE_POISON_QUEUE", "poisonQueueName", "serviceBus.outputs.poisonQueueName"),
        ("CLOUDSCALE_RATE_LIMIT_TABLE", "rateLimitTableName", "storage.outputs.rateLimitTableName"),
        ("CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT", "tableEndpoint", "storage.outputs.tableEndpoint"),
        ("CLOUDSCALE_TENANTS_TABLE", "tenantsTableName", "storage.outputs.tenantsTableName"),
        ("AzureWebJobsStorage__tableServiceUri", "tableEndpoint", "storage.outputs.tableEndpoint"),
        ("AzureWebJobsStorage__accountName", "storageAccountName", "storage.outputs.name"),
        ("CosmosDBConnection__accountEndpoint", "cosmosEndpoint", "cosmos.outputs.endpoint"),
        ("CLOUDSCALE_COSMOS_DATABASE", "cosmosDatabaseName", "cosmos.outputs.databaseName"),
        ("CLOUDSCALE_COSMOS_CONTAINER", "cosmosContainerName", "cosmos.outputs.eventsContainerName"),
        ("CLOUDSCALE_KUSTO_CLUSTER_URI", "kustoClusterUri", "kusto.outputs.clusterUri"),
        ("CLOUDSCALE_KUSTO_INGEST_URI", "kustoIngestUri", "kusto.outputs.ingestUri"),
        ("CLOUDSCALE_KUSTO_DATABASE", "kustoDatabaseName", "kusto.outputs.databaseName"),
        ("CLOUDSCALE_QUEUE_LOCK_SECONDS", "queueLockSeconds", "serviceBus.outputs.eventsLockSeconds"),
        ("CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT", "queueMaxDeliveryCount", "serviceBus.outputs.eventsMaxDeliveryCount"),
    ],
)
def test_endpoint_settings_come_from_the_resources(setting: str, param: str, source: str) -> None:
    assert text(app_settings()[setting]) in (param, f"string({param})")
    assert main_argument("functionApp", param) == source


def test_app_insights_is_configured_by_its_connection_string() -> None:
    value = text(app_settings()["APPLICATIONINSIGHTS_CONNECTION_STRING"])
    assert value == "appInsights.properties.ConnectionString"
    app_insights = infra_file("modules/functionapp.bicep").resource("appInsights")
    assert app_insights.type == "Microsoft.Insights/components"
    assert app_insights.existing


def test_the_platform_answers_cors_for_any_origin_by_default_without_credentials() -> None:
    # On Flex the host's CORS middleware always runs and answers every preflight before the app
    # (docs/tradeoffs.md, "Browser CORS"): with no origin listed, every browser preflight fails.
    cors = functionapp_property("properties", "siteConfig", "cors")
    assert text(at(cors, "allowedOrigins")) == "corsAllowedOrigins"
    assert literal(at(cors, "supportCredentials")) is False
    assert main_argument("functionApp", "corsAllowedOrigins") == "corsAllowedOrigins"
    default = infra_file("main.bicep").params()["corsAllowedOrigins"].default
    assert default is not None
    assert literal(default) == ["*"]
