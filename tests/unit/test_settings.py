"""Application settings from environment variables (`shared.settings`).

`load_settings` takes a plain mapping, so no test touches `os.environ`.
"""

from __future__ import annotations

import ipaddress
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.settings import SETTING_NAMES, Settings, SettingsError, load_settings

SECRET = "c2VjcmV0LWtleS1kby1ub3QtbG9nLWl0LWFueXdoZXJlIQ="
"""Shaped like a real 44-character SharedAccessKey / AccountKey."""
SERVICE_BUS_CONNECTION = f"Endpoint=sb://cs.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={SECRET}"
REPO = Path(__file__).resolve().parents[2]
COSMOS_CONNECTION = f"AccountEndpoint=https://cs.documents.azure.com:443/;AccountKey={SECRET};"
STORAGE_CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=cs;AccountKey={SECRET};EndpointSuffix=core.windows.net"
)

Load = Callable[..., Settings]


@pytest.fixture
def load() -> Load:
    """`load_settings` from keyword arguments (environment variable names as keys)."""

    def run(environ: dict[str, str] | None = None, **variables: str) -> Settings:
        return load_settings({**(environ or {}), **variables})

    return run


def load_error(environ: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ)
    return raised.value


def test_defaults_with_an_empty_environment(load: Load) -> None:
    settings = load()

    assert settings.backend == "embedded"
    assert settings.data_dir == Path(".cloudscale")
    assert settings.rate_limit_ip_capacity == 100
    assert settings.rate_limit_ip_refill_per_second == 10.0
    assert settings.rate_limit_global_per_minute == 10_000
    assert settings.rate_limit_global_sync_seconds == 1.0
    assert settings.trusted_proxies == ()
    assert settings.events_queue == "events"
    assert settings.queue_lock_seconds == 300.0
    assert settings.queue_max_delivery_count == 10
    assert settings.rate_limit_table == "ratelimits"
    assert settings.service_bus_namespace is None
    assert settings.service_bus_connection_string is None
    assert settings.rate_limit_table_endpoint is None
    assert settings.webjobs_storage_connection_string is None
    assert settings.applicationinsights_connection_string is None


def test_unrelated_environment_variables_are_ignored(load: Load) -> None:
    assert load(PATH="/usr/bin", HOME="/root", CLOUDSCALE_UNKNOWN="x") == load()


def test_an_empty_value_means_unset(load: Load) -> None:
    assert load(CLOUDSCALE_RATE_LIMIT_IP_CAPACITY="", CLOUDSCALE_BACKEND="") == load()


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("CLOUDSCALE_BACKEND", "embedded", "backend", "embedded"),
        ("CLOUDSCALE_DATA_DIR", "/var/lib/cloudscale", "data_dir", Path("/var/lib/cloudscale")),
        ("CLOUDSCALE_RATE_LIMIT_IP_CAPACITY", "250", "rate_limit_ip_capacity", 250),
        ("CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND", "2.5", "rate_limit_ip_refill_per_second", 2.5),
        ("CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE", "60000", "rate_limit_global_per_minute", 60_000),
        ("CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS", "0.5", "rate_limit_global_sync_seconds", 0.5),
        ("CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS", "30", "rate_limit_global_sync_seconds", 30.0),
        ("CLOUDSCALE_EVENTS_QUEUE", "events-eu", "events_queue", "events-eu"),
        ("CLOUDSCALE_QUEUE_LOCK_SECONDS", "300", "queue_lock_seconds", 300.0),
        ("CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT", "1", "queue_max_delivery_count", 1),
        ("CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT", "2000", "queue_max_delivery_count", 2000),
        ("CLOUDSCALE_RATE_LIMIT_TABLE", "RateLimits2", "rate_limit_table", "RateLimits2"),
        ("CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT", "https://cs.table.core.windows.net", "table_endpoint", None),
        (
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "InstrumentationKey=x",
            "applicationinsights_connection_string",
            None,
        ),
    ],
)
def test_each_cloudscale_override_is_parsed(
    load: Load, variable: str, value: str, attribute: str, expected: Any
) -> None:
    settings = load(**{variable: value})

    assert getattr(settings, attribute) == (value if expected is None else expected)


