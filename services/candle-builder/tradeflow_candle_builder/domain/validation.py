"""Which consumed trades must never be counted, and why (pure)."""

from __future__ import annotations

from tradeflow.marketdata import tick_rejection_reason
from tradeflow.markets import market_key
from tradeflow.messages import Tick


def consumed_tick_rejection_reason(key: str | None, tick: Tick, now_ns: int) -> str | None:
    """The shared market-data rules, plus: the record key must be the tick's ``exchange:symbol``.

    Why the key check: all state of an instrument lives with the partition its key hashes to
    (stream time, open buckets, commit offsets). A tick filed under another key would land on
    another partition and build a second, conflicting candle for the same instrument.
    """
    reason = tick_rejection_reason(tick, now_ns)
    if reason is not None:
        return reason
    if key != market_key(tick.exchange, tick.symbol):
        return f"key_mismatch: record key {key!r} is not the tick's exchange:symbol {tick.exchange}:{tick.symbol}"
    return None
