"""The composition root: the one place that chooses adapters from settings.

A `Container` builds each adapter lazily, once per worker process, and every stage reuses
it (SDK clients are expensive and hold connection pools). Nothing connects at import time:
`function_app` imports this module without any Azure setting present.

Tests and the local host install their own container with `set_container`; Azure Functions
builds the default one from the environment on first use.

The stage assembly (the end of this module) gives each function exactly what it runs, built
from the container's adapters on first use and kept with the container: `ingest_endpoint`,
`readiness_probes`, `event_processor`, `event_reader`, `analytics_feed`, `analytics_reconciler`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.ports import (
    AnalyticsHistory,
    AnalyticsSink,
    DeadLetterSink,
    EventPublisher,
    EventStore,
    RateLimitStore,
    StoredEventHistory,
)
from shared.settings import Settings, load_settings
from shared.telemetry import configure_azure_monitor, observe_queue_depth

__all__ = ["Container", "close_container", "get_container", "set_container"]

if TYPE_CHECKING:
    from shared.adapters.embedded_queue import EmbeddedQueue

Closer = Callable[[], Awaitable[None]]
T = TypeVar("T")


class Container:
    """Adapters for one worker process, created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._closers: list[Closer] = []
        self._singletons: dict[Callable[[Container], Any], Any] = {}

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    @cached_property
    def instance_identity(self) -> tuple[str | None, str | None]:
        """This process's id in the shared rate-limit state and its predecessor's, if known.

        Embedded backend: a slot in the data folder, which names the process that held it
        last (`shared.adapters.instance_slot`). On Azure: (None, None), a random id each.
        """
        if self.settings.backend != "embedded":
            return None, None
        from shared.adapters.instance_slot import InstanceSlot

        slot = InstanceSlot(self.data_dir / "instances")

        async def release() -> None:
            slot.release()

        self.on_close(release)
        return slot.instance_id, slot.predecessor_id

    @cached_property
    def embedded_queue(self) -> EmbeddedQueue:
        """The embedded broker (embedded backend only)."""
        from shared.adapters.embedded_queue import EMBEDDED_QUEUE_FILE, EmbeddedQueue

        queue = EmbeddedQueue(
            self.data_dir / EMBEDDED_QUEUE_FILE,
            lock_seconds=self.settings.queue_lock_seconds,
            max_delivery_count=self.settings.queue_max_delivery_count,
        )
        observe_queue_depth(queue.read_depth, queue.read_dead_letter_depth)
        return queue

    @cached_property
    def publisher(self) -> EventPublisher:
        publisher: EventPublisher
        if self.settings.backend == "azure":
            from shared.adapters.servicebus_publisher import create_service_bus_publisher

            publisher = create_service_bus_publisher(self.settings)
        else:
            from shared.adapters.embedded_queue import EmbeddedPublisher

            publisher = EmbeddedPublisher(self.embedded_queue)
        self.on_close(publisher.close)
        return publisher

    @cached_property
    def rate_limit_store(self) -> RateLimitStore:
        store: RateLimitStore
        if self.settings.backend == "azure":
            from shared.adapters.tables_rate_limit import create_table_rate_limit_store

            store = create_table_rate_limit_store(self.settings)
        else:
            from shared.adapters.embedded_rate_limit import EmbeddedRateLimitStore

            store = EmbeddedRateLimitStore(
                self.data_dir / "ratelimit.sqlite3", client_idle_seconds=self.settings.rate_limit_client_idle_seconds
            )
        self.on_close(store.close)
        return store

    @cached_property
    def event_store(self) -> EventStore:
        """Stored events: Cosmos DB on Azure, SQLite with a change feed embedded."""
        store: EventStore
        if self.settings.backend == "azure":
            from shared.adapters.cosmos_event_store import create_cosmos_event_store

            store = create_cosmos_event_store(self.settings)
        else:
            from shared.adapters.embedded_event_store import EVENTS_FILE, EmbeddedEventStore

            store = EmbeddedEventStore(self.data_dir / EVENTS_FILE)
        self.on_close(store.close)
        return store

    @cached_property
    def analytics_sink(self) -> AnalyticsSink:
        """Analytics: Data Explorer on Azure, a SQLite table embedded."""
        sink: AnalyticsSink
        if self.settings.backend == "azure":
            from shared.adapters.kusto_sink import create_kusto_sink

            sink = create_kusto_sink(self.settings)
        else:
            from shared.adapters.embedded_analytics import ANALYTICS_FILE, EmbeddedAnalyticsStore

            sink = EmbeddedAnalyticsStore(self.data_dir / ANALYTICS_FILE)
        self.on_close(sink.close)
        return sink

    @property
    def event_history(self) -> StoredEventHistory:
        """The event store read by commit time (both adapters implement it; see the contract tests)."""
        return cast(StoredEventHistory, self.event_store)

    @cached_property
    def analytics_history(self) -> AnalyticsHistory:
        """Analytics read by commit time: Data Explorer queries on Azure, the embedded table locally."""
        if self.settings.backend == "azure":
            from shared.adapters.kusto_history import create_kusto_history

            history = create_kusto_history(self.settings)
            self.on_close(history.close)
            return history
        return cast(AnalyticsHistory, self.analytics_sink)

    @cached_property
    def dead_letter_sink(self) -> DeadLetterSink:
        """Where poison messages are parked: the poison queue on Azure, the embedded dead-letter queue."""
        sink: DeadLetterSink
        if self.settings.backend == "azure":
            from shared.adapters.servicebus_dead_letters import create_service_bus_dead_letter_sink

            sink = create_service_bus_dead_letter_sink(self.settings)
        else:
            from shared.adapters.embedded_queue import EmbeddedDeadLetterSink

            sink = EmbeddedDeadLetterSink(self.embedded_queue)
        self.on_close(sink.close)
        return sink

    def singleton(self, factory: Callable[[Container], T]) -> T:
        """`factory(self)`, built on first call and reused: how each function keeps what it runs."""
        if factory not in self._singletons:
            self._singletons[factory] = factory(self)
        return self._singletons[factory]  # type: ignore[no-any-return]

    def on_close(self, closer: Closer) -> None:
        """Register something to close with the container (last registered, first closed)."""
        self._closers.append(closer)

    async def close(self) -> None:
        while self._closers:
            await self._closers.pop()()


