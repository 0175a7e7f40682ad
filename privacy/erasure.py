"""Erase one data subject everywhere, resumably: tombstone first, then every store, then check again.

An erasure is a record in the `PrivacyStore` (`shared.domain.privacy.ErasureRequest`) that a
runner moves through `ERASURE_STEPS`, saving each step's counts as soon as the step ends:

    suppress      the tombstone (`Suppression`) is written: from now on every stage drops the
                  subject's events, whatever brings them (new, redelivered, replayed, change feed,
                  reconciliation)
    settle        wait until every instance's cached copy of the tombstones has been read again
                  (`suppression_cache_seconds`, plus a margin): nothing can be stored after this
    events        the event store's documents of the subject are deleted
    analytics     the analytics rows (Data Explorer: a purge; its operation is the step's detail)
    dead_letters  the subject's dead-lettered and poison messages are dropped, not replayed
    verify        after one more cache period, count again and delete what slipped in meanwhile
                  (a delivery that was already past its check when the tombstone was written)

Every step can run again (deleting what is gone deletes nothing), so a runner that dies
anywhere leaves a record the next one finishes. Runners exclude each other with a lease on the
record (`lease_owner`, `lease_until`), taken and renewed by `replace_erasure`, whose revision
check turns any race into `ErasureConflictError`: the loser stops. While it runs, the record
holds the identifier sealed under the deployment's secret (`shared.subject_seal`); a finished
record keeps only the keyed hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from privacy.errors import ErasureBusyError, ErasureError, ErasureNotFoundError, ErasureUnreadableError
from privacy.lease import ErasureLease, held_by_another, hold_lease
from shared.domain.privacy import ErasureRequest, ErasureStep, StepResult, Subject, Suppression
from shared.ports import (
    AnalyticsEraser,
    DeadLetterBrowser,
    PortError,
    PrivacyStore,
    SubjectEventStore,
)
from shared.subject_seal import SealError, seal_subject, unseal_subject
from shared.suppression import SuppressionList

__all__ = [
    "ErasureBusyError",
    "ErasureError",
    "ErasureNotFoundError",
    "ErasureRunner",
    "ErasureUnreadableError",
    "KeptEventEraser",
    "StepProgress",
    "new_erasure_id",
]

logger = logging.getLogger(__name__)

StepProgress = Callable[[ErasureStep, StepResult], None]
"""Told each step's result as soon as it is recorded (`cloudscale erase` prints a line per step)."""

DeadLetterEraser = Callable[[DeadLetterBrowser, Subject], Awaitable[tuple[int, int]]]
"""Drops a subject's dead letters from a browser: (found, removed)."""

KeptEventEraser = Callable[[Subject], Awaitable[int]]
"""Deletes a subject's events kept for watching (the local host's live events): how many.
Raises `PortError` when it cannot, so the step is run again."""


