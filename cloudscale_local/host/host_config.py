"""The parts of `host.json` the local host honours, read the way the Functions host reads them.

Only what changes how triggers are driven: the Service Bus extension's concurrency, batch size,
prefetch, auto-complete and lock renewal; the host's dynamic concurrency; `functionTimeout`; the
HTTP request queue (`extensions.http.maxConcurrentRequests`, `maxOutstandingRequests`).
Lock duration and `maxDeliveryCount` are properties of the queue itself on Service Bus, so they
come from the settings (`CLOUDSCALE_QUEUE_LOCK_SECONDS`, `CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT`),
not from here.

The host binds host.json through .NET configuration, whose keys are case-insensitive
(`maxConcurrentCalls` and `MaxConcurrentCalls` are the same setting) and whose enum values
parse ignoring case (`"mode": "exponential"`); the reader below does the same, and refuses a
value the host would refuse to bind, such as an unknown retry mode.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "ConcurrencyOptions",
    "HostConfig",
    "HostConfigError",
    "HttpOptions",
    "ServiceBusOptions",
    "load_host_config",
    "parse_timespan",
    "require_host_json",
]

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2}(?:\.\d+)?))?$")

RETRY_MODES = ("fixed", "exponential")
"""`ServiceBusRetryMode` values; the host binds them ignoring case."""

DEFAULT_FUNCTION_TIMEOUT_SECONDS = 30 * 60.0
"""The Flex Consumption (and Premium) default for `functionTimeout`: 30 minutes."""


class HostConfigError(ValueError):
    """host.json is not valid JSON or holds a value of the wrong shape."""


@dataclass(frozen=True, slots=True)
class ServiceBusOptions:
    """`extensions.serviceBus`, with the Functions host's defaults for what is absent."""

    max_concurrent_calls: int = 16 * (os.cpu_count() or 1)
    """Single dispatch only: concurrent invocations per instance (ignored under dynamic concurrency)."""
    prefetch_count: int = 0
    auto_complete_messages: bool = True
    max_auto_lock_renewal_seconds: float = 300.0
    """Single dispatch only: the batch receiver of cardinality many never renews locks."""
    max_message_batch_size: int = 1000
    """Most messages handed to one invocation of a function with cardinality many."""


@dataclass(frozen=True, slots=True)
class ConcurrencyOptions:
    """The top-level `concurrency` section (the host's dynamic concurrency)."""

    dynamic_concurrency_enabled: bool = False
    maximum_function_concurrency: int = 500
    cpu_threshold: float = 0.80
    """Host CPU use (0-1, of every core) at which the CPU throttle engages."""


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """`extensions.http`'s request queue; None (-1 or absent) is unbounded, the host's default
    outside the Windows Consumption plan."""

    max_concurrent_requests: int | None = None
    max_outstanding_requests: int | None = None


@dataclass(frozen=True, slots=True)
class HostConfig:
    service_bus: ServiceBusOptions = ServiceBusOptions()
    http: HttpOptions = HttpOptions()
    concurrency: ConcurrencyOptions = ConcurrencyOptions()
    function_timeout_seconds: float | None = DEFAULT_FUNCTION_TIMEOUT_SECONDS
    """`functionTimeout`; None for "-1" (unbounded)."""

    @property
    def dynamic_concurrency(self) -> bool:
        """Whether `concurrency.dynamicConcurrencyEnabled` is on."""
        return self.concurrency.dynamic_concurrency_enabled


def parse_timespan(value: str) -> float:
    """A .NET TimeSpan string ("00:05:00", "1.02:00:00", "00:05") in seconds.

    As `TimeSpan.Parse` reads them: `[d.]hh:mm[:ss[.fff]]`, hours below 24, minutes and seconds
    below 60.
    """
    match = _TIMESPAN.match(value.strip())
    if match is None:
        raise HostConfigError(f"{value!r} is not a timespan like 00:05:00")
    days, hours, minutes, seconds = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or float(seconds or 0) >= 60:
        raise HostConfigError(f"{value!r} is not a timespan: hours go to 23, minutes and seconds to 59")
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds or 0)


def require_host_json(path: Path, app_module: str) -> None:
    """Raise `HostConfigError` saying what host.json is and where it was looked for, unless `path` exists.

    `func start` refuses to run without it too: it looks for host.json from the current folder
    up, and names what it expected ("Unable to find project root"; docs/architecture.md).
    The folder `app_module` would be imported from is named when it holds one.
    """
    if path.is_file():
        return
    app_folder = _module_folder(app_module)
    where = path.resolve().parent
    advice = (
        f"run it in the app's folder: cd {app_folder}"
        if app_folder is not None and app_folder != where and (app_folder / path.name).is_file()
        else "restore it (`git checkout host.json` in a clone)"
    )
    raise HostConfigError(
        f"no {path.name} in {where}, where the host looks for it (the folder it runs in, as `func start`). "
        "host.json holds the Functions host's settings for the app (Service Bus batch size and concurrency, "
        f"the HTTP request queue, functionTimeout) and sits beside function_app.py; {advice}"
    )


