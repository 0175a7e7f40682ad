"""Runs a Functions app on this machine: HTTP triggers on a real socket, embedded backends.

`serve` loads settings (failing fast, naming the bad setting), installs the telemetry
providers the app's instruments report to (Prometheus text at `/metrics`), indexes the app's
functions and serves them with uvicorn until Ctrl-C or SIGTERM. With `instances` above one
it hands over to the supervisor (`cloudscale_local.host.instances`), which runs each
instance in a process of its own through `serve_instance`. Shutdown stops accepting
connections, lets requests in flight finish, then closes the stores; every 202 was
committed before it was sent, so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import azure.functions as func
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from cloudscale_local.host.banner import BARE_ENDPOINT_PATH, Banner, print_banner
from cloudscale_local.host.changefeed_trigger import ChangeFeedTrigger
from cloudscale_local.host.console.for_host import console_for_host
from cloudscale_local.host.cors import CorsPolicy
from cloudscale_local.host.exposure import require_keys_off_loopback
from cloudscale_local.host.functions import index_functions
from cloudscale_local.host.gateway import Gateway, HostEndpoint, PlainResponse
from cloudscale_local.host.host_config import HostConfig, load_host_config, require_host_json
from cloudscale_local.host.host_logging import system_level
from cloudscale_local.host.http_limits import HttpLimits, server_config
from cloudscale_local.host.leases import LeaseStore
from cloudscale_local.host.listening import check_port_free
from cloudscale_local.host.metrics_totals import MetricsExchange, MetricsSnapshots
from cloudscale_local.host.providers import telemetry_providers
from cloudscale_local.host.request_queue import RequestQueue
from cloudscale_local.host.schedule_monitor import ScheduleMonitor
from cloudscale_local.host.servable import (
    is_disabled,
    servable_feed_functions,
    servable_queue_functions,
    servable_timer_functions,
)
from cloudscale_local.host.servicebus_trigger import ServiceBusTrigger
from cloudscale_local.host.shutdown_summary import print_queue_summary
from cloudscale_local.host.timer_lock import TimerLock
from cloudscale_local.host.timer_trigger import ServableTimer, TimerTrigger
from cloudscale_local.host.uvicorn_server import HostServer
from shared.adapters.sqlite.worker import check_readable
from shared.bootstrap import Container, close_container, set_container
from shared.settings import Settings, load_settings

__all__ = ["HostOptions", "InstanceRole", "Plan", "check_stores", "plan", "serve", "serve_instance"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostOptions:
    host: str = "127.0.0.1"
    port: int = 7071
    app_module: str = "function_app"
    log_level: str = "info"
    """The run's log level, debug, info, warning or error (what it means: `cloudscale_local.host.host_logging`)."""
    quiet: bool = False
    """No line per invocation (`cloudscale_local.host.invocation_lines`); they are not even recorded."""
    host_json: Path = field(default_factory=lambda: Path("host.json"))
    bare_endpoint: bool = False
    """Also serve `BARE_ENDPOINT_PATH`, which answers 202 and does nothing behind the gateway.

    Not the benchmark's ceiling, which is `cloudscale_local.bench.ceiling` (no gateway at all).
    """
    shutdown_grace_seconds: float = 10.0
    trace_file: Path | None = None
    """Append every finished span to this file, one JSON object a line (the host's spans and the app's)."""
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    """Bounds on each request's head, body and read time (see `cloudscale_local.host.http_limits`)."""
    instances: int = 1
    """Host processes, each a whole Functions instance with its own socket on one port (1: this process alone)."""
    cors: CorsPolicy | None = None
    """The host's CORS middleware and its allowed origins (`func start --cors`); None: off."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What an instance serves, worked out from settings, host.json and the app's index."""

    settings: Settings
    host_config: HostConfig
    banner: Banner


@dataclass(frozen=True, slots=True)
class InstanceRole:
    """How an instance started by the supervisor differs from a lone host."""

    name: str
    """Its `service.instance.id` (Application Insights' `cloud_RoleInstance`): on every span it exports."""
    snapshots: MetricsSnapshots
    """Where it writes its metrics, and reads the other instances' (for `/metrics` totals)."""
    on_started: Callable[[], None]
    """Called once it serves (it prints no banner: the supervisor does)."""


