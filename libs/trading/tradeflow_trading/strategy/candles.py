"""Candles as columns, and higher timeframes built from them without look-ahead.

A :class:`CandleFrame` holds the closed candles of one market and one timeframe as numpy
columns (``ts_start``/``ts_end`` in epoch ns, ``open``/``high``/``low``/``close``/``volume``
as float64: market data, design.md). The backtest holds a whole history in one; the live
runner a rolling window; strategies see both through the same type.

Higher timeframes (design.md: "sees a higher timeframe's candle only once that candle has
closed"): a higher candle is visible to the decision on base candle t when its end is at or
before t's end (``visible_counts``). Both the backtest (:func:`resample`) and the live runner
(:class:`HigherTimeframeBuilder`) build higher candles from the base candles the same way
(open of the first, max, min, close of the last, volumes added in time order), so their
values agree bit for bit; a forming higher candle is never visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit
from tradeflow.messages import Candle
from tradeflow.timeframes import Timeframe

COLUMNS = ("ts_start", "ts_end", "open", "high", "low", "close", "volume")


class Bar(NamedTuple):
    """One candle of a frame (what an event strategy reads as ``ctx.candle``)."""

    ts_start: int
    ts_end: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class CandleDataError(ValueError):
    """Candles that cannot be used: unordered, misaligned, or with impossible prices."""


@dataclass(frozen=True, slots=True, eq=False)
class CandleFrame:
    """Closed candles of one timeframe, oldest first, as columns (views are cheap)."""

    timeframe: str
    ts_start: np.ndarray
    ts_end: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_start.shape[0])

    def rows(self, start: int, stop: int) -> CandleFrame:
        """Rows ``[start, stop)`` as views, no copy."""
        return CandleFrame(self.timeframe, *(getattr(self, c)[start:stop] for c in COLUMNS))

    def bar(self, index: int) -> Bar:
        return Bar(int(self.ts_start[index]), int(self.ts_end[index]), float(self.open[index]),
                   float(self.high[index]), float(self.low[index]), float(self.close[index]),
                   float(self.volume[index]))

    @classmethod
    def empty(cls, timeframe: str) -> CandleFrame:
        ints = np.empty(0, dtype=np.int64)
        floats = np.empty(0, dtype=np.float64)
        return cls(timeframe, ints, ints, floats, floats, floats, floats, floats)

    @classmethod
    def from_arrays(cls, timeframe: Timeframe, ts_start: Sequence[int] | np.ndarray, open: Sequence[float] | np.ndarray,
                    high: Sequence[float] | np.ndarray, low: Sequence[float] | np.ndarray,
                    close: Sequence[float] | np.ndarray, volume: Sequence[float] | np.ndarray,
                    *, check: bool = True) -> CandleFrame:
        """Columns of one timeframe, ``ts_end`` from the timeframe; checked unless ``check=False``."""
        starts = np.ascontiguousarray(ts_start, dtype=np.int64)
        frame = cls(timeframe.name, starts, starts + timeframe.length_ns,
                     *(np.ascontiguousarray(column, dtype=np.float64) for column in (open, high, low, close, volume)))
        if check:
            frame.check(timeframe)
        return frame

    @classmethod
    def from_candles(cls, candles: Sequence[Candle], timeframe: str | None = None) -> CandleFrame:
        """Candle messages (one timeframe, oldest first) as a frame."""
        name = timeframe if timeframe is not None else (candles[0].timeframe if candles else "")
        return cls(name,
                   np.fromiter((c.ts_start for c in candles), dtype=np.int64, count=len(candles)),
                   np.fromiter((c.ts_end for c in candles), dtype=np.int64, count=len(candles)),
                   *(np.fromiter((getattr(c, f) for c in candles), dtype=np.float64, count=len(candles))
                     for f in ("open", "high", "low", "close", "volume")))

    def check(self, timeframe: Timeframe) -> None:
        """Raise :class:`CandleDataError` naming the first bad row (0-based) and what is wrong."""
        lengths = {len(getattr(self, c)) for c in COLUMNS}
        if len(lengths) != 1:
            raise CandleDataError(f"columns have different lengths: {sorted(lengths)}")
        if len(self) == 0:
            return
        misaligned = np.flatnonzero((self.ts_start - timeframe.origin_ns) % timeframe.length_ns)
        if misaligned.size:
            raise CandleDataError(f"row {misaligned[0]}: ts {int(self.ts_start[misaligned[0]])} is not the start "
                                  f"of a {timeframe.name} candle")
        unordered = np.flatnonzero(np.diff(self.ts_start) <= 0)
        if unordered.size:
            raise CandleDataError(f"row {unordered[0] + 1}: candles must be in strictly increasing time order")
        prices = np.stack([self.open, self.high, self.low, self.close])
        bad = ~np.isfinite(prices).all(axis=0) | (prices <= 0).any(axis=0) | ~np.isfinite(self.volume) \
            | (self.volume < 0) | (self.high < np.maximum(self.open, self.close)) \
            | (self.low > np.minimum(self.open, self.close))
        rows = np.flatnonzero(bad)
        if rows.size:
            i = int(rows[0])
            raise CandleDataError(f"row {i}: impossible candle (open {self.open[i]}, high {self.high[i]}, low "
                                  f"{self.low[i]}, close {self.close[i]}, volume {self.volume[i]})")


@njit(cache=True)
def _resample(starts: np.ndarray, buckets: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray,
              close: np.ndarray, volume: np.ndarray):
    size = starts.shape[0]
    count = 0
    for i in range(size):
        if i == 0 or buckets[i] != buckets[i - 1]:
            count += 1
    out_start = np.empty(count, dtype=np.int64)
    out = np.empty((5, count))
    j = -1
    for i in range(size):
        if i == 0 or buckets[i] != buckets[i - 1]:
            j += 1
            out_start[j] = buckets[i]
            out[0, j] = open_[i]
            out[1, j] = high[i]
            out[2, j] = low[i]
            out[4, j] = volume[i]
        else:
            if high[i] > out[1, j]:
                out[1, j] = high[i]
            if low[i] < out[2, j]:
                out[2, j] = low[i]
            out[4, j] += volume[i]
        out[3, j] = close[i]
    return out_start, out


def resample(frame: CandleFrame, timeframe: Timeframe) -> CandleFrame:
    """The candles of ``timeframe`` built from ``frame`` (a lower timeframe that nests in it).

    The last one may still be forming (its end after the frame's last end): it is returned
    but never visible to a decision before its end (:func:`visible_counts`).
    """
    if len(frame) == 0:
        return CandleFrame.empty(timeframe.name)
    buckets = frame.ts_start - (frame.ts_start - timeframe.origin_ns) % timeframe.length_ns
    starts, values = _resample(frame.ts_start, buckets, frame.open, frame.high, frame.low, frame.close, frame.volume)
    return CandleFrame(timeframe.name, starts, starts + timeframe.length_ns, *values)


def visible_counts(base_ts_end: np.ndarray, higher_ts_end: np.ndarray) -> np.ndarray:
    """For each base candle, how many higher candles have closed by its end (end <= base end)."""
    return np.searchsorted(higher_ts_end, base_ts_end, side="right")


def on_base(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-higher-candle ``values`` spread over the base candles: the value of the newest higher
    candle visible at each base candle, NaN before the first one closed."""
    out = np.full(counts.shape[0], np.nan)
    seen = counts > 0
    out[seen] = np.asarray(values, dtype=np.float64)[counts[seen] - 1]
    return out


class HigherTimeframeBuilder:
    """Live: the candles of one higher timeframe, built from base candles as they close.

    Keeps the newest ``capacity`` closed higher candles and the forming one. ``add`` takes the
    next base candle; the forming bucket closes when a base candle reaches its end or one of a
    later bucket arrives, exactly as :func:`resample` cuts a history. ``seed`` installs
    candles read at warm-up (the database serves the forming one too, from its 1m rows);
    ``correct`` replaces a closed candle by a corrected one (revision > 0 from the stream).
    """

    def __init__(self, timeframe: Timeframe, capacity: int) -> None:
        self.timeframe = timeframe
        self.capacity = max(1, capacity)
        self._closed: list[Bar] = []
        self._forming: list[float] | None = None  # [start, open, high, low, close, volume]
        self._frame: CandleFrame | None = None  # the closed candles as a frame, until they change

    def seed(self, bars: Sequence[Bar], newest_base_end: int) -> None:
        """Warm-up candles (oldest first): those ended by ``newest_base_end`` are closed, a later one forms."""
        for bar in bars:
            if bar.ts_end <= newest_base_end:
                self._push(bar)
            else:
                self._forming = [bar.ts_start, bar.open, bar.high, bar.low, bar.close, bar.volume]

    def add(self, bar: Bar) -> None:
        tf = self.timeframe
        start = tf.bucket_start(bar.ts_start)
        forming = self._forming
        if forming is not None and forming[0] != start:
            self._close()
            forming = None
        if forming is None:
            self._forming = [start, bar.open, bar.high, bar.low, bar.close, bar.volume]
        else:
            if bar.high > forming[2]:
                forming[2] = bar.high
            if bar.low < forming[3]:
                forming[3] = bar.low
            forming[4] = bar.close
            forming[5] += bar.volume
        if bar.ts_end >= tf.bucket_end(start):
            self._close()

    def correct(self, bar: Bar) -> bool:
        """Replace the closed candle starting at ``bar.ts_start``; False when it is not held."""
        for i in range(len(self._closed) - 1, -1, -1):
            if self._closed[i].ts_start == bar.ts_start:
                self._closed[i] = bar
                self._frame = None
                return True
        return False

    def forming_start(self) -> int | None:
        return None if self._forming is None else int(self._forming[0])

    def rebuild_forming(self, bars: Sequence[Bar]) -> None:
        """Recompute the forming candle from all of its base candles (after one was corrected)."""
        self._forming = None
        for bar in bars:
            self.add(bar)

    def _close(self) -> None:
        forming, self._forming = self._forming, None
        if forming is None:
            return
        start = int(forming[0])
        self._push(Bar(start, self.timeframe.bucket_end(start), *forming[1:]))

    def _push(self, bar: Bar) -> None:
        if self._closed and bar.ts_start <= self._closed[-1].ts_start:
            self.correct(bar)
            return
        self._closed.append(bar)
        self._frame = None
        if len(self._closed) > self.capacity:
            del self._closed[: len(self._closed) - self.capacity]

    def __len__(self) -> int:
        return len(self._closed)

    def frame(self) -> CandleFrame:
        """The closed candles held, as a frame."""
        if self._frame is None:
            self._frame = self._build_frame()
        return self._frame

    def _build_frame(self) -> CandleFrame:
        bars = self._closed
        return CandleFrame(self.timeframe.name,
                           np.fromiter((b.ts_start for b in bars), dtype=np.int64, count=len(bars)),
                           np.fromiter((b.ts_end for b in bars), dtype=np.int64, count=len(bars)),
                           *(np.fromiter((b[k] for b in bars), dtype=np.float64, count=len(bars)) for k in range(2, 7)))
