"""What `tradeflow demo` shows: the latest closed 1m candle per market, as a compact table."""

from __future__ import annotations

from collections import Counter

from tradeflow.messages import Candle
from tradeflow.time import ns_to_datetime
from tradeflow.topics import market_key

DEMO_TIMEFRAME = "1m"


def _ns_to_iso(ns: int) -> str:
    return ns_to_datetime(ns).strftime("%Y-%m-%d %H:%M:%SZ")


def format_price(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.6g}"


class MarketView:
    """The latest closed 1m candle per (exchange, symbol) and the ticks seen per market key."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], Candle] = {}
        self.ticks_per_key: Counter[str] = Counter()
        self.candles_seen = 0

    def add_candle(self, candle: Candle) -> None:
        if candle.timeframe != DEMO_TIMEFRAME:
            return
        self.candles_seen += 1
        market = (candle.exchange, candle.symbol)
        current = self.latest.get(market)
        # A later bucket wins; within a bucket a correction (higher revision) replaces the first emission.
        if current is None or (candle.ts_start, candle.revision) >= (current.ts_start, current.revision):
            self.latest[market] = candle

    def add_tick(self, key: str) -> None:
        self.ticks_per_key[key] += 1

    def markets(self) -> list[tuple[str, str]]:
        """Markets with a closed candle; only those trading now once ticks arrive (a shared broker
        also holds other exchanges' candles, e.g. replays)."""
        if not self.ticks_per_key:
            return sorted(self.latest)
        return sorted(m for m in self.latest if market_key(*m) in self.ticks_per_key)

    def render(self) -> str:
        ticks = sum(self.ticks_per_key.values())
        lines = [f"md.ticks.v1: {ticks} ticks from {len(self.ticks_per_key)} markets since the demo started; "
                 f"md.candles.v1: {self.candles_seen} closed {DEMO_TIMEFRAME} candles"]
        shown = self.markets()
        if not shown:
            lines.append(f"no closed {DEMO_TIMEFRAME} candle yet: the first one closes after the current minute ends")
            return "\n".join(lines)
        header = ("exchange", "symbol", "ts (1m bucket, UTC)", "open", "high", "low", "close", "volume", "trades")
        rows = [
            (
                c.exchange, c.symbol, _ns_to_iso(c.ts_start), format_price(c.open), format_price(c.high),
                format_price(c.low), format_price(c.close), f"{c.volume:.4f}", str(c.trades),
            )
            for c in (self.latest[market] for market in shown)
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        text_columns = 3  # left-aligned; numbers are right-aligned

        def line(row: tuple[str, ...]) -> str:
            return "  ".join(
                cell.ljust(w) if i < text_columns else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )

        lines += [line(header), *map(line, rows)]
        return "\n".join(lines)
