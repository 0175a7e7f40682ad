"""Ports: the small interfaces every external system sits behind.

Each port has two real adapters in its folder of `shared.adapters`: one on Azure services and
one embedded (SQLite under the data folder). Adapters translate vendor errors into the errors below
(`raise PortError(...) from exc`), so callers never see an SDK exception.

Error tree::

    PortError                  a dependency failed; the request may succeed later
    ├── PublishError           the queue did not take the messages (nothing was acknowledged)
    ├── RateLimitStoreError    limiter state could not be read or written
    │   └── ContentionError    optimistic concurrency kept losing; retry later
    ├── EventStoreError        the event store could not be read or written (down, throttled)
    ├── AnalyticsSinkError     the analytics store did not take the rows
    ├── TenantRegistryError    tenants and write keys could not be read or written
    │   └── RegistryConflictError  the change contradicts what is stored (not transient)
    └── PrivacyStoreError      suppressions or erasure records could not be read or written
        └── ErasureConflictError   another runner changed the erasure record first
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from shared.domain.analytics import AnalyticsRow
from shared.domain.envelope import QueueMessage
from shared.domain.live_events import LiveEvent
from shared.domain.privacy import ErasureRequest, Subject, Suppression
from shared.domain.ratelimit import ClientState, PeerWindow, SlotWindow
from shared.domain.stored_event import StoredEvent
from shared.domain.write_keys import Tenant, WriteKey

__all__ = [
    "AnalyticsErasure",
    "AnalyticsEraser",
    "AnalyticsHistory",
    "AnalyticsSink",
    "AnalyticsSinkError",
    "ContentionError",
    "DeadLetter",
    "DeadLetterBrowser",
    "DeadLetterSink",
    "DeadLetterSource",
    "ErasureConflictError",
    "EventPublisher",
    "EventStore",
    "EventStoreError",
    "EventStoreWithHistory",
    "LiveEventLog",
    "ProgressCallback",
    "ReplayProgress",
    "ReplayResult",
    "StoredEventHistory",
    "SubjectEventStore",
    "PortError",
    "PrivacyStore",
    "PrivacyStoreError",
    "PublishError",
    "RateLimitStore",
    "RateLimitStoreError",
    "RegistryConflictError",
    "TenantRegistry",
    "TenantRegistryError",
]

T = TypeVar("T")


class PortError(Exception):
    """A dependency failed. Transient unless a subclass says otherwise."""


class PublishError(PortError):
    """The queue did not durably take the messages."""


class RateLimitStoreError(PortError):
    """Rate-limit state could not be read or written."""


class ContentionError(RateLimitStoreError):
    """Concurrent writers kept winning the optimistic-concurrency race."""


class EventStoreError(PortError):
    """The event store failed (unreachable, throttled, timed out): retry with backoff.

    `retry_after` is the store's own hint, in seconds, when it gave one (Cosmos DB's 429).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AnalyticsSinkError(PortError):
    """The analytics store did not take the rows: retry the batch."""


class TenantRegistryError(PortError):
    """The tenant registry could not be read or written: retry later."""


class RegistryConflictError(TenantRegistryError):
    """The change contradicts what is stored: the tenant exists already, there is no such
    tenant or key, or the tenant has its live keys of that kind already. Retrying changes
    nothing; the message says what to do instead."""


class PrivacyStoreError(PortError):
    """Suppressions or erasure records could not be read or written: retry later."""


class ErasureConflictError(PrivacyStoreError):
    """The erasure record changed since it was read (another runner took it, or it does not
    exist): read it again before going on."""


class EventPublisher(Protocol):
    """Sends queue messages. Returns only once the broker has durably accepted all of them."""

    async def publish(self, messages: Sequence[QueueMessage]) -> None: ...

    async def check(self) -> None:
        """Raise `PortError` if the queue cannot be reached."""
        ...

    async def close(self) -> None: ...


class LiveEventLog(Protocol):
    """Where ingest leaves the events it accepted and rejected, for a developer to watch.

    Embedded only (`shared.adapters.live_events.embedded`); on Azure, Application Insights and
    Data Explorer answer the same questions and ingest keeps nothing.
    """

    def record(self, events: Sequence[LiveEvent]) -> None:
        """Keep `events`; returns at once and never raises (storing happens later, off the
        request's path, and only the newest of each outcome are kept)."""


