"""Constructed candles for the strategy SDK and backtest tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tradeflow.timeframes import timeframe
from tradeflow_trading.strategy import CandleFrame

T0 = 1_767_571_200_000_000_000  # 2026-01-05 00:00 UTC, a Monday: every grid up to 1w starts here
MINUTE = 60_000_000_000


def frame_of(closes: Sequence[float], *, opens: Sequence[float] | None = None, volumes: Sequence[float] | None = None,
             tf: str = "1m", start: int = T0, starts: Sequence[int] | None = None, spread: float = 0.0) -> CandleFrame:
    """Candles with these closes; open = the previous close unless given; high/low around them."""
    closes = np.asarray(closes, dtype=float)
    if opens is None:
        opens = np.r_[closes[0], closes[:-1]]
    opens = np.asarray(opens, dtype=float)
    length = timeframe(tf).length_ns
    ts = np.asarray(starts, dtype=np.int64) if starts is not None else start + np.arange(len(closes)) * length
    volumes = np.ones(len(closes)) if volumes is None else np.asarray(volumes, dtype=float)
    return CandleFrame.from_arrays(timeframe(tf), ts, opens, np.maximum(opens, closes) + spread,
                                   np.minimum(opens, closes) - spread, closes, volumes)


def random_walk(n: int, seed: int, *, tf: str = "1m", volatility: float = 0.003, start: int = T0) -> CandleFrame:
    """A seeded random walk with prices on a 0.01 grid (ties between means happen) and gaps at the opens."""
    rng = np.random.default_rng(seed)
    closes = np.round(100 * np.exp(np.cumsum(rng.normal(0, volatility, n))), 2)
    opens = np.r_[closes[0], np.round(closes[:-1] * (1 + rng.normal(0, volatility / 3, n - 1)), 2)]
    frame = frame_of(closes, opens=opens, volumes=np.round(rng.random(n) * 10, 3), tf=tf, start=start)
    extra = np.round(rng.random(n) * 0.2, 2)
    return CandleFrame(frame.timeframe, frame.ts_start, frame.ts_end, frame.open, frame.high + extra,
                       frame.low - extra, frame.close, frame.volume)
