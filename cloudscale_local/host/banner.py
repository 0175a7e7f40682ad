"""The lines `cloudscale run` prints once it listens: where, which functions, what is not served."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from cloudscale_local.host.cors import CorsPolicy
from cloudscale_local.host.exposure import write_keys_line
from cloudscale_local.host.functions import ChangeFeedFunction, FunctionIndex, HttpFunction, ServiceBusFunction
from cloudscale_local.host.host_config import HostConfig
from cloudscale_local.host.timer_trigger import ServableTimer
from shared.settings import Settings

__all__ = ["BARE_ENDPOINT_PATH", "Banner", "dashboard_line", "describe_concurrency", "print_banner"]

BARE_ENDPOINT_PATH = "/_bench/bare"


@dataclass(frozen=True, slots=True)
class Banner:
    """What the host serves, gathered before it listens; printed once the port is known."""

    settings: Settings
    index: FunctionIndex
    http: list[HttpFunction]
    host_config: HostConfig
    servable: list[ServiceBusFunction]
    feeds: list[ChangeFeedFunction]
    unservable: dict[str, str]
    bare_endpoint: bool
    timers: list[ServableTimer] = field(default_factory=list)
    instances: int = 1
    cors: CorsPolicy | None = None


def print_banner(address: tuple[str, int], banner: Banner) -> None:
    """Print where the host listens and what it serves (or does not, and why)."""
    host, port = address[:2]
    base = f"http://{host}:{port}"
    settings = banner.settings
    lines = [
        "CloudScale local host",
        f"  listening on {base}",
        f"  data in {settings.data_dir.resolve()} ({settings.backend} backend)",
        write_keys_line(settings),
        f"  instances: {banner.instances} (host processes, each running every function below)",
        "  functions:",
    ]
    for function in banner.http:
        lines.append(f"    {function.name:<20} {','.join(function.methods):<6} {base}/api/{function.route.template}")
    for queue_function in banner.servable:
        concurrency = describe_concurrency(queue_function, banner.host_config)
        lines.append(f"    {queue_function.name:<20} queue  {settings.events_queue} ({concurrency})")
    for feed in banner.feeds:
        lines.append(
            f"    {feed.name:<20} feed   {settings.cosmos_container} change feed (batches of {feed.max_items})"
        )
    for timer_function, schedule in banner.timers:
        lines.append(f"    {timer_function.name:<20} timer  {schedule} (UTC)")
    lines.append(f"  metrics: {base}/metrics")
    lines.append(dashboard_line(host, port))
    if banner.cors is None:
        lines.append("  CORS: off (--cors ''): preflights reach routing, as without the host's CORS middleware")
    else:
        lines.append(
            f"  CORS: {banner.cors.describe()} (the host's middleware answers every preflight; --cors to change)"
        )
    http = banner.host_config.http
    if http.max_concurrent_requests is not None or http.max_outstanding_requests is not None:
        lines.append(
            f"  HTTP request queue: {_limit(http.max_concurrent_requests)} at once, "
            f"{_limit(http.max_outstanding_requests)} outstanding, 429 beyond"
        )
    if banner.bare_endpoint:
        lines.append(f"  benchmark ceiling: POST {base}{BARE_ENDPOINT_PATH} (answers 202, does nothing)")
    for name, reason in banner.unservable.items():
        lines.append(f"  not served locally: {name} ({reason})")
    for name, trigger in banner.index.other.items():
        lines.append(f"  not served locally: {name} ({trigger})")
    lines.append("  press Ctrl-C to stop")
    print("\n".join(lines), flush=True)


def describe_concurrency(function: ServiceBusFunction, config: HostConfig) -> str:
    """How many messages of `function` run at once, in the banner's words."""
    if function.many:
        return f"one batch of up to {config.service_bus.max_message_batch_size} at a time, locks not renewed"
    if config.dynamic_concurrency:
        return f"dynamic concurrency from 1, at most {config.concurrency.maximum_function_concurrency}"
    return f"at most {config.service_bus.max_concurrent_calls} at once"


def dashboard_line(host: str, port: int) -> str:
    """Where this machine's browser finds the console (served to loopback clients only)."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere, loopback included
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return f"  dashboard: not reachable (served to loopback clients only; the host listens on {host})"
    shown = f"[{host}]" if ":" in host else host
    return f"  dashboard: http://{shown}:{port}/dashboard (this machine only)"


def _limit(value: int | None) -> str:
    return "no limit" if value is None else str(value)