class RateLimitStore(Protocol):
    """Shared rate-limit state, so limits hold across instances."""

    async def update_client(self, client_key: str, change: Callable[[ClientState | None], tuple[ClientState, T]]) -> T:
        """Atomically apply `change` to one client's state and return its second value.

        `change` is pure and may run more than once (optimistic concurrency retries it
        against the fresh state).
        """
        ...

    async def exchange_window(
        self,
        instance_id: str,
        window: SlotWindow,
        now: float,
        reserve: Callable[[Sequence[PeerWindow]], int],
    ) -> Sequence[PeerWindow]:
        """Read every instance's recent record, then write this one's.

        The record written holds `window` and, as its reservation, `reserve(records read)`;
        the records read are returned. Read before write, so the claim is computed from
        what the others hold (see `shared.domain.ratelimit.share_quota`).
        """
        ...

    async def check(self) -> None:
        """Raise `PortError` if the store cannot be reached."""
        ...

    async def close(self) -> None: ...


class EventStore(Protocol):
    """Stored events, one document per event, partitioned by tenant."""

    async def save(self, event: StoredEvent) -> bool:
        """Store `event` unless an event with its id is already stored in its tenant.

        Returns True if this call stored it, False if it was already there: a redelivered
        message changes nothing (the first write wins, and the change feed sees it once).
        Raises `EventStoreError` on any failure; nothing is half-written.
        """
        ...

    async def save_many(self, events: Sequence[StoredEvent]) -> list[bool]:
        """`save` for each of `events` (distinct ids), in as few round trips as the store allows.

        Returns, in order, whether each was stored by this call. Raises `EventStoreError` if
        any could not be saved; some of the others may have been stored, and saving them
        again is harmless (they then report False), so the caller retries the whole batch.
        """
        ...

    async def get(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        """The stored event, or None if it is not (yet) stored."""
        ...

    async def check(self) -> None:
        """Raise `PortError` if the store cannot be reached."""
        ...

    async def close(self) -> None: ...


class SubjectEventStore(Protocol):
    """The event store read and erased by data subject (`shared.domain.privacy`).

    A subject's events are those of its tenant whose `userId` (or `anonymousId`, as the
    subject's field says) equals its value. Every method raises `EventStoreError` on failure;
    deleting is idempotent, so a failed erasure is simply run again.
    """

    async def count_subject_events(self, subject: Subject) -> int: ...

    def subject_events(self, subject: Subject) -> AsyncIterator[StoredEvent]:
        """Every stored event of the subject, oldest `timestamp` first, read page by page (export)."""
        ...

    async def erase_subject_events(self, subject: Subject) -> int:
        """Delete every stored event of the subject; return how many this call deleted.

        Throttling is waited out (the store's retry hint) rather than failed. The embedded
        store also overwrites the deleted bytes (SQLite `secure_delete`, then a WAL checkpoint
        that truncates the log), so they cannot be read back from the file.
        """
        ...

    async def delete_events(self, tenant_id: str, event_ids: Sequence[str]) -> int:
        """Delete these events of one tenant (absent ones are skipped); return how many were deleted.

        What the change feed does with an erased subject's event that was stored after the
        erasure deleted the others (written by a delivery already in flight)."""
        ...


class TenantRegistry(Protocol):
    """Tenants and their write keys (`shared.domain.write_keys`): only key hashes are stored.

    Every method raises `TenantRegistryError` when the store fails, and the changing ones
    `RegistryConflictError` when the change contradicts what is stored.
    """

    async def create_tenant(self, tenant: Tenant) -> None:
        """Store a new tenant; `RegistryConflictError` if one with its id exists."""
        ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    async def list_tenants(self) -> Sequence[Tenant]:
        """Every tenant, ordered by id."""
        ...

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace a stored tenant's status and quota; `RegistryConflictError` if it does not exist."""
        ...

    async def add_key(self, key: WriteKey, *, max_live_per_kind: int) -> None:
        """Store a new key, atomically refusing (`RegistryConflictError`) when its tenant does
        not exist or already has `max_live_per_kind` active keys of the key's kind."""
        ...

    async def get_key(self, key_id: str) -> WriteKey | None: ...

    async def list_keys(self, tenant_id: str) -> Sequence[WriteKey]:
        """The tenant's keys, revoked ones included, oldest first."""
        ...

    async def revoke_key(self, key_id: str, at: datetime) -> WriteKey:
        """Mark a key revoked (at `at`; a key revoked already keeps its first time) and return
        it; `RegistryConflictError` if there is no such key."""
        ...

    async def touch_key(self, key_id: str, at: datetime) -> None:
        """Record that the key was used at `at` (kept only if later than what is stored)."""
        ...

    async def check(self) -> None:
        """Raise `PortError` if the registry cannot be reached."""
        ...

    async def close(self) -> None: ...


class PrivacyStore(Protocol):
    """Suppressions (tombstones) per tenant and erasure records: Table Storage or a SQLite file.

    Every method raises `PrivacyStoreError` when the store fails.
    """

    async def subject_key(self) -> bytes:
        """The deployment's key for subject hashes when `CLOUDSCALE_SUBJECT_KEY_SECRET` is unset:
        32 random bytes generated and stored on the first call (insert-if-absent, so racing
        instances agree), the same for every caller ever after."""
        ...

    async def suppressions(self, tenant_id: str) -> Sequence[Suppression]:
        """Every tombstone of the tenant (lifted ones included: they still drop older events)."""
        ...

    async def get_suppression(self, tenant_id: str, subject_hash: str) -> Suppression | None: ...

    async def save_suppression(self, suppression: Suppression) -> None:
        """Insert or replace the tenant's tombstone for this subject hash."""
        ...

    async def create_erasure(self, request: ErasureRequest) -> None:
        """Store a new erasure record (revision 0); `ErasureConflictError` if its id exists."""
        ...

    async def get_erasure(self, erasure_id: str) -> ErasureRequest | None: ...

    async def list_erasures(self, *, unfinished_only: bool = False) -> Sequence[ErasureRequest]:
        """Erasure records, oldest first (only those not `finished`, when asked)."""
        ...

    async def replace_erasure(self, request: ErasureRequest) -> ErasureRequest:
        """Store `request` if the stored record still has `request.revision`; return it with the
        revision increased. `ErasureConflictError` if the stored revision differs (or it is gone)."""
        ...

    async def check(self) -> None:
        """Raise `PortError` if the store cannot be reached."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AnalyticsErasure:
    """What erasing a subject from analytics did."""

    removed: int
    """Rows deleted (embedded), or rows the purge was asked to remove (Data Explorer)."""
    pending: str | None = None
    """What still runs after the call returned (Data Explorer: the purge operation, with its id), or None."""


class AnalyticsEraser(Protocol):
    """Analytics rows read and erased by data subject. Raises `AnalyticsSinkError` on failure."""

    async def count_subject_rows(self, subject: Subject) -> int: ...

    async def erase_subject_rows(self, subject: Subject) -> AnalyticsErasure:
        """Delete the subject's rows (Data Explorer: purge the table and the deduplicating view,
        as its docs prescribe for GDPR). Idempotent."""
        ...


class DeadLetterSink(Protocol):
    """Where the process stage parks a message that can never succeed, with the reason."""

    async def dead_letter(self, message: QueueMessage, reason: str, description: str) -> None:
        """Durably park `message` (`reason`: one of `dead_letter_reasons.POISON_REASONS`); return
        only once it is stored. Raises `PortError` on failure."""
        ...

    async def close(self) -> None: ...


class AnalyticsSink(Protocol):
    """Where stored events go for analysis, one row per event."""

    async def write(self, rows: Sequence[AnalyticsRow]) -> None:
        """Hand `rows` to the analytics store; return once it has them durably.

        At least once: a batch retried after a failure may deliver rows twice, and the store
        keeps one row per (`TenantId`, `EventId`) (the embedded store refuses the second; Data
        Explorer's materialized view deduplicates). Raises `AnalyticsSinkError`.
        """
        ...

    async def check(self) -> None:
        """Raise `PortError` if the analytics store cannot be reached."""
        ...

    async def close(self) -> None: ...


class StoredEventHistory(Protocol):
    """The event store read by commit time, for reconciliation."""

    async def hourly_counts(self, start: datetime, end: datetime) -> Mapping[datetime, int]:
        """Events stored per hour (keyed by the hour's start, UTC) in [start, end)."""
        ...

    async def stored_between(self, start: datetime, end: datetime) -> Sequence[tuple[StoredEvent, datetime]]:
        """Every event stored in [start, end), with its commit time."""
        ...


class AnalyticsHistory(Protocol):
    """The analytics store read by the events' commit time (`StoredAt`), for reconciliation."""

    async def hourly_counts(self, start: datetime, end: datetime) -> Mapping[datetime, int]:
        """Distinct events per hour of `StoredAt` (keyed by the hour's start, UTC) in [start, end)."""
        ...

    async def event_keys(self, start: datetime, end: datetime) -> set[tuple[str, str]]:
        """The (tenantId, eventId) of each event with `StoredAt` in [start, end): an event's
        identity, since two tenants may use the same eventId."""
        ...


class EventStoreWithHistory(EventStore, StoredEventHistory, SubjectEventStore, Protocol):
    """An event store that can also be read by commit time and by data subject: what both event-store adapters are."""


# --- dead letters, as an operator sees them (`cloudscale dlq`) ------------------------------------

DeadLetterSource = Literal["dead-letter", "poison"]
"""`poison`: parked by the process stage (Service Bus poison queue). `dead-letter`: a
dead-letter queue proper (Service Bus: the events queue's sub-queue; embedded: every one)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message, as an operator sees it.

    `id` is what the user types back to `show` or `replay` it: the embedded queue's sequence
    number (`"42"`), or the Service Bus source and sequence number (`"dlq-42"`, `"poison-7"`),
    since the two Service Bus queues number their messages independently. Times are UTC;
    None where the backend does not record them. `reason` is one of
    `shared.domain.dead_letter_reasons`.
    """

    id: str
    source: DeadLetterSource
    message: QueueMessage
    """The message as it was sent (the dead-letter reason properties removed): what replay sends."""
    reason: str | None
    description: str | None
    delivery_count: int | None
    """Deliveries before it was dead-lettered (None for Service Bus poison messages: not recorded)."""
    enqueued_at: datetime | None
    dead_lettered_at: datetime | None

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def body(self) -> bytes:
        return self.message.body


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Reported once before a replay starts (`done == 0`, `dead_letter is None`) and after each message."""

    total: int
    """Messages the replay is looking for (the ids given, or every dead letter when it started)."""
    done: int
    """Messages replayed so far."""
    dead_letter: DeadLetter | None = None
    """The message just replayed."""


ProgressCallback = Callable[[ReplayProgress], None]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did: the messages now back on the events queue, and the ids it could not find."""

    replayed: tuple[DeadLetter, ...] = ()
    not_found: tuple[str, ...] = ()
    """Requested ids not in the dead-letter queue (a wrong id, or already replayed)."""


class DeadLetterBrowser(Protocol):
    """Look at dead-lettered messages and put them back on the events queue (`cloudscale dlq`).

    A dead letter is a message the pipeline gave up on: parked by the process stage as poison,
    or dead-lettered by the broker; an operator handles both the same way (look, fix the
    cause, replay). Replaying puts a message back on the events queue, so a replay repeated
    (or one that ran twice after a crash) is dropped by duplicate detection or stored once by
    the idempotent event store. Every method raises `PortError` when the backend fails.
    """

    async def list(self, limit: int) -> Sequence[DeadLetter]:
        """Up to `limit` dead letters, oldest first, without locking or counting a delivery."""
        ...

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """The dead letter with this id, or None (an unknown or malformed id is simply not found)."""
        ...

    async def replay(
        self, dead_letter_ids: Sequence[str] | None, on_progress: ProgressCallback | None = None
    ) -> ReplayResult:
        """Send the given dead letters (None: every one there now) back to the events queue, then remove them.

        Each message is removed only after the events queue durably took it, so a failure
        part-way leaves the rest (and the failed one) in the dead-letter queue; running the
        same replay again is harmless. Raises `PortError` on the first failure.
        """
        ...

    async def remove(self, dead_letter_ids: Sequence[str]) -> int:
        """Delete these dead letters for good, without replaying them (an erased subject's);
        return how many were removed (ids not found are skipped). Raises `PortError`."""
        ...

    async def close(self) -> None: ...
