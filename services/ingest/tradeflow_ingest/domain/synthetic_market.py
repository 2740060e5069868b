"""A seeded, deterministic synthetic market: random-walk trades for N symbols.

Given the seed, the sequence of trades (symbol, price, amount, side, trade_id) is always the
same; *when* they happen is the caller's business (the synthetic source stamps wall-clock
time as it emits them). Each symbol gets its own start price (log-uniform between 1 and
50 000) and per-trade volatility from the seed.

Prices follow a geometric walk with a weak pull back toward the start price (mean reversion
in log space) and clamped shocks, which bounds ``log(price / start)`` by
``MAX_SHOCK_SIGMAS * volatility / REVERSION`` (< 200): prices stay positive and finite forever.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import NamedTuple

REVERSION = 1e-4  # fraction of the log-distance to the start price closed per trade
MAX_SHOCK_SIGMAS = 6.0
MIN_START_PRICE, MAX_START_PRICE = 1.0, 50_000.0
MIN_VOLATILITY, MAX_VOLATILITY = 0.0002, 0.003  # per-trade standard deviation of log price
MEDIAN_NOTIONAL = 500.0  # quote currency per trade
MIN_AMOUNT = 1e-8


class SyntheticTrade(NamedTuple):
    symbol: str
    price: float
    amount: float
    side: str
    trade_id: str


@dataclass(slots=True)
class _SymbolWalk:
    symbol: str
    log_start: float
    volatility: float
    log_price: float


def synthetic_symbol_names(count: int) -> list[str]:
    """``SYM00/USD``, ``SYM01/USD``, ... (wider numbers when there are more than 100)."""
    width = max(2, len(str(count - 1)))
    return [f"SYM{i:0{width}d}/USD" for i in range(count)]


class SyntheticMarket:
    """An endless deterministic trade sequence over ``symbol_count`` symbols."""

    def __init__(self, seed: int, symbol_count: int) -> None:
        if symbol_count < 1:
            raise ValueError(f"symbol_count must be at least 1, got {symbol_count}")
        self.seed = seed
        self._rng = random.Random(seed)
        self._walks = [
            _SymbolWalk(
                symbol=name,
                log_start=(log_start := self._rng.uniform(math.log(MIN_START_PRICE), math.log(MAX_START_PRICE))),
                volatility=self._rng.uniform(MIN_VOLATILITY, MAX_VOLATILITY),
                log_price=log_start,
            )
            for name in synthetic_symbol_names(symbol_count)
        ]
        self._sequence = 0

    @property
    def symbols(self) -> list[str]:
        return [walk.symbol for walk in self._walks]

    def next_trade(self) -> SyntheticTrade:
        rng = self._rng
        walk = self._walks[rng.randrange(len(self._walks))]
        shock = max(-MAX_SHOCK_SIGMAS, min(MAX_SHOCK_SIGMAS, rng.gauss(0.0, 1.0)))
        walk.log_price += REVERSION * (walk.log_start - walk.log_price) + walk.volatility * shock
        price = float(f"{math.exp(walk.log_price):.10g}")  # 10 significant digits, like a real tape
        notional = MEDIAN_NOTIONAL * rng.lognormvariate(0.0, 1.0)
        amount = max(MIN_AMOUNT, round(notional / price, 8))
        side = "buy" if rng.random() < 0.5 else "sell"
        self._sequence += 1
        return SyntheticTrade(walk.symbol, price, amount, side, f"{self.seed}-{self._sequence}")
