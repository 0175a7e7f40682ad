"""Runs a Functions app on this machine: HTTP triggers on a real socket, embedded backends.

`serve` loads settings (failing fast, naming the bad setting), installs the telemetry
providers the app's instruments report to (Prometheus text at `/metrics`), indexes the app's
functions and serves them with uvicorn until Ctrl-C or SIGTERM. Shutdown stops accepting
connections, lets requests in flight finish, then closes the stores; every 202 was
committed before it was sent, so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import azure.functions as func
import uvicorn
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from local_host.functions import FunctionIndex, index_functions
from local_host.gateway import Gateway, PlainResponse
from shared.bootstrap import Container, close_container, set_container
from shared.settings import Settings, load_settings

__all__ = ["HostOptions", "serve"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostOptions:
    host: str = "127.0.0.1"
    port: int = 7071
    app_module: str = "function_app"
    log_level: str = "warning"


def serve(options: HostOptions, environ: Mapping[str, str]) -> None:
    """Serve the app until interrupted. Raises `SettingsError` before binding on bad settings."""
    settings = load_settings(environ)
    _install_telemetry()
    app = _load_app(options.app_module)
    index = index_functions(app)
    container = Container(settings)
    set_container(container)

    async def metrics_endpoint() -> PlainResponse:
        return PlainResponse(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)

    async def startup() -> None:
        # Open the stores before the first request, so it is not the one that pays for it
        # and /metrics reports the queue depth from the start.
        container.publisher  # noqa: B018
        container.rate_limit_store  # noqa: B018

    async def shutdown() -> None:
        await close_container()

    gateway = Gateway(
        index.http, host_endpoints={"/metrics": metrics_endpoint}, on_startup=startup, on_shutdown=shutdown
    )
    config = uvicorn.Config(
        gateway,
        host=options.host,
        port=options.port,
        log_level=options.log_level,
        access_log=False,
        lifespan="on",
        # The app decides whom to believe (CLOUDSCALE_TRUSTED_PROXIES); uvicorn must pass
        # the real socket peer, not rewrite it from X-Forwarded-For for loopback peers.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    asyncio.run(_Server(config, settings, index).serve())


class _Server(uvicorn.Server):
    """uvicorn's server, printing where it listens once the socket is bound (port 0 included)."""

    def __init__(self, config: uvicorn.Config, settings: Settings, index: FunctionIndex) -> None:
        super().__init__(config)
        self._settings = settings
        self._index = index

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop gracefully on SIGINT and SIGTERM, then exit with status 0.

        uvicorn's own handling re-raises the signal once it has shut down, so the process
        would end "killed by SIGTERM" (or with a KeyboardInterrupt) after a clean stop.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            _print_banner(self.servers[0].sockets[0].getsockname(), self._settings, self._index)


def _print_banner(address: tuple[str, int], settings: Settings, index: FunctionIndex) -> None:
    host, port = address[:2]
    base = f"http://{host}:{port}"
    lines = [
        "CloudScale local host",
        f"  listening on {base}",
        f"  data in {settings.data_dir.resolve()} ({settings.backend} backend)",
        "  functions:",
    ]
    for function in index.http:
        lines.append(f"    {function.name:<16} {','.join(function.methods):<6} {base}/api/{function.route.template}")
    lines.append(f"  metrics: {base}/metrics")
    for name, trigger in index.other.items():
        lines.append(f"  not served locally: {name} ({trigger})")
    lines.append("  press Ctrl-C to stop")
    print("\n".join(lines), flush=True)


def _install_telemetry() -> None:
    resource = Resource.create({"service.name": "cloudscale"})
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()]))
    trace.set_tracer_provider(TracerProvider(resource=resource))


def _load_app(module_name: str) -> func.FunctionApp:
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    app = getattr(module, "app", None)
    if not isinstance(app, func.FunctionApp):
        raise SystemExit(f"{module_name}.app is not an azure.functions.FunctionApp")
    return app
