"""Typed application settings, read once from environment variables (Azure app settings).

Every setting the app reads is a field here; its environment variable name is the field's
alias. `load_settings` takes a mapping (normally `os.environ`) so tests pass their own, and
fails with `SettingsError` naming the offending variable.

A value that still holds a placeholder of the sample settings and docs (angle-bracketed text
such as `<namespace>.servicebus.windows.net`) is refused at startup: otherwise it would pass as
a host name and fail only at the first request, as a name lookup error far from its cause.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator

from shared.domain.delivery import MAX_LOCK_SECONDS, require_retry_fits_lock
from shared.domain.events import MAX_BATCH_EVENTS
from shared.domain.ratelimit import (
    MIN_TENANT_EVENTS_PER_MINUTE,
    BucketLimits,
    idle_after,
    tenant_idle_after,
    tenant_limits,
)

__all__ = ["Settings", "SettingsError", "load_settings", "SETTING_NAMES"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


_PLACEHOLDER = re.compile(r"<[^<>]+>")
"""Angle-bracketed text, as the sample settings and the docs write what you must fill in."""


def _is_secret(name: str) -> bool:
    """Whether the variable may hold a key (a connection string): its value is never echoed."""
    return any(word in name.lower() for word in ("connection", "storage", "key", "secret"))


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
    feed_ranges: int = Field(4, ge=1, le=256, alias="CLOUDSCALE_FEED_RANGES")
    """Ranges (leases) of the embedded change feed, fixed when the events file is created; on
    Azure the count is the container's physical partitions."""

    rate_limit_ip_capacity: int = Field(100, gt=0, alias="CLOUDSCALE_RATE_LIMIT_IP_CAPACITY")
    rate_limit_ip_refill_per_second: float = Field(10.0, gt=0, alias="CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND")
    rate_limit_global_per_minute: int = Field(10_000, gt=0, alias="CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE")
    rate_limit_global_sync_seconds: float = Field(1.0, gt=0, le=30, alias="CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS")
    """How often an instance shares its global-window count with the others (the error bound)."""
    rate_limit_ipv6_prefix: int = Field(64, ge=16, le=128, alias="CLOUDSCALE_RATE_LIMIT_IPV6_PREFIX")
    """IPv6 clients are keyed by this prefix of their address: a /64 is one subscriber's network."""
    client_key_secret: SecretStr | None = Field(None, min_length=16, alias="CLOUDSCALE_CLIENT_KEY_SECRET")
    """HMAC key of the client keys kept instead of addresses; required by ingest on Azure (the
    same on every instance; the operator commands do without), generated once in the data
    folder when unset on the embedded backend."""

    write_keys: Literal["required", "optional"] | None = Field(None, alias="CLOUDSCALE_WRITE_KEYS")
    """Whether ingest refuses a request without a write key. `required` is the only value the
    Azure backend takes (and its default); the embedded backend defaults to `optional`, where a
    request without a key is accepted for the tenant its body names (a key, when sent, is
    always checked). See `write_keys_required`."""
    write_key_cache_seconds: float = Field(10.0, gt=0, le=300, alias="CLOUDSCALE_WRITE_KEY_CACHE_SECONDS")
    """How long an instance trusts what it read about a key: a revoked key or a suspended
    tenant is refused everywhere within this many seconds."""
    tenant_events_per_minute: int = Field(
        60_000, ge=MIN_TENANT_EVENTS_PER_MINUTE, alias="CLOUDSCALE_TENANT_EVENTS_PER_MINUTE"
    )
    """Each tenant's quota of events a minute, unless the registry gives the tenant its own
    (at least one full batch a minute: `MIN_TENANT_EVENTS_PER_MINUTE`)."""
    tenants_table: str = Field("tenants", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$", alias="CLOUDSCALE_TENANTS_TABLE")
    """The Table Storage table of the tenant registry (same account as the rate-limit table)."""

    subject_key_secret: SecretStr | None = Field(None, min_length=16, alias="CLOUDSCALE_SUBJECT_KEY_SECRET")
    """HMAC key of the data-subject hashes in tombstones and erasure records (docs/privacy.md).
    It must never change: tombstones made under another key are not recognised. Unset, a key
    generated once is kept in the privacy store itself (`PrivacyStore.subject_key`); set it
    (a Key Vault reference on Azure) to keep the key apart from the hashes."""
    privacy_table: str = Field("privacy", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$", alias="CLOUDSCALE_PRIVACY_TABLE")
    """The Table Storage table of suppressions and erasure records (same account as the tenant registry)."""
    suppression_cache_seconds: float = Field(10.0, gt=0, le=300, alias="CLOUDSCALE_SUPPRESSION_CACHE_SECONDS")
    """How long an instance trusts its copy of a tenant's suppressions: an erasure waits this
    long (its `settle` step) before deleting, so every stage has seen the tombstone by then."""
    erasure_lease_seconds: float = Field(60.0, ge=1, le=3600, alias="CLOUDSCALE_ERASURE_LEASE_SECONDS")
    """How long a runner holds an erasure before another may take it over (a crashed runner's
    erasure is finished by the next one after this long)."""
    erasure_schedule: str = Field("0 */1 * * * *", min_length=1, alias="CLOUDSCALE_ERASURE_SCHEDULE")
    """NCRONTAB schedule of the timer that runs recorded erasures to completion."""
    analytics_retention_days: float = Field(30.0, gt=0, le=36500, alias="CLOUDSCALE_ANALYTICS_RETENTION_DAYS")
    """Embedded analytics keeps rows this many days after they were stored, as Data Explorer's
    retention policy (30 days, `infra/modules/kusto.bicep`) does on Azure."""

    live_events_kept: int = Field(1000, ge=0, le=100_000, alias="CLOUDSCALE_LIVE_EVENTS_KEPT")
    """Embedded only: the newest accepted and the newest rejected events kept this many of each
    for the dashboard and `cloudscale tail` (0: none kept). On Azure nothing is kept."""

    trusted_proxies: Annotated[tuple[IpNetwork, ...], BeforeValidator(_split_networks)] = Field(
        (), alias="CLOUDSCALE_TRUSTED_PROXIES"
    )

    events_queue: str = Field("events", min_length=1, alias="CLOUDSCALE_EVENTS_QUEUE")
    queue_lock_seconds: float = Field(300.0, gt=0, le=MAX_LOCK_SECONDS, alias="CLOUDSCALE_QUEUE_LOCK_SECONDS")
    """Peek-lock duration: the embedded queue's, and on Azure the events queue's lockDuration (set by infra/)."""
    queue_max_delivery_count: int = Field(10, ge=1, le=2000, alias="CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT")
    """Deliveries before dead-lettering: the embedded queue's, and on Azure the queue's maxDeliveryCount."""

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
    def _azure_requires_write_keys(self) -> Settings:
        if self.backend == "azure" and self.write_keys == "optional":
            raise ValueError(
                "CLOUDSCALE_WRITE_KEYS=optional is refused with CLOUDSCALE_BACKEND=azure: on Azure every "
                "producer must send a write key (unset the variable, or set it to required)"
            )
        return self

    @model_validator(mode="after")
    def _retry_budget_fits_the_lock(self) -> Settings:
        try:
            require_retry_fits_lock(self.process_retry_seconds, self.queue_lock_seconds)
        except ValueError as exc:
            raise ValueError(f"CLOUDSCALE_PROCESS_RETRY_SECONDS and CLOUDSCALE_QUEUE_LOCK_SECONDS: {exc}") from None
        return self

    @model_validator(mode="after")
    def _fraud_rules_file_is_valid(self) -> Settings:
        # Read at startup so a broken rules file stops the app before the first message, not
        # at every message (where it would burn deliveries).
        if self.fraud_rules_file is not None:
            from shared.domain.fraud_rules import FraudRulesError, rules_from_path

            try:
                rules_from_path(self.fraud_rules_file)
            except FraudRulesError as exc:
                raise ValueError(f"CLOUDSCALE_FRAUD_RULES_FILE: {exc}") from None
        return self

    @property
    def rate_limit_client_limits(self) -> BucketLimits:
        """The per-client token bucket (in events)."""
        return BucketLimits(self.rate_limit_ip_capacity, self.rate_limit_ip_refill_per_second)

    @property
    def rate_limit_client_idle_seconds(self) -> float:
        """How long the rate-limit stores keep an idle client's or tenant's state (see `idle_after`).

        Tenant buckets live in the same store and are swept by the same bound, so it covers
        the longest a tenant bucket can matter too (`tenant_idle_after` at the smallest quota).
        """
        return max(
            idle_after(self.rate_limit_client_limits, MAX_BATCH_EVENTS),
            tenant_idle_after(tenant_limits(MIN_TENANT_EVENTS_PER_MINUTE), MAX_BATCH_EVENTS),
        )

    @property
    def write_keys_required(self) -> bool:
        """Whether a request without a write key is refused (always on Azure; `optional` embedded by default)."""
        return self.backend == "azure" or self.write_keys == "required"

    @property
    def rate_limit_table_endpoint(self) -> str | None:
        """The identity-based Table endpoint, if one is set."""
        return self.table_endpoint or self.webjobs_table_endpoint


SETTING_NAMES: tuple[str, ...] = tuple(
    field.alias for field in Settings.model_fields.values() if field.alias is not None
)
"""Every environment variable the app reads."""


def _placeholder_problems(values: Mapping[str, str]) -> list[str]:
    """One problem per variable whose value still holds `<...>` placeholder text."""
    problems = []
    for name, value in values.items():
        found = _PLACEHOLDER.search(value)
        if found is None:
            continue
        # A connection string's placeholder sits beside its key: name the variable only.
        shown = "" if _is_secret(name) else f" {found.group()}"
        problems.append(f"{name}: still holds the placeholder{shown} of the sample settings; set the real value")
    return problems


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build `Settings` from `environ`; raise `SettingsError` naming the bad variable."""
    values = {name: environ[name] for name in SETTING_NAMES if environ.get(name, "") != ""}
    placeholders = _placeholder_problems(values)
    if placeholders:
        raise SettingsError("Invalid settings: " + "; ".join(placeholders))
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            # Never echo connection strings back: they may hold keys.
            given = f" (got {error['input']!r})" if error["loc"] and not _is_secret(name) else ""
            problems.append(f"{name}: {error['msg']}{given}")
        # `from None`: the ValidationError's text repeats every input value, keys included.
        raise SettingsError("Invalid settings: " + "; ".join(problems)) from None
