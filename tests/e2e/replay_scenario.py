"""A replay file with several symbols, gaps and out-of-order trades, and the candles it must give.

The expected candles are computed here independently of the services: plain Python over the
file's rows, with the design's rules (bucket start label, [start, end), open = first by event
time, close = last, equal event times keep file order).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
START = datetime(2026, 3, 2, 9, 58, 0, tzinfo=UTC)  # a Monday, two minutes before 10:00


@dataclass(frozen=True)
class Row:
    line_no: int
    ts: datetime
    exchange: str
    symbol: str
    price: float
    amount: float
    side: str
    trade_id: str


@dataclass
class Expected:
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int


def write_replay_file(path: Path, exchange_prefix: str, seed: int = 7) -> tuple[list[Row], list[int]]:
    """Write the scenario; return the valid rows and the line numbers that must be rejected."""
    rng = random.Random(seed)
    markets = [
        (f"{exchange_prefix}-binance", "BTC/USDT", 64000.0),
        (f"{exchange_prefix}-binance", "ETH/USDT", 3100.0),
        (f"{exchange_prefix}-kraken", "BTC/USDT", 64010.0),
    ]
    rows: list[tuple] = []
    for exchange, symbol, price in markets:
        t = START
        n = 0
        while t < START + timedelta(hours=2, minutes=20):
            # Gaps: a quiet stretch of 7 minutes for ETH, of 40 minutes for kraken.
            if symbol == "ETH/USDT" and START + timedelta(minutes=20) <= t < START + timedelta(minutes=27):
                t += timedelta(minutes=7)
                continue
            if exchange.endswith("kraken") and START + timedelta(minutes=50) <= t < START + timedelta(minutes=90):
                t += timedelta(minutes=40)
                continue
            price = max(1.0, price * (1 + rng.gauss(0, 0.0008)))
            amount = round(rng.uniform(0.001, 2.0), 6)
            side = rng.choice(["buy", "sell"])
            n += 1
            rows.append((t, exchange, symbol, round(price, 2), amount, side, f"{symbol[:3]}-{n}"))
            t += timedelta(milliseconds=rng.randint(500, 9000))
    rows.sort(key=lambda r: r[0])
    # Out of order: swap neighbours inside buckets and across a minute boundary (within the
    # candle-builder's grace period), and give some trades the same event time.
    for i in range(5, len(rows) - 1, 37):
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
    for i in range(11, len(rows) - 1, 53):
        a = rows[i]
        rows[i + 1] = (a[0],) + rows[i + 1][1:] if rows[i + 1][1:3] == a[1:3] else rows[i + 1]

    valid: list[Row] = []
    bad_lines: list[int] = []
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "exchange", "symbol", "price", "amount", "side", "trade_id"])
        line_no = 1
        for idx, (ts, exchange, symbol, price, amount, side, trade_id) in enumerate(rows):
            line_no += 1
            # Alternate the two time formats the design allows.
            ts_text = str(int(ts.timestamp() * 1000)) if idx % 2 else ts.isoformat()
            w.writerow([ts_text, exchange, symbol, price, amount, side, trade_id])
            valid.append(Row(line_no, ts, exchange, symbol, price, amount, side, trade_id))
            if idx == 100:
                line_no += 1
                w.writerow(["not-a-time", exchange, symbol, price, amount, side, "bad-1"])
                bad_lines.append(line_no)
            if idx == 200:
                line_no += 1
                w.writerow([ts_text, exchange, symbol, -5, amount, side, "bad-2"])
                bad_lines.append(line_no)
    return valid, bad_lines


def bucket_start(ts: datetime, timeframe: str) -> datetime:
    seconds = TIMEFRAME_SECONDS[timeframe]
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def expected_candles(rows: list[Row], exchange: str, symbol: str, timeframe: str) -> list[Expected]:
    mine = [r for r in rows if r.exchange == exchange and r.symbol == symbol]
    # Stable sort by event time keeps file (arrival) order for equal times.
    mine.sort(key=lambda r: r.ts)
    out: dict[datetime, Expected] = {}
    for r in mine:
        b = bucket_start(r.ts, timeframe)
        c = out.get(b)
        if c is None:
            out[b] = Expected(b, r.price, r.price, r.price, r.price, r.amount, 1)
        else:
            c.high = max(c.high, r.price)
            c.low = min(c.low, r.price)
            c.close = r.price
            c.volume += r.amount
            c.trades += 1
    return [out[k] for k in sorted(out)]