def test_the_azure_backend_with_identity_based_connections(load: Load) -> None:
    settings = load(
        CLOUDSCALE_BACKEND="azure",
        ServiceBusConnection__fullyQualifiedNamespace="cs.servicebus.windows.net",
        AzureWebJobsStorage__tableServiceUri="https://cs.table.core.windows.net",
        CosmosDBConnection__accountEndpoint="https://cs.documents.azure.com:443/",
        CLOUDSCALE_CLIENT_KEY_SECRET="0123456789abcdef",
    )

    assert settings.backend == "azure"
    assert settings.cosmos_endpoint == "https://cs.documents.azure.com:443/"
    assert settings.service_bus_namespace == "cs.servicebus.windows.net"
    assert settings.rate_limit_table_endpoint == "https://cs.table.core.windows.net"


def test_the_dedicated_table_endpoint_wins_over_the_webjobs_one(load: Load) -> None:
    settings = load(
        CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT="https://limits.table.core.windows.net",
        AzureWebJobsStorage__tableServiceUri="https://jobs.table.core.windows.net",
    )

    assert settings.rate_limit_table_endpoint == "https://limits.table.core.windows.net"


def test_the_azure_backend_with_connection_strings(load: Load) -> None:
    settings = load(
        CLOUDSCALE_BACKEND="azure",
        ServiceBusConnection=SERVICE_BUS_CONNECTION,
        AzureWebJobsStorage=STORAGE_CONNECTION,
        CosmosDBConnection=COSMOS_CONNECTION,
        CLOUDSCALE_CLIENT_KEY_SECRET="0123456789abcdef",
    )

    assert settings.service_bus_connection_string == SERVICE_BUS_CONNECTION
    assert settings.webjobs_storage_connection_string == STORAGE_CONNECTION
    assert settings.rate_limit_table_endpoint is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLOUDSCALE_BACKEND", "aws"),
        ("CLOUDSCALE_RATE_LIMIT_IP_CAPACITY", "abc"),
        ("CLOUDSCALE_RATE_LIMIT_IP_CAPACITY", "0"),
        ("CLOUDSCALE_RATE_LIMIT_IP_CAPACITY", "-5"),
        ("CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND", "0"),
        ("CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND", "nan"),
        ("CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE", "1e3x"),
        ("CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS", "0"),
        ("CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS", "31"),
        ("CLOUDSCALE_QUEUE_LOCK_SECONDS", "301"),
        ("CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT", "0"),
        ("CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT", "2001"),
        ("CLOUDSCALE_RATE_LIMIT_TABLE", "ab"),
        ("CLOUDSCALE_RATE_LIMIT_TABLE", "1limits"),
        ("CLOUDSCALE_RATE_LIMIT_TABLE", "rate-limits"),
        ("CLOUDSCALE_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
        ("CLOUDSCALE_TRUSTED_PROXIES", "10.0.0.0/33"),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_value(variable: str, value: str) -> None:
    error = load_error({variable: value})

    assert variable in str(error)
    assert repr(value) in str(error)


def test_every_invalid_variable_is_reported_at_once() -> None:
    error = load_error({"CLOUDSCALE_RATE_LIMIT_IP_CAPACITY": "0", "CLOUDSCALE_BACKEND": "aws"})

    assert "CLOUDSCALE_RATE_LIMIT_IP_CAPACITY" in str(error)
    assert "CLOUDSCALE_BACKEND" in str(error)


def test_settings_errors_are_value_errors() -> None:
    assert issubclass(SettingsError, ValueError)


def test_write_keys_are_optional_by_default_only_on_the_embedded_backend(load: Load) -> None:
    assert load().write_keys_required is False
    assert load(CLOUDSCALE_WRITE_KEYS="required").write_keys_required is True


def test_the_azure_backend_refuses_optional_write_keys_and_requires_them_by_default() -> None:
    azure = {
        "CLOUDSCALE_BACKEND": "azure",
        "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
        "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://account.table.core.windows.net",
        "CosmosDBConnection__accountEndpoint": "https://account.documents.azure.com:443/",
    }

    assert load_settings(azure).write_keys_required is True
    error = load_error({**azure, "CLOUDSCALE_WRITE_KEYS": "optional"})
    assert "CLOUDSCALE_WRITE_KEYS=optional is refused" in str(error)


def test_trusted_proxies_are_a_comma_list_of_addresses_and_cidr_blocks(load: Load) -> None:
    settings = load(CLOUDSCALE_TRUSTED_PROXIES=" 127.0.0.1 , 10.0.0.0/8,,fd00::/8, 192.168.1.7/24 ")

    assert settings.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.168.1.0/24"),  # host bits are dropped, not refused
    )


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({}, "ServiceBusConnection__fullyQualifiedNamespace"),
        ({"AzureWebJobsStorage": STORAGE_CONNECTION}, "ServiceBusConnection__fullyQualifiedNamespace"),
        ({"ServiceBusConnection": SERVICE_BUS_CONNECTION}, "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT"),
        ({"ServiceBusConnection__fullyQualifiedNamespace": "cs.servicebus.windows.net"}, "AzureWebJobsStorage"),
        (
            {"ServiceBusConnection": SERVICE_BUS_CONNECTION, "AzureWebJobsStorage": STORAGE_CONNECTION},
            "CosmosDBConnection__accountEndpoint",
        ),
    ],
    ids=["nothing", "no-service-bus", "no-table", "no-table-identity", "no-cosmos"],
)
def test_the_azure_backend_without_its_connections_names_the_missing_setting(
    environ: dict[str, str], missing: str
) -> None:
    error = load_error({"CLOUDSCALE_BACKEND": "azure", **environ})

    assert missing in str(error)
    assert "CLOUDSCALE_BACKEND=azure" in str(error)


