"""`shared.domain.client_identity`: one key per client, whatever address it calls from."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.domain.client_identity import ClientKeyer, canonical_client

SECRET = b"s" * 32


def key(address: str, prefix: int = 64) -> str:
    return ClientKeyer(SECRET, prefix).identify(address).key


@pytest.mark.parametrize(
    "spelling",
    [
        "203.0.113.7",
        " 203.0.113.7 ",
        "::ffff:203.0.113.7",
        "::FFFF:cb00:7107",
        "::203.0.113.7",
        "64:ff9b::203.0.113.7",
        "64:ff9b::cb00:7107",
        "2002:cb00:7107::1",
        "2002:cb00:7107:5::99",
    ],
    ids=["plain", "spaced", "mapped", "mapped-hex", "compatible", "nat64", "nat64-hex", "6to4", "6to4-subnet"],
)
def test_every_spelling_of_an_ipv4_address_is_that_address(spelling: str) -> None:
    assert canonical_client(spelling) == "203.0.113.7"
    assert key(spelling) == key("203.0.113.7")


def test_rotating_addresses_inside_one_slash_64_are_one_client() -> None:
    keys = {key(f"2001:db8:1:2:{n:x}:{n * 7:x}:abcd:{n:x}") for n in range(200)}

    assert keys == {key("2001:db8:1:2::1")}
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1"), "the next /64 is another client"


def test_the_ipv6_prefix_is_a_setting() -> None:
    assert key("2001:db8:1:2::1", prefix=48) == key("2001:db8:1:ffff::1", prefix=48)
    assert key("2001:db8:1:2::1", prefix=128) != key("2001:db8:1:2::2", prefix=128)


def test_a_zone_id_is_not_part_of_the_client() -> None:
    assert key("fe80::1%eth0") == key("fe80::1%eth1") == key("fe80::1")
    assert canonical_client("fe80::1%eth0") == "fe80::/64"


def test_loopback_and_unspecified_ipv6_are_not_taken_for_ipv4() -> None:
    assert canonical_client("::1") == "::/64"
    assert canonical_client("::") == "::/64"


def test_different_ipv4_addresses_are_different_clients() -> None:
    assert len({key(f"203.0.113.{n}") for n in range(256)}) == 256


def test_what_is_not_an_address_is_one_unknown_client() -> None:
    assert key("unknown") == key("not-an-ip") == key("")


def test_the_key_is_an_hmac_under_the_secret_and_not_the_address() -> None:
    identity = ClientKeyer(SECRET).identify("203.0.113.7")

    assert identity.key == hmac.new(SECRET, b"203.0.113.7", hashlib.sha256).hexdigest()[:32]
    assert identity.key != ClientKeyer(b"t" * 32).identify("203.0.113.7").key
    assert identity.network == "203.0.113.0/24"
    assert "s" * 16 not in repr(ClientKeyer(SECRET))


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ClientKeyer(b"short")