def serve(options: HostOptions, environ: Mapping[str, str]) -> None:
    """Serve the app until interrupted. Raises `SettingsError` before binding on bad settings."""
    if options.instances > 1:
        from cloudscale_local.host.instances import supervise

        supervise(options, environ)
        return
    ready = plan(options, environ)
    # Before uvicorn binds, so a busy port is a message saying what to do, not uvicorn's log line.
    check_port_free(options.host, options.port)
    with telemetry_providers(options.trace_file, invocation_lines=not options.quiet):
        served = _serve(options, environ, ready, check_first=True)
    # The server has stopped and put the default handlers back: a second stop signal now (a
    # second Ctrl-C, or a second SIGTERM from whoever sent the first) is ignored instead of
    # killing the process while it reads the queue for the summary or the interpreter exits.
    # Ignored, not blocked: blocking is per thread, and the stores' threads may still be running
    # to take a signal sent to the process. Python leaves an ignored signal ignored at exit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if served:
        print_queue_summary(ready.settings)


def plan(options: HostOptions, environ: Mapping[str, str]) -> Plan:
    """Load settings and host.json, index the app; raises the error that stops the host, if any."""
    settings = load_settings(environ)
    require_keys_off_loopback(settings, options.host)
    require_host_json(options.host_json, options.app_module)
    host_config = load_host_config(options.host_json)
    index = index_functions(_load_app(options.app_module))
    embedded = settings.backend == "embedded"
    servable, unservable = servable_queue_functions(index, settings, environ, embedded=embedded)
    feeds, unfed = servable_feed_functions(index, settings, environ, embedded=embedded)
    unservable.update(unfed)
    timers, untimed = servable_timer_functions(index, settings, environ, embedded=embedded)
    unservable.update(untimed)
    http_functions = [function for function in index.http if not is_disabled(function.name, environ)]
    banner = Banner(
        settings,
        index,
        http_functions,
        host_config,
        servable,
        feeds,
        unservable,
        options.bare_endpoint,
        timers=timers,
        instances=options.instances,
        cors=options.cors,
    )
    return Plan(settings, host_config, banner)


def serve_instance(
    options: HostOptions,
    environ: Mapping[str, str],
    sockets: list[socket.socket],
    role: InstanceRole,
) -> bool:
    """Serve as one of the supervisor's instances on its listening socket; False if it did not start."""
    ready = plan(options, environ)
    with telemetry_providers(options.trace_file, role.name, invocation_lines=not options.quiet):
        return _serve(options, environ, ready, sockets=sockets, role=role)


def check_stores(settings: Settings) -> None:
    """Open the stores once and close them: what stops a host with a damaged store, ahead of any instance."""
    container = Container(settings)
    _open_stores_first(container)
    if container.is_embedded:
        container.embedded_queue.close()