def test_the_embedded_backend_needs_no_connections(load: Load) -> None:
    assert load(CLOUDSCALE_BACKEND="embedded").backend == "embedded"


@pytest.mark.parametrize(
    "environ",
    [
        {"CLOUDSCALE_BACKEND": "azure", "ServiceBusConnection": SERVICE_BUS_CONNECTION},
        {"CLOUDSCALE_BACKEND": "azure", "AzureWebJobsStorage": STORAGE_CONNECTION},
        {"CLOUDSCALE_BACKEND": "azure", "CosmosDBConnection": COSMOS_CONNECTION, "ServiceBusConnection": "x"},
        {
            "ServiceBusConnection": SERVICE_BUS_CONNECTION,
            "AzureWebJobsStorage": STORAGE_CONNECTION,
            "CLOUDSCALE_RATE_LIMIT_IP_CAPACITY": "zero",
        },
    ],
    ids=["azure-no-table", "azure-no-service-bus", "azure-no-table-with-cosmos", "other-invalid-setting"],
)
def test_connection_strings_are_never_echoed_in_the_error_message(environ: dict[str, str]) -> None:
    error = load_error(environ)

    assert SECRET not in str(error)
    assert SECRET not in repr(error)


def test_connection_strings_are_not_in_the_traceback_of_a_settings_error() -> None:
    error = load_error({"CLOUDSCALE_BACKEND": "azure", "ServiceBusConnection": SERVICE_BUS_CONNECTION})

    printed = "".join(traceback.format_exception(error))

    leaked = [SECRET[i : i + 12] for i in range(len(SECRET) - 11) if SECRET[i : i + 12] in printed]
    assert not leaked, "part of the access key is printed"


def test_setting_names_cover_every_field() -> None:
    aliases = [field.alias for field in Settings.model_fields.values()]

    assert None not in aliases
    assert sorted(SETTING_NAMES) == sorted(aliases)  # type: ignore[type-var]
    assert len(set(SETTING_NAMES)) == len(SETTING_NAMES)


