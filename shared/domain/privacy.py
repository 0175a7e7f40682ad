"""Data-subject requests: who is erased (a subject), the tombstone that keeps them erased, and an erasure's record.

A subject is one identifier of a person within a tenant: a `userId` or an `anonymousId`. It is
never stored as it is: suppressions and erasure records keep a keyed hash of it
(`subject_hash`, an HMAC under the deployment's secret), which every stage recomputes from the
events it sees to recognise an erased person's event without knowing who that is.

A `Suppression` (tombstone) is written before anything is deleted, so nothing that is still in
flight (the queue, a redelivery, a dead-letter replay, the change feed, reconciliation) can
bring the data back. Its `mode` decides what happens to the subject's later events:

- `suppress` (the default, Segment's "suppress and delete"): every event of the subject is
  dropped, whenever it was received;
- `delete` (Segment's "delete only", or a suppression lifted afterwards): only events received
  before `erased_at` are dropped; later ones are accepted again. Lifting a suppression turns it
  into this mode, so it never lets the erased data itself back in.

Plain Python, no I/O: adapters store these, `shared.suppression` caches them, the stages ask.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

import orjson

__all__ = [
    "ERASURE_STEPS",
    "ErasureRequest",
    "ErasureStatus",
    "ErasureStep",
    "StepResult",
    "Subject",
    "SubjectField",
    "SUBJECT_FIELDS",
    "SUBJECT_KEY_BYTES",
    "Suppression",
    "SuppressionMode",
    "SuppressionSnapshot",
    "message_identifiers",
    "subject_hash",
]

SubjectField = Literal["userId", "anonymousId"]
"""Which identifier names the subject: the event's `userId` or its `anonymousId` (Segment's)."""

SUBJECT_FIELDS: Final[tuple[SubjectField, ...]] = ("userId", "anonymousId")

SuppressionMode = Literal["suppress", "delete"]

SUBJECT_KEY_BYTES: Final = 32
"""Length of a generated subject-hash key (`PrivacyStore.subject_key`)."""

_HASH_CONTEXT: Final = b"cloudscale-subject-v1"


def subject_hash(secret: bytes, tenant_id: str, field: SubjectField, value: str) -> str:
    """The keyed hash that stands for one subject at rest: hex HMAC-SHA256 under `secret`.

    The tenant and the field are part of it, so the same id in two tenants (or a userId equal
    to some anonymousId) are different subjects. Fields are separated by NUL, which no
    identifier the API accepts contains.
    """
    message = b"\0".join((_HASH_CONTEXT, tenant_id.encode(), field.encode(), value.encode()))
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Subject:
    """One data subject: a tenant and one identifier of a person in it (personal data: never stored as is)."""

    tenant_id: str
    field: SubjectField
    value: str

    def hash(self, secret: bytes) -> str:
        return subject_hash(secret, self.tenant_id, self.field, self.value)

    def __repr__(self) -> str:
        # Never the identifier itself: a subject may end up in a log line or a traceback.
        return f"Subject(tenant_id={self.tenant_id!r}, field={self.field!r})"


@dataclass(frozen=True, slots=True)
class Suppression:
    """A tombstone: the subject with this hash in this tenant was erased at `erased_at`."""

    tenant_id: str
    subject_hash: str
    field: SubjectField
    erased_at: datetime
    mode: SuppressionMode = "suppress"
    lifted_at: datetime | None = None
    """When an operator lifted the suppression (mode became `delete`); None if never."""

    def drops(self, received_at: datetime) -> bool:
        """Whether an event of this subject received (by ingest) at `received_at` must be dropped."""
        return self.mode == "suppress" or received_at < self.erased_at

    def lifted(self, at: datetime) -> Suppression:
        """This tombstone with events received from `at` on accepted again: what was erased, and
        whatever was received while the subject was suppressed, stays dropped. A tombstone that
        accepts new events already is returned unchanged."""
        if self.mode == "delete":
            return self
        return replace(self, mode="delete", lifted_at=at, erased_at=max(self.erased_at, at))


@dataclass(frozen=True, slots=True)
class SuppressionSnapshot:
    """A tenant's tombstones at one moment, by subject hash: what a stage checks each event against."""

    tenant_id: str
    by_hash: Mapping[str, Suppression] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, tenant_id: str, suppressions: Iterable[Suppression]) -> SuppressionSnapshot:
        return cls(tenant_id, {s.subject_hash: s for s in suppressions if s.tenant_id == tenant_id})

    def drops(self, secret: bytes, user_id: str | None, anonymous_id: str | None, received_at: datetime) -> bool:
        """Whether an event with these identifiers, received at `received_at`, is an erased subject's.

        Costs nothing when the tenant has no tombstones (no hash is computed).
        """
        if not self.by_hash:
            return False
        for subject_field, value in (("userId", user_id), ("anonymousId", anonymous_id)):
            if value is None:
                continue
            found = self.by_hash.get(subject_hash(secret, self.tenant_id, subject_field, value))  # type: ignore[arg-type]
            if found is not None and found.drops(received_at):
                return True
        return False


