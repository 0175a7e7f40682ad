"""host.json options, concurrency policies and app-setting expressions of the local host."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_host.concurrency import DynamicConcurrency, tiered_concurrency
from local_host.host_config import HostConfigError, load_host_config, parse_timespan
from local_host.server import resolve_app_setting
from shared.settings import SettingsError

REPO_HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


def test_the_repository_host_json_is_read() -> None:
    config = load_host_config(REPO_HOST_JSON)
    assert config.dynamic_concurrency is True
    assert config.service_bus.max_concurrent_calls == 32
    assert config.service_bus.prefetch_count == 0
    assert config.service_bus.auto_complete_messages is True
    assert config.service_bus.max_auto_lock_renewal_seconds == 300


def test_a_missing_host_json_means_the_defaults(tmp_path: Path) -> None:
    config = load_host_config(tmp_path / "host.json")
    assert config.dynamic_concurrency is False
    assert config.service_bus.auto_complete_messages is True


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON"),
        ('{"extensions": {"serviceBus": {"maxConcurrentCalls": "many"}}}', "serviceBus"),
        ('{"extensions": {"serviceBus": {"maxConcurrentCalls": 0}}}', "at least 1"),
        ('{"extensions": {"serviceBus": {"maxAutoLockRenewalDuration": "5 minutes"}}}', "timespan"),
    ],
)
def test_a_bad_host_json_is_explained(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "host.json"
    path.write_text(text)
    with pytest.raises(HostConfigError, match=problem):
        load_host_config(path)


@pytest.mark.parametrize(
    ("text", "seconds"), [("00:05:00", 300), ("00:00:00.5", 0.5), ("1.02:03:04", 93784), ("10:00:00", 36000)]
)
def test_timespans(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds


@pytest.mark.parametrize(
    ("depth", "expected"), [(0, 32), (999, 32), (1_000, 16), (5_000, 16), (10_000, 16), (10_001, 4), (10**6, 4)]
)
def test_queue_depth_tiers(depth: int, expected: int) -> None:
    assert tiered_concurrency(depth, cap=100) == expected


def test_tiers_never_exceed_max_concurrent_calls() -> None:
    assert tiered_concurrency(0, cap=8) == 8
    assert tiered_concurrency(50_000, cap=2) == 2


def test_dynamic_concurrency_doubles_while_saturated_then_halves_on_failure_and_climbs_carefully() -> None:
    policy = DynamicConcurrency(cap=40)
    assert policy.limit == 1
    assert [policy.adjust(saturated=True, failures=0) for _ in range(6)] == [2, 4, 8, 16, 32, 40]
    assert policy.adjust(saturated=False, failures=0) == 40
    assert policy.adjust(saturated=True, failures=2) == 20
    # Past a failure the threshold is where it halved: one at a time from there.
    assert [policy.adjust(saturated=True, failures=0) for _ in range(3)] == [21, 22, 23]
    assert policy.adjust(saturated=False, failures=1) == 11
    for _ in range(10):
        policy.adjust(saturated=False, failures=1)
    assert policy.limit == 1


def test_app_setting_expressions_resolve_from_the_environment_then_the_app_defaults() -> None:
    assert resolve_app_setting("%CLOUDSCALE_EVENTS_QUEUE%", {"CLOUDSCALE_EVENTS_QUEUE": "orders"}) == "orders"
    assert resolve_app_setting("%CLOUDSCALE_EVENTS_QUEUE%", {}) == "events"
    assert resolve_app_setting("literal-queue", {}) == "literal-queue"
    with pytest.raises(SettingsError, match="NOT_A_SETTING"):
        resolve_app_setting("%NOT_A_SETTING%", {})
