"""Moved to :mod:`tradeflow.trades.receive_clock` (shared with the backfill); kept for old imports."""

from tradeflow.trades.receive_clock import ReceiveClock

__all__ = ["ReceiveClock"]
