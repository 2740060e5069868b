"""What a live broker adds to the broker port (pure: no ccxt, no network).

Two updates only a remote broker produces: :class:`AdoptedOrder` (an order open at the exchange
that execution never sent: it is stored and reported, and its fills count like any other) and
:class:`AccountMismatch` (reconciliation found balances that the fills cannot explain: the account
is halted and a critical alert raised; no differences: they agree, and risk is told so), and
:class:`AccountPending` (the broker started: the account is not reconciled until its first round
succeeds; risk is told so). :func:`exchange_reason` turns an exchange's refusal into
one of the stable reason codes, and :func:`order_updates` turns what the exchange says of one order
into the transitions the service has not seen yet, in the order the state table accepts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import Fill, Order

from tradeflow_execution.domain.broker import BrokerUpdate, FillUpdate, OrderUpdate


@dataclass(frozen=True, slots=True)
class AdoptedOrder:
    """An order open (or filled) at the exchange under a client order id execution never stored."""

    order: Order
    exchange_order_id: str
    ts_event: int


@dataclass(frozen=True, slots=True)
class AccountMismatch:
    """Reconciliation: the exchange's balances differ from the fold of the known fills (no
    differences: they agree again, and the halt is lifted)."""

    account_id: str
    differences: tuple[str, ...]
    ts_event: int


@dataclass(frozen=True, slots=True)
class AccountPending:
    """The broker (re)started: the account waits for its first reconciliation."""

    account_id: str
    ts_event: int


# Stable reason codes of exchange refusals (design.md "Bad input"; ADR 0022).
INSUFFICIENT_FUNDS = "insufficient_funds"
INVALID_PRICE = "invalid_price"
INVALID_QUANTITY = "invalid_quantity"
MARKET_CLOSED = "market_closed"
RATE_LIMITED = "rate_limited"
UNKNOWN_MARKET = "unknown_market"
EXCHANGE_REFUSED = "exchange_refused"
NOT_FOUND_AT_EXCHANGE = "not_found_at_exchange"

_PRICE_WORDS = ("PRICE_FILTER", "PERCENT_PRICE", "price")
_QUANTITY_WORDS = ("LOT_SIZE", "MIN_NOTIONAL", "NOTIONAL", "MARKET_LOT_SIZE", "quantity", "amount")


def exchange_reason(kind: str, message: str) -> str:
    """The reason code of a refusal, from the ccxt error class name ``kind`` and its message."""
    if kind == "InsufficientFunds" or "insufficient balance" in message:
        return INSUFFICIENT_FUNDS
    if kind in ("RateLimitExceeded", "DDoSProtection"):
        return RATE_LIMITED
    if kind == "MarketClosed" or "Market is closed" in message:
        return MARKET_CLOSED
    if kind == "BadSymbol":
        return UNKNOWN_MARKET
    if any(word in message for word in _PRICE_WORDS[:2]):
        return INVALID_PRICE
    if any(word in message for word in _QUANTITY_WORDS[:4]):
        return INVALID_QUANTITY
    if kind in ("InvalidOrder", "BadRequest"):
        if any(word in message for word in _PRICE_WORDS):
            return INVALID_PRICE
        if any(word in message for word in _QUANTITY_WORDS):
            return INVALID_QUANTITY
        return "invalid_order"
    return EXCHANGE_REFUSED


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """One order as the exchange reports it, in exact decimals."""

    client_order_id: str
    exchange_order_id: str
    status: str  # the exchange's word: NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, REJECTED, ...
    executed: Decimal
    ts_event: int


OPEN_WORDS = frozenset({"NEW", "PARTIALLY_FILLED", "PENDING_NEW"})
CANCELED_WORDS = frozenset({"CANCELED", "CANCELLED", "PENDING_CANCEL"})
EXPIRED_WORDS = frozenset({"EXPIRED", "EXPIRED_IN_MATCH"})


def order_updates(ours_status: str, ours_filled: Decimal, theirs: ExchangeOrder,
                  new_fills: Sequence[Fill]) -> list[BrokerUpdate]:
    """The updates that bring an order from what execution holds to what the exchange reports.

    ``new_fills`` are the exchange's trades of the order that execution has not applied. The
    order becomes accepted first (when execution still holds it as submitted), then its fills
    (they finish it when they reach its quantity), then a canceled/expired/rejected end, but only
    once the fills execution knows add up to what the exchange says was executed: an end before
    its fills would close the order to them.
    """
    updates: list[BrokerUpdate] = []
    cid = theirs.client_order_id
    if theirs.status == "REJECTED":
        if ours_status == "submitted":
            updates.append(OrderUpdate(cid, "rejected", theirs.ts_event, reason=EXCHANGE_REFUSED,
                                       exchange_order_id=theirs.exchange_order_id))
        return updates
    if ours_status == "submitted":
        updates.append(OrderUpdate(cid, "accepted", theirs.ts_event, exchange_order_id=theirs.exchange_order_id))
    filled = ours_filled
    for fill in sorted(new_fills, key=lambda f: (f.ts_event, f.fill_id)):
        updates.append(FillUpdate(fill))
        filled += fill.quantity
    if filled < theirs.executed:
        return updates  # fills still to come: the end waits for them
    if theirs.status in CANCELED_WORDS and theirs.status != "PENDING_CANCEL":
        updates.append(OrderUpdate(cid, "canceled", theirs.ts_event, reason="canceled at the exchange"))
    elif theirs.status in EXPIRED_WORDS:
        updates.append(OrderUpdate(cid, "expired", theirs.ts_event, reason="expired at the exchange"))
    return updates


BPS = Decimal(10_000)


def slippage_bps(side: str, price: Decimal, reference: Decimal | None) -> Decimal | None:
    """How much worse than ``reference`` a fill at ``price`` is, in basis points (negative: better)."""
    if reference is None or reference <= 0:
        return None
    worse = price - reference if side == "buy" else reference - price
    return (worse * BPS / reference).quantize(Decimal("0.01"))


def order_slippage(side: str, average_price: Decimal | None, decision_price: Decimal | None,
                   mid_at_submission: Decimal | None) -> dict[str, str | None]:
    """An order's slippage as ``GET /v1/orders/{id}`` shows it (exact decimals as strings, None: unknown)."""
    def text(value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")

    vs_decision = slippage_bps(side, average_price, decision_price) if average_price is not None else None
    vs_mid = slippage_bps(side, average_price, mid_at_submission) if average_price is not None else None
    return {"decision_price": text(decision_price), "mid_at_submission": text(mid_at_submission),
            "vs_decision_bps": text(vs_decision), "vs_mid_bps": text(vs_mid)}
