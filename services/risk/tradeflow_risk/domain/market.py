"""Market data as risk uses it: marks, and ATR, volatility and correlation from candles.

- The **mark** of a symbol is the price with the newest event time seen: a trade's price at its
  ``ts_event``, a candle's close at its end. Equity is marked to it.
- **Bars** are the candles of one configured timeframe (``TRADEFLOW_RISK_MARKET_TIMEFRAME``), the
  newest ``window + 1`` per symbol; a correction (higher revision) replaces its candle. ATR and
  the standard deviation of returns use the last ``volatility_period`` bars, correlations the
  returns of the last ``correlation_window`` bars both symbols have (tradeflow_trading.volatility).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import Candle, Tick
from tradeflow_trading.money import to_decimal
from tradeflow_trading.volatility import aligned_returns, average_true_range, correlation, returns_stdev

MIN_CORRELATION_POINTS = 10


@dataclass(frozen=True, slots=True)
class Mark:
    price: Decimal
    ts_event: int


@dataclass(frozen=True, slots=True)
class _Bar:
    high: float
    low: float
    close: float
    revision: int


class _Series:
    """The newest bars of one symbol, by candle start."""

    __slots__ = ("bars", "version")

    def __init__(self) -> None:
        self.bars: dict[int, _Bar] = {}
        self.version = 0


class MarketData:
    """Marks and bars of every symbol risk reads (one instance per process)."""

    def __init__(self, timeframe: str, volatility_period: int = 14, correlation_window: int = 50) -> None:
        self.timeframe = timeframe
        self.volatility_period = volatility_period
        self.correlation_window = correlation_window
        self._keep = max(volatility_period, correlation_window) + 1
        self.marks: dict[tuple[str, str], Mark] = {}
        self._series: dict[tuple[str, str], _Series] = {}
        self._cache: dict[tuple, tuple[tuple[int, ...], object]] = {}

    # --- input ---------------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> Decimal:
        price = to_decimal(tick.price)
        self._mark((tick.exchange, tick.symbol), price, tick.ts_event)
        return price

    def on_candle(self, candle: Candle) -> None:
        key = (candle.exchange, candle.symbol)
        self._mark(key, to_decimal(candle.close), candle.ts_end)
        if candle.timeframe != self.timeframe:
            return
        series = self._series.setdefault(key, _Series())
        current = series.bars.get(candle.ts_start)
        if current is not None and current.revision > candle.revision:
            return  # an older emission of a corrected candle
        series.bars[candle.ts_start] = _Bar(candle.high, candle.low, candle.close, candle.revision)
        if len(series.bars) > self._keep:
            for ts in sorted(series.bars)[: len(series.bars) - self._keep]:
                del series.bars[ts]
        series.version += 1

    def set_mark(self, exchange: str, symbol: str, price: Decimal, ts_event: int) -> None:
        """A mark restored from the database at start."""
        self._mark((exchange, symbol), price, ts_event)

    def _mark(self, key: tuple[str, str], price: Decimal, ts_event: int) -> None:
        current = self.marks.get(key)
        if current is None or ts_event >= current.ts_event:
            self.marks[key] = Mark(price, ts_event)

    # --- what the rules read -------------------------------------------------------------------

    def mark(self, exchange: str, symbol: str) -> Decimal | None:
        mark = self.marks.get((exchange, symbol))
        return mark.price if mark is not None else None

    def _bars(self, key: tuple[str, str]) -> list[_Bar]:
        series = self._series.get(key)
        return [series.bars[ts] for ts in sorted(series.bars)] if series is not None else []

    def _cached(self, name: str, keys: tuple[tuple[str, str], ...], compute):
        versions = tuple(self._series[k].version if k in self._series else -1 for k in keys)
        hit = self._cache.get((name, keys))
        if hit is not None and hit[0] == versions:
            return hit[1]
        value = compute()
        self._cache[(name, keys)] = (versions, value)
        return value

    def atr(self, exchange: str, symbol: str) -> Decimal | None:
        key = (exchange, symbol)

        def compute() -> Decimal | None:
            bars = self._bars(key)
            value = average_true_range([b.high for b in bars], [b.low for b in bars], [b.close for b in bars],
                                       self.volatility_period)
            return to_decimal(value) if value is not None else None

        return self._cached("atr", (key,), compute)

    def returns_stdev(self, exchange: str, symbol: str) -> Decimal | None:
        key = (exchange, symbol)

        def compute() -> Decimal | None:
            value = returns_stdev([b.close for b in self._bars(key)], max(2, self.volatility_period))
            return to_decimal(value) if value is not None else None

        return self._cached("stdev", (key,), compute)

    def correlation(self, exchange: str, a: str, b: str) -> float | None:
        if a == b:
            return 1.0
        first, second = sorted((a, b))
        keys = ((exchange, first), (exchange, second))

        def compute() -> float | None:
            closes = [{ts: bar.close for ts, bar in self._series[k].bars.items()} if k in self._series else {}
                      for k in keys]
            xs, ys = aligned_returns(closes[0], closes[1])
            window = self.correlation_window
            return correlation(xs[-window:], ys[-window:], min_points=min(MIN_CORRELATION_POINTS, window))

        return self._cached("corr", keys, compute)

    def correlated(self, exchange: str, symbol: str, candidates: Iterable[str], threshold: Decimal) -> list[str]:
        """``symbol`` and those of ``candidates`` whose returns correlate with it at ``threshold`` or more."""
        group = [symbol]
        for other in sorted(set(candidates) - {symbol}):
            value = self.correlation(exchange, symbol, other)
            if value is not None and value >= float(threshold):
                group.append(other)
        return group
