"""Moved to :mod:`tradeflow.trades.ccxt_trades` (shared with the backfill); kept for old imports."""

from tradeflow.trades.ccxt_trades import (
    NS_PER_MS,
    UnusableTrade,
    in_exchange_order,
    trade_fields,
    trade_to_tick,
)

__all__ = ["NS_PER_MS", "UnusableTrade", "in_exchange_order", "trade_fields", "trade_to_tick"]
