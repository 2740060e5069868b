"""Circuit breaker and reconnection budget of an exchange feed (pure)."""

from __future__ import annotations

import math
import random

import pytest
from tradeflow_exchanges.circuit_breaker import BreakerState, CircuitBreaker
from tradeflow_exchanges.reconnect_budget import ReconnectBudget
from tradeflow_ingest.domain.price_guard import PriceGuard
from tradeflow_ingest.domain.silence_watch import SilenceWatch
from tradeflow_ingest.domain.trade_rate import RecentTradeRate


def test_the_breaker_opens_after_n_consecutive_failures_only():
    breaker = CircuitBreaker(failure_threshold=3, cool_down_s=10)
    breaker.record_failure(now=0)
    breaker.record_failure(now=1)
    breaker.record_success()  # not consecutive any more
    breaker.record_failure(now=2)
    breaker.record_failure(now=3)
    assert breaker.state is BreakerState.CLOSED and breaker.try_acquire(now=3)
    breaker.record_failure(now=4)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.try_acquire(now=13.9) and breaker.wait_s(now=10) == 4.0


def test_after_the_cool_down_a_single_probe_closes_or_reopens_it():
    breaker = CircuitBreaker(failure_threshold=1, cool_down_s=10)
    breaker.record_failure(now=0)
    assert breaker.try_acquire(now=10) and breaker.state is BreakerState.HALF_OPEN
    assert not breaker.try_acquire(now=10.5)  # the probe is under way: nobody else
    breaker.record_failure(now=11)
    assert breaker.state is BreakerState.OPEN and breaker.wait_s(now=11) == 10.0
    assert breaker.try_acquire(now=21)
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.wait_s(now=21) == 0.0 and breaker.try_acquire(now=21)


def test_the_reconnect_budget_allows_n_attempts_per_sliding_window():
    budget = ReconnectBudget(max_attempts=3, window_s=300)
    for now in (0, 10, 20):
        assert budget.wait_s(now) == 0.0
        budget.record_attempt(now)
    assert budget.wait_s(now=100) == 200.0  # the attempt at 0 leaves the window at 300
    assert budget.wait_s(now=300) == 0.0
    budget.record_attempt(now=300)
    assert budget.wait_s(now=301) == 9.0  # now the one at 10 is the oldest


@pytest.mark.parametrize("make", [lambda: CircuitBreaker(0, 1), lambda: CircuitBreaker(1, 0),
                                  lambda: ReconnectBudget(0, 1), lambda: ReconnectBudget(1, 0)])
def test_nonsense_limits_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_an_active_symbol_silent_too_long_is_stale_and_a_never_heard_one_is_not():
    watch = SilenceWatch(stale_after_s=60)
    assert watch.seconds_until_stale(now=0) is None  # nothing heard yet: nothing to wait for
    watch.heard("BTC/USDT", now=0)
    watch.heard("ETH/USDT", now=30)
    assert watch.seconds_until_stale(now=40) == 20.0 and watch.stale(now=40) == []
    assert watch.stale(now=60) == ["BTC/USDT"] and watch.seconds_until_stale(now=61) == 0.0
    assert watch.stale(now=95) == ["BTC/USDT", "ETH/USDT"]


def test_a_fresh_subscription_gives_every_active_symbol_the_full_limit_again():
    watch = SilenceWatch(stale_after_s=60)
    watch.heard("BTC/USDT", now=0)
    watch.restart(now=100)
    assert watch.stale(now=159) == [] and watch.seconds_until_stale(now=100) == 60.0
    with pytest.raises(ValueError):
        SilenceWatch(stale_after_s=0)


def test_the_stale_symbols_are_named_at_the_instant_the_watch_says_stale():
    watch = SilenceWatch(stale_after_s=6.0)
    heard = 16_382.650311  # at heard + 6.0, `now - heard` rounds to 5.999999999998
    watch.heard("BTC/USDT", heard)
    fires_at = heard + watch.seconds_until_stale(heard)
    assert watch.seconds_until_stale(fires_at) == 0.0 and watch.stale(fires_at) == ["BTC/USDT"]
    early = fires_at - 1e-9  # the event loop may run a timer a hair early: nothing stale, wait on
    assert watch.stale(early) == [] and watch.seconds_until_stale(early) > 0


@pytest.mark.parametrize("seed", range(3))
def test_whenever_the_watch_says_stale_it_names_a_symbol(seed):
    rng = random.Random(seed)
    for _ in range(10_000):
        watch = SilenceWatch(stale_after_s=rng.choice([1.0, 6.0, 120.0, rng.uniform(0.1, 10)]))
        start = rng.uniform(0, 1e6)
        watch.heard("A", start)
        watch.heard("B", start + rng.uniform(0, 1))
        now = start + watch.seconds_until_stale(start)
        for _ in range(3):  # what the feed's loop does when the timer fires early: wait the rest
            if watch.seconds_until_stale(now) == 0:
                break
            now = max(now + watch.seconds_until_stale(now), math.nextafter(now, math.inf))
        assert watch.seconds_until_stale(now) == 0 and watch.stale(now), (start, now)


def test_a_price_too_far_from_the_last_accepted_one_is_refused_and_does_not_move_the_reference():
    guard = PriceGuard(max_deviation=0.5)
    assert guard.check("bn", "BTC/USDT", 100.0) is None  # first price: nothing to compare with
    assert guard.check("bn", "BTC/USDT", 149.0) is None
    reason = guard.check("bn", "BTC/USDT", 224.0)  # +50.3% from 149
    assert reason is not None and reason.startswith("price_deviation:") and "149" in reason
    assert guard.check("bn", "BTC/USDT", 74.0) is not None  # -50.3% from 149, not from 224
    assert guard.check("bn", "BTC/USDT", 150.0) is None
    assert guard.check("bn", "ETH/USDT", 3.0) is None and guard.check("other", "BTC/USDT", 1.0) is None
    with pytest.raises(ValueError):
        PriceGuard(max_deviation=0)


def test_the_trade_rate_counts_the_recent_window_only():
    rate = RecentTradeRate(window_s=60)
    assert rate.per_second(now=0) == 0.0
    rate.add(now=0, count=10)
    rate.add(now=4, count=10)
    assert rate.per_second(now=5) == 4.0  # 20 trades since the first, 5 s ago
    rate.add(now=100, count=30)
    assert rate.per_second(now=100) == 0.5  # only the last 60 s: 30 trades
