"""`PrivacyStore` in a SQLite file under the data folder, shared by every host process.

Two tables: `suppressions` (one row per tenant and subject hash) and `erasures` (one row per
erasure record, its steps as JSON text). `replace_erasure` is a compare-and-set on the
`revision` column inside one `BEGIN IMMEDIATE` transaction (`SqliteWorker`), so two runners
that read the same revision cannot both write: the second finds the revision moved on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from shared.adapters.privacy.records import steps_from_json, steps_to_json
from shared.adapters.sqlite.worker import SqliteWorker, SqliteWorkerClosedError
from shared.domain.privacy import ErasureRequest, ErasureStatus, SubjectField, Suppression, SuppressionMode
from shared.ports import ErasureConflictError, PrivacyStoreError

__all__ = ["PRIVACY_FILE", "EmbeddedPrivacyStore"]

T = TypeVar("T")

PRIVACY_FILE: Final = "privacy.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppressions (
    tenant_id     TEXT NOT NULL,
    subject_hash  TEXT NOT NULL,
    field         TEXT NOT NULL,
    erased_at     TEXT NOT NULL,
    mode          TEXT NOT NULL,
    lifted_at     TEXT,
    PRIMARY KEY (tenant_id, subject_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erasures (
    erasure_id      TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    field           TEXT NOT NULL,
    subject_hash    TEXT NOT NULL,
    suppress        INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    status          TEXT NOT NULL,
    steps           TEXT NOT NULL,
    finished_at     TEXT,
    sealed_subject  TEXT,
    lease_owner     TEXT,
    lease_until     TEXT,
    revision        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS erasures_by_age ON erasures (created_at, erasure_id);
CREATE TABLE IF NOT EXISTS health_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at TEXT NOT NULL
);
"""

_SUPPRESSION_COLUMNS = "tenant_id, subject_hash, field, erased_at, mode, lifted_at"
_ERASURE_COLUMNS = (
    "erasure_id, tenant_id, field, subject_hash, suppress, created_at, status, steps, "
    "finished_at, sealed_subject, lease_owner, lease_until, revision"
)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _suppression(row: Sequence[Any]) -> Suppression:
    return Suppression(
        tenant_id=row[0],
        subject_hash=row[1],
        field=cast(SubjectField, row[2]),
        erased_at=datetime.fromisoformat(row[3]),
        mode=cast(SuppressionMode, row[4]),
        lifted_at=_parse_time(row[5]),
    )


def _erasure(row: Sequence[Any]) -> ErasureRequest:
    return ErasureRequest(
        id=row[0],
        tenant_id=row[1],
        field=cast(SubjectField, row[2]),
        subject_hash=row[3],
        suppress=bool(row[4]),
        created_at=datetime.fromisoformat(row[5]),
        status=cast(ErasureStatus, row[6]),
        steps=steps_from_json(row[7]),
        finished_at=_parse_time(row[8]),
        sealed_subject=row[9],
        lease_owner=row[10],
        lease_until=_parse_time(row[11]),
        revision=int(row[12]),
    )


def _optional(decode: Callable[[Sequence[Any]], T], row: Sequence[Any] | None) -> T | None:
    return None if row is None else decode(row)


def _erasure_values(request: ErasureRequest) -> tuple[Any, ...]:
    return (
        request.id,
        request.tenant_id,
        request.field,
        request.subject_hash,
        int(request.suppress),
        _time(request.created_at),
        request.status,
        steps_to_json(request.steps),
        _time(request.finished_at),
        request.sealed_subject,
        request.lease_owner,
        _time(request.lease_until),
        request.revision,
    )


