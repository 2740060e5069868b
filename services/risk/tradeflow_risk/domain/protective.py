"""Protective exits: stop-loss, take-profit and trailing stop, evaluated on every trade.

For a long position (a short one mirrored):

- ``stop_loss``: a trade at or below ``average x (1 - pct/100)`` or ``average - atr x ATR``;
- ``trailing_stop``: at or below ``best x (1 - pct/100)`` or ``best - atr x ATR``, where
  ``best`` is the highest trade since the position opened (this trade included);
- ``take_profit``: at or above ``average x (1 + pct/100)`` or ``average + atr x ATR``.

The first that holds, in that order, names the exit. A rule in ATR multiples waits until the
symbol has an ATR (enough candles of the configured timeframe).
"""

from __future__ import annotations

from decimal import Decimal

from tradeflow_trading.money import mul
from tradeflow_trading.positions import Position

from tradeflow_risk.domain.account import Watermark
from tradeflow_risk.domain.profiles import TAKE_PROFIT, TRAILING_STOP, TRIGGERS, ExitDistance, ProtectiveRules

HUNDRED = Decimal(100)


def _offset(distance: ExitDistance, reference: Decimal, atr: Decimal | None) -> Decimal | None:
    if distance.pct is not None:
        return mul(reference, distance.pct / HUNDRED)
    if atr is None:
        return None
    return mul(atr, distance.atr)


def watermark_after(watermark: Watermark | None, position: Position, price: Decimal) -> Watermark:
    """The position's best/worst prices including a trade at ``price``."""
    if watermark is None or watermark.opened_at != position.opened_at:
        start = position.average_price
        return Watermark(position.opened_at, max(start, price), min(start, price))
    return Watermark(watermark.opened_at, max(watermark.high, price), min(watermark.low, price))


def exit_trigger(position: Position, rules: ProtectiveRules, price: Decimal, watermark: Watermark,
                 atr: Decimal | None) -> tuple[str, Decimal] | None:
    """The trigger a trade at ``price`` fires for ``position`` and the level it crossed, or None."""
    if position.is_flat:
        return None
    long = position.quantity > 0
    for trigger in TRIGGERS:
        distance = rules.distance(trigger)
        if distance is None:
            continue
        if trigger == TRAILING_STOP:
            reference = watermark.high if long else watermark.low
        else:
            reference = position.average_price
        offset = _offset(distance, reference, atr)
        if offset is None:
            continue
        if trigger == TAKE_PROFIT:
            level = reference + offset if long else reference - offset
            hit = price >= level if long else price <= level
        else:
            level = reference - offset if long else reference + offset
            hit = price <= level if long else price >= level
        if hit:
            return trigger, level
    return None

