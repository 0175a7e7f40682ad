"""What `POST /api/privacy/erasures` accepts, and the reasons it gives for what it refuses."""

from __future__ import annotations

import pytest

from privacy.erasure import new_erasure_id
from privacy.requests import ERASURE_ID, InvalidErasureRequestError, parse_erasure_request
from shared.domain.privacy import Subject


def test_a_user_is_erased_with_suppression_by_default() -> None:
    body = parse_erasure_request(b'{"tenantId": "acme", "userId": "u-1"}')

    assert body.subject() == Subject("acme", "userId", "u-1")
    assert body.suppress is True


def test_an_anonymous_id_can_be_erased_delete_only() -> None:
    body = parse_erasure_request(b'{"tenantId": "acme", "anonymousId": "a-1", "suppress": false}')

    assert body.subject() == Subject("acme", "anonymousId", "a-1")
    assert body.suppress is False


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b'{"tenantId": "acme"}', "", "give exactly one of userId and anonymousId"),
        (b'{"tenantId": "acme", "userId": "u", "anonymousId": "a"}', "", "give exactly one of userId and anonymousId"),
        (b'{"userId": "u"}', "tenantId", "Field required"),
        (b'{"tenantId": "a/b", "userId": "u"}', "tenantId", "String should match pattern"),
        (b'{"tenantId": "acme", "userId": ""}', "userId", "String should have at least 1 character"),
        (b'{"tenantId": "acme", "userId": "u", "suppress": "no"}', "suppress", "Input should be a valid boolean"),
        (b'{"tenantId": "acme", "userId": "u", "email": "x@example.com"}', "email", "unknown field 'email'"),
    ],
)
def test_each_bad_field_is_named_with_its_reason(body: bytes, field: str, message: str) -> None:
    with pytest.raises(InvalidErasureRequestError) as refused:
        parse_erasure_request(body)

    [detail] = refused.value.details
    assert detail["field"] == field
    assert detail["message"].startswith(message)


def test_a_reason_never_repeats_the_identifier() -> None:
    secret_id = "someone@example.com" * 10  # too long: refused

    with pytest.raises(InvalidErasureRequestError) as refused:
        parse_erasure_request(f'{{"tenantId": "acme", "userId": "{secret_id}"}}'.encode())

    assert "someone" not in str(refused.value.details)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"acme"'])
def test_a_body_that_is_not_a_json_object_is_refused_as_a_whole(body: bytes) -> None:
    with pytest.raises(InvalidErasureRequestError) as refused:
        parse_erasure_request(body)

    assert refused.value.details == ()


def test_erasure_ids_have_the_shape_the_route_accepts() -> None:
    ids = {new_erasure_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(ERASURE_ID.fullmatch(erasure_id) for erasure_id in ids)
