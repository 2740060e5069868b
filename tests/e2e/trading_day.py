"""A generated day of trades for the trading path's end-to-end tests: several symbols, a seeded
random walk with a slow drift that turns, written as replay CSV files (design.md's format), one
per part of the day so a test can replay it in parts."""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

S_MS = 1000
DAY_START_MS = 1_772_409_600_000  # 2026-03-02 00:00 UTC, a Monday
DAY_MS = 24 * 3600 * S_MS


@dataclass(frozen=True)
class Trade:
    ts_ms: int
    symbol: str
    price: float
    amount: float
    side: str
    trade_id: str


def trading_day(symbols: dict[str, float], *, seed: int, mean_gap_s: float = 30.0) -> list[Trade]:
    """Trades of every symbol (start price by symbol) over the day, in time order; each symbol's
    trades come ``mean_gap_s`` apart on average, prices moving by a walk whose drift turns every
    few hours (so trend-following strategies enter and leave)."""
    rng = random.Random(seed)
    trades = []
    for n, (symbol, start) in enumerate(symbols.items()):
        t, price, k = DAY_START_MS + rng.randint(0, 5000), start, 0
        while t < DAY_START_MS + DAY_MS:
            hours = (t - DAY_START_MS) / 3_600_000
            drift = 0.0004 * math.sin(hours / 3.0 + n)
            price = round(max(0.01, price * math.exp(drift + rng.gauss(0, 0.0015))), 2)
            k += 1
            trades.append(Trade(t, symbol, price, round(rng.uniform(0.01, 3.0), 4), rng.choice(("buy", "sell")),
                                f"{symbol[:3].lower()}-{k}"))
            t += max(1, int(rng.expovariate(1 / mean_gap_s) * S_MS))
    trades.sort(key=lambda tr: (tr.ts_ms, tr.symbol))
    return trades


def write_parts(trades: list[Trade], exchange: str, directory: Path, parts: int) -> list[Path]:
    """The day as ``parts`` replay files cut at equal times (whole hours for 2, 3, 4, 6, 8, 12, 24)."""
    paths = []
    edges = [DAY_START_MS + DAY_MS * p // parts for p in range(parts + 1)]
    for p in range(parts):
        path = directory / f"day-part-{p}.csv"
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["ts", "exchange", "symbol", "price", "amount", "side", "trade_id"])
            for tr in trades:
                if edges[p] <= tr.ts_ms < edges[p + 1]:
                    out.writerow([tr.ts_ms, exchange, tr.symbol, tr.price, tr.amount, tr.side, tr.trade_id])
        paths.append(path)
    return paths
