"""The `PrivacyStore` contract, run against both adapters: SQLite, and Table Storage on Azurite.

Each test may build several stores over the same state (`make`), as separate instances of the
app (or an operator's CLI beside them) would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.privacy.embedded_privacy import PRIVACY_FILE, EmbeddedPrivacyStore
from shared.adapters.privacy.tables_privacy import TablePrivacyStore
from shared.domain.privacy import ErasureRequest, StepResult, Suppression, subject_hash
from shared.ports import ErasureConflictError, PrivacyStore, PrivacyStoreError
from tests.integration.table_clients import fresh_table_name

T0 = datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=UTC)
SECRET = b"s" * 32

Make = Callable[[], PrivacyStore]


@pytest.fixture(params=["embedded", pytest.param("tables", marks=pytest.mark.azurite)])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    built: list[PrivacyStore] = []
    if request.param == "tables":
        connection_string: str = request.getfixturevalue("azurite_table_connection_string")
        table_name = fresh_table_name("privacy")

        def build() -> PrivacyStore:
            return TablePrivacyStore(TableClient.from_connection_string(connection_string, table_name=table_name))

    else:

        def build() -> PrivacyStore:
            return EmbeddedPrivacyStore(tmp_path / PRIVACY_FILE)

    def make_one() -> PrivacyStore:
        built.append(build())
        return built[-1]

    yield make_one
    for store in built:
        await store.close()


def tombstone(tenant_id: str = "acme", user: str = "u-1", **changes: object) -> Suppression:
    found = Suppression(tenant_id, subject_hash(SECRET, tenant_id, "userId", user), "userId", T0)
    return replace(found, **changes)  # type: ignore[arg-type]


def erasure(erasure_id: str = "e-1", created_at: datetime = T0, **changes: object) -> ErasureRequest:
    request = ErasureRequest(
        id=erasure_id,
        tenant_id="acme",
        field="anonymousId",
        subject_hash=subject_hash(SECRET, "acme", "anonymousId", "anon-7"),
        suppress=True,
        created_at=created_at,
    )
    return replace(request, **changes)  # type: ignore[arg-type]


async def test_suppressions_are_kept_per_tenant(make: Make) -> None:
    writer, reader = make(), make()
    mine, theirs = tombstone("acme"), tombstone("other")
    await writer.save_suppression(mine)
    await writer.save_suppression(theirs)

    assert await reader.suppressions("acme") == [mine]
    assert await reader.suppressions("other") == [theirs]
    assert await reader.suppressions("nobody") == []
    assert await reader.get_suppression("acme", mine.subject_hash) == mine
    assert await reader.get_suppression("other", mine.subject_hash) is None


async def test_saving_a_suppression_again_replaces_it_and_a_lifted_one_round_trips(make: Make) -> None:
    store = make()
    await store.save_suppression(tombstone())
    lifted = tombstone().lifted(T0 + timedelta(days=2))
    await store.save_suppression(lifted)

    assert await store.suppressions("acme") == [lifted]
    assert (await store.get_suppression("acme", lifted.subject_hash)) == lifted
    assert lifted.mode == "delete"
    assert lifted.lifted_at == T0 + timedelta(days=2)


async def test_an_erasure_is_created_read_and_listed_oldest_first(make: Make) -> None:
    writer, reader = make(), make()
    later = erasure("e-2", T0 + timedelta(minutes=1), suppress=False, sealed_subject="c2VhbGVk")
    finished = erasure(
        "e-0",
        T0 - timedelta(hours=1),
        status="finished",
        finished_at=T0,
        steps={"suppress": StepResult(found=None, removed=0, done=True), "events": StepResult(3, 3, True, "x")},
    )
    for request in (later, erasure(), finished):
        await writer.create_erasure(request)

    assert await reader.get_erasure("e-2") == later
    assert await reader.get_erasure("e-0") == finished
    assert await reader.get_erasure("missing") is None
    assert [r.id for r in await reader.list_erasures()] == ["e-0", "e-1", "e-2"]
    assert [r.id for r in await reader.list_erasures(unfinished_only=True)] == ["e-1", "e-2"]


async def test_an_existing_erasure_cannot_be_created_again(make: Make) -> None:
    store = make()
    await store.create_erasure(erasure())
    with pytest.raises(ErasureConflictError, match="exists already"):
        await store.create_erasure(erasure(suppress=False))
    assert (await store.get_erasure("e-1")) == erasure()


async def test_replace_bumps_the_revision_and_refuses_a_stale_one(make: Make) -> None:
    store = make()
    await store.create_erasure(erasure())
    leased = replace(
        erasure(), status="running", lease_owner="host-1", lease_until=T0 + timedelta(minutes=5)
    ).with_step("suppress", StepResult(found=1, removed=0, done=True))

    stored = await store.replace_erasure(leased)

    assert stored.revision == 1
    assert await store.get_erasure("e-1") == stored
    with pytest.raises(ErasureConflictError):
        await store.replace_erasure(replace(leased, lease_owner="host-2"))  # still revision 0
    again = await store.replace_erasure(replace(stored, lease_owner=None, lease_until=None, sealed_subject=None))
    assert again.revision == 2
    assert await store.get_erasure("e-1") == again


async def test_replacing_a_missing_erasure_is_a_conflict(make: Make) -> None:
    with pytest.raises(ErasureConflictError):
        await make().replace_erasure(erasure("ghost"))


async def test_of_two_replaces_from_one_revision_exactly_one_wins(make: Make) -> None:
    first, second = make(), make()
    await first.create_erasure(erasure())
    read_by_one = await first.get_erasure("e-1")
    read_by_two = await second.get_erasure("e-1")
    assert read_by_one is not None
    assert read_by_two is not None

    outcomes = await asyncio.gather(
        first.replace_erasure(replace(read_by_one, lease_owner="one")),
        second.replace_erasure(replace(read_by_two, lease_owner="two")),
        return_exceptions=True,
    )

    won = [o for o in outcomes if isinstance(o, ErasureRequest)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1
    assert len(lost) == 1
    assert isinstance(lost[0], ErasureConflictError)
    assert await first.get_erasure("e-1") == won[0]


async def test_check_writes_and_a_conflict_is_a_privacy_store_error(make: Make) -> None:
    await make().check()
    assert issubclass(ErasureConflictError, PrivacyStoreError)


async def test_the_subject_key_is_generated_once_and_every_instance_reads_the_same(make: Make) -> None:
    first, second = make(), make()

    # Racing first calls from two instances agree on one key, and it stays the key.
    keys = await asyncio.gather(first.subject_key(), second.subject_key())
    again = await make().subject_key()

    assert keys[0] == keys[1] == again
    assert len(again) == 32
