"""Azure Functions route templates in the local host (`cloudscale_local.host.routing.RouteTemplate`).

Paths are below the route prefix, with a leading slash, as the gateway passes them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cloudscale_local.host.routing import RouteTemplate

GUID = "0b6f3c4e-8a51-4c4e-9d0a-3c5e1f7b2a90"

Match = Callable[[str, str], "dict[str, str] | None"]


@pytest.fixture
def match() -> Match:
    def run(template: str, path: str) -> dict[str, str] | None:
        return RouteTemplate.compile(template).match(path)

    return run


def test_the_template_is_kept_for_display() -> None:
    assert RouteTemplate.compile("events/{id}").template == "events/{id}"


def test_a_literal_route_matches_only_itself(match: Match) -> None:
    assert match("events", "/events") == {}
    assert match("events", "/event") is None
    assert match("events", "/eventsx") is None
    assert match("events", "/events/1") is None
    assert match("events", "/") is None


def test_a_multi_segment_literal_route(match: Match) -> None:
    assert match("admin/health/live", "/admin/health/live") == {}
    assert match("admin/health/live", "/admin/health") is None


def test_leading_and_trailing_slashes_in_the_template_do_not_matter(match: Match) -> None:
    assert match("/events/", "/events") == {}


def test_literal_characters_with_regex_meaning_are_taken_literally(match: Match) -> None:
    assert match("v1.0/events", "/v1.0/events") == {}
    assert match("v1.0/events", "/v1x0/events") is None


def test_a_parameter_captures_one_segment(match: Match) -> None:
    assert match("events/{tenantId}", "/events/acme") == {"tenantId": "acme"}
    assert match("events/{tenantId}", "/events/acme/extra") is None
    assert match("events/{tenantId}", "/events") is None


def test_several_parameters(match: Match) -> None:
    assert match("t/{tenant}/e/{id}", "/t/acme/e/42") == {"tenant": "acme", "id": "42"}


@pytest.mark.parametrize(("path", "expected"), [("/items/42", "42"), ("/items/-7", "-7"), ("/items/0", "0")])
def test_an_int_constraint_accepts_integers(match: Match, path: str, expected: str) -> None:
    assert match("items/{id:int}", path) == {"id": expected}


@pytest.mark.parametrize("path", ["/items/abc", "/items/4.2", "/items/42a", "/items/", "/items/+"])
def test_an_int_constraint_refuses_other_segments(match: Match, path: str) -> None:
    assert match("items/{id:int}", path) is None


@pytest.mark.parametrize("guid", [GUID, GUID.upper(), GUID.replace("-", "")])
def test_a_guid_constraint_accepts_guids(match: Match, guid: str) -> None:
    assert match("events/{id:guid}", f"/events/{guid}") == {"id": guid}


@pytest.mark.parametrize("segment", ["not-a-guid", GUID[:-1], GUID + "0", GUID.replace("0", "g", 1)])
def test_a_guid_constraint_refuses_other_segments(match: Match, segment: str) -> None:
    assert match("events/{id:guid}", f"/events/{segment}") is None


def test_other_known_constraints(match: Match) -> None:
    assert match("x/{flag:bool}", "/x/TRUE") == {"flag": "TRUE"}
    assert match("x/{flag:bool}", "/x/yes") is None
    assert match("x/{name:alpha}", "/x/abc") == {"name": "abc"}
    assert match("x/{name:alpha}", "/x/abc1") is None
    assert match("x/{n:double}", "/x/-1.5") == {"n": "-1.5"}


def test_an_unknown_or_parameterised_constraint_accepts_any_segment(match: Match) -> None:
    assert match("x/{name:length(3)}", "/x/abcdef") == {"name": "abcdef"}
    assert match("x/{name:whatever}", "/x/a-b") == {"name": "a-b"}


def test_a_constraint_name_is_case_insensitive(match: Match) -> None:
    assert match("items/{id:INT}", "/items/abc") is None


def test_an_optional_last_parameter_may_be_absent(match: Match) -> None:
    template = "events/{tenantId}/{id?}"

    assert match(template, "/events/acme") == {"tenantId": "acme"}
    assert match(template, "/events/acme/42") == {"tenantId": "acme", "id": "42"}
    assert match(template, "/events/acme/42/x") is None


def test_an_optional_constrained_parameter(match: Match) -> None:
    template = "events/{id:guid?}"

    assert match(template, "/events") == {}
    assert match(template, f"/events/{GUID}") == {"id": GUID}
    assert match(template, "/events/42") is None


def test_a_catch_all_takes_the_rest_of_the_path(match: Match) -> None:
    template = "files/{*path}"

    assert match(template, "/files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert match(template, "/files/a") == {"path": "a"}
    assert match(template, "/files") == {}
    assert match(template, "/filesx/a") is None


def test_matching_is_case_insensitive_and_keeps_the_values_case(match: Match) -> None:
    assert match("Events/{tenantId}", "/EVENTS/AcMe") == {"tenantId": "AcMe"}


def test_a_trailing_slash_is_allowed(match: Match) -> None:
    assert match("events", "/events/") == {}
    assert match("events/{id:int}", "/events/42/") == {"id": "42"}
    assert match("events/{id?}", "/events/") == {}


def test_only_one_trailing_slash_is_allowed(match: Match) -> None:
    assert match("events", "/events//") is None


def test_the_path_must_start_with_a_slash(match: Match) -> None:
    assert match("events", "events") is None


def test_a_path_with_a_trailing_newline_does_not_match(match: Match) -> None:
    assert match("items/{id:int}", "/items/5\n") is None


def test_an_int_constraint_takes_only_ascii_digits(match: Match) -> None:
    assert match("items/{id:int}", "/items/\u0661\u0662") is None