def new_erasure_id() -> str:
    """`er_` and 20 random URL-safe characters (120 bits)."""
    return "er_" + secrets.token_urlsafe(15)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ErasureRunner:
    """Records erasures and runs them to completion over the ports."""

    def __init__(
        self,
        store: PrivacyStore,
        suppressions: SuppressionList,
        events: SubjectEventStore,
        analytics: AnalyticsEraser,
        dead_letters: Callable[[], DeadLetterBrowser | None],
        erase_dead_letters: DeadLetterEraser,
        secret: Callable[[], Awaitable[bytes]],
        *,
        settle_seconds: float,
        lease_seconds: float,
        owner: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        erase_kept_events: KeptEventEraser | None = None,
    ) -> None:
        """`dead_letters` builds the browser when the step needs it (None: there are none to look at).

        `settle_seconds` is the suppression cache period plus a margin; `secret` is awaited on
        first use (the deployment's subject-hash key, which also seals the identifier while an
        erasure runs). `owner` names this runner in leases. `erase_kept_events`: the events
        step also deletes the subject's kept live events (embedded only), named in its detail.
        """
        self._store = store
        self._suppressions = suppressions
        self._events = events
        self._analytics = analytics
        self._dead_letters = dead_letters
        self._erase_dead_letters = erase_dead_letters
        self._read_secret = secret
        self._secret: bytes | None = None
        self.settle_seconds = settle_seconds
        self.lease_seconds = lease_seconds
        self.owner = owner or f"runner-{os.getpid()}-{secrets.token_hex(4)}"
        self._clock = clock
        self._sleep = sleep
        self._erase_kept_events = erase_kept_events

    async def secret(self) -> bytes:
        """The subject-hash key (read once)."""
        if self._secret is None:
            self._secret = await self._read_secret()
        return self._secret

    async def request(self, subject: Subject, *, suppress: bool = True, claim: bool = False) -> ErasureRequest:
        """Record a new erasure of `subject` (pending), or return the unfinished one already recorded for it.

        `claim`: record it under this runner's lease, because this runner runs it next (`cloudscale
        erase`), so that no timer takes it in between. Unclaimed, the next timer run takes it.
        """
        secret = await self.secret()
        subject_hash = subject.hash(secret)
        for existing in await self._store.list_erasures(unfinished_only=True):
            if existing.tenant_id == subject.tenant_id and existing.subject_hash == subject_hash:
                return existing
        erasure_id = new_erasure_id()
        request = ErasureRequest(
            id=erasure_id,
            tenant_id=subject.tenant_id,
            field=subject.field,
            subject_hash=subject_hash,
            suppress=suppress,
            created_at=self._clock(),
            sealed_subject=seal_subject(secret, erasure_id, subject.value),
        )
        if claim:
            request = replace(
                request, lease_owner=self.owner, lease_until=request.created_at + timedelta(seconds=self.lease_seconds)
            )
        await self._store.create_erasure(request)
        return request

    async def get_record(self, erasure_id: str) -> ErasureRequest | None:
        """The erasure's record, or None."""
        return await self._store.get_erasure(erasure_id)

    async def get(self, erasure_id: str) -> ErasureRequest:
        """The erasure's record; `ErasureNotFoundError` if there is none."""
        record = await self._store.get_erasure(erasure_id)
        if record is None:
            raise ErasureNotFoundError(f"there is no erasure {erasure_id}")
        return record

    async def run(self, erasure_id: str, on_progress: StepProgress | None = None) -> ErasureRequest:
        """Run the erasure's remaining steps and finish it; return the finished record.

        Raises `ErasureBusyError` if another runner holds its lease (or takes it over meanwhile),
        `ErasureNotFoundError`, `ErasureUnreadableError`, and `PortError` when a store fails
        (the lease is then given back, so running it again goes on at once).
        """
        record = await self.get(erasure_id)
        if record.status == "finished":
            return record
        async with self._leased(record) as lease:
            subject = await self._subject(lease.record)
            while (step := lease.record.next_step()) is not None:
                result = await self._run_step(step, subject, lease.record)
                await lease.save(lease.record.with_step(step, result))
                if on_progress is not None:
                    on_progress(step, result)
            finished_at = self._clock()
            if not lease.record.suppress:
                await self._accept_from(lease.record, finished_at)
            finished = replace(
                lease.record,
                status="finished",
                finished_at=finished_at,
                sealed_subject=None,
                lease_owner=None,
                lease_until=None,
            )
            await lease.save(finished, renew=False)
            return lease.record

    async def run_due(self, budget_seconds: float) -> list[ErasureRequest]:
        """Run every unfinished erasure no live runner holds, oldest first, while the budget lasts.

        What the timer calls: it finishes erasures recorded over HTTP and those a runner left
        when it crashed (once their lease expired). One that fails is logged and left for the
        next run; one still running when the budget ends is stopped and continues then.
        """
        deadline = time.monotonic() + budget_seconds
        done: list[ErasureRequest] = []
        for record in await self._store.list_erasures(unfinished_only=True):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._held_by_another(record):
                continue
            try:
                async with asyncio.timeout(remaining):
                    done.append(await self.run(record.id))
            except TimeoutError:
                logger.info("erasure %s continues at the next run (the run's time is up)", record.id)
                break
            except ErasureBusyError:
                continue
            except (ErasureError, PortError) as exc:
                logger.warning("erasure %s stopped at step %s: %s", record.id, record.next_step(), exc)
        return done

    # --- steps -------------------------------------------------------------------------------------

    async def _run_step(self, step: ErasureStep, subject: Subject, record: ErasureRequest) -> StepResult:
        if step == "suppress":
            return await self._suppress(record)
        if step == "settle":
            await self._sleep(self.settle_seconds)
            return StepResult(
                done=True, detail=f"waited {self.settle_seconds:g} s for every instance to see the tombstone"
            )
        if step == "events":
            found = await self._events.count_subject_events(subject)
            removed = await self._events.erase_subject_events(subject)
            if self._erase_kept_events is None:
                return StepResult(found=found, removed=removed, done=True)
            # The counts are the event store's (what `cloudscale erase` reports as such); the
            # copies kept for watching are named in the detail.
            kept = await self._erase_kept_events(subject)
            detail = f"also {kept} kept live event(s) deleted" if kept else None
            return StepResult(found=found, removed=removed, done=True, detail=detail)
        if step == "analytics":
            found = await self._analytics.count_subject_rows(subject)
            erased = await self._analytics.erase_subject_rows(subject)
            return StepResult(found=found, removed=erased.removed, done=True, detail=erased.pending)
        if step == "dead_letters":
            browser = self._dead_letters()
            if browser is None:
                return StepResult(found=0, removed=0, done=True, detail="no dead-letter queue here yet")
            found, removed = await self._erase_dead_letters(browser, subject)
            return StepResult(found=found, removed=removed, done=True)
        return await self._verify(subject)

    async def _suppress(self, record: ErasureRequest) -> StepResult:
        # Suppress mode in either case while the erasure runs: the stores' deletes take every
        # event of the subject, whenever received, so nothing received meanwhile may be kept
        # either. A delete-only erasure turns the tombstone into a delete one when it finishes.
        await self._store.save_suppression(
            Suppression(
                tenant_id=record.tenant_id,
                subject_hash=record.subject_hash,
                field=record.field,
                erased_at=record.created_at,
                mode="suppress",
            )
        )
        self._suppressions.forget(record.tenant_id)
        mode = "later events suppressed" if record.suppress else "delete only: events accepted again once finished"
        return StepResult(done=True, detail=f"tombstone written ({mode})")

    async def _accept_from(self, record: ErasureRequest, finished_at: datetime) -> None:
        """Delete only: from `finished_at` on, the subject's new events are accepted; what was
        received before (all of it erased by now) stays dropped."""
        await self._store.save_suppression(
            Suppression(
                tenant_id=record.tenant_id,
                subject_hash=record.subject_hash,
                field=record.field,
                erased_at=finished_at,
                mode="delete",
            )
        )
        self._suppressions.forget(record.tenant_id)

    async def _verify(self, subject: Subject) -> StepResult:
        # One more cache period: a delivery that checked the tombstones just before they
        # changed has stored (or sent) its event by now.
        await self._sleep(self.settle_seconds)
        events = await self._events.count_subject_events(subject)
        rows = await self._analytics.count_subject_rows(subject)
        removed = 0
        if events:
            removed += await self._events.erase_subject_events(subject)
        if rows:
            removed += (await self._analytics.erase_subject_rows(subject)).removed
        return StepResult(
            found=events + rows, removed=removed, done=True, detail=f"{events} event(s), {rows} analytics row(s)"
        )

    # --- leases --------------------------------------------------------------------------------------

    async def _subject(self, record: ErasureRequest) -> Subject:
        if record.sealed_subject is None:
            raise ErasureUnreadableError(f"erasure {record.id} is unfinished but no longer holds its identifier")
        try:
            value = unseal_subject(await self.secret(), record.id, record.sealed_subject)
        except SealError as exc:
            raise ErasureUnreadableError(str(exc)) from exc
        return Subject(record.tenant_id, record.field, value)

    def _held_by_another(self, record: ErasureRequest) -> bool:
        return held_by_another(record, self.owner, self._clock())

    def _leased(self, record: ErasureRequest) -> contextlib.AbstractAsyncContextManager[ErasureLease]:
        return hold_lease(self._store, record, self.owner, self.lease_seconds, self._clock)
