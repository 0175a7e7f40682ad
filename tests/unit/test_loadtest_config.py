"""`LoadConfig` (the library's shape and checks) and the loopback rule."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from cloudscale_local.loadtest import LoadConfig, is_loopback_url


def test_the_config_has_the_agreed_shape_and_defaults() -> None:
    config = LoadConfig()
    assert [(field.name, field.default) for field in dataclasses.fields(LoadConfig)] == [
        ("url", "http://127.0.0.1:7071"),
        ("duration", 60),
        ("target_rps", 1000),
        ("batch_size", 1),
        ("ips", 256),
        ("tenants", 10),
        ("path", "/api/events"),
        ("workers", 1),
        ("data_dir", None),
        ("drain_seconds", 30),
        ("write_key", None),
    ]
    assert config.endpoint == "http://127.0.0.1:7071/api/events"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.duration = 1  # type: ignore[misc]


def test_a_write_key_never_shows_in_the_configs_repr() -> None:
    assert "cs_sk_secret" not in repr(LoadConfig(write_key="cs_sk_secret"))


def test_the_endpoint_joins_url_and_path() -> None:
    config = LoadConfig(url="http://localhost:8080/", path="/api/bare", data_dir=Path("x"))
    assert config.endpoint == "http://localhost:8080/api/bare"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"duration": 0}, "duration must be a positive number"),
        ({"duration": float("inf")}, "duration must be a positive number"),
        ({"target_rps": -1}, "target_rps must be a positive number"),
        ({"batch_size": 0}, "batch_size must be in 1..500"),
        ({"batch_size": 501}, "batch_size must be in 1..500"),
        ({"ips": 0}, "ips must be in 1..16777214"),
        ({"tenants": 0}, "tenants must be at least 1"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"drain_seconds": -1}, "drain_seconds must be zero or more"),
        ({"path": "api/events"}, "path must start with '/'"),
        ({"url": "127.0.0.1:7071"}, "url must be an http(s) URL"),
        ({"url": "ftp://127.0.0.1"}, "url must be an http(s) URL"),
    ],
)
def test_an_impossible_config_is_refused_with_the_reason(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LoadConfig(**overrides)  # type: ignore[arg-type]


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ValueError, match=r"duration.*; target_rps"):
        LoadConfig(duration=0, target_rps=0)


def test_a_zero_drain_is_allowed() -> None:
    assert LoadConfig(drain_seconds=0).drain_seconds == 0


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:7071", True),
        ("http://127.9.8.7", True),
        ("http://localhost:7071/api", True),
        ("http://LOCALHOST.:7071", True),
        ("http://[::1]:7071", True),
        ("http://10.0.0.1:7071", False),
        ("http://0.0.0.0:7071", False),
        ("https://myapp.azurewebsites.net", False),
        ("http://localhost.example.com", False),
        ("http://127.0.0.1.nip.io", False),
        ("not a url", False),
    ],
)
def test_only_loopback_hosts_count_as_local(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback
