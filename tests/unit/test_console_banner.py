"""The banner's dashboard line: a URL this machine's browser can open, or why there is none."""

from __future__ import annotations

import pytest

from cloudscale_local.host.banner import dashboard_line


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:7071/dashboard"),
        ("0.0.0.0", "http://127.0.0.1:7071/dashboard"),
        ("::", "http://127.0.0.1:7071/dashboard"),
        ("::1", "http://[::1]:7071/dashboard"),
        ("localhost", "http://localhost:7071/dashboard"),
    ],
)
def test_a_loopback_or_wildcard_address_gives_a_loopback_url(host: str, url: str) -> None:
    assert dashboard_line(host, 7071).strip().startswith(f"dashboard: {url}")


def test_a_host_on_another_address_says_the_dashboard_is_not_reachable() -> None:
    assert "not reachable" in dashboard_line("192.0.2.10", 7071)
