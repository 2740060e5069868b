"""The synthetic market: reproducible from its seed, always plausible prices and amounts."""

from __future__ import annotations

import math

import pytest
from tradeflow_ingest.domain.synthetic_market import SyntheticMarket, synthetic_symbol_names


def take(market: SyntheticMarket, n: int):
    return [market.next_trade() for _ in range(n)]


def test_same_seed_gives_the_same_trades():
    assert take(SyntheticMarket(seed=7, symbol_count=5), 2000) == take(SyntheticMarket(seed=7, symbol_count=5), 2000)


def test_different_seeds_give_different_trades_and_start_prices():
    a, b = take(SyntheticMarket(1, 5), 200), take(SyntheticMarket(2, 5), 200)
    assert [t.price for t in a] != [t.price for t in b]
    assert [t.symbol for t in a] != [t.symbol for t in b]


def test_every_symbol_trades_and_has_its_own_price_level():
    trades = take(SyntheticMarket(42, 5), 5000)
    first_price = {}
    for t in trades:
        first_price.setdefault(t.symbol, t.price)
    assert sorted(first_price) == ["SYM00/USD", "SYM01/USD", "SYM02/USD", "SYM03/USD", "SYM04/USD"]
    assert len(set(first_price.values())) == 5


def test_prices_and_amounts_stay_positive_finite_and_walk():
    trades = take(SyntheticMarket(3, 3), 50_000)
    assert all(math.isfinite(t.price) and t.price > 0 for t in trades)
    assert all(math.isfinite(t.amount) and t.amount > 0 for t in trades)
    assert {t.side for t in trades} == {"buy", "sell"}
    sym0 = [t.price for t in trades if t.symbol == trades[0].symbol]
    assert len(set(sym0)) > len(sym0) // 2  # it moves


def test_trade_ids_are_unique():
    trades = take(SyntheticMarket(5, 4), 10_000)
    assert len({t.trade_id for t in trades}) == len(trades)


def test_symbol_names_widen_past_one_hundred():
    assert synthetic_symbol_names(3) == ["SYM00/USD", "SYM01/USD", "SYM02/USD"]
    assert synthetic_symbol_names(101)[-1] == "SYM100/USD"


def test_at_least_one_symbol_is_required():
    with pytest.raises(ValueError):
        SyntheticMarket(1, 0)


def test_a_synthetic_history_runs_fast_until_the_present_and_is_never_ahead_of_it():
    from tradeflow.trades.receive_clock import ReceiveClock
    from tradeflow_ingest.adapters.synthetic_source import SyntheticSource

    wall = [1_000 * 10**9]
    source = SyntheticSource(SyntheticMarket(1, 2), exchange="x", rate=10, publisher=None, clock=ReceiveClock(),
                             wall_clock_ns=lambda: wall[0], speed=60, history_s=3_600)
    first = source._event_time_ns()
    assert first == wall[0] - 3_600 * 10**9  # an hour in the past
    wall[0] += 10 * 10**9
    assert source._event_time_ns() == first + 600 * 10**9  # 10 s of wall time: 10 minutes of history
    wall[0] += 60 * 10**9  # 70 s in: 70 minutes of history would pass the present
    assert source._event_time_ns() == wall[0]  # caught up: live from here on
    live = SyntheticSource(SyntheticMarket(1, 2), exchange="x", rate=10, publisher=None, clock=ReceiveClock(),
                           wall_clock_ns=lambda: wall[0], speed=60)
    assert live._event_time_ns() == wall[0]  # without a history the speed changes nothing
    with pytest.raises(ValueError, match="speed"):
        SyntheticSource(SyntheticMarket(1, 2), exchange="x", rate=10, publisher=None, clock=ReceiveClock(), speed=0.5)
