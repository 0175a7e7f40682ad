"""Stage assembly: what each function runs, built from this worker's container.

The other half of the composition root (`shared.bootstrap` chooses the adapters): one function
per use a blueprint has (`ingest_endpoint`, `readiness_probes`, `event_processor`,
`event_reader`, `event_read_access`, `analytics_feed`, `analytics_reconciler`, `erasure_runner`),
each built on first use and kept
with the container (`Container.singleton`), so a container a test or the local host installs
brings its own. The stages are imported when first needed, as the adapters are: importing this
module stays cheap, and a blueprint imports only what it runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING

from shared.bootstrap import Container, get_container
from shared.ports import EventStore

__all__ = [
    "analytics_feed",
    "analytics_reconciler",
    "build_analytics_feed",
    "build_analytics_reconciler",
    "build_event_processor",
    "build_erasure_runner",
    "build_event_read_access",
    "build_ingest_endpoint",
    "build_readiness_probes",
    "build_suppression_admin",
    "erasure_runner",
    "event_processor",
    "event_read_access",
    "event_reader",
    "ingest_endpoint",
    "readiness_probes",
]

if TYPE_CHECKING:
    from changefeed.reconcile import Reconciler
    from changefeed.service import AnalyticsFeedService
    from ingest.health import ReadinessProbes
    from ingest.http import IngestEndpoint
    from privacy.erasure import ErasureRunner
    from privacy.suppressions import SuppressionAdmin
    from process.read_access import ReadAccess
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


def event_read_access() -> ReadAccess:
    """`GET /api/events/{tenantId}/{eventId}`: who may read which tenant's events."""
    return get_container().singleton(build_event_read_access)


def analytics_feed() -> AnalyticsFeedService:
    """The change-feed trigger: stored events into analytics."""
    return get_container().singleton(build_analytics_feed)


def analytics_reconciler() -> Reconciler:
    """The hourly timer (and `cloudscale reconcile`): what analytics missed, sent again."""
    return get_container().singleton(build_analytics_reconciler)


def erasure_runner() -> ErasureRunner:
    """The erasure routes and timer: data-subject erasures recorded and run to completion."""
    return get_container().singleton(build_erasure_runner)


def build_ingest_endpoint(container: Container) -> IngestEndpoint:
    """The ingest use case over the container's rate-limit store and queue."""
    from ingest.http import IngestEndpoint, status_for
    from ingest.rate_limiter import RateLimiter
    from ingest.service import IngestService
    from shared.domain.client_identity import ClientKeyer
    from shared.telemetry import ingest_metrics
    from shared.write_key_auth import Producer

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
    keyer = ClientKeyer(container.client_key_secret(), settings.rate_limit_ipv6_prefix)

    async def authenticate(key: str) -> Producer:
        # The registry is reached on the first keyed request, not when ingest is built: a
        # keyless request in open mode never needs it.
        return await container.write_key_authenticator.authenticate(key)

    use_case = IngestService(
        limiter,
        container.publisher,
        keyer,
        metrics,
        authenticate=authenticate,
        keys_required=settings.write_keys_required,
        tenant_events_per_minute=settings.tenant_events_per_minute,
        # Both ingest APIs run this one use case; each request's reader names its API.
        live_events=container.live_events,
        status_of=status_for,
    )
    return IngestEndpoint(
        use_case=use_case,
        trusted_proxies=settings.trusted_proxies,
        answer_time=metrics.ingestion_duration,
    )


def build_readiness_probes(container: Container) -> ReadinessProbes:
    """Probes of the container's adapters; each adapter is built when its probe first runs."""
    from ingest.health import ReadinessProbes

    async def client_key() -> None:
        await asyncio.to_thread(container.client_key_secret)

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
        suppressions=container.suppression_list,
    )


def build_event_read_access(container: Container) -> ReadAccess:
    """Reads checked against the container's write keys (the registry is reached on the first keyed read)."""
    from process.read_access import ReadAccess
    from shared.write_key_auth import Producer

    async def authenticate(key: str) -> Producer:
        return await container.write_key_authenticator.authenticate(key)

    return ReadAccess(authenticate, keys_required=container.settings.write_keys_required)


def build_analytics_feed(container: Container) -> AnalyticsFeedService:
    """The change-feed use case over the container's analytics sink, suppression list and event store."""
    from changefeed.service import AnalyticsFeedService
    from shared.telemetry import analytics_metrics

    return AnalyticsFeedService(
        container.analytics_sink,
        analytics_metrics(),
        suppressions=container.suppression_list,
        events=container.event_store,
    )


def build_analytics_reconciler(container: Container) -> Reconciler:
    """Reconciliation over the container's event store, analytics history, analytics sink and suppression list."""
    from changefeed.reconcile import Reconciler
    from shared.telemetry import analytics_metrics

    return Reconciler(
        container.event_store,
        container.analytics_history,
        container.analytics_sink,
        suppressions=container.suppression_list,
        metrics=analytics_metrics(),
    )


SETTLE_MARGIN_SECONDS = 1.0
"""Added to the suppression cache period before an erasure deletes anything (clock skew, a slow read)."""


def build_erasure_runner(container: Container) -> ErasureRunner:
    """The erasure runner over the container's privacy store, event store, analytics and dead letters."""
    from privacy.erasure import ErasureRunner
    from shared.adapters.event_queue.embedded_queue import EMBEDDED_QUEUE_FILE
    from shared.dead_letter_erasure import erase_subject_dead_letters
    from shared.domain.privacy import Subject
    from shared.ports import DeadLetterBrowser, EventStoreError

    settings = container.settings

    def dead_letters() -> DeadLetterBrowser | None:
        # Embedded: no queue file yet means nothing was ever queued, so there is no dead letter
        # (the browser refuses to create the file, to catch a wrong data folder).
        if container.is_embedded and not (container.data_dir / EMBEDDED_QUEUE_FILE).is_file():
            return None
        return container.dead_letter_browser

    async def erase_kept_events(subject: Subject) -> int:
        # Embedded only; no file yet means nothing was ever kept (and none is created here).
        from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, EmbeddedLiveEvents

        path = container.data_dir / LIVE_EVENTS_FILE
        if settings.backend != "embedded" or not path.is_file():
            return 0
        # A process that keeps none (CLOUDSCALE_LIVE_EVENTS_KEPT=0) still erases what an earlier host kept.
        log = container.live_events
        try:
            if log is not None:
                return await log.erase_subject(subject.tenant_id, subject.field, subject.value)
            kept_earlier = EmbeddedLiveEvents(path, kept=1)
            try:
                return await kept_earlier.erase_subject(subject.tenant_id, subject.field, subject.value)
            finally:
                await kept_earlier.close()
        except (sqlite3.Error, OSError) as exc:
            raise EventStoreError(
                f"the kept live events ({path}) could not be erased: {exc}; "
                "`cloudscale live reset` forgets them all (or remove the file)"
            ) from exc

    return ErasureRunner(
        container.privacy_store,
        container.suppression_list,
        container.event_store,
        container.analytics_eraser,
        dead_letters,
        erase_subject_dead_letters,
        container.subject_key_secret,
        settle_seconds=settings.suppression_cache_seconds + SETTLE_MARGIN_SECONDS,
        lease_seconds=settings.erasure_lease_seconds,
        erase_kept_events=erase_kept_events,
    )


def build_suppression_admin(container: Container) -> SuppressionAdmin:
    """Tombstones listed and lifted in the container's privacy store (`cloudscale suppressions`)."""
    from privacy.suppressions import SuppressionAdmin

    return SuppressionAdmin(container.privacy_store, container.subject_key_secret)
