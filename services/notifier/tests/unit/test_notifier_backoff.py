"""Retries: exponential backoff with jitter, the receiver's Retry-After honoured, which answers
retry and which fail at once; the per-channel token bucket."""

from __future__ import annotations

import random

import pytest
from tradeflow_notifier.domain.rate_limit import TokenBucket
from tradeflow_notifier.domain.retry import RetryPolicy, http_result, parse_retry_after


def test_delays_double_per_attempt_within_equal_jitter_and_stop_at_the_cap():
    policy = RetryPolicy(max_attempts=8, initial_s=1.0, max_s=30.0)
    rng = random.Random(3)
    for attempt, nominal in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (7, 30)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert nominal / 2 <= min(delays) and max(delays) <= nominal
        assert max(delays) - min(delays) > nominal / 4  # spread out, not one value
    assert not policy.is_last(7) and policy.is_last(8)


def test_the_receivers_retry_after_is_honoured_as_is():
    assert RetryPolicy(initial_s=1.0).delay(1, retry_after_s=37.0) == 37.0
    assert parse_retry_after("5") == 5.0 and parse_retry_after("0.25") == 0.25
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("status, outcome", [
    (200, "delivered"), (204, "delivered"), (429, "retry"), (408, "retry"), (500, "retry"), (503, "retry"),
    (400, "rejected"), (401, "rejected"), (403, "rejected"), (404, "rejected"), (410, "rejected"),
])
def test_4xx_other_than_429_and_408_fail_at_once_with_the_reason(status, outcome):
    result = http_result(status, "channel_not_found")
    assert result.outcome == outcome
    if outcome != "delivered":
        assert result.error == f"HTTP {status}: channel_not_found"


def test_the_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate_per_minute=60, now=0.0, burst=3)
    assert bucket.available(0.0) == 3
    bucket.take(3, 0.0)
    assert bucket.available(0.0) == 0 and bucket.wait_s(0.0) == pytest.approx(1.0)
    assert bucket.available(0.5) == 0 and bucket.available(1.0) == 1
    assert bucket.available(100.0) == 3  # never more than the burst
