"""host.json options, concurrency policies and app-setting expressions of the local host."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudscale_local.host.concurrency import CpuThrottle, HostConcurrency
from cloudscale_local.host.host_config import HostConfigError, load_host_config, parse_timespan
from cloudscale_local.host.servable import resolve_app_setting
from shared.settings import SettingsError

REPO_HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


def test_the_repository_host_json_is_read() -> None:
    config = load_host_config(REPO_HOST_JSON)
    # the app has no single-dispatch trigger, so no concurrency setting is there to apply
    assert config.dynamic_concurrency is False
    assert config.service_bus.prefetch_count == 0
    assert config.service_bus.auto_complete_messages is True
    assert config.service_bus.max_message_batch_size == 100
    assert config.function_timeout_seconds == 300


def test_a_missing_host_json_means_the_defaults(tmp_path: Path) -> None:
    config = load_host_config(tmp_path / "host.json")
    assert config.dynamic_concurrency is False
    assert config.service_bus.auto_complete_messages is True
    # no request queue: the host's default on every plan but Windows Consumption
    assert config.http.max_concurrent_requests is None
    assert config.http.max_outstanding_requests is None


def test_the_http_request_queue_limits_are_read_and_minus_one_is_unbounded(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text('{"extensions": {"HTTP": {"MaxConcurrentRequests": 8, "maxOutstandingRequests": -1}}}')

    config = load_host_config(path)

    assert config.http.max_concurrent_requests == 8
    assert config.http.max_outstanding_requests is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON"),
        ('{"extensions": {"serviceBus": {"maxConcurrentCalls": "many"}}}', "serviceBus"),
        ('{"extensions": {"serviceBus": {"maxConcurrentCalls": 0}}}', "at least 1"),
        ('{"extensions": {"http": {"maxOutstandingRequests": 0}}}', "maxOutstandingRequests must be at least 1"),
        ('{"extensions": {"http": {"maxConcurrentRequests": "lots"}}}', "extensions.http.maxConcurrentRequests"),
        ('{"extensions": {"serviceBus": {"maxAutoLockRenewalDuration": "5 minutes"}}}', "timespan"),
    ],
)
def test_a_bad_host_json_is_explained(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "host.json"
    path.write_text(text)
    with pytest.raises(HostConfigError, match=problem):
        load_host_config(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:05:00", 300),
        ("00:00:00.5", 0.5),
        ("1.02:03:04", 93784),
        ("10:00:00", 36000),
        ("00:05", 300),
        ("0:5:0", 300),
    ],
)
def test_timespans(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds


@pytest.mark.parametrize("text", ["00:99:00", "24:00:00", "00:00:60", "5 minutes", "5"])
def test_what_timespan_parse_refuses_is_refused(text: str) -> None:
    with pytest.raises(HostConfigError):
        parse_timespan(text)


def test_keys_and_enum_values_are_read_ignoring_case_as_the_host_binds_them(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(
        '{"Concurrency": {"DynamicConcurrencyEnabled": true, "MaximumFunctionConcurrency": 7},'
        ' "Extensions": {"ServiceBus": {"MaxConcurrentCalls": 3, "MaxMessageBatchSize": 20,'
        ' "ClientRetryOptions": {"Mode": "EXPONENTIAL"}}}, "FunctionTimeout": "00:02:00"}'
    )
    config = load_host_config(path)
    assert config.dynamic_concurrency is True
    assert config.concurrency.maximum_function_concurrency == 7
    assert config.service_bus.max_concurrent_calls == 3
    assert config.service_bus.max_message_batch_size == 20
    assert config.function_timeout_seconds == 120


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"extensions": {"serviceBus": {"clientRetryOptions": {"mode": "linear"}}}}', "fixed, exponential"),
        ('{"functionTimeout": "forever"}', "timespan"),
        ('{"concurrency": {"cpuThreshold": 1.5}}', "cpuThreshold"),
        ('{"concurrency": {"dynamicConcurrencyEnabled": "yes"}}', "boolean"),
    ],
)
def test_values_the_host_would_not_bind_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "host.json"
    path.write_text(text)
    with pytest.raises(HostConfigError, match=problem):
        load_host_config(path)


def test_function_timeout_defaults_to_the_flex_consumption_default_and_minus_one_is_unbounded(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text("{}")
    assert load_host_config(path).function_timeout_seconds == 30 * 60
    path.write_text('{"functionTimeout": "-1"}')
    assert load_host_config(path).function_timeout_seconds is None


def test_dynamic_concurrency_starts_at_one_and_waits_for_five_healthy_checks() -> None:
    level = HostConcurrency(maximum=50, _last_adjustment=0.0)
    level.started()
    assert level.available == 0
    # Healthy for fewer than five checks in a row: no move yet.
    assert level.update(False, consecutive=4, now=10.0) == 1
    assert level.update(False, consecutive=5, now=10.0) == 2


def test_dynamic_concurrency_increases_only_while_every_slot_is_used() -> None:
    level = HostConcurrency(maximum=50, _last_adjustment=0.0)
    assert level.update(False, consecutive=9, now=10.0) == 1  # idle: nothing used the one slot


def test_dynamic_concurrency_speeds_up_in_runs_of_the_same_direction_up_to_six_a_step() -> None:
    level = HostConcurrency(maximum=500, _last_adjustment=0.0)
    levels = []
    now = 0.0
    for _ in range(8):
        for _ in range(level.current):
            level.started()
        now += 5.1  # past the default adjustment interval, within the 10 s run window
        levels.append(level.update(False, consecutive=10, now=now))
        for _ in range(level.outstanding):
            level.completed(0.0)
    assert levels == [2, 4, 7, 11, 16, 22, 28, 34]


def test_dynamic_concurrency_decreases_after_three_throttled_checks_then_holds_off_increases() -> None:
    level = HostConcurrency(maximum=500, current=10, _last_adjustment=0.0)
    assert level.update(True, consecutive=2, now=6.0) == 10
    assert level.update(True, consecutive=3, now=6.0) == 9
    for _ in range(level.current):
        level.started()
    # Healthy again, fully used, but within 30 s of a decrease: no increase.
    assert level.update(False, consecutive=10, now=12.0) == 9
    assert level.update(False, consecutive=10, now=40.0) == 10


def test_dynamic_concurrency_never_exceeds_its_maximum_nor_drops_below_one() -> None:
    level = HostConcurrency(maximum=3, current=3, _last_adjustment=0.0)
    for _ in range(3):
        level.started()
    assert level.update(False, consecutive=10, now=6.0) == 3
    low = HostConcurrency(maximum=3, _last_adjustment=0.0)
    assert low.update(True, consecutive=10, now=6.0) == 1


def test_the_cpu_throttle_counts_consecutive_checks_in_the_same_state() -> None:
    throttle = CpuThrottle()
    for _ in range(3):
        throttle.record(True)
    assert throttle.consecutive == 3
    throttle.record(False)
    assert throttle.consecutive == 1


def test_app_setting_expressions_resolve_from_the_environment_then_the_app_defaults() -> None:
    assert resolve_app_setting("%CLOUDSCALE_EVENTS_QUEUE%", {"CLOUDSCALE_EVENTS_QUEUE": "orders"}) == "orders"
    assert resolve_app_setting("%CLOUDSCALE_EVENTS_QUEUE%", {}) == "events"
    assert resolve_app_setting("literal-queue", {}) == "literal-queue"
    with pytest.raises(SettingsError, match="NOT_A_SETTING"):
        resolve_app_setting("%NOT_A_SETTING%", {})
