"""Which address a request is attributed to (`ingest.client_ip`), from `X-Forwarded-For`.

The platform front end appends the socket peer (`ip:port`) on the right; everything to its
left was written by the client or by proxies, and is believed only through trusted proxies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from ingest.client_ip import UNKNOWN_CLIENT, client_ip

Resolve = Callable[..., str]


@pytest.fixture
def resolve() -> Resolve:
    """`client_ip` with trusted proxies given as strings (addresses or CIDR blocks)."""

    def run(forwarded_for: str | None, *trusted: str) -> str:
        return client_ip(forwarded_for, [ipaddress.ip_network(block) for block in trusted])

    return run


@pytest.mark.parametrize("header", [None, "", "   ", ",", " , ,"])
def test_without_a_usable_header_the_client_is_unknown(resolve: Resolve, header: str | None) -> None:
    assert resolve(header) == UNKNOWN_CLIENT == "unknown"


def test_a_single_peer_with_a_port_is_the_client(resolve: Resolve) -> None:
    assert resolve("203.0.113.7:5123") == "203.0.113.7"


def test_a_single_peer_without_a_port_is_the_client(resolve: Resolve) -> None:
    assert resolve("203.0.113.7") == "203.0.113.7"


def test_entries_left_of_an_untrusted_peer_are_ignored(resolve: Resolve) -> None:
    # GIVEN a client that writes its own X-Forwarded-For to pose as someone else
    header = "1.2.3.4, 10.0.0.1, 203.0.113.7:5123"

    # THEN only the socket peer counts
    assert resolve(header) == "203.0.113.7"
    assert resolve(header, "127.0.0.1/32") == "203.0.113.7"


def test_behind_a_trusted_proxy_the_entry_left_of_it_is_the_client(resolve: Resolve) -> None:
    assert resolve("203.0.113.7, 127.0.0.1:40000", "127.0.0.1/32") == "203.0.113.7"


def test_the_entry_written_by_a_trusted_proxy_may_carry_a_port(resolve: Resolve) -> None:
    assert resolve("203.0.113.7:5123, 127.0.0.1:40000", "127.0.0.1/32") == "203.0.113.7"


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop(resolve: Resolve) -> None:
    # GIVEN spoofed entries, the real client, then two trusted proxies
    header = "6.6.6.6, 5.5.5.5, 203.0.113.7, 10.1.2.3, 10.0.0.1:443"

    assert resolve(header, "10.0.0.0/8") == "203.0.113.7"


def test_proxies_may_be_trusted_by_several_blocks(resolve: Resolve) -> None:
    header = "203.0.113.7, 192.168.1.5, 10.0.0.1:443"

    assert resolve(header, "10.0.0.0/8", "192.168.0.0/16") == "203.0.113.7"
    assert resolve(header, "10.0.0.0/8") == "192.168.1.5"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client(resolve: Resolve) -> None:
    assert resolve("10.0.0.3, 10.0.0.2, 10.0.0.1", "10.0.0.0/8") == "10.0.0.3"


def test_ipv6_with_brackets_and_port(resolve: Resolve) -> None:
    assert resolve("[2001:db8::1]:5123") == "2001:db8::1"


def test_ipv6_in_brackets_without_a_port(resolve: Resolve) -> None:
    assert resolve("[2001:db8::1]") == "2001:db8::1"


def test_bare_ipv6(resolve: Resolve) -> None:
    assert resolve("2001:db8::1") == "2001:db8::1"


def test_ipv6_is_normalised_so_one_client_has_one_key(resolve: Resolve) -> None:
    assert resolve("2001:DB8:0:0:0:0:0:1") == resolve("[2001:db8::1]:1") == "2001:db8::1"


@pytest.mark.parametrize("header", ["::ffff:203.0.113.7", "[::ffff:203.0.113.7]:5123", "::FFFF:cb00:7107"])
def test_ipv4_mapped_ipv6_is_reported_as_ipv4(resolve: Resolve, header: str) -> None:
    assert resolve(header) == "203.0.113.7"


def test_an_ipv4_mapped_peer_matches_an_ipv4_trusted_block(resolve: Resolve) -> None:
    assert resolve("203.0.113.7, [::ffff:127.0.0.1]:40000", "127.0.0.1/32") == "203.0.113.7"


def test_ipv6_proxies_can_be_trusted(resolve: Resolve) -> None:
    assert resolve("203.0.113.7, [fd00::1]:443", "fd00::/8") == "203.0.113.7"


def test_an_ipv6_peer_is_not_trusted_by_an_ipv4_block(resolve: Resolve) -> None:
    assert resolve("203.0.113.7, [2001:db8::1]:443", "0.0.0.0/0") == "2001:db8::1"


@pytest.mark.parametrize(
    "header", ["garbage", "unknown", "203.0.113", "203.0.113.7.1", "999.0.113.7", "203.0.113.7:80:90", "[zz::1]:80"]
)
def test_an_unreadable_peer_gives_unknown(resolve: Resolve, header: str) -> None:
    assert resolve(f"198.51.100.1, {header}", "0.0.0.0/0") == UNKNOWN_CLIENT


def test_garbage_written_by_a_trusted_proxy_stops_at_the_proxy(resolve: Resolve) -> None:
    assert resolve("203.0.113.7, nonsense, 10.0.0.1", "10.0.0.0/8") == "10.0.0.1"


def test_garbage_left_of_an_untrusted_peer_is_irrelevant(resolve: Resolve) -> None:
    assert resolve("nonsense, <script>, 203.0.113.7:1") == "203.0.113.7"


def test_empty_entries_are_skipped(resolve: Resolve) -> None:
    assert resolve("203.0.113.7, , 127.0.0.1", "127.0.0.1/32") == "203.0.113.7"


def test_whitespace_around_entries_is_ignored(resolve: Resolve) -> None:
    assert resolve("  203.0.113.7 ,   127.0.0.1:9  ", "127.0.0.1/32") == "203.0.113.7"
