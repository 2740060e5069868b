"""Indicators whose value at candle t depends only on a fixed window of candles ending at t.

That property ("window-exact") is what lets one strategy run over a whole history in the
backtest and over a rolling window live and decide **bit-identically** (docs/adr/0017):

- Window sums and means are the correctly rounded sum of the window (what :func:`math.fsum`
  gives for those values), kept in O(1) per candle by an exact rolling expansion of
  non-overlapping partial sums (Shewchuk's algorithm, as in CPython's ``math.fsum``). A running
  sum (TA-Lib's ``SMA``, pandas' ``rolling().mean()``, talipp) depends on where the array
  started: over a window it differs from the full-history value in the last bits.
- Recursive indicators (EMA, Wilder's RSI and ATR) are computed, for every t, over the last
  ``window`` candles only (TA-Lib's algorithm and seed, the SMA of the first ``period``
  values, over that window): the value equals ``talib.X(values[t-window+1:t+1], period)[-1]``
  bit for bit. ``window`` defaults to 10 x ``period``: the seed's weight left at t is then
  about e^-20 of the value for an EMA and e^-10 for Wilder's smoothing, next to an EMA
  seeded at the beginning of time.
- Highest/lowest are comparisons, exact whatever the order.

A strategy's warm-up must cover the windows it uses (plus any earlier rows it compares, e.g.
t-1 for a crossing); then its live decisions on ``warmup`` candles equal the backtest's.

All functions take float64 arrays (market data) and return float64 arrays of the same length,
NaN where the window is not complete or holds a NaN. They are compiled with numba (cached on
disk after the first call).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Enough partials for any sum of doubles (non-overlapping partials span the exponent range).
_MAX_PARTIALS = 128
DEFAULT_WINDOW_PER_PERIOD = 10


def recursive_window(period: int, window: int | None = None, *, extra: int = 0) -> int:
    """The candles a recursive indicator of ``period`` is computed from (default 10 x period).

    ``extra``: candles the algorithm needs before its first value (1 for RSI and ATR, which
    work on differences to the previous candle).
    """
    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")
    length = DEFAULT_WINDOW_PER_PERIOD * period + extra if window is None else window
    if length < period + extra:
        raise ValueError(f"window must be at least period + {extra} = {period + extra}, got {length}")
    return length


def _check(values: np.ndarray, period: int) -> np.ndarray:
    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")
    return np.ascontiguousarray(values, dtype=np.float64)


# --- window sums (exact) ------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _add_partial(partials: np.ndarray, count: int, value: float) -> int:
    """Add ``value`` to the exact expansion ``partials[:count]``; returns its new length."""
    kept = 0
    for j in range(count):
        other = partials[j]
        if abs(value) < abs(other):
            value, other = other, value
        high = value + other
        low = other - (high - value)
        if low != 0.0:
            partials[kept] = low
            kept += 1
        value = high
    partials[kept] = value
    return kept + 1


@njit(cache=True, inline="always")
def _rounded(partials: np.ndarray, count: int) -> float:
    """The expansion rounded to the nearest double, half to even (CPython's math.fsum ending)."""
    if count == 0:
        return 0.0
    n = count - 1
    high = partials[n]
    low = 0.0
    while n > 0:
        x = high
        n -= 1
        y = partials[n]
        high = x + y
        low = y - (high - x)
        if low != 0.0:
            break
    if n > 0 and ((low < 0.0 and partials[n - 1] < 0.0) or (low > 0.0 and partials[n - 1] > 0.0)):
        y = low * 2.0
        x = high + y
        if y == x - high:
            high = x
    return high


@njit(cache=True)
def _window_sum(values: np.ndarray, period: int) -> np.ndarray:
    size = values.shape[0]
    out = np.full(size, np.nan)
    partials = np.zeros(_MAX_PARTIALS)
    count = 0
    missing = 0  # non-finite values in the window: they make its sum NaN, never enter the partials
    for t in range(size):
        value = values[t]
        if np.isfinite(value):
            count = _add_partial(partials, count, value)
        else:
            missing += 1
        if t >= period:
            old = values[t - period]
            if np.isfinite(old):
                count = _add_partial(partials, count, -old)
            else:
                missing -= 1
        if t >= period - 1 and missing == 0:
            out[t] = _rounded(partials, count)
    return out


def window_sum(values: np.ndarray, period: int) -> np.ndarray:
    """Sum of the last ``period`` values at each t, correctly rounded (= ``math.fsum`` of them)."""
    return _window_sum(_check(values, period), period)


def sma(values: np.ndarray, period: int) -> np.ndarray:
    """Mean of the last ``period`` values: their correctly rounded sum divided by ``period``."""
    return window_sum(values, period) / period


@njit(cache=True)
def _stddev(values: np.ndarray, means: np.ndarray, period: int) -> np.ndarray:
    size = values.shape[0]
    out = np.full(size, np.nan)
    for t in range(period - 1, size):
        mean = means[t]
        if np.isnan(mean):
            continue
        total = 0.0
        for k in range(t - period + 1, t + 1):
            deviation = values[k] - mean
            total += deviation * deviation
        out[t] = np.sqrt(total / period)
    return out


def stddev(values: np.ndarray, period: int) -> np.ndarray:
    """Population standard deviation of the last ``period`` values (two passes over the window)."""
    values = _check(values, period)
    return _stddev(values, sma(values, period), period)


def bollinger(values: np.ndarray, period: int, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands: (lower, middle, upper) = mean -/+ ``width`` population deviations."""
    values = _check(values, period)
    middle = sma(values, period)
    deviation = _stddev(values, middle, period)
    return middle - width * deviation, middle, middle + width * deviation


# --- highest / lowest (exact) -------------------------------------------------------------------

@njit(cache=True)
def _extreme(values: np.ndarray, period: int, highest: bool) -> np.ndarray:
    """Rolling max (or min) with a monotonic queue of indices: O(1) per value."""
    size = values.shape[0]
    out = np.full(size, np.nan)
    queue = np.empty(size, dtype=np.int64)
    head = 0
    tail = 0
    last_missing = -1  # index of the newest NaN: windows holding it are NaN
    for t in range(size):
        value = values[t]
        if np.isnan(value):
            last_missing = t
        else:
            while tail > head:
                back = values[queue[tail - 1]]
                if (back <= value) if highest else (back >= value):
                    tail -= 1
                else:
                    break
            queue[tail] = t
            tail += 1
        while tail > head and queue[head] <= t - period:
            head += 1
        if t >= period - 1 and last_missing <= t - period and tail > head:
            out[t] = values[queue[head]]
    return out


def highest(values: np.ndarray, period: int) -> np.ndarray:
    """Largest of the last ``period`` values."""
    return _extreme(_check(values, period), period, True)


def lowest(values: np.ndarray, period: int) -> np.ndarray:
    """Smallest of the last ``period`` values."""
    return _extreme(_check(values, period), period, False)


# --- recursive indicators over a fixed window (TA-Lib's algorithms) -------------------------------

@njit(cache=True)
def _ema(values: np.ndarray, period: int, window: int) -> np.ndarray:
    size = values.shape[0]
    out = np.full(size, np.nan)
    k = 2.0 / (period + 1)
    for t in range(window - 1, size):
        first = t - window + 1
        total = 0.0
        for i in range(first, first + period):
            total += values[i]
        average = total / period
        for i in range(first + period, t + 1):
            average = ((values[i] - average) * k) + average
        out[t] = average
    return out


def ema(values: np.ndarray, period: int, window: int | None = None) -> np.ndarray:
    """Exponential moving average (k = 2 / (period + 1)) over the last ``window`` values.

    Equals ``talib.EMA(values[t-window+1:t+1], period)[-1]`` at every t.
    """
    values = _check(values, period)
    return _ema(values, period, recursive_window(period, window))


@njit(cache=True)
def _rsi(values: np.ndarray, period: int, window: int) -> np.ndarray:
    size = values.shape[0]
    out = np.full(size, np.nan)
    keep = float(period - 1)
    inverse = 1.0 / period  # TA-Lib's builds multiply by the reciprocal (bit-identical to them)
    for t in range(window - 1, size):
        today = t - window + 1
        previous = values[today]
        today += 1
        gain = 0.0
        loss = 0.0
        for _ in range(period):
            value = values[today]
            today += 1
            change = value - previous
            previous = value
            if change < 0:
                loss -= change
            else:
                gain += change
        loss *= inverse
        gain *= inverse
        while today <= t:
            value = values[today]
            today += 1
            change = value - previous
            previous = value
            loss *= keep
            gain *= keep
            if change < 0:
                loss -= change
            else:
                gain += change
            loss *= inverse
            gain *= inverse
        total = gain + loss
        out[t] = 100.0 * (gain / total) if not (-1e-8 < total < 1e-8) else 0.0
    return out


def rsi(values: np.ndarray, period: int, window: int | None = None) -> np.ndarray:
    """Wilder's RSI (0..100) over the last ``window`` values (default 10 x period + 1).

    Equals ``talib.RSI(values[t-window+1:t+1], period)[-1]`` at every t.
    """
    values = _check(values, period)
    return _rsi(values, period, recursive_window(period, window, extra=1))


@njit(cache=True)
def _atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int, window: int) -> np.ndarray:
    size = close.shape[0]
    out = np.full(size, np.nan)
    ranges = np.empty(size)  # true range of candle i (needs close i-1)
    ranges[0] = np.nan
    for i in range(1, size):
        greatest = high[i] - low[i]
        up = abs(close[i - 1] - high[i])
        if up > greatest:
            greatest = up
        down = abs(low[i] - close[i - 1])
        if down > greatest:
            greatest = down
        ranges[i] = greatest
    keep = float(period - 1)
    for t in range(window - 1, size):
        first = t - window + 2  # the window's first true range
        total = 0.0
        for i in range(first, first + period):
            total += ranges[i]
        average = total / period
        for i in range(first + period, t + 1):
            average *= keep
            average += ranges[i]
            average /= period
        out[t] = average
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int, window: int | None = None) -> np.ndarray:
    """Wilder's average true range over the last ``window`` candles (default 10 x period + 1).

    Equals ``talib.ATR(high[w], low[w], close[w], period)[-1]`` for the window ``w`` ending at t.
    """
    close = _check(close, period)
    return _atr(_check(high, period), _check(low, period), close, period,
                recursive_window(period, window, extra=1))


# --- crossings ------------------------------------------------------------------------------------

def crossed_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at t when a(t) > b(t) and a(t-1) <= b(t-1) (False where any of them is NaN)."""
    out = np.zeros(len(a), dtype=bool)
    out[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
    return out


def crossed_below(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at t when a(t) < b(t) and a(t-1) >= b(t-1) (False where any of them is NaN)."""
    out = np.zeros(len(a), dtype=bool)
    out[1:] = (a[1:] < b[1:]) & (a[:-1] >= b[:-1])
    return out
