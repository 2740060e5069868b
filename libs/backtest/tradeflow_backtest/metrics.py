"""Performance metrics of a backtest, from its equity curve and its trades.

Conventions (docs/adr/0017):

- The equity curve has one point per candle, at its close, and starts from the initial cash
  at the first candle's start. Returns are simple returns between consecutive points.
- **Annualisation** is per timeframe for 24/7 markets: a year is 365 days, so there are
  ``365 days / candle length`` periods a year (525,600 for 1m, 8,760 for 1h, 52.14 for 1w).
  Sharpe = mean / sample standard deviation (ddof 1) x sqrt(periods); Sortino = mean /
  downside deviation x sqrt(periods), the downside deviation being the root mean square of
  the returns below zero counted over all periods. No risk-free rate.
- CAGR over the calendar span from the first candle's start to the last one's end; Calmar =
  CAGR / max drawdown.
- Max drawdown is a fraction of the running peak (0.25 = 25 % below it); its duration is the
  longest time from a peak to the first point back at or above it (or the end).
- Win rate and profit factor are over closed trades' P&L after fees.
- A metric that is undefined (no trades, no variation, no losing trade for the profit
  factor) is None (JSON null), never a made-up number or infinity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal

import numpy as np
from tradeflow.time import NS_PER_S

YEAR_NS = 365 * 24 * 3600 * NS_PER_S


@dataclass(frozen=True, slots=True)
class Metrics:
    total_return: float
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown: float
    max_drawdown_duration_s: float
    win_rate: float | None
    profit_factor: float | None
    exposure: float
    trades: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def periods_per_year(candle_length_ns: int) -> float:
    return YEAR_NS / candle_length_ns


def returns(equity: np.ndarray, initial: float) -> np.ndarray:
    """Simple returns of each point against the one before (the first against ``initial``)."""
    points = np.concatenate(([initial], equity))
    with np.errstate(divide="ignore", invalid="ignore"):
        return points[1:] / points[:-1] - 1.0


def sharpe(period_returns: np.ndarray, periods: float) -> float | None:
    if period_returns.shape[0] < 2:
        return None
    deviation = float(np.std(period_returns, ddof=1))
    if deviation == 0 or not math.isfinite(deviation):
        return None
    return float(np.mean(period_returns)) / deviation * math.sqrt(periods)


def sortino(period_returns: np.ndarray, periods: float) -> float | None:
    if period_returns.shape[0] < 1:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(period_returns, 0.0) ** 2)))
    if downside == 0 or not math.isfinite(downside):
        return None
    return float(np.mean(period_returns)) / downside * math.sqrt(periods)


def max_drawdown(equity: np.ndarray, initial: float, times_ns: np.ndarray) -> tuple[float, float]:
    """(deepest fall below the running peak as a fraction, longest time under a peak in seconds).

    ``times_ns`` are the times of ``initial`` followed by each equity point.
    """
    points = np.concatenate(([initial], equity))
    peaks = np.maximum.accumulate(points)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(peaks > 0, 1.0 - points / peaks, 0.0)
    deepest = float(depth.max()) if depth.size else 0.0
    # Longest run under water: from a point at its peak to the next one back at it (or the end).
    at_peak = np.flatnonzero(points >= peaks)
    ends = np.append(at_peak[1:], points.shape[0] - 1)  # where each run that starts at a peak stops
    under = ends - at_peak > 1  # some point in between was below the peak
    if at_peak.size and at_peak[-1] == points.shape[0] - 1:
        under[-1] = False
    if at_peak.size and at_peak[-1] < points.shape[0] - 1:
        under[-1] = True  # still under water at the end
    spans = times_ns[ends[under]] - times_ns[at_peak[under]]
    longest = float(spans.max()) / NS_PER_S if spans.size else 0.0
    return deepest, longest


def cagr(final: float, initial: float, span_ns: int) -> float | None:
    if span_ns <= 0 or initial <= 0:
        return None
    if final <= 0:
        return -1.0
    try:
        return (final / initial) ** (YEAR_NS / span_ns) - 1.0
    except OverflowError:  # minutes of data compounded over a year: no meaningful rate
        return None


def trade_stats(pnls: Sequence[Decimal]) -> tuple[float | None, float | None]:
    """(win rate, profit factor) of closed trades' P&L after fees."""
    if not pnls:
        return None, None
    wins = sum(1 for p in pnls if p > 0)
    gains = sum((p for p in pnls if p > 0), Decimal(0))
    losses = -sum((p for p in pnls if p < 0), Decimal(0))
    return wins / len(pnls), (float(gains / losses) if losses > 0 else None)


def compute(equity: np.ndarray, initial: float, *, first_start_ns: int, ends_ns: np.ndarray, candle_length_ns: int,
            pnls: Sequence[Decimal], exposed: np.ndarray) -> Metrics:
    """Every metric of a run: ``equity`` and ``exposed`` (a position held) per candle close,
    ``ends_ns`` the candles' ends, ``pnls`` the closed trades' P&L after fees."""
    periods = periods_per_year(candle_length_ns)
    period_returns = returns(equity, initial)
    final = float(equity[-1]) if equity.size else initial
    total = final / initial - 1.0 if initial else 0.0
    span = int(ends_ns[-1]) - first_start_ns if ends_ns.size else 0
    growth = cagr(final, initial, span)
    deepest, duration = max_drawdown(equity, initial, np.concatenate(([first_start_ns], ends_ns)))
    win_rate, profit_factor = trade_stats(pnls)
    return Metrics(
        total_return=total, cagr=growth, sharpe=sharpe(period_returns, periods), sortino=sortino(period_returns, periods),
        calmar=(growth / deepest if growth is not None and deepest > 0 else None), max_drawdown=deepest,
        max_drawdown_duration_s=duration, win_rate=win_rate, profit_factor=profit_factor,
        exposure=float(np.mean(exposed)) if exposed.size else 0.0, trades=len(pnls))
