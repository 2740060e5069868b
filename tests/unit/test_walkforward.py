"""Walk-forward windows are exact; out-of-sample runs warm up before their window and trade inside it only."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from tradeflow.timeframes import DAY_NS, HOUR_NS
from tradeflow_backtest.runs import RunSettings
from tradeflow_backtest.walkforward import efficiency, parse_walk_forward, trading_from, windows
from tradeflow_trading.strategies.dca import Dca
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategy.parity import decide_history

from tests.strategy_candles import T0, random_walk


def test_windows_roll_by_the_test_length_and_test_windows_tile_the_range():
    since, until = T0, T0 + 200 * DAY_NS
    steps = windows(since, until, 90 * DAY_NS, 30 * DAY_NS)
    assert [(w.train_start, w.train_end, w.test_end) for w in steps] == [
        (T0, T0 + 90 * DAY_NS, T0 + 120 * DAY_NS),
        (T0 + 30 * DAY_NS, T0 + 120 * DAY_NS, T0 + 150 * DAY_NS),
        (T0 + 60 * DAY_NS, T0 + 150 * DAY_NS, T0 + 180 * DAY_NS),
        (T0 + 90 * DAY_NS, T0 + 180 * DAY_NS, T0 + 200 * DAY_NS),  # the last test window is cut at until
    ]
    for before, after in zip(steps, steps[1:], strict=False):
        assert after.test_start == before.test_end  # no gap, no overlap
    assert steps[0].test_start == since + 90 * DAY_NS and steps[-1].test_end == until
    for w in steps:
        assert w.train_end - w.train_start == 90 * DAY_NS and w.train_end == w.test_start  # training ends where testing starts


def test_no_window_when_the_range_holds_no_test_candle_and_exact_fit():
    assert windows(T0, T0 + 90 * DAY_NS, 90 * DAY_NS, 30 * DAY_NS) == []
    exact = windows(T0, T0 + 150 * DAY_NS, 90 * DAY_NS, 30 * DAY_NS)
    assert [w.test_end - w.test_start for w in exact] == [30 * DAY_NS, 30 * DAY_NS]


def test_window_options_and_efficiency():
    assert parse_walk_forward("90d/30d") == (90 * DAY_NS, 30 * DAY_NS)
    assert parse_walk_forward("36h/2w") == (36 * HOUR_NS, 14 * DAY_NS)
    for bad in ("90d", "90x/30d", "0d/1d", "d/1d"):
        with pytest.raises(ValueError):
            parse_walk_forward(bad)
    assert efficiency(0.5, 1.0) == 0.5
    assert efficiency(0.5, -1.0) is None and efficiency(None, 1.0) is None


def test_a_vector_strategy_trading_from_a_time_decides_as_before_from_then_on_and_nothing_earlier():
    frame = random_walk(3000, 5)
    start = int(frame.ts_start[1500])
    params = {"fast": 5, "slow": 20}
    full = decide_history(SmaCross(params), frame)
    late = decide_history(trading_from(SmaCross, start)(params), frame)
    assert not late.enter_long[:1500].any() and not late.exit[:1500].any()
    assert np.array_equal(late.enter_long[1500:], full.enter_long[1500:])
    assert np.array_equal(late.exit[1500:], full.exit[1500:])
    assert trading_from(SmaCross, start).name == "sma_cross"


def test_an_event_strategy_warms_up_before_the_time_and_trades_after_it():
    frame = random_walk(3000, 6)
    start = int(frame.ts_start[1000])
    backtest = RunSettings(cash=Decimal(10_000), fee_bps=Decimal(0)).backtest(frame, "BTC/USDT", "test")
    params = {"every": 100, "amount": 100.0}
    result = backtest.run(trading_from(Dca, start), params)
    everything = backtest.run(Dca, params)
    assert result.trades == [] and everything.positions  # DCA buys and holds: no round trip
    bought = result.positions["BTC/USDT"]
    assert bought.opened_at >= start
    assert bought.quantity < everything.positions["BTC/USDT"].quantity