def _serve(
    options: HostOptions,
    environ: Mapping[str, str],
    ready: Plan,
    *,
    check_first: bool = False,
    sockets: list[socket.socket] | None = None,
    role: InstanceRole | None = None,
) -> bool:
    settings, host_config, banner = ready.settings, ready.host_config, ready.banner
    container = Container(settings)
    set_container(container)
    if check_first:
        _open_stores_first(container)
    servable, feeds, timers, http_functions = banner.servable, banner.feeds, banner.timers, banner.http
    exchange = None if role is None else MetricsExchange(role.snapshots, lambda: generate_latest(REGISTRY))
    triggers: list[ServiceBusTrigger] = []
    feed_triggers: list[ChangeFeedTrigger] = []
    timer_triggers: list[TimerTrigger] = []

    host_endpoints = _host_endpoints(options.bare_endpoint, exchange)
    console, console_streams = console_for_host(container, exchange)

    async def startup() -> None:
        # Open the stores before the first request, so it is not the one that pays for it
        # and /metrics reports the queue depth from the start.
        container.publisher  # noqa: B018
        container.rate_limit_store  # noqa: B018
        if servable:
            container.event_store  # noqa: B018
        for function in servable:
            trigger = ServiceBusTrigger(function, container.embedded_queue, host_config)
            trigger.start()
            triggers.append(trigger)
        if feeds:
            store = container.embedded_event_store
            leases = LeaseStore(container.data_dir / "leases.sqlite3")
            container.on_close(_closer(leases))
            container.analytics_sink  # noqa: B018
            for feed in feeds:
                feed_trigger = ChangeFeedTrigger(feed, store, leases, host_config.function_timeout_seconds)
                feed_trigger.start()
                feed_triggers.append(feed_trigger)
        monitor = ScheduleMonitor(container.data_dir / "timers")
        locks = container.data_dir / "timers" / "locks"
        timer_triggers.extend(_start_timers(timers, monitor, locks, host_config.function_timeout_seconds))
        if exchange is not None:
            await exchange.start()

    async def shutdown() -> None:
        # Consumers first (letting invocations in flight finish), then the stores they use.
        # All at once: one grace period for the whole host, not one per kind of trigger.
        grace = options.shutdown_grace_seconds
        await asyncio.gather(
            *(trigger.stop(grace) for trigger in triggers),
            *(feed.stop(grace) for feed in feed_triggers),
            *(timer.stop(grace) for timer in timer_triggers),
        )
        if exchange is not None:
            await exchange.stop()
        await close_container()

    limits = options.http_limits
    request_queue = RequestQueue(host_config.http.max_concurrent_requests, host_config.http.max_outstanding_requests)
    gateway = Gateway(
        http_functions,
        host_endpoints=host_endpoints,
        on_startup=startup,
        on_shutdown=shutdown,
        limits=limits,
        request_queue=request_queue,
        cors=options.cors,
        console=console,
    )
    config = server_config(
        gateway,
        limits,
        host=options.host,
        port=options.port,
        log_level=system_level(options.log_level),
        lifespan="on",
    )
    # As one of the supervisor's instances it prints nothing (the supervisor prints the banner,
    # once) and stops on SIGTERM only: Ctrl-C reaches the supervisor, which stops its instances.
    server = HostServer(config, _on_started(banner, role), console_streams, stop_on_ctrl_c=role is None)
    asyncio.run(server.serve(sockets))
    return server.started


def _host_endpoints(bare: bool, exchange: MetricsExchange | None) -> dict[str, HostEndpoint]:
    """The host's own endpoints: `/metrics` (the run's totals under a supervisor), and the bare one if asked."""

    async def metrics_endpoint() -> PlainResponse:
        body = generate_latest(REGISTRY) if exchange is None else await exchange.totals()
        return PlainResponse(200, body, CONTENT_TYPE_LATEST)

    async def bare_endpoint() -> PlainResponse:
        return PlainResponse(202, b"{}", "application/json")

    # A Prometheus scrape is a GET; anything else is refused as for a function's route.
    endpoints = {"/metrics": HostEndpoint(metrics_endpoint, frozenset({"GET"}))}
    if bare:
        endpoints[BARE_ENDPOINT_PATH] = HostEndpoint(bare_endpoint, frozenset({"POST"}))
    return endpoints


def _start_timers(
    timers: list[ServableTimer], monitor: ScheduleMonitor, locks: Path, function_timeout: float | None
) -> list[TimerTrigger]:
    # Each timer runs on one instance only, whichever holds its lock (see timer_lock).
    started = [
        TimerTrigger(
            function, schedule, monitor, function_timeout=function_timeout, lock=TimerLock(locks, function.name)
        )
        for function, schedule in timers
    ]
    for timer in started:
        timer.start()
    return started


def _closer(leases: LeaseStore) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        leases.close()

    return close


def _on_started(banner: Banner, role: InstanceRole | None) -> Callable[[tuple[str, int]], None]:
    """What the server does once it listens: print the banner, or tell the supervisor."""
    if role is None:
        return lambda address: print_banner(address, banner)
    return lambda _address: role.on_started()


def _open_stores_first(container: Container) -> None:
    """Open the embedded stores before serving: a damaged file, or a queue that lost
    acknowledged messages, stops the host here with a message naming the file
    (`StoreFileError`), not in the middle of the server's startup."""
    if not container.is_embedded:
        return
    # Every store file is looked at, not only those opened at once (the event store and
    # analytics open on first use, and treat a failure as an outage to retry).
    for store_file in sorted(container.data_dir.glob("*.sqlite3")):
        check_readable(store_file)
    container.embedded_queue  # noqa: B018
    # The client-key secret too, so that the first request does not have to write it.
    container.client_key_secret()


def _load_app(module_name: str) -> func.FunctionApp:
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    app = getattr(module, "app", None)
    if not isinstance(app, func.FunctionApp):
        raise SystemExit(f"{module_name}.app is not an azure.functions.FunctionApp")
    return app
