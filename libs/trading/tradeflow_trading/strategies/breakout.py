"""``breakout``: swing-high resistance broken on high volume; out below swing-low support."""

from __future__ import annotations

import numpy as np

from tradeflow_trading.strategy import Decisions, IntParam, StrategyData, VectorStrategy, highest, lowest, sma


def confirmed_swings(values: np.ndarray, swing: int, *, high: bool) -> np.ndarray:
    """At row j, the swing point at j - ``swing`` if it is one (the extreme of the ``swing``
    candles on each side), known only now that those after it have closed; elsewhere -inf
    for highs, +inf for lows (never an extreme)."""
    span = 2 * swing + 1
    extreme = highest(values, span) if high else lowest(values, span)
    out = np.full(values.shape[0], -np.inf if high else np.inf)
    centre = np.empty_like(values)
    centre[:swing] = np.nan
    centre[swing:] = values[:values.shape[0] - swing]
    is_swing = centre == extreme  # NaN (too early) compares False
    out[is_swing] = centre[is_swing]
    return out


def _previous(values: np.ndarray) -> np.ndarray:
    """Row t holds row t-1's value (NaN at t = 0)."""
    out = np.empty_like(values)
    out[0] = np.nan
    out[1:] = values[:-1]
    return out


class Breakout(VectorStrategy):
    """Support/resistance breakout, long only: enter when a close rises above resistance with
    volume above its mean; exit when a close falls below support.

    A swing high (low) is a high (low) that is the extreme of the ``swing`` candles on each
    side of it; it is known once those after it have closed. Resistance at t is the highest
    swing high confirmed among the ``lookback`` candles before t, support the lowest swing
    low; the volume mean is that of the ``volume_window`` candles before t.
    """

    name = "breakout"
    lookback = IntParam(50, low=2, high=10_000, doc="candles before t whose confirmed swing points count")
    swing = IntParam(2, low=1, high=100, doc="candles on each side of a swing point")
    volume_window = IntParam(20, low=1, high=10_000, doc="candles in the volume mean")

    def warmup(self) -> int:
        p = self.params
        return max(p.lookback + 2 * p.swing + 1, p.volume_window + 1)

    def decide(self, data: StrategyData) -> Decisions:
        p = self.params
        resistance = _previous(highest(confirmed_swings(data.high, p.swing, high=True), p.lookback))
        support = _previous(lowest(confirmed_swings(data.low, p.swing, high=False), p.lookback))
        volume_mean = _previous(sma(data.volume, p.volume_window))
        close = data.close
        # -inf / +inf: no swing point in the lookback, so no level to break.
        enter = np.isfinite(resistance) & (close > resistance) & (data.volume > volume_mean)
        leave = np.isfinite(support) & (close < support)
        return Decisions(enter_long=enter, exit=leave,
                         enter_reason=f"close above swing resistance ({p.lookback}) on volume above its mean",
                         exit_reason=f"close below swing support ({p.lookback})")
