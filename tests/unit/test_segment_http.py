"""The Segment API's answers: Segment's success body, the API's error shape with `code`, a Basic challenge."""

from __future__ import annotations

import orjson

from ingest.errors import PayloadTooLargeError, UnauthorizedError
from ingest.segment_blueprint import CALLS, segment_error_response, success_response
from ingest.service import EventResult, IngestOutcome
from ingest.validation import FieldError
from tests.unit.test_ingest_http import ADMITTED


def test_all_accepted_is_segments_own_answer_with_the_rate_limit_headers() -> None:
    response = success_response(IngestOutcome([EventResult(0, "m-1", [])], ADMITTED))

    assert response.status_code == 200
    assert orjson.loads(response.get_body()) == {"success": True}
    assert response.headers["RateLimit-Remaining"] == "99"


def test_some_rejected_lists_them_beside_success() -> None:
    rejected = EventResult(1, None, [FieldError("batch[1].event", "a track call needs its event name", "missing")])
    response = success_response(IngestOutcome([EventResult(0, "m-1", []), rejected], ADMITTED))

    assert orjson.loads(response.get_body()) == {
        "success": True,
        "accepted": 1,
        "rejected": 1,
        "errors": [
            {
                "index": 1,
                "status": "rejected",
                "errors": [
                    {"field": "batch[1].event", "message": "a track call needs its event name", "type": "missing"}
                ],
            }
        ],
    }


def test_a_401_challenges_basic_first_and_names_its_code_for_the_sdks() -> None:
    response = segment_error_response(UnauthorizedError("a write key is required", code="missing_key"))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="cloudscale", Bearer realm="cloudscale"'
    body = orjson.loads(response.get_body())
    assert (body["error"], body["code"], body["message"]) == ("missing_key", "missing_key", "a write key is required")


def test_other_errors_keep_their_status_and_carry_code_too() -> None:
    response = segment_error_response(PayloadTooLargeError("too big"))

    assert response.status_code == 413
    assert orjson.loads(response.get_body())["code"] == "payload_too_large"


def test_every_segment_call_and_analytics_js_short_path_is_routed() -> None:
    assert {name: CALLS[name] for name in ("batch", "b")} == {"batch": None, "b": None}
    for call in ("track", "page", "screen", "identify", "group", "alias"):
        assert CALLS[call] == call
        assert CALLS[call[0]] == call