def message_identifiers(body: bytes) -> tuple[str, str | None, str | None, datetime | None] | None:
    """(tenantId, userId, anonymousId, receivedAt) of a queue message body (an envelope), or None.

    Tolerant on purpose: dead letters include messages that never decoded as an envelope, and
    an erasure must still find the subject's identifiers in any JSON that names them.
    """
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(envelope, dict):
        return None
    event = envelope.get("event")
    if not isinstance(event, dict):
        return None
    tenant_id = event.get("tenantId")
    if not isinstance(tenant_id, str):
        return None
    user_id = event.get("userId")
    anonymous_id = event.get("anonymousId")
    received_at: datetime | None = None
    raw_received = envelope.get("receivedAt")
    if isinstance(raw_received, str):
        try:
            received_at = datetime.fromisoformat(raw_received)
        except ValueError:
            received_at = None
    return (
        tenant_id,
        user_id if isinstance(user_id, str) else None,
        anonymous_id if isinstance(anonymous_id, str) else None,
        received_at,
    )


# --- erasure requests ------------------------------------------------------------------------------

ErasureStep = Literal["suppress", "settle", "events", "analytics", "dead_letters", "verify"]
ERASURE_STEPS: Final[tuple[ErasureStep, ...]] = ("suppress", "settle", "events", "analytics", "dead_letters", "verify")
"""In order. `suppress` writes the tombstone; `settle` waits until every instance's cache of
tombstones has read it; `events`, `analytics` and `dead_letters` delete in each store; `verify`
counts again after another cache period and deletes anything that slipped in meanwhile."""

ErasureStatus = Literal["pending", "running", "finished"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step of an erasure did in one store."""

    found: int | None = None
    """Items of the subject the step found before deleting (None: not counted yet)."""
    removed: int = 0
    done: bool = False
    detail: str | None = None
    """What is still to happen outside our control, e.g. a Data Explorer purge operation queued."""


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """One data-subject erasure and how far it got. Holds no identifier in the clear.

    `sealed_subject` is the identifier encrypted under the deployment's secret
    (`shared.subject_seal`), kept only while the erasure runs so a restarted runner can finish
    it; it is removed when the erasure finishes. `revision` increases with every stored change
    (optimistic concurrency: `PrivacyStore.replace_erasure`).
    """

    id: str
    tenant_id: str
    field: SubjectField
    subject_hash: str
    suppress: bool
    """True: suppress the subject's later events too; False: delete only."""
    created_at: datetime
    status: ErasureStatus = "pending"
    steps: Mapping[str, StepResult] = dataclasses.field(default_factory=dict)
    finished_at: datetime | None = None
    sealed_subject: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    revision: int = 0

    def step(self, name: ErasureStep) -> StepResult:
        return self.steps.get(name, StepResult())

    def with_step(self, name: ErasureStep, result: StepResult) -> ErasureRequest:
        return replace(self, steps={**self.steps, name: result})

    def next_step(self) -> ErasureStep | None:
        """The first step not done, or None when every step is."""
        return next((name for name in ERASURE_STEPS if not self.step(name).done), None)

    def to_status(self) -> dict[str, object]:
        """The JSON status an operator sees (`GET /api/privacy/erasures/{id}`, `cloudscale erase`)."""
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "field": self.field,
            "subjectHash": self.subject_hash,
            "mode": "suppress" if self.suppress else "delete",
            "status": self.status,
            "createdAt": self.created_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "steps": {
                name: {
                    "found": result.found,
                    "removed": result.removed,
                    "done": result.done,
                    **({"detail": result.detail} if result.detail else {}),
                }
                for name in ERASURE_STEPS
                for result in (self.step(name),)
            },
        }
