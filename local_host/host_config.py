"""The parts of `host.json` the local host honours, read the way the Functions host reads them.

Only what changes how triggers are driven: the Service Bus extension's concurrency, batch size,
prefetch, auto-complete and lock renewal, and whether dynamic concurrency is on. Lock duration and
`maxDeliveryCount` are properties of the queue itself on Service Bus, so they come from the
settings (`CLOUDSCALE_QUEUE_LOCK_SECONDS`, `CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT`), not from here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["HostConfig", "HostConfigError", "ServiceBusOptions", "load_host_config", "parse_timespan"]

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


class HostConfigError(ValueError):
    """host.json is not valid JSON or holds a value of the wrong shape."""


@dataclass(frozen=True, slots=True)
class ServiceBusOptions:
    """`extensions.serviceBus`, with the Functions host's defaults for what is absent."""

    max_concurrent_calls: int = 16 * (os.cpu_count() or 1)
    prefetch_count: int = 0
    auto_complete_messages: bool = True
    max_auto_lock_renewal_seconds: float = 300.0
    max_message_batch_size: int = 1000
    """Most messages handed to one invocation of a function with cardinality many."""


@dataclass(frozen=True, slots=True)
class HostConfig:
    service_bus: ServiceBusOptions = ServiceBusOptions()
    dynamic_concurrency: bool = False


def parse_timespan(value: str) -> float:
    """A .NET TimeSpan string ("00:05:00", "1.02:00:00") in seconds."""
    match = _TIMESPAN.match(value.strip())
    if match is None:
        raise HostConfigError(f"{value!r} is not a timespan like 00:05:00")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def load_host_config(path: Path) -> HostConfig:
    """Read `path` (host.json); a missing file means every default."""
    if not path.exists():
        return HostConfig()
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise HostConfigError(f"{path} is not valid JSON: {exc}") from None
    service_bus = _section(document, "extensions", "serviceBus")
    concurrency = _section(document, "concurrency")
    defaults = ServiceBusOptions()
    try:
        options = ServiceBusOptions(
            max_concurrent_calls=int(service_bus.get("maxConcurrentCalls", defaults.max_concurrent_calls)),
            prefetch_count=int(service_bus.get("prefetchCount", defaults.prefetch_count)),
            auto_complete_messages=bool(service_bus.get("autoCompleteMessages", defaults.auto_complete_messages)),
            max_auto_lock_renewal_seconds=parse_timespan(str(service_bus["maxAutoLockRenewalDuration"]))
            if "maxAutoLockRenewalDuration" in service_bus
            else defaults.max_auto_lock_renewal_seconds,
            max_message_batch_size=int(service_bus.get("maxMessageBatchSize", defaults.max_message_batch_size)),
        )
    except (TypeError, ValueError) as exc:
        raise HostConfigError(f"{path}: extensions.serviceBus: {exc}") from None
    if options.max_concurrent_calls < 1:
        raise HostConfigError(f"{path}: extensions.serviceBus.maxConcurrentCalls must be at least 1")
    if options.max_message_batch_size < 1:
        raise HostConfigError(f"{path}: extensions.serviceBus.maxMessageBatchSize must be at least 1")
    return HostConfig(service_bus=options, dynamic_concurrency=bool(concurrency.get("dynamicConcurrencyEnabled")))


def _section(document: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        document = document.get(key, {}) if isinstance(document, dict) else {}
    return document if isinstance(document, dict) else {}