def test_every_setting_can_be_set_by_its_variable(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_bytes((REPO / "shared" / "domain" / "fraud_rules.json").read_bytes())
    values = {
        "CLOUDSCALE_BACKEND": "azure",
        "CLOUDSCALE_DATA_DIR": "/data",
        "CLOUDSCALE_FEED_RANGES": "8",
        "CLOUDSCALE_RATE_LIMIT_IP_CAPACITY": "7",
        "CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND": "0.5",
        "CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE": "70",
        "CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS": "2",
        "CLOUDSCALE_RATE_LIMIT_IPV6_PREFIX": "56",
        "CLOUDSCALE_CLIENT_KEY_SECRET": "a-secret-of-sixteen-or-more",
        "CLOUDSCALE_TRUSTED_PROXIES": "10.0.0.0/8",
        "CLOUDSCALE_WRITE_KEYS": "required",
        "CLOUDSCALE_WRITE_KEY_CACHE_SECONDS": "5",
        "CLOUDSCALE_TENANT_EVENTS_PER_MINUTE": "1200",
        "CLOUDSCALE_TENANTS_TABLE": "producers",
        "CLOUDSCALE_PRIVACY_TABLE": "erasures",
        "CLOUDSCALE_SUBJECT_KEY_SECRET": "another-secret-of-sixteen",
        "CLOUDSCALE_SUPPRESSION_CACHE_SECONDS": "4",
        "CLOUDSCALE_ERASURE_LEASE_SECONDS": "20",
        "CLOUDSCALE_ERASURE_SCHEDULE": "*/5 * * * * *",
        "CLOUDSCALE_ANALYTICS_RETENTION_DAYS": "7",
        "CLOUDSCALE_LIVE_EVENTS_KEPT": "50",
        "CLOUDSCALE_EVENTS_QUEUE": "q",
        "CLOUDSCALE_QUEUE_LOCK_SECONDS": "45",
        "CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT": "3",
        "ServiceBusConnection__fullyQualifiedNamespace": "cs.servicebus.windows.net",
        "ServiceBusConnection": SERVICE_BUS_CONNECTION,
        "CLOUDSCALE_RATE_LIMIT_TABLE": "limits",
        "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://a.table.core.windows.net",
        "AzureWebJobsStorage__tableServiceUri": "https://b.table.core.windows.net",
        "AzureWebJobsStorage": STORAGE_CONNECTION,
        "CLOUDSCALE_POISON_QUEUE": "poison",
        "CosmosDBConnection__accountEndpoint": "https://cs.documents.azure.com:443/",
        "CosmosDBConnection": COSMOS_CONNECTION,
        "CLOUDSCALE_COSMOS_DATABASE": "db",
        "CLOUDSCALE_COSMOS_CONTAINER": "docs",
        "CLOUDSCALE_COSMOS_VERIFY_TLS": "false",
        "CLOUDSCALE_PROCESS_RETRY_SECONDS": "30",
        "CLOUDSCALE_FRAUD_RULES_FILE": str(rules),
        "CLOUDSCALE_KUSTO_CLUSTER_URI": "https://c.westeurope.kusto.windows.net",
        "CLOUDSCALE_KUSTO_INGEST_URI": "https://ingest-c.westeurope.kusto.windows.net",
        "CLOUDSCALE_KUSTO_DATABASE": "analytics",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
        "PYTHON_ENABLE_OPENTELEMETRY": "true",
    }
    assert set(values) == set(SETTING_NAMES), "a setting was added: add it here too"

    settings = load_settings(values)

    defaults = load_settings({})
    changed = {name for name in Settings.model_fields if getattr(settings, name) != getattr(defaults, name)}
    assert changed == set(Settings.model_fields)


def test_the_sample_local_settings_list_every_setting() -> None:
    sample = REPO / "local.settings.sample.json"
    values = orjson.loads(sample.read_bytes())["Values"]

    assert set(SETTING_NAMES) <= set(values), "add the new setting to local.settings.sample.json"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        (b"{", "not valid JSON"),
        (b'{"suspiciousThreshold": 0.5, "rules": [{"id": "x"}]}', "rules"),
    ],
    ids=["missing", "not-json", "bad-rule"],
)
def test_a_broken_fraud_rules_file_stops_the_app_at_startup(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "rules.json"
    if content is not None:
        path.write_bytes(content)

    error = load_error({"CLOUDSCALE_FRAUD_RULES_FILE": str(path)})

    assert "CLOUDSCALE_FRAUD_RULES_FILE" in str(error)
    assert problem in str(error)


@pytest.mark.parametrize(
    ("lock", "retry"),
    [("30", None), ("2", None), ("100", "81"), ("300", "241")],
)
def test_a_retry_budget_over_four_fifths_of_the_lock_stops_startup(lock: str, retry: str | None) -> None:
    # Batch locks are not renewed: an invocation that retries past its lock loses it.
    environ = {"CLOUDSCALE_QUEUE_LOCK_SECONDS": lock}
    if retry is not None:
        environ["CLOUDSCALE_PROCESS_RETRY_SECONDS"] = retry
    error = load_error(environ)
    assert "CLOUDSCALE_PROCESS_RETRY_SECONDS" in str(error)
    assert "CLOUDSCALE_QUEUE_LOCK_SECONDS" in str(error)


@pytest.mark.parametrize(("lock", "retry"), [("300", "240"), ("3", "2.4"), ("100", "80")])
def test_a_retry_budget_within_four_fifths_of_the_lock_is_accepted(lock: str, retry: str) -> None:
    settings = load_settings({"CLOUDSCALE_QUEUE_LOCK_SECONDS": lock, "CLOUDSCALE_PROCESS_RETRY_SECONDS": retry})
    assert settings.process_retry_seconds <= 0.8 * settings.queue_lock_seconds


# --- placeholders left from the sample settings ------------------------------------------------


def _sample_values() -> dict[str, str]:
    values = orjson.loads((REPO / "local.settings.sample.json").read_bytes())["Values"]
    assert isinstance(values, dict)
    return {name: value for name, value in values.items() if name in SETTING_NAMES}


SAMPLE_PLACEHOLDERS = sorted(name for name, value in _sample_values().items() if "<" in value)


def test_the_sample_has_placeholders_to_fill_in() -> None:
    # The sample shows where a user's own resources go; the checks below follow it.
    assert "ServiceBusConnection__fullyQualifiedNamespace" in SAMPLE_PLACEHOLDERS
    assert "CosmosDBConnection__accountEndpoint" in SAMPLE_PLACEHOLDERS


def test_a_copied_sample_with_its_placeholders_is_refused_naming_each_one() -> None:
    error = str(load_error(_sample_values()))

    for name in SAMPLE_PLACEHOLDERS:
        assert name in error


@pytest.mark.parametrize("name", SAMPLE_PLACEHOLDERS)
def test_one_forgotten_placeholder_is_refused_naming_its_variable(name: str) -> None:
    error = str(load_error({name: _sample_values()[name]}))

    assert name in error
    assert "placeholder" in error


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("CLOUDSCALE_KUSTO_CLUSTER_URI", "https://<cluster>.<region>.kusto.windows.net", "<cluster>"),
        ("CLOUDSCALE_EVENTS_QUEUE", "<queue name>", "<queue name>"),
        ("CLOUDSCALE_RATE_LIMIT_IP_CAPACITY", "<capacity>", "<capacity>"),
    ],
)
def test_the_placeholder_of_a_plain_setting_is_shown(name: str, value: str, shown: str) -> None:
    error = str(load_error({name: value}))

    assert f"{name}: still holds the placeholder {shown}" in error


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ServiceBusConnection", f"Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKey={SECRET}"),
        ("CosmosDBConnection", f"AccountEndpoint=https://<account>.documents.azure.com:443/;AccountKey={SECRET};"),
        ("AzureWebJobsStorage", f"DefaultEndpointsProtocol=https;AccountName=<account>;AccountKey={SECRET}"),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", f"InstrumentationKey={SECRET};IngestionEndpoint=https://<region>/"),
    ],
)
def test_a_placeholder_in_a_connection_string_names_the_variable_and_echoes_nothing(name: str, value: str) -> None:
    error = load_error({name: value})
    printed = str(error) + repr(error) + "".join(traceback.format_exception(error))

    assert name in str(error)
    assert SECRET not in printed
    assert "<" not in str(error), "not even the placeholder: it sits next to the key"


def test_the_sample_filled_in_loads() -> None:
    filled = {
        name: value.replace("<namespace>", "cs")
        .replace("<storage-account>", "cs")
        .replace("<cosmos-account>", "cs")
        .replace("<cluster>", "cs")
        .replace("<region>", "westeurope")
        .replace("<random-secret-of-32-characters>", "0123456789abcdef0123456789abcdef")
        for name, value in _sample_values().items()
    }

    settings = load_settings(filled)

    assert settings.service_bus_namespace == "cs.servicebus.windows.net"
