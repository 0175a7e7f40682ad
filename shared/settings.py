"""Typed application settings, read once from environment variables (Azure app settings).

Every setting the app reads is a field here; its environment variable name is the field's
alias. `load_settings` takes a mapping (normally `os.environ`) so tests pass their own, and
fails with `SettingsError` naming the offending variable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

__all__ = ["Settings", "SettingsError", "load_settings", "SETTING_NAMES"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


def _split_networks(value: object) -> object:
    """`CLOUDSCALE_TRUSTED_PROXIES` is a comma-separated list of addresses or CIDR blocks."""
    if isinstance(value, str):
        return [ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]
    return value


class Settings(BaseModel):
    """All settings of the CloudScale app. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, allow_inf_nan=False)

    backend: Literal["embedded", "azure"] = Field("embedded", alias="CLOUDSCALE_BACKEND")
    """`embedded`: SQLite files under `data_dir`. `azure`: Table Storage and Service Bus."""

    data_dir: Path = Field(Path(".cloudscale"), alias="CLOUDSCALE_DATA_DIR")

    rate_limit_ip_capacity: int = Field(100, gt=0, alias="CLOUDSCALE_RATE_LIMIT_IP_CAPACITY")
    rate_limit_ip_refill_per_second: float = Field(10.0, gt=0, alias="CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND")
    rate_limit_global_per_minute: int = Field(10_000, gt=0, alias="CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE")
    rate_limit_global_sync_seconds: float = Field(1.0, gt=0, le=30, alias="CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS")
    """How often an instance shares its global-window count with the others (the error bound)."""

    trusted_proxies: Annotated[tuple[IpNetwork, ...], BeforeValidator(_split_networks)] = Field(
        (), alias="CLOUDSCALE_TRUSTED_PROXIES"
    )

    events_queue: str = Field("events", min_length=1, alias="CLOUDSCALE_EVENTS_QUEUE")
    queue_lock_seconds: float = Field(30.0, gt=0, le=300, alias="CLOUDSCALE_QUEUE_LOCK_SECONDS")
    """Embedded queue only: peek-lock duration (Service Bus: the queue's lockDuration)."""
    queue_max_delivery_count: int = Field(10, ge=1, le=2000, alias="CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT")
    """Embedded queue only: deliveries before dead-lettering (Service Bus: maxDeliveryCount)."""

    service_bus_namespace: str | None = Field(None, alias="ServiceBusConnection__fullyQualifiedNamespace")
    service_bus_connection_string: str | None = Field(None, alias="ServiceBusConnection")

    rate_limit_table: str = Field(
        "ratelimits", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$", alias="CLOUDSCALE_RATE_LIMIT_TABLE"
    )
    table_endpoint: str | None = Field(None, alias="CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT")
    webjobs_table_endpoint: str | None = Field(None, alias="AzureWebJobsStorage__tableServiceUri")
    webjobs_storage_connection_string: str | None = Field(None, alias="AzureWebJobsStorage")

    poison_queue: str = Field("events-poison", min_length=1, alias="CLOUDSCALE_POISON_QUEUE")
    """Service Bus queue where the process stage parks messages that can never succeed."""

    cosmos_endpoint: str | None = Field(None, alias="CosmosDBConnection__accountEndpoint")
    cosmos_connection_string: str | None = Field(None, alias="CosmosDBConnection")
    cosmos_database: str = Field("cloudscale", min_length=1, max_length=255, alias="CLOUDSCALE_COSMOS_DATABASE")
    cosmos_container: str = Field("events", min_length=1, max_length=255, alias="CLOUDSCALE_COSMOS_CONTAINER")
    cosmos_verify_tls: bool = Field(True, alias="CLOUDSCALE_COSMOS_VERIFY_TLS")
    """Only for a local emulator with a self-signed certificate; never turn off on Azure."""

    process_retry_seconds: float = Field(240.0, gt=0, le=3600, alias="CLOUDSCALE_PROCESS_RETRY_SECONDS")
    """How long one invocation retries a failing store before handing the message back to the queue."""
    fraud_rules_file: Path | None = Field(None, alias="CLOUDSCALE_FRAUD_RULES_FILE")
    """A JSON file of fraud rules replacing the built-in ones (same shape as `shared/domain/fraud_rules.json`)."""

    kusto_cluster_uri: str | None = Field(None, alias="CLOUDSCALE_KUSTO_CLUSTER_URI")
    """Data Explorer query endpoint, e.g. https://<cluster>.<region>.kusto.windows.net."""
    kusto_ingest_uri: str | None = Field(None, alias="CLOUDSCALE_KUSTO_INGEST_URI")
    """Data Explorer ingestion endpoint; derived from the cluster URI (`ingest-` prefix) when unset."""
    kusto_database: str = Field("cloudscale", min_length=1, alias="CLOUDSCALE_KUSTO_DATABASE")

    applicationinsights_connection_string: str | None = Field(None, alias="APPLICATIONINSIGHTS_CONNECTION_STRING")
    python_enable_opentelemetry: bool = Field(False, alias="PYTHON_ENABLE_OPENTELEMETRY")
    """Read by the Python worker, not by the app: `true` has the worker make each invocation's
    trace context current for OpenTelemetry and tell the host that the app exports its own
    telemetry (the host then stops exporting the worker's logs a second time). Set on Azure,
    where host.json has `telemetryMode: OpenTelemetry`; the app configures its exporter itself."""

    @model_validator(mode="after")
    def _azure_backend_has_connections(self) -> Settings:
        if self.backend != "azure":
            return self
        if not (self.service_bus_namespace or self.service_bus_connection_string):
            raise ValueError(
                "ServiceBusConnection__fullyQualifiedNamespace (or ServiceBusConnection) is required "
                "when CLOUDSCALE_BACKEND=azure"
            )
        if not (self.table_endpoint or self.webjobs_table_endpoint or self.webjobs_storage_connection_string):
            raise ValueError(
                "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT (or AzureWebJobsStorage__tableServiceUri, or "
                "AzureWebJobsStorage) is required when CLOUDSCALE_BACKEND=azure"
            )
        if not (self.cosmos_endpoint or self.cosmos_connection_string):
            raise ValueError(
                "CosmosDBConnection__accountEndpoint (or CosmosDBConnection) is required when CLOUDSCALE_BACKEND=azure"
            )
        return self

    @model_validator(mode="after")
    def _fraud_rules_file_is_valid(self) -> Settings:
        # Read at startup so a broken rules file stops the app before the first message, not
        # at every message (where it would burn deliveries).
        if self.fraud_rules_file is not None:
            from shared.domain.fraud import FraudRulesError, FraudRuleSet

            try:
                FraudRuleSet.from_path(self.fraud_rules_file)
            except FraudRulesError as exc:
                raise ValueError(f"CLOUDSCALE_FRAUD_RULES_FILE: {exc}") from None
        return self

    @property
    def rate_limit_table_endpoint(self) -> str | None:
        """The identity-based Table endpoint, if one is set."""
        return self.table_endpoint or self.webjobs_table_endpoint


SETTING_NAMES: tuple[str, ...] = tuple(
    field.alias for field in Settings.model_fields.values() if field.alias is not None
)
"""Every environment variable the app reads."""


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build `Settings` from `environ`; raise `SettingsError` naming the bad variable."""
    values = {name: environ[name] for name in SETTING_NAMES if environ.get(name, "") != ""}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            # Never echo connection strings back: they may hold keys.
            secret = any(word in name.lower() for word in ("connection", "storage", "key", "secret"))
            given = f" (got {error['input']!r})" if error["loc"] and not secret else ""
            problems.append(f"{name}: {error['msg']}{given}")
        # `from None`: the ValidationError's text repeats every input value, keys included.
        raise SettingsError("Invalid settings: " + "; ".join(problems)) from None
