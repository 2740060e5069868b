"""Moved to :mod:`tradeflow.trades.retry_after` (shared with the backfill); kept for old imports."""

from tradeflow.trades.retry_after import MAX_RETRY_AFTER_S, RequestHold, retry_after_seconds

__all__ = ["MAX_RETRY_AFTER_S", "RequestHold", "retry_after_seconds"]
