"""Market-data rules shared by every service that accepts trades (pure, no I/O)."""

from __future__ import annotations

import math

from tradeflow.messages import Tick
from tradeflow.time import NS_PER_S

MAX_FUTURE_SKEW_NS = 5 * 60 * NS_PER_S  # an event more than 5 minutes ahead is bad input
VALID_SIDES = frozenset({"buy", "sell"})


def tick_rejection_reason(tick: Tick, now_ns: int, max_future_skew_ns: int = MAX_FUTURE_SKEW_NS) -> str | None:
    """Why ``tick`` must not be counted in any candle, or ``None`` when it is valid.

    The reason is a short stable code (used as a metric label and a DLQ header) followed by
    details for humans.
    """
    price = tick.price
    if not (isinstance(price, float | int) and math.isfinite(price) and price > 0):
        return f"invalid_price: price must be a positive finite number, got {price!r}"
    amount = tick.amount
    if not (isinstance(amount, float | int) and math.isfinite(amount) and amount >= 0):
        return f"invalid_amount: amount must be a non-negative finite number, got {amount!r}"
    if tick.side not in VALID_SIDES:
        return f"invalid_side: side must be 'buy' or 'sell', got {tick.side!r}"
    if tick.ts_event > now_ns + max_future_skew_ns:
        ahead_s = (tick.ts_event - now_ns) / NS_PER_S
        return f"future_event_time: event time is {ahead_s:.1f}s in the future (limit {max_future_skew_ns / NS_PER_S:.0f}s)"
    if not tick.exchange or not tick.symbol:
        return "invalid_instrument: exchange and symbol must be non-empty"
    if not tick.trade_id:
        return "invalid_trade_id: trade_id must be non-empty"
    return None


def reason_code(reason: str) -> str:
    """The stable code part of a rejection reason (for metric labels)."""
    return reason.split(":", 1)[0]
