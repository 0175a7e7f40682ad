"""Builds the change-feed stage's services from the shared container, once per worker."""

from __future__ import annotations

from changefeed.reconcile import Reconciler
from changefeed.service import AnalyticsFeedService
from shared.bootstrap import Container, get_container
from shared.telemetry import analytics_metrics

__all__ = ["build_feed_service", "build_reconciler", "feed_service", "reconciler"]


def build_feed_service(container: Container) -> AnalyticsFeedService:
    return AnalyticsFeedService(container.analytics_sink, analytics_metrics())


def feed_service() -> AnalyticsFeedService:
    """This worker's change-feed service (built on first call)."""
    return get_container().singleton(build_feed_service)


def build_reconciler(container: Container) -> Reconciler:
    return Reconciler(container.event_history, container.analytics_history, container.analytics_sink)


def reconciler() -> Reconciler:
    """This worker's reconciler (built on first call)."""
    return get_container().singleton(build_reconciler)
