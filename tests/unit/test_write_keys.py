"""Write keys as a producer and an operator see them: their shape, what is kept, and origins."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.ratelimit import MIN_TENANT_EVENTS_PER_MINUTE
from shared.domain.write_keys import (
    KEY_PREFIXES,
    Tenant,
    hash_key,
    issue_key,
    normalise_origin,
    origin_allowed,
    parse_key,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_a_new_server_key_is_recognisable_parses_back_and_matches_only_its_hash() -> None:
    issued = issue_key("acme", "server", created_at=NOW, label="checkout service")

    assert issued.key.startswith(KEY_PREFIXES["server"])
    parsed = parse_key(issued.key)
    assert parsed is not None
    assert (parsed.kind, parsed.key_id) == ("server", issued.record.key_id)
    assert issued.record.key_hash == hash_key(issued.key)
    assert issued.key not in repr(issued)  # a record or a log line of it never shows the key
    assert issued.record.matches(issued.key)
    assert not issued.record.matches(issued.key[:-1] + ("a" if issued.key[-1] != "a" else "b"))


def test_two_keys_never_share_an_id_or_a_secret() -> None:
    keys = [issue_key("acme", "server", created_at=NOW) for _ in range(200)]

    assert len({k.record.key_id for k in keys}) == 200
    assert len({k.key for k in keys}) == 200


@pytest.mark.parametrize(
    "presented",
    ["", "cs_sk_", "cs_xk_" + "a" * 48, "cs_sk_" + "a" * 47, "cs_sk_" + "A" * 48, "cs_sk_" + "a" * 48 + "\n"],
)
def test_a_string_not_shaped_like_a_key_is_not_one(presented: str) -> None:
    assert parse_key(presented) is None


def test_a_browser_key_needs_origins_and_a_server_key_takes_none() -> None:
    with pytest.raises(ValueError, match="needs at least one origin"):
        issue_key("acme", "browser", created_at=NOW)
    with pytest.raises(ValueError, match="server key is a secret"):
        issue_key("acme", "server", created_at=NOW, origins=("https://shop.example",))


def test_a_browser_key_is_usable_only_from_its_own_origins_and_never_without_one() -> None:
    issued = issue_key("acme", "browser", created_at=NOW, origins=("https://Shop.Example:443", "http://localhost:3000"))

    assert issued.record.origins == ("https://shop.example", "http://localhost:3000")
    assert issued.record.allows_origin("https://shop.example")
    assert issued.record.allows_origin("HTTPS://SHOP.EXAMPLE")
    assert not issued.record.allows_origin("https://shop.example.evil.test")
    assert not issued.record.allows_origin("http://shop.example")
    assert not issued.record.allows_origin("null")
    assert not issued.record.allows_origin(None)
    assert origin_allowed("server", (), None)


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("https://shop.example", "https://shop.example"),
        ("https://shop.example/", "https://shop.example"),
        ("http://localhost:80", "http://localhost"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://[::1]:8443", "https://[::1]:8443"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("https://BÜCHER.example:8443", "https://xn--bcher-kva.example:8443"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    ],
)
def test_origins_are_kept_as_browsers_send_them(given: str, normalised: str) -> None:
    assert normalise_origin(given) == normalised


@pytest.mark.parametrize(
    "given", ["null", "*", "https://*.shop.example", "shop.example", "ftp://shop.example", "https://shop.example/app"]
)
def test_what_is_not_an_origin_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        normalise_origin(given)


@pytest.mark.parametrize("given", ["https://bücher.example", "https://xn--bcher-kva.example"])
def test_an_internationalised_origin_given_in_either_form_matches_what_browsers_send(given: str) -> None:
    # Browsers send an internationalised host in its ASCII (punycode) form in `Origin`.
    assert origin_allowed("browser", (normalise_origin(given),), "https://xn--bcher-kva.example")


def test_a_host_idna_cannot_encode_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be written in ASCII"):
        normalise_origin("https://" + "ü" * 70 + ".example")  # a label over 63 characters


def test_a_tenant_quota_below_one_batch_a_minute_is_refused_where_a_tenant_is_made() -> None:
    # The rate limiter enforces at least MIN_TENANT_EVENTS_PER_MINUTE: a lower quota would be shown and not enforced.
    assert Tenant("acme", "active", datetime(2026, 1, 1, tzinfo=UTC), MIN_TENANT_EVENTS_PER_MINUTE).events_per_minute
    with pytest.raises(ValueError, match=f"at least {MIN_TENANT_EVENTS_PER_MINUTE} events a minute"):
        Tenant("acme", "active", datetime(2026, 1, 1, tzinfo=UTC), MIN_TENANT_EVENTS_PER_MINUTE - 1)
