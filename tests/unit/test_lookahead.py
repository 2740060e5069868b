"""The look-ahead check: a strategy that reads the next candle is caught, honest ones pass."""

from __future__ import annotations

import numpy as np
from tradeflow_backtest.lookahead import check_lookahead, cut_rows
from tradeflow_trading.strategies.dca import Dca
from tradeflow_trading.strategies.sma_cross_trend import SmaCrossTrend
from tradeflow_trading.strategy.loader import load_catalog

from tests.research_problems import write_strategies
from tests.strategy_candles import random_walk


def test_a_strategy_that_reads_the_next_close_is_reported(tmp_path):
    cheat = load_catalog([write_strategies(tmp_path)]).get("peeks_ahead")
    report = check_lookahead(cheat, {}, random_walk(2000, 11), "BTC/USDT", max_signals=20, extra_cuts=5)
    assert report.checked and not report.clean
    # Cut right after a signal: the signal's own candle now has no "next close", so it changes.
    assert any("only in full" in change or "differs" in change for change in report.changes)
    assert report.to_json()["lookahead"] is True


def test_honest_strategies_pass_also_with_a_higher_timeframe():
    frame = random_walk(3000, 12)
    report = check_lookahead(SmaCrossTrend, {}, frame, "BTC/USDT", max_signals=30, extra_cuts=5)
    assert report.checked and report.clean and report.signals > 0 and len(report.cuts) >= 30


def test_an_event_strategy_is_not_checked_and_says_why():
    report = check_lookahead(Dca, {}, random_walk(500, 13), "BTC/USDT")
    assert not report.checked and report.clean and "one closed candle at a time" in report.note


def test_cuts_follow_signals_spread_over_the_history_plus_even_ones():
    # After-signal cuts 4, 11, 21, 31 (99 is the last candle: nothing after it), three spread evenly:
    # 4, 21, 31; and three even cuts of 100 candles: 26, 50, 74.
    assert cut_rows(np.array([3, 10, 20, 30, 99]), 100, max_signals=3, extra_cuts=3) == [4, 21, 26, 31, 50, 74]
