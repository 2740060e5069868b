"""The tests' independent candle computation from trades (plain Python, the design's rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tradeflow.messages import Candle, Tick

S = 1_000_000_000
TF_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
# Every timeframe of the design; the weekly one by the calendar (weeks start on Monday, UTC).
ALL_TIMEFRAMES = (*TF_SECONDS, "4h", "1d", "1w")
_FIXED_SECONDS = {**TF_SECONDS, "4h": 4 * 3600, "1d": 86400}


def bucket_start_ns(ts_ns: int, timeframe: str) -> int:
    if timeframe == "1w":
        day = datetime.fromtimestamp(ts_ns // S, UTC).date()
        monday = datetime.combine(day - timedelta(days=day.weekday()), datetime.min.time(), UTC)
        return int(monday.timestamp()) * S
    length = _FIXED_SECONDS[timeframe] * S
    return ts_ns - ts_ns % length


def expected_candles(ticks: list[Tick], timeframe: str) -> dict[tuple[str, str, int], tuple]:
    """Independent computation: stable sort by (event time, receive time), bucket by UTC seconds."""
    out: dict[tuple[str, str, int], list] = {}
    for t in sorted(ticks, key=lambda t: (t.ts_event, t.ts_recv)):
        key = (t.exchange, t.symbol, bucket_start_ns(t.ts_event, timeframe))
        c = out.get(key)
        if c is None:
            out[key] = [t.price, t.price, t.price, t.price, t.amount, 1]
        else:
            c[1], c[2], c[3] = max(c[1], t.price), min(c[2], t.price), t.price
            c[4] += t.amount
            c[5] += 1
    return {k: (o, h, lo, c, round(v, 6), n) for k, (o, h, lo, c, v, n) in out.items()}


def as_values(c: Candle) -> tuple:
    """A candle message in the form ``expected_candles`` gives."""
    return (c.open, c.high, c.low, c.close, round(c.volume, 6), c.trades)
