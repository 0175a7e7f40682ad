"""A function's `@retry` policy: the waits the Functions host puts between retries."""

from __future__ import annotations

import pytest

import function_app
from cloudscale_local.host.functions import RetryPolicy, index_functions

APP_POLICY = RetryPolicy(
    strategy="exponential_backoff", max_retry_count=12, minimum_interval=1.0, maximum_interval=300.0
)


def test_the_change_feed_function_has_the_app_policy() -> None:
    [feed] = index_functions(function_app.app).change_feed
    assert feed.retry == APP_POLICY


def test_exponential_backoff_grows_as_the_hosts_randomized_backoff() -> None:
    # The first retry waits the minimum; retry n the minimum plus jitter x 2^(n-2) x the minimum
    # (jitter 1 here), capped at the maximum.
    waits = [APP_POLICY.delay(retry, jitter=1.0) for retry in range(1, 13)]
    assert waits == [1, 2, 3, 5, 9, 17, 33, 65, 129, 257, 300, 300]
    # so the app's twelve retries span about 19 minutes before the batch is given up
    assert sum(waits) == 1121


@pytest.mark.parametrize("retry", range(2, 10))
def test_the_jitter_stays_within_a_fifth_either_way(retry: int) -> None:
    increment = 2 ** (retry - 2)
    draws = [APP_POLICY.delay(retry) for _ in range(200)]
    assert all(1 + 0.8 * increment <= wait < 1 + 1.2 * increment for wait in draws)
    assert len(set(draws)) > 1


def test_fixed_delay_waits_the_same_every_time() -> None:
    policy = RetryPolicy(strategy="fixed_delay", max_retry_count=5, delay_interval=10.0)
    assert [policy.delay(retry) for retry in range(1, 6)] == [10.0] * 5
