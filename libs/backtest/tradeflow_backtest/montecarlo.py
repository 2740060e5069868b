"""Monte Carlo over a backtest's trades: how much of its result was the order and the luck of its trades.

The closed trades of a run become returns on the equity they were entered with
(``r_i = pnl_i / equity before trade i``, the equity before the first being the initial cash
and each trade's P&L added in exit order). Each simulation builds a new trade sequence and
compounds it from the initial cash, ``E_k = E_{k-1} x (1 + r_k)``:

- **shuffle**: the same trades in a random order (a permutation). The final return is the
  same in every simulation (a product does not depend on the order); the drawdowns differ:
  how deep the run could have fallen with the same trades.
- **bootstrap**: as many trades as the run had, drawn with replacement. Both the return and
  the drawdown vary: what other runs of the same edge could have given.

The drawdown is measured trade to trade (the equity after each exit), so it can only
understate the candle-level drawdown of the backtest itself.

**Ruin** (probability of ruin): a simulation is ruined when its equity, after any trade,
is at or below ``ruin_level`` (default 0.5) times the initial cash, i.e. it lost half of
its starting capital at some point. The probability is the share of ruined simulations.

Everything is seeded (``numpy.random.default_rng(seed)``): the same trades, seed and count
give the same figures on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import numpy as np

Method = Literal["shuffle", "bootstrap"]
METHODS: tuple[Method, ...] = ("shuffle", "bootstrap")
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary of one simulated quantity: mean, percentiles and the central confidence interval."""

    mean: float
    percentiles: dict[int, float]
    interval: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "percentiles": {f"p{k}": v for k, v in self.percentiles.items()},
                "interval": list(self.interval)}


@dataclass(frozen=True, slots=True)
class Simulation:
    """The outcome of one method: per-simulation final returns and max drawdowns, and their summaries."""

    method: Method
    returns: np.ndarray
    max_drawdowns: np.ndarray
    total_return: Distribution
    max_drawdown: Distribution
    probability_of_ruin: float
    probability_of_loss: float

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "total_return": self.total_return.to_json(),
                "max_drawdown": self.max_drawdown.to_json(), "probability_of_ruin": self.probability_of_ruin,
                "probability_of_loss": self.probability_of_loss}


@dataclass(frozen=True, slots=True)
class MonteCarloReport:
    simulations: int
    seed: int
    confidence: float
    ruin_level: float
    trades: int
    results: list[Simulation]

    def to_json(self) -> dict[str, Any]:
        return {"simulations": self.simulations, "seed": self.seed, "confidence": self.confidence,
                "ruin_level": self.ruin_level, "trades": self.trades,
                "methods": {s.method: s.to_json() for s in self.results}}


def trade_returns(pnls: Sequence[Decimal], initial_cash: Decimal) -> np.ndarray:
    """Each trade's P&L as a fraction of the equity before it (trades in exit order)."""
    equity = initial_cash
    out = np.empty(len(pnls))
    for i, pnl in enumerate(pnls):
        out[i] = float(pnl / equity) if equity > 0 else 0.0
        equity += pnl
    return out


def paths(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(final return, max drawdown, lowest equity as a fraction of the initial) of each row of
    ``returns`` (one simulated trade sequence per row), compounded from 1."""
    equity = np.cumprod(1.0 + returns, axis=1)
    with_start = np.concatenate((np.ones((equity.shape[0], 1)), equity), axis=1)
    peaks = np.maximum.accumulate(with_start, axis=1)
    drawdowns = 1.0 - with_start / peaks
    return with_start[:, -1] - 1.0, drawdowns.max(axis=1), with_start.min(axis=1)


def distribution(values: np.ndarray, confidence: float) -> Distribution:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Distribution(float(np.mean(values)), {p: float(np.percentile(values, p)) for p in PERCENTILES},
                        (float(low), float(high)))


def simulate(returns: np.ndarray, *, method: Method, simulations: int, rng: np.random.Generator,
             confidence: float, ruin_level: float) -> Simulation:
    n = returns.shape[0]
    if method == "shuffle":
        sequences = rng.permuted(np.tile(returns, (simulations, 1)), axis=1)
    else:
        sequences = returns[rng.integers(0, n, size=(simulations, n))]
    finals, drawdowns, lowest = paths(sequences)
    return Simulation(method=method, returns=finals, max_drawdowns=drawdowns,
                      total_return=distribution(finals, confidence), max_drawdown=distribution(drawdowns, confidence),
                      probability_of_ruin=float(np.mean(lowest <= ruin_level)),
                      probability_of_loss=float(np.mean(finals < 0)))


def monte_carlo(pnls: Sequence[Decimal], initial_cash: Decimal, *, simulations: int = 1000, seed: int = 0,
                methods: Sequence[Method] = METHODS, confidence: float = 0.95,
                ruin_level: float = 0.5) -> MonteCarloReport:
    """Every method over the trades ``pnls`` (see the module docstring); at least one trade."""
    if not pnls:
        raise ValueError("no closed trades to resample")
    if simulations < 1:
        raise ValueError(f"simulations must be at least 1, got {simulations}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if not 0 <= ruin_level < 1:
        raise ValueError(f"ruin level must be in [0, 1), got {ruin_level}")
    returns = trade_returns(pnls, initial_cash)
    rng = np.random.default_rng(seed)  # one stream, methods in the given order: reproducible as a whole
    results = [simulate(returns, method=m, simulations=simulations, rng=rng, confidence=confidence,
                        ruin_level=ruin_level) for m in methods]
    return MonteCarloReport(simulations=simulations, seed=seed, confidence=confidence, ruin_level=ruin_level,
                            trades=len(pnls), results=results)
