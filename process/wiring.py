"""Builds the process stage's services from the shared container, once per worker."""

from __future__ import annotations

from dataclasses import dataclass

from process.service import ProcessService
from process.store_guard import StoreGuard
from shared.bootstrap import Container, get_container
from shared.domain.fraud_rules import default_rules, rules_from_path
from shared.ports import EventStore
from shared.settings import Settings
from shared.telemetry import process_metrics

__all__ = ["ProcessServices", "build_process_services", "process_services"]


@dataclass(frozen=True, slots=True)
class ProcessServices:
    settings: Settings
    service: ProcessService
    store: EventStore
    guard: StoreGuard


def build_process_services(container: Container) -> ProcessServices:
    settings = container.settings
    metrics = process_metrics()
    rules = rules_from_path(settings.fraud_rules_file) if settings.fraud_rules_file else default_rules()
    guard = StoreGuard(
        budget_seconds=settings.process_retry_seconds,
        on_retry=lambda error: metrics.processing_retries.add(1, {"error": type(error).__name__}),
    )
    service = ProcessService(
        container.event_store,
        container.dead_letter_sink,
        guard,
        rules,
        rules.distinct_users_tracker(),
        metrics,
    )
    return ProcessServices(settings=settings, service=service, store=container.event_store, guard=guard)


def process_services() -> ProcessServices:
    """This worker's process services (built on first call)."""
    return get_container().singleton(build_process_services)