_container: Container | None = None


def get_container(environ: Mapping[str, str] | None = None) -> Container:
    """This process's container, built from the environment on first call."""
    global _container
    if _container is None:
        settings = load_settings(os.environ if environ is None else environ)
        configure_azure_monitor(settings)
        _container = Container(settings)
    return _container


def set_container(container: Container | None) -> None:
    """Install a container (local host, tests); `None` forgets the current one."""
    global _container
    _container = container


async def close_container() -> None:
    """Close and forget this process's container, if one was built."""
    global _container
    if _container is not None:
        container, _container = _container, None
        await container.close()


# --- Stage assembly: what each function runs, from this worker's container ------------------------
# Built on first use and kept with the container (`Container.singleton`), so a container a
# test or the local host installs brings its own. The stages are imported here, when first
# needed, as the adapters are above: importing this module stays cheap for the CLI.

if TYPE_CHECKING:
    from changefeed.reconcile import Reconciler
    from changefeed.service import AnalyticsFeedService
    from ingest.health import ReadinessProbes
    from ingest.http import IngestEndpoint
    from process.service import ProcessService


def ingest_endpoint() -> IngestEndpoint:
    """`POST /api/events`: the ingest use case and what its HTTP edge needs."""
    return get_container().singleton(build_ingest_endpoint)


def readiness_probes() -> ReadinessProbes:
    """The health routes: one probe per dependency of ingest."""
    return get_container().singleton(build_readiness_probes)


def event_processor() -> ProcessService:
    """The Service Bus trigger: the process use case."""
    return get_container().singleton(build_event_processor)


def event_reader() -> EventStore:
    """`GET /api/events/{tenantId}/{eventId}`: the event store, read by key."""
    return get_container().event_store


def analytics_feed() -> AnalyticsFeedService:
    """The change-feed trigger: stored events into analytics."""
    return get_container().singleton(build_analytics_feed)


def analytics_reconciler() -> Reconciler:
    """The hourly timer (and `cloudscale reconcile`): what analytics missed, sent again."""
    return get_container().singleton(build_analytics_reconciler)


def build_ingest_endpoint(container: Container) -> IngestEndpoint:
    """The ingest use case over the container's rate-limit store and queue."""
    from ingest.http import IngestEndpoint
    from ingest.rate_limiter import RateLimiter
    from ingest.service import IngestService
    from shared.adapters.client_key_secret import load_client_key_secret
    from shared.domain.client_identity import ClientKeyer
    from shared.telemetry import ingest_metrics

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
    metrics = ingest_metrics()
    keyer = ClientKeyer(load_client_key_secret(settings), settings.rate_limit_ipv6_prefix)
    return IngestEndpoint(
        use_case=IngestService(limiter, container.publisher, keyer, metrics),
        trusted_proxies=settings.trusted_proxies,
        answer_time=metrics.ingestion_duration,
    )


def build_readiness_probes(container: Container) -> ReadinessProbes:
    """Probes of the container's adapters; each adapter is built when its probe first runs."""
    from ingest.health import ReadinessProbes
    from shared.adapters.client_key_secret import load_client_key_secret

    async def client_key() -> None:
        await asyncio.to_thread(load_client_key_secret, container.settings)

    return ReadinessProbes(
        queue=lambda: container.publisher.check(),
        rate_limit_store=lambda: container.rate_limit_store.check(),
        event_store=lambda: container.event_store.check(),
        analytics=lambda: container.analytics_sink.check(),
        client_key=client_key,
    )


def build_event_processor(container: Container) -> ProcessService:
    """The process use case over the container's event store and dead-letter sink."""
    from process.service import ProcessService
    from process.store_guard import StoreGuard
    from shared.domain.fraud_rules import default_rules, rules_from_path
    from shared.telemetry import process_metrics

    settings = container.settings
    rules = rules_from_path(settings.fraud_rules_file) if settings.fraud_rules_file else default_rules()
    return ProcessService(
        container.event_store,
        container.dead_letter_sink,
        StoreGuard(budget_seconds=settings.process_retry_seconds),
        rules,
        rules.distinct_users_tracker(),
        process_metrics(),
    )


def build_analytics_feed(container: Container) -> AnalyticsFeedService:
    """The change-feed use case over the container's analytics sink."""
    from changefeed.service import AnalyticsFeedService
    from shared.telemetry import analytics_metrics

    return AnalyticsFeedService(container.analytics_sink, analytics_metrics())


def build_analytics_reconciler(container: Container) -> Reconciler:
    """Reconciliation over the container's event history, analytics history and analytics sink."""
    from changefeed.reconcile import Reconciler

    return Reconciler(container.event_history, container.analytics_history, container.analytics_sink)
