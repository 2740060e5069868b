"""Indicators: window-exact (the value at t from the window ending at t alone) and equal to the
references they stand for (math.fsum, TA-Lib)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib
from tradeflow_trading.strategy import indicators as ind

rng = np.random.default_rng(2026)
N = 3000
CLOSE = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.004, N))), 2)
HIGH = CLOSE + np.round(rng.random(N), 2)
LOW = CLOSE - np.round(rng.random(N), 2)
ROWS = rng.integers(400, N, 60)


def test_window_sums_are_the_correctly_rounded_sum_of_each_window():
    for period in (1, 2, 7, 50):
        sums = ind.window_sum(CLOSE, period)
        assert np.isnan(sums[: period - 1]).all()
        assert all(sums[t] == math.fsum(CLOSE[t - period + 1:t + 1]) for t in range(period - 1, N))
    # A running sum (TA-Lib's SMA, pandas' rolling mean) depends on where it started; this does not.
    assert all(ind.sma(CLOSE, 20)[t] == math.fsum(CLOSE[t - 19:t + 1]) / 20 for t in ROWS)


def test_a_missing_value_makes_its_windows_missing_and_nothing_after():
    values = CLOSE[:40].copy()
    values[10] = np.nan
    sums = ind.window_sum(values, 5)
    assert np.isnan(sums[10:15]).all() and not np.isnan(sums[15:]).any()
    assert sums[20] == math.fsum(values[16:21])
    highs = ind.highest(values, 5)
    assert np.isnan(highs[10:15]).all() and highs[20] == values[16:21].max()


@pytest.mark.parametrize(("name", "compute"), [
    ("sma", lambda c, h, lo: ind.sma(c, 30)),
    ("stddev", lambda c, h, lo: ind.stddev(c, 20)),
    ("bollinger lower", lambda c, h, lo: ind.bollinger(c, 20, 2.0)[0]),
    ("ema", lambda c, h, lo: ind.ema(c, 12)),
    ("rsi", lambda c, h, lo: ind.rsi(c, 14)),
    ("atr", lambda c, h, lo: ind.atr(h, lo, c, 14)),
    ("highest", lambda c, h, lo: ind.highest(h, 25)),
    ("lowest", lambda c, h, lo: ind.lowest(lo, 25)),
])
def test_every_indicator_is_window_exact(name, compute):
    """The value at t computed over the whole history equals, bit for bit, the last value
    computed over just the 400 candles ending at t: what live windows see."""
    full = compute(CLOSE, HIGH, LOW)
    for t in ROWS:
        window = slice(t - 399, t + 1)
        assert compute(CLOSE[window], HIGH[window], LOW[window])[-1] == full[t], (name, t)


def test_recursive_indicators_are_talibs_over_their_window():
    for period in (2, 14):
        rsi, ema, atr = ind.rsi(CLOSE, period), ind.ema(CLOSE, period), ind.atr(HIGH, LOW, CLOSE, period)
        rsi_window, ema_window = ind.recursive_window(period, extra=1), ind.recursive_window(period)
        for t in ROWS:
            w = slice(t - rsi_window + 1, t + 1)
            assert rsi[t] == pytest.approx(talib.RSI(CLOSE[w], period)[-1], rel=1e-12)
            assert atr[t] == pytest.approx(talib.ATR(HIGH[w], LOW[w], CLOSE[w], period)[-1], rel=1e-12)
            e = slice(t - ema_window + 1, t + 1)
            assert ema[t] == pytest.approx(talib.EMA(CLOSE[e], period)[-1], rel=1e-12)
    assert np.isnan(ind.rsi(CLOSE, 14)[:140]).all() and not np.isnan(ind.rsi(CLOSE, 14)[140])
    assert ind.rsi(CLOSE, 14, window=30)[29] == pytest.approx(talib.RSI(CLOSE[:30], 14)[-1], rel=1e-12)
    with pytest.raises(ValueError, match="window must be at least period \\+ 1 = 15, got 14"):
        ind.rsi(CLOSE, 14, window=14)


def test_bands_extremes_and_crossings():
    lower, middle, upper = ind.bollinger(CLOSE, 20, 2.0)
    reference = talib.BBANDS(CLOSE, 20, 2.0, 2.0)
    np.testing.assert_allclose(lower[19:], reference[2][19:], rtol=1e-9)
    np.testing.assert_allclose(upper[19:], reference[0][19:], rtol=1e-9)
    np.testing.assert_array_equal(ind.highest(HIGH, 9), talib.MAX(HIGH, 9))
    np.testing.assert_array_equal(ind.lowest(LOW, 9), talib.MIN(LOW, 9))
    a = np.array([np.nan, 1.0, 2.0, 2.0, 1.0, 3.0])
    b = np.array([1.5, 1.5, 1.5, 2.0, 2.0, 2.0])
    assert ind.crossed_above(a, b).tolist() == [False, False, True, False, False, True]
    assert ind.crossed_below(a, b).tolist() == [False, False, False, False, True, False]
