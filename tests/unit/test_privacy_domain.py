"""Subjects, tombstones and erasure records (`shared.domain.privacy`), and the sealed identifier
(`shared.subject_seal`): plain Python, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from shared.domain.privacy import (
    ERASURE_STEPS,
    ErasureRequest,
    StepResult,
    Subject,
    Suppression,
    SuppressionSnapshot,
    message_identifiers,
    subject_hash,
)
from shared.subject_seal import SealError, seal_subject, unseal_subject

SECRET = b"k" * 32
T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


def test_a_subject_hash_is_keyed_and_separates_tenant_and_field() -> None:
    one = subject_hash(SECRET, "acme", "userId", "u-1")

    assert one == subject_hash(SECRET, "acme", "userId", "u-1")
    assert len(one) == 64
    assert "u-1" not in one
    others = {
        subject_hash(SECRET, "other", "userId", "u-1"),
        subject_hash(SECRET, "acme", "anonymousId", "u-1"),
        subject_hash(b"x" * 32, "acme", "userId", "u-1"),
        # The separator keeps a tenant/value split from colliding with another split.
        subject_hash(SECRET, "acmeu", "userId", "-1"),
    }
    assert one not in others
    assert len(others) == 4


def test_a_subject_never_shows_its_identifier() -> None:
    subject = Subject("acme", "userId", "alice@example.com")
    assert "alice" not in repr(subject)
    assert subject.hash(SECRET) == subject_hash(SECRET, "acme", "userId", "alice@example.com")


def test_a_suppression_drops_everything_and_a_lifted_one_only_what_came_before() -> None:
    tombstone = Suppression("acme", "h", "userId", T0)
    assert tombstone.drops(T0 - timedelta(days=1))
    assert tombstone.drops(T0 + timedelta(days=1))

    lifted = tombstone.lifted(T0 + timedelta(hours=1))
    assert (lifted.mode, lifted.lifted_at) == ("delete", T0 + timedelta(hours=1))
    assert lifted.drops(T0 - timedelta(microseconds=1))
    # What was received while the subject was suppressed stays dropped (a replayed dead letter of
    # that time must not come back): only what is received from the lift on is accepted.
    assert lifted.drops(T0 + timedelta(minutes=59))
    assert not lifted.drops(T0 + timedelta(hours=1))
    again = lifted.lifted(T0 + timedelta(days=9))
    assert again == lifted  # lifting twice changes nothing: the first lift stays


def test_a_snapshot_checks_both_identifiers_of_its_own_tenant() -> None:
    anonymous = Suppression("acme", subject_hash(SECRET, "acme", "anonymousId", "a-1"), "anonymousId", T0)
    elsewhere = Suppression("other", subject_hash(SECRET, "other", "userId", "u-1"), "userId", T0)
    snapshot = SuppressionSnapshot.of("acme", [anonymous, elsewhere])

    assert set(snapshot.by_hash) == {anonymous.subject_hash}
    assert snapshot.drops(SECRET, "u-9", "a-1", T0)
    assert not snapshot.drops(SECRET, "u-1", None, T0)  # the tombstone of another tenant
    assert not snapshot.drops(SECRET, "a-1", None, T0)  # a userId equal to the erased anonymousId
    assert not snapshot.drops(SECRET, None, None, T0)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"event": "nope"}',
        b'{"event": {"userId": "u-1"}}',
        b'{"event": {"tenantId": 7}}',
        b"",
    ],
)
def test_message_identifiers_tolerate_any_junk(body: bytes) -> None:
    assert message_identifiers(body) is None


def test_message_identifiers_read_an_envelope_and_ignore_odd_fields() -> None:
    envelope = {"event": {"tenantId": "acme", "userId": "u-1", "anonymousId": "a-1"}, "receivedAt": T0.isoformat()}
    assert message_identifiers(orjson.dumps(envelope)) == ("acme", "u-1", "a-1", T0)

    odd = {"event": {"tenantId": "acme", "userId": 12, "anonymousId": ["a"]}, "receivedAt": "yesterday"}
    assert message_identifiers(orjson.dumps(odd)) == ("acme", None, None, None)


def request() -> ErasureRequest:
    return ErasureRequest("e-1", "acme", "userId", "h" * 64, suppress=True, created_at=T0)


def test_an_erasure_runs_its_steps_in_order_until_none_is_left() -> None:
    current = request()
    seen = []
    while (step := current.next_step()) is not None:
        seen.append(step)
        current = current.with_step(step, StepResult(found=1, removed=1, done=True))
    assert tuple(seen) == ERASURE_STEPS

    half_done = request().with_step("suppress", StepResult(done=True)).with_step("events", StepResult(done=True))
    assert half_done.next_step() == "settle"  # the first one not done, not the one after the last done


def test_an_erasure_status_holds_every_step_and_no_identifier() -> None:
    sealed = seal_subject(SECRET, "e-1", "alice@example.com")
    finished = replace(
        request(),
        suppress=False,
        status="finished",
        finished_at=T0 + timedelta(minutes=2),
        sealed_subject=sealed,
    ).with_step("analytics", StepResult(found=4, removed=4, done=True, detail="purge queued"))

    status = finished.to_status()

    assert status["mode"] == "delete"
    assert status["finishedAt"] == "2026-11-27T12:02:00+00:00"
    steps = status["steps"]
    assert isinstance(steps, dict)
    assert list(steps) == list(ERASURE_STEPS)
    assert steps["analytics"] == {"found": 4, "removed": 4, "done": True, "detail": "purge queued"}
    assert steps["events"] == {"found": None, "removed": 0, "done": False}
    text = orjson.dumps(status).decode()
    assert "alice" not in text
    assert sealed not in text


def test_a_sealed_identifier_opens_only_for_its_erasure_under_its_secret() -> None:
    sealed = seal_subject(SECRET, "e-1", "alice@example.com")

    assert "alice" not in sealed
    assert unseal_subject(SECRET, "e-1", sealed) == "alice@example.com"
    assert seal_subject(SECRET, "e-1", "alice@example.com") != sealed  # a fresh nonce each time
    with pytest.raises(SealError):
        unseal_subject(SECRET, "e-2", sealed)
    with pytest.raises(SealError):
        unseal_subject(b"x" * 32, "e-1", sealed)
    with pytest.raises(SealError):
        unseal_subject(SECRET, "e-1", sealed[:-4] + "AAAA")
    with pytest.raises(SealError):
        unseal_subject(SECRET, "e-1", "!!not base64!!")
