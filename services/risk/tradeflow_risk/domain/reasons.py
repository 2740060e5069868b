"""Stable reason codes of risk's rejections and state changes, and a rejection with its numbers.

The codes are an interface (RiskEvent.reason, metrics labels, the 422 of POST /v1/orders):
add codes, never rename them. docs/adr/0018 lists the order in which the checks run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

# Bad input
UNKNOWN_ACCOUNT = "unknown_account"
UNKNOWN_SYMBOL = "unknown_symbol"
INVALID_QUANTITY = "invalid_quantity"
INVALID_ORDER = "invalid_order"
NO_PRICE = "no_price"
NOTHING_TO_EXIT = "nothing_to_exit"
SIZING_FAILED = "sizing_failed"
BELOW_MINIMUM_SIZE = "below_minimum_size"  # a sized entry too small to fill (tradeflow_trading.sizing.below_minimum)
# Account state
KILL_SWITCH = "kill_switch"
ACCOUNT_HALTED = "account_halted"
ACCOUNT_REDUCING = "account_reducing"
COOLDOWN = "cooldown"
ACCOUNT_NOT_RECONCILED = "account_not_reconciled"  # a live account execution has not reconciled (or found a mismatch)
# Market
MARKET_CLOSED = "market_closed"
BELOW_MIN_QUANTITY = "below_min_quantity"
BELOW_MIN_NOTIONAL = "below_min_notional"
PRICE_PRECISION = "price_precision"
# Limits (design.md names)
MAX_ORDERS_PER_MINUTE = "max_orders_per_minute"
MAX_OPEN_ORDERS = "max_open_orders"
MAX_ORDER_NOTIONAL = "max_order_notional"
MAX_POSITION_NOTIONAL = "max_position_notional"
MAX_GROSS_EXPOSURE = "max_gross_exposure"
MAX_CORRELATED_EXPOSURE = "max_correlated_exposure"
INSUFFICIENT_BALANCE = "insufficient_balance"
# State changes (RiskEvent kind state_change / limit_breach)
MAX_DAILY_LOSS = "max_daily_loss"
MAX_DRAWDOWN_PCT = "max_drawdown_pct"
OPERATOR = "operator"
NEW_DAY = "new_day"
RECONCILIATION_MISMATCH = "reconciliation_mismatch"  # execution: the exchange's balances differ from the fills
RECONCILED = "reconciled"  # execution: the exchange agrees with the fills (again)


def text(value: Decimal | int | str | None) -> str:
    """A number as RiskEvent.details carries it (exact decimal text, normalized: 1E+3 -> 1000)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")
    return str(value)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order is refused: a stable ``reason``, a sentence, and the numbers that broke it."""

    reason: str
    message: str
    details: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, reason: str, message: str, **numbers: Decimal | int | str | None) -> Rejection:
        return cls(reason, message, {name: text(value) for name, value in numbers.items() if value is not None})
