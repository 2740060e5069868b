"""Every backtest metric against values computed by hand."""

from __future__ import annotations

import math
from decimal import Decimal as D

import numpy as np
import pytest
from tradeflow_backtest import metrics

MINUTE = 60_000_000_000
DAY = 1440 * MINUTE


def test_sharpe_and_sortino_are_annualised_by_the_candles_in_a_year():
    # Returns +10 %, -10 %, +10 %: mean 1/30, sample deviation 2 sqrt(3) / 30, downside deviation
    # sqrt(0.01 / 3). 1m candles: 525,600 periods a year.
    equity = np.array([110.0, 99.0, 108.9])
    period_returns = metrics.returns(equity, 100.0)
    np.testing.assert_allclose(period_returns, [0.1, -0.1, 0.1])
    assert metrics.periods_per_year(MINUTE) == 525_600
    assert metrics.sharpe(period_returns, 525_600) == pytest.approx(math.sqrt(525_600 / 12), rel=1e-12)
    assert metrics.sortino(period_returns, 525_600) == pytest.approx(math.sqrt(525_600 / 3), rel=1e-12)
    assert metrics.periods_per_year(7 * DAY) == pytest.approx(365 / 7)
    assert metrics.sharpe(np.array([0.01, 0.01]), 365) is None  # no variation: undefined, not infinite
    assert metrics.sortino(np.array([0.01, 0.02]), 365) is None  # no downside


def test_max_drawdown_and_its_duration():
    times = np.arange(6) * MINUTE
    # 100 -> 110 (peak) -> 99 (-10 %) -> 105 -> 111 (recovered 3 minutes after the peak) -> 100.
    depth, duration = metrics.max_drawdown(np.array([110.0, 99.0, 105.0, 111.0, 100.0]), 100.0, times)
    assert depth == pytest.approx(0.1) and duration == 180.0
    # Still under water at the end: the run lasts to the end.
    depth, duration = metrics.max_drawdown(np.array([90.0, 95.0, 101.0, 99.0, 98.0]), 100.0, times)
    assert depth == pytest.approx(0.1) and duration == 180.0
    assert metrics.max_drawdown(np.array([101.0, 102.0, 103.0, 104.0, 105.0]), 100.0, times) == (0.0, 0.0)


def test_cagr_and_calmar_over_the_calendar_span():
    assert metrics.cagr(121.0, 100.0, 2 * 365 * DAY) == pytest.approx(0.1)
    assert metrics.cagr(50.0, 100.0, 365 * DAY) == pytest.approx(-0.5)
    assert metrics.cagr(0.0, 100.0, 365 * DAY) == -1.0
    assert metrics.cagr(1e300, 1.0, MINUTE) is None  # a rate over minutes compounded to a year overflows
    ends = (np.arange(365) + 1) * DAY
    equity = np.linspace(100.5, 110.0, 365)
    equity[100] = 90.0  # -10.45 % from the running peak of 101.2...
    result = metrics.compute(equity, 100.0, first_start_ns=0, ends_ns=ends, candle_length_ns=DAY, pnls=[],
                             exposed=np.ones(365, dtype=bool))
    peak = float(equity[99])
    assert result.total_return == pytest.approx(0.1) and result.cagr == pytest.approx(0.1)
    assert result.max_drawdown == pytest.approx(1 - 90.0 / peak)
    assert result.calmar == pytest.approx(0.1 / (1 - 90.0 / peak))
    assert (result.trades, result.win_rate, result.profit_factor, result.exposure) == (0, None, None, 1.0)


def test_win_rate_profit_factor_and_exposure():
    assert metrics.trade_stats([D(10), D(-5), D(20), D(-5), D(0)]) == (0.4, 3.0)
    assert metrics.trade_stats([D(10), D(3)]) == (1.0, None)  # no loss: no finite profit factor
    assert metrics.trade_stats([]) == (None, None)
    result = metrics.compute(np.array([100.0, 101.0, 102.0, 101.0]), 100.0, first_start_ns=0,
                             ends_ns=(np.arange(4) + 1) * MINUTE, candle_length_ns=MINUTE, pnls=[D(2), D(-1)],
                             exposed=np.array([True, False, True, True]))
    assert (result.exposure, result.trades, result.win_rate, result.profit_factor) == (0.75, 2, 0.5, 2.0)
    assert result.total_return == pytest.approx(0.01)