class EmbeddedPrivacyStore:
    """The `PrivacyStore` port on SQLite."""

    def __init__(self, path: Path) -> None:
        """Nothing is opened here: the file (and its folder) is created on first use."""
        self.path = path
        self._worker: SqliteWorker | None = None
        self._open_lock = threading.Lock()  # Not an asyncio.Lock: opening runs in a thread.
        self._closed = False

    async def suppressions(self, tenant_id: str) -> Sequence[Suppression]:
        return await self._run(
            lambda c: [
                _suppression(row)
                for row in c.execute(
                    f"SELECT {_SUPPRESSION_COLUMNS} FROM suppressions WHERE tenant_id = ? "
                    "ORDER BY erased_at, subject_hash",
                    (tenant_id,),
                )
            ]
        )

    async def get_suppression(self, tenant_id: str, subject_hash: str) -> Suppression | None:
        return await self._run(
            lambda c: _optional(
                _suppression,
                c.execute(
                    f"SELECT {_SUPPRESSION_COLUMNS} FROM suppressions WHERE tenant_id = ? AND subject_hash = ?",
                    (tenant_id, subject_hash),
                ).fetchone(),
            )
        )

    async def save_suppression(self, suppression: Suppression) -> None:
        s = suppression
        await self._run(
            lambda c: c.execute(
                f"INSERT OR REPLACE INTO suppressions ({_SUPPRESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (s.tenant_id, s.subject_hash, s.field, _time(s.erased_at), s.mode, _time(s.lifted_at)),
            )
        )

    async def create_erasure(self, request: ErasureRequest) -> None:
        def create(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(
                    f"INSERT INTO erasures ({_ERASURE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _erasure_values(replace(request, revision=0)),
                )
            except sqlite3.IntegrityError:
                raise ErasureConflictError(f"erasure {request.id!r} exists already") from None

        await self._run(create)

    async def get_erasure(self, erasure_id: str) -> ErasureRequest | None:
        return await self._run(
            lambda c: _optional(
                _erasure,
                c.execute(f"SELECT {_ERASURE_COLUMNS} FROM erasures WHERE erasure_id = ?", (erasure_id,)).fetchone(),
            )
        )

    async def list_erasures(self, *, unfinished_only: bool = False) -> Sequence[ErasureRequest]:
        where = "WHERE status != 'finished' " if unfinished_only else ""
        return await self._run(
            lambda c: [
                _erasure(row)
                for row in c.execute(f"SELECT {_ERASURE_COLUMNS} FROM erasures {where}ORDER BY created_at, erasure_id")
            ]
        )

    async def replace_erasure(self, request: ErasureRequest) -> ErasureRequest:
        stored = replace(request, revision=request.revision + 1)

        def swap(connection: sqlite3.Connection) -> None:
            # Compare and set in one statement: the WHERE on the revision is the condition.
            values = _erasure_values(stored)
            changed = connection.execute(
                "UPDATE erasures SET tenant_id = ?, field = ?, subject_hash = ?, suppress = ?, created_at = ?, "
                "status = ?, steps = ?, finished_at = ?, sealed_subject = ?, lease_owner = ?, lease_until = ?, "
                "revision = ? WHERE erasure_id = ? AND revision = ?",
                (*values[1:], request.id, request.revision),
            ).rowcount
            if not changed:
                raise ErasureConflictError(
                    f"erasure {request.id!r} is no longer at revision {request.revision} (changed or gone)"
                )

        await self._run(swap)
        return stored

    async def check(self) -> None:
        """Commit a write: a store that cannot take writes cannot record a tombstone."""
        stamp = _time(datetime.now(UTC))
        await self._run(
            lambda c: c.execute("INSERT OR REPLACE INTO health_probe (id, written_at) VALUES (1, ?)", (stamp,))
        )

    async def close(self) -> None:
        """Finish pending writes and close the file. Later calls raise `PrivacyStoreError`."""
        with self._open_lock:
            self._closed = True
            worker, self._worker = self._worker, None
        if worker is not None:
            # Joining the writer thread may wait for a transaction; keep the event loop free.
            await asyncio.to_thread(worker.close)

    def _open(self) -> SqliteWorker:
        # Opened on first use, in a thread: the container builds this store in every worker,
        # and a file that cannot be opened must surface as `PrivacyStoreError` from the call
        # that needed it (the next call tries again), as an unreachable table would.
        with self._open_lock:
            if self._closed:
                raise SqliteWorkerClosedError(f"{self.path} is closed")
            if self._worker is None:
                self._worker = SqliteWorker(self.path, lambda c: c.executescript(_SCHEMA), name="embedded-privacy")
            return self._worker

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            worker = self._worker
            if worker is None:
                worker = await asyncio.to_thread(self._open)
            return await worker.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise PrivacyStoreError(f"the embedded privacy store failed: {exc}") from exc
        except (ValueError, TypeError) as exc:
            # Rows are decoded inside the job: a damaged row (hand-edited, another version) is a store failure.
            raise PrivacyStoreError(f"the embedded privacy store holds an unreadable row: {exc}") from exc