def _module_folder(module_name: str) -> Path | None:
    """The folder a module would be imported from (without importing it), if it is found."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(module_name)
        if spec is not None and spec.origin is not None:
            return Path(spec.origin).resolve().parent
    return None


def load_host_config(path: Path) -> HostConfig:
    """Read `path` (host.json); a missing file means every default (`require_host_json` refuses one)."""
    if not path.exists():
        return HostConfig()
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise HostConfigError(f"{path} is not valid JSON: {exc}") from None
    try:
        service_bus = _service_bus_options(_section(document, "extensions", "serviceBus"))
        concurrency = _concurrency_options(_section(document, "concurrency"))
        http = _http_options(_section(document, "extensions", "http"))
        timeout = _function_timeout(_get(document, "functionTimeout") if isinstance(document, dict) else None)
    except HostConfigError as exc:
        raise HostConfigError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise HostConfigError(f"{path}: {exc}") from None
    return HostConfig(service_bus=service_bus, http=http, concurrency=concurrency, function_timeout_seconds=timeout)


def _service_bus_options(section: Mapping[str, Any]) -> ServiceBusOptions:
    defaults = ServiceBusOptions()
    renewal = _get(section, "maxAutoLockRenewalDuration")
    try:
        options = ServiceBusOptions(
            max_concurrent_calls=int(_get(section, "maxConcurrentCalls", defaults.max_concurrent_calls)),
            prefetch_count=int(_get(section, "prefetchCount", defaults.prefetch_count)),
            auto_complete_messages=_boolean(_get(section, "autoCompleteMessages", defaults.auto_complete_messages)),
            max_auto_lock_renewal_seconds=parse_timespan(str(renewal))
            if renewal is not None
            else defaults.max_auto_lock_renewal_seconds,
            max_message_batch_size=int(_get(section, "maxMessageBatchSize", defaults.max_message_batch_size)),
        )
    except HostConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise HostConfigError(f"extensions.serviceBus: {exc}") from None
    if options.max_concurrent_calls < 1:
        raise HostConfigError("extensions.serviceBus.maxConcurrentCalls must be at least 1")
    if options.max_message_batch_size < 1:
        raise HostConfigError("extensions.serviceBus.maxMessageBatchSize must be at least 1")
    retry = _get(section, "clientRetryOptions") or {}
    mode = _get(retry, "mode") if isinstance(retry, dict) else None
    if mode is not None and str(mode).lower() not in RETRY_MODES:
        raise HostConfigError(
            f"extensions.serviceBus.clientRetryOptions.mode {mode!r} is not one of {', '.join(RETRY_MODES)}"
        )
    return options


def _http_options(section: Mapping[str, Any]) -> HttpOptions:
    return HttpOptions(
        max_concurrent_requests=_request_limit(section, "maxConcurrentRequests"),
        max_outstanding_requests=_request_limit(section, "maxOutstandingRequests"),
    )


def _request_limit(section: Mapping[str, Any], key: str) -> int | None:
    value = _get(section, key)
    try:
        limit = -1 if value is None else int(value)
    except (TypeError, ValueError) as exc:
        raise HostConfigError(f"extensions.http.{key}: {exc}") from None
    if limit == -1:
        return None
    if limit < 1:
        raise HostConfigError(f"extensions.http.{key} must be at least 1, or -1 for no limit")
    return limit


def _concurrency_options(section: Mapping[str, Any]) -> ConcurrencyOptions:
    defaults = ConcurrencyOptions()
    try:
        options = ConcurrencyOptions(
            dynamic_concurrency_enabled=_boolean(_get(section, "dynamicConcurrencyEnabled", False)),
            maximum_function_concurrency=int(
                _get(section, "maximumFunctionConcurrency", defaults.maximum_function_concurrency)
            ),
            cpu_threshold=float(_get(section, "cpuThreshold", defaults.cpu_threshold)),
        )
    except (TypeError, ValueError) as exc:
        raise HostConfigError(f"concurrency: {exc}") from None
    if options.maximum_function_concurrency < 1:
        raise HostConfigError("concurrency.maximumFunctionConcurrency must be at least 1")
    if not 0 < options.cpu_threshold <= 1:
        raise HostConfigError("concurrency.cpuThreshold must be above 0 and at most 1")
    return options


def _function_timeout(value: object) -> float | None:
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT_SECONDS
    if str(value).strip() == "-1":
        return None
    seconds = parse_timespan(str(value))
    if seconds <= 0:
        raise HostConfigError("functionTimeout must be positive, or -1 for no limit")
    return seconds


def _boolean(value: object) -> bool:
    """A JSON boolean, or the strings .NET configuration binds as one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise HostConfigError(f"{value!r} is not a boolean")


def _get(section: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """`section[key]`, matching the key ignoring case as .NET configuration does."""
    wanted = key.lower()
    for name, value in section.items():
        if name.lower() == wanted:
            return value
    return default


def _section(document: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        document = _get(document, key, {}) if isinstance(document, dict) else {}
    return document if isinstance(document, dict) else {}
