"""Is an order well formed? The checks an exchange makes before it accepts one.

Execution turns a failed check into a ``rejected`` transition with the reason (design.md: bad
input is rejected with a reason, never dropped); risk can ask the same before it approves.
Reasons are ``code: details``; the code is stable (a metric label and what clients match on).
"""

from __future__ import annotations

from decimal import Decimal

from tradeflow.messages import Order

from tradeflow_trading.ids import is_valid_client_order_id
from tradeflow_trading.money import is_multiple
from tradeflow_trading.positions import split_symbol


def _positive(value: Decimal) -> bool:
    return value.is_finite() and value > 0


def order_problem(order: Order, *, price_step: Decimal | None = None,
                  quantity_step: Decimal | None = None) -> str | None:
    """Why ``order`` cannot be placed, or None. Steps are the market's where known."""
    if not is_valid_client_order_id(order.client_order_id):
        return (f"invalid_client_order_id: {order.client_order_id!r} is not 1-32 characters of "
                "letters, digits, '_' and '-'")
    try:
        split_symbol(order.symbol)
    except ValueError as exc:
        return f"unknown_market: {exc}"
    if (order.quantity is None) == (order.quote_quantity is None):
        return "invalid_quantity: exactly one of quantity and quote_quantity must be given"
    if order.quantity is not None and not _positive(order.quantity):
        return f"invalid_quantity: quantity must be positive, got {order.quantity}"
    if order.quote_quantity is not None:
        if not _positive(order.quote_quantity):
            return f"invalid_quantity: quote_quantity must be positive, got {order.quote_quantity}"
        if order.order_type != "market" or order.side != "buy" or order.reduce_only:
            return "invalid_order: quote_quantity is for market buys that are not reduce-only"
    if order.order_type == "limit":
        if order.limit_price is None or not _positive(order.limit_price):
            return f"invalid_price: a limit order needs a positive limit_price, got {order.limit_price}"
    elif order.limit_price is not None:
        return "invalid_price: a market order has no limit_price"
    if order.time_in_force == "GTD" and order.expires_at is None:
        return "invalid_expiry: time in force GTD needs expires_at"
    if order.expires_at is not None and order.expires_at <= order.ts_event:
        return f"invalid_expiry: expires_at ({order.expires_at}) is not after ts_event ({order.ts_event})"
    if price_step is not None and order.limit_price is not None and not is_multiple(order.limit_price, price_step):
        return f"invalid_price: limit price {order.limit_price} is off the tick size {price_step}"
    if quantity_step is not None and order.quantity is not None and not is_multiple(order.quantity, quantity_step):
        return f"invalid_quantity: quantity {order.quantity} is off the lot size {quantity_step}"
    return None
