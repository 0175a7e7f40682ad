"""The composition root: the one place that chooses adapters from settings.

A `Container` builds each adapter lazily, once per worker process, and every stage reuses
it (SDK clients are expensive and hold connection pools). Nothing connects at import time:
`function_app` imports this module without any Azure setting present.

Tests and the local host install their own container with `set_container`; Azure Functions
builds the default one from the environment on first use.

The other half of the composition root, `shared.assembly`, gives each function exactly what
it runs, built from the container's adapters on first use and kept with the container.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared.ports import (
    AnalyticsEraser,
    AnalyticsHistory,
    AnalyticsSink,
    DeadLetterBrowser,
    DeadLetterSink,
    EventPublisher,
    EventStoreWithHistory,
    PrivacyStore,
    RateLimitStore,
    StoredEventHistory,
    TenantRegistry,
)
from shared.settings import Settings, SettingsError, load_settings
from shared.suppression import SuppressionList
from shared.telemetry import configure_azure_monitor, observe_queue_depth
from shared.write_key_auth import WriteKeyAuthenticator

__all__ = ["Container", "close_container", "get_container", "set_container"]

if TYPE_CHECKING:
    from shared.adapters.analytics.embedded_analytics import EmbeddedAnalyticsStore
    from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
    from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
    from shared.adapters.live_events.embedded import EmbeddedLiveEvents

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
        last (`shared.adapters.instance.instance_slot`). On Azure: (None, None), a random id each.
        """
        if self.settings.backend != "embedded":
            return None, None
        from shared.adapters.instance.instance_slot import InstanceSlot

        slot = InstanceSlot(self.data_dir / "instances")

        async def release() -> None:
            slot.release()

        self.on_close(release)
        return slot.instance_id, slot.predecessor_id

    @property
    def is_embedded(self) -> bool:
        """Whether the adapters are the embedded ones. Then the queue, the change feed and the
        schedules run on this machine, fed by a local host; with the Azure adapters they run on
        Azure, and a local copy would be a second consumer."""
        return self.settings.backend == "embedded"

    @cached_property
    def embedded_queue(self) -> EmbeddedQueue:
        """The embedded broker (embedded backend only)."""
        from shared.adapters.event_queue.embedded_queue import EMBEDDED_QUEUE_FILE, EmbeddedQueue

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
            from shared.adapters.event_queue.servicebus_publisher import create_service_bus_publisher

            publisher = create_service_bus_publisher(self.settings)
        else:
            from shared.adapters.event_queue.embedded_publisher import EmbeddedPublisher

            publisher = EmbeddedPublisher(self.embedded_queue)
        self.on_close(publisher.close)
        return publisher

    @cached_property
    def rate_limit_store(self) -> RateLimitStore:
        store: RateLimitStore
        if self.settings.backend == "azure":
            from shared.adapters.rate_limit.tables_rate_limit import create_table_rate_limit_store

            store = create_table_rate_limit_store(self.settings)
        else:
            from shared.adapters.rate_limit.embedded_rate_limit import EmbeddedRateLimitStore

            store = EmbeddedRateLimitStore(
                self.data_dir / "ratelimit.sqlite3", client_idle_seconds=self.settings.rate_limit_client_idle_seconds
            )
        self.on_close(store.close)
        return store

    @cached_property
    def tenant_registry(self) -> TenantRegistry:
        """Tenants and write-key hashes: Table Storage on Azure, a SQLite file embedded."""
        registry: TenantRegistry
        if self.settings.backend == "azure":
            from shared.adapters.tenants.tables_registry import create_table_tenant_registry

            registry = create_table_tenant_registry(self.settings)
        else:
            from shared.adapters.tenants.embedded_registry import REGISTRY_FILE, EmbeddedTenantRegistry

            registry = EmbeddedTenantRegistry(self.data_dir / REGISTRY_FILE)
        self.on_close(registry.close)
        return registry

    @cached_property
    def privacy_store(self) -> PrivacyStore:
        """Suppressions and erasure records: Table Storage on Azure, a SQLite file embedded."""
        store: PrivacyStore
        if self.settings.backend == "azure":
            from shared.adapters.privacy.tables_privacy import create_table_privacy_store

            store = create_table_privacy_store(self.settings)
        else:
            from shared.adapters.privacy.embedded_privacy import PRIVACY_FILE, EmbeddedPrivacyStore

            store = EmbeddedPrivacyStore(self.data_dir / PRIVACY_FILE)
        self.on_close(store.close)
        return store

    @cached_property
    def suppression_list(self) -> SuppressionList:
        """Each tenant's tombstones as the stages check them, cached for this worker."""
        return SuppressionList(
            self.privacy_store,
            self.subject_key_secret,
            cache_seconds=self.settings.suppression_cache_seconds,
        )

    @cached_property
    def analytics_eraser(self) -> AnalyticsEraser:
        """Analytics erased by data subject: Data Explorer purges on Azure, the embedded table locally."""
        if self.settings.backend == "azure":
            from shared.adapters.analytics.kusto_eraser import create_kusto_eraser

            eraser = create_kusto_eraser(self.settings)
            self.on_close(eraser.close)
            return eraser
        return self.embedded_analytics

    @cached_property
    def live_events(self) -> EmbeddedLiveEvents | None:
        """The last accepted and rejected events, for watching (embedded only; None on Azure or
        with `CLOUDSCALE_LIVE_EVENTS_KEPT=0`)."""
        if self.settings.backend != "embedded" or self.settings.live_events_kept == 0:
            return None
        from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, EmbeddedLiveEvents

        log = EmbeddedLiveEvents(self.data_dir / LIVE_EVENTS_FILE, self.settings.live_events_kept)
        self.on_close(log.close)
        return log

    @cached_property
    def write_key_authenticator(self) -> WriteKeyAuthenticator:
        """Presented write keys checked against the registry, cached for this worker."""
        authenticator = WriteKeyAuthenticator(self.tenant_registry, cache_seconds=self.settings.write_key_cache_seconds)
        self.on_close(authenticator.close)
        return authenticator

    @cached_property
    def event_store(self) -> EventStoreWithHistory:
        """Stored events: Cosmos DB on Azure, SQLite with a change feed embedded (both read by commit time too)."""
        if self.settings.backend == "azure":
            from shared.adapters.event_store.cosmos_event_store import create_cosmos_event_store

            store = create_cosmos_event_store(self.settings)
            self.on_close(store.close)
            return store
        return self.embedded_event_store

    @cached_property
    def embedded_event_store(self) -> EmbeddedEventStore:
        """The embedded event store (embedded backend only): the store, its history and its change feed."""
        from shared.adapters.event_store.embedded_event_store import EVENTS_FILE, EmbeddedEventStore

        store = EmbeddedEventStore(self.data_dir / EVENTS_FILE, feed_ranges=self.settings.feed_ranges)
        self.on_close(store.close)
        return store

    @cached_property
    def analytics_sink(self) -> AnalyticsSink:
        """Analytics: Data Explorer on Azure, a SQLite table embedded."""
        if self.settings.backend == "azure":
            from shared.adapters.analytics.kusto_sink import create_kusto_sink

            sink = create_kusto_sink(self.settings)
            self.on_close(sink.close)
            return sink
        return self.embedded_analytics

    @cached_property
    def embedded_analytics(self) -> EmbeddedAnalyticsStore:
        """The embedded analytics table (embedded backend only): the sink, and its own history."""
        from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE, EmbeddedAnalyticsStore

        store = EmbeddedAnalyticsStore(
            self.data_dir / ANALYTICS_FILE, retention_days=self.settings.analytics_retention_days
        )
        self.on_close(store.close)
        return store

    @property
    def event_history(self) -> StoredEventHistory:
        """The event store read by commit time (both adapters implement it; see the contract tests)."""
        return self.event_store

    @cached_property
    def analytics_history(self) -> AnalyticsHistory:
        """Analytics read by commit time: Data Explorer queries on Azure, the embedded table locally."""
        if self.settings.backend == "azure":
            from shared.adapters.analytics.kusto_history import create_kusto_history

            history = create_kusto_history(self.settings)
            self.on_close(history.close)
            return history
        return self.embedded_analytics

    @cached_property
    def dead_letter_sink(self) -> DeadLetterSink:
        """Where poison messages are parked: the poison queue on Azure, the embedded dead-letter queue."""
        sink: DeadLetterSink
        if self.settings.backend == "azure":
            from shared.adapters.dead_letters.servicebus_sink import create_service_bus_dead_letter_sink

            sink = create_service_bus_dead_letter_sink(self.settings)
        else:
            from shared.adapters.dead_letters.embedded import EmbeddedDeadLetterSink

            sink = EmbeddedDeadLetterSink(self.embedded_queue)
        self.on_close(sink.close)
        return sink

    @cached_property
    def dead_letter_browser(self) -> DeadLetterBrowser:
        """Dead letters for `cloudscale dlq`: both Service Bus dead-letter queues on Azure, the
        embedded queue's otherwise. Connects lazily on Azure; raises `PortError` if there is
        nothing to browse (embedded: no queue file yet, most likely the wrong data folder).

        The embedded browser opens the queue file on its own (it must not create it) and
        closes it with the container.
        """
        browser: DeadLetterBrowser
        if self.settings.backend == "azure":
            from shared.adapters.dead_letters.servicebus_browser import create_service_bus_dead_letter_browser

            browser = create_service_bus_dead_letter_browser(self.settings)
        else:
            from shared.adapters.dead_letters.embedded import open_embedded_dead_letter_browser
            from shared.adapters.event_queue.embedded_queue import EMBEDDED_QUEUE_FILE

            browser = open_embedded_dead_letter_browser(
                self.data_dir / EMBEDDED_QUEUE_FILE,
                lock_seconds=self.settings.queue_lock_seconds,
                max_delivery_count=self.settings.queue_max_delivery_count,
            )
        self.on_close(browser.close)
        return browser

    def client_key_secret(self) -> bytes:
        """The secret client keys are HMACs under, read afresh (a readiness probe proves it is readable).

        `CLOUDSCALE_CLIENT_KEY_SECRET` when set. On Azure it must be (every instance must hash
        client addresses under the same secret, or one client gets a bucket per instance): raises
        `SettingsError` without it. Checked here, where ingest needs it, not when settings load:
        the operator commands read the same settings and never hash a client. Embedded without
        the setting: one generated once and kept in the data folder.
        """
        if self.settings.client_key_secret is not None:
            return self.settings.client_key_secret.get_secret_value().encode()
        if self.settings.backend == "azure":
            raise SettingsError(
                "CLOUDSCALE_CLIENT_KEY_SECRET is required when CLOUDSCALE_BACKEND=azure "
                "(every instance must hash client addresses under the same secret)"
            )
        from shared.adapters.instance.client_key_secret import data_folder_secret

        return data_folder_secret(self.data_dir)

    async def subject_key_secret(self) -> bytes:
        """The key subject hashes are made under (docs/privacy.md): `CLOUDSCALE_SUBJECT_KEY_SECRET`
        when set, otherwise the one the privacy store generated and keeps. Never the client-key
        secret: that one is new with every deployment (infra/), and a tombstone must outlive it."""
        if self.settings.subject_key_secret is not None:
            return self.settings.subject_key_secret.get_secret_value().encode()
        return await self.privacy_store.subject_key()

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
