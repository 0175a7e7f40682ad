"""Builds the ingest stage's services from the shared container, once per worker."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.rate_limiter import RateLimiter
from ingest.service import IngestService
from shared.adapters.instance.client_key_secret import load_client_key_secret
from shared.bootstrap import Container, get_container
from shared.domain.client_identity import ClientKeyer
from shared.settings import Settings
from shared.telemetry import IngestMetrics, ingest_metrics

__all__ = ["IngestServices", "build_ingest_services", "ingest_services"]


@dataclass(frozen=True, slots=True)
class IngestServices:
    settings: Settings
    service: IngestService
    metrics: IngestMetrics


def build_ingest_services(container: Container) -> IngestServices:
    settings = container.settings
    limiter = RateLimiter(
        container.rate_limit_store,
        ip_limits=settings.rate_limit_client_limits,
        global_per_minute=settings.rate_limit_global_per_minute,
        sync_seconds=settings.rate_limit_global_sync_seconds,
        instance_id=container.instance_identity[0],
        predecessor_id=container.instance_identity[1],
    )
    container.on_close(limiter.close)
    return IngestServices(
        settings=settings,
        service=IngestService(
            limiter,
            container.publisher,
            ClientKeyer(load_client_key_secret(settings), settings.rate_limit_ipv6_prefix),
        ),
        metrics=ingest_metrics(),
    )


def ingest_services() -> IngestServices:
    """This worker's ingest services (built on first call)."""
    return get_container().singleton(build_ingest_services)
