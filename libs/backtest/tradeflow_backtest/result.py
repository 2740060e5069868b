"""What a backtest returns: trades, metrics, the equity curve, and what did not happen.

:meth:`BacktestResult.to_json` is design.md's ``tradeflow backtest --json`` output, exactly::

    {"trades": [{"entry_ts", "entry_price", "exit_ts", "exit_price", "quantity", "pnl", "fees"}],
     "metrics": {"total_return", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "trades"},
     "equity": [...]}

Times are ISO 8601 UTC strings; prices, quantities, P&L and fees exact decimals as strings;
metrics numbers (null when undefined); ``equity`` one ``{"ts", "equity"}`` point per candle,
at its close (the candle's end). The Python object carries more (every metric, open
positions, intents that could not become orders) for the report, the optimiser and callers
that run several markets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from tradeflow.time import format_time_ms
from tradeflow_trading.positions import Position
from tradeflow_trading.strategy.intents import Intent

from tradeflow_backtest.metrics import Metrics

JSON_METRICS = ("total_return", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "trades")


@dataclass(frozen=True, slots=True)
class Trade:
    """A round trip of one market, from flat to flat.

    Entry and exit prices are the volume-weighted prices of the buys and of the sells (one each
    for an all-cash entry and its exit); ``quantity`` is what was bought; ``fees`` all the fees
    paid; ``pnl`` what the round trip did to the cash, exactly: sells minus buys minus fees.
    Times are the fills' (the open of the candle after each decision).
    """

    symbol: str
    entry_ts: int
    entry_price: Decimal
    exit_ts: int
    exit_price: Decimal
    quantity: Decimal
    pnl: Decimal
    fees: Decimal

    def to_json(self) -> dict[str, str]:
        return {"entry_ts": format_time_ms(self.entry_ts), "entry_price": _text(self.entry_price),
                "exit_ts": format_time_ms(self.exit_ts), "exit_price": _text(self.exit_price),
                "quantity": _text(self.quantity), "pnl": _text(self.pnl), "fees": _text(self.fees)}


def _text(value: Decimal) -> str:
    """Positional notation, never an exponent (0E-9 prints as 0.000000000)."""
    return format(value, "f")


@dataclass(frozen=True, slots=True)
class Unfilled:
    """An intent that produced no fill, and why (``no_next_candle``, ``insufficient_cash``, ...)."""

    intent: Intent
    reason: str


@dataclass(frozen=True, slots=True)
class BacktestResult:
    trades: list[Trade]
    metrics: Metrics
    equity: np.ndarray  # float64, one point per step, at its close
    equity_ts: np.ndarray  # int64 ns: each point's time (the candle's end)
    initial_cash: Decimal
    final_cash: Decimal
    positions: dict[str, Position]  # open at the end (valued at the last close in the equity curve)
    unfilled: list[Unfilled]

    def to_json(self) -> dict[str, Any]:
        metrics = self.metrics.as_dict()
        return {
            "trades": [trade.to_json() for trade in self.trades],
            "metrics": {name: metrics[name] for name in JSON_METRICS},
            "equity": [{"ts": format_time_ms(int(ts)), "equity": float(value)}
                       for ts, value in zip(self.equity_ts.tolist(), self.equity.tolist(), strict=True)],
        }
