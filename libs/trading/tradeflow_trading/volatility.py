"""Volatility and co-movement from candles: ATR, the standard deviation of returns, correlation.

Pure functions of market data (floats, as candles carry them), shared by risk (sizing,
protective exits, correlated exposure) and the backtest. ``statistics`` does the arithmetic.

- The true range of a candle is ``max(high, previous close) - min(low, previous close)``; the
  ATR over ``period`` is the simple mean of the last ``period`` true ranges (it needs
  ``period + 1`` candles).
- Returns are simple returns of consecutive closes, ``close[t] / close[t-1] - 1``.
- Correlation is Pearson's over the returns two series have at the same candle times.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence


def true_ranges(highs: Sequence[float], lows: Sequence[float], closes: Sequence[float]) -> list[float]:
    """True ranges of candles 1..n-1 (each needs the previous close)."""
    return [max(highs[i], closes[i - 1]) - min(lows[i], closes[i - 1]) for i in range(1, len(closes))]


def average_true_range(highs: Sequence[float], lows: Sequence[float], closes: Sequence[float],
                       period: int) -> float | None:
    """The mean of the last ``period`` true ranges; None before ``period + 1`` candles."""
    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")
    ranges = true_ranges(highs, lows, closes)
    if len(ranges) < period:
        return None
    return statistics.fmean(ranges[-period:])


def simple_returns(closes: Sequence[float]) -> list[float]:
    return [closes[i] / closes[i - 1] - 1.0 for i in range(1, len(closes)) if closes[i - 1] != 0]


def returns_stdev(closes: Sequence[float], period: int) -> float | None:
    """Sample standard deviation of the last ``period`` returns; None before ``period + 1`` closes."""
    if period < 2:
        raise ValueError(f"period must be at least 2, got {period}")
    returns = simple_returns(closes)
    if len(returns) < period:
        return None
    return statistics.stdev(returns[-period:])


def aligned_returns(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[list[float], list[float]]:
    """Returns of two close series (candle start -> close) over the candle times both have,
    each from the previous common time, so a gap in one series does not pair unequal periods."""
    common = sorted(a.keys() & b.keys())
    xs, ys = [], []
    for previous, current in zip(common, common[1:], strict=False):
        if a[previous] and b[previous]:
            xs.append(a[current] / a[previous] - 1.0)
            ys.append(b[current] / b[previous] - 1.0)
    return xs, ys


def correlation(xs: Sequence[float], ys: Sequence[float], min_points: int = 3) -> float | None:
    """Pearson correlation; None with fewer than ``min_points`` pairs or when a series is constant."""
    if len(xs) != len(ys):
        raise ValueError("series must have the same length")
    if len(xs) < max(2, min_points) or min(xs) == max(xs) or min(ys) == max(ys):
        return None  # a constant series has no correlation (statistics would return rounding noise)
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return None
