"""The console over one host instance's parts: its container's stores and its `/metrics` reading."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, generate_latest

from cloudscale_local.host.console.app import build_console
from cloudscale_local.host.console.sources import ConsoleSources
from cloudscale_local.host.console.stream import ConsoleStreams
from cloudscale_local.host.gateway import AsgiApp
from cloudscale_local.host.metrics_totals import MetricsExchange
from shared.bootstrap import Container

__all__ = ["console_for_host"]


def console_for_host(container: Container, exchange: MetricsExchange | None) -> tuple[AsgiApp, ConsoleStreams]:
    """The console app of an instance (`exchange`: the supervisor's metrics totals, None for a lone host)."""

    async def read_metrics() -> bytes:
        # What /metrics serves: the run's totals under a supervisor. In a thread: reading runs the
        # queue-depth gauges' callbacks, which count rows in SQLite.
        return await asyncio.to_thread(generate_latest, REGISTRY) if exchange is None else await exchange.totals()

    return build_console(
        ConsoleSources(
            live_events=lambda: container.live_events,
            event_store=lambda: container.event_store,
            dead_letters=lambda: container.dead_letter_browser,
            read_metrics=read_metrics,
        )
    )
