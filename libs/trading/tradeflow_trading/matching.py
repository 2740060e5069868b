"""How one order meets the market, trade by trade: the exchange rules of paper trading.

The execution service's paper broker and a tick-level backtest hand every trade of a symbol,
in order, to :func:`match_trade` for each open order of that symbol and apply what it says.
The rules, as an exchange applies them:

- An order is **eligible** for the trades with an event time at or after its ``ts_event``;
  earlier trades do not concern it. The first eligible trade is its **arrival**.
- **Expiry** (``expires_at``, time in force GTD): the first eligible trade at or after
  ``expires_at`` ends the order as ``expired`` before it can fill (the market's time, not the
  wall clock, so a replay expires orders exactly as the live run did).
- A **market** order fills at its arrival by the :class:`FillRule` (the trade's price moved by
  the slippage, taker fee); what a participation cap leaves over fills at the next trades.
- A **limit** order fills on arrival when the trade reaches its limit (taker), else it rests and
  fills at its limit price when a later trade reaches it (maker).
- **IOC** fills what it can at its arrival and expires the rest; **FOK** fills completely at
  its arrival or expires without a fill.
- **Reduce-only** orders fill at most the position they reduce (they never flip it); with no
  position left to reduce they expire.
- A **participation** cap (``FillRule.participation``) lets an order take at most that share of
  each trade's amount: the rest is a partial fill that waits for the next trades.

Everything here is a pure function of the order, its progress, the trade and the position, so
the same trades give the same fills whoever replays them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from tradeflow.messages import Order

from tradeflow_trading.fills import FillQuote, FillRule, limit_reached
from tradeflow_trading.money import ZERO, mul


@dataclass(frozen=True, slots=True)
class MarketTrade:
    """A trade as the matching sees it (exact decimals)."""

    trade_id: str
    price: Decimal
    amount: Decimal
    ts_event: int


@dataclass(frozen=True, slots=True)
class MatchProgress:
    """How far an order got: what it filled, what that cost, whether it has arrived."""

    filled_quantity: Decimal = ZERO
    spent_quote: Decimal = ZERO  # notional + fees of its fills: a quote-sized order's budget used
    arrived: bool = False  # it met its first eligible trade: a limit order rests from then on (maker)

    def after(self, quote: FillQuote) -> MatchProgress:
        return MatchProgress(filled_quantity=self.filled_quantity + quote.quantity,
                             spent_quote=self.spent_quote + mul(quote.quantity, quote.price) + quote.fee,
                             arrived=self.arrived)


@dataclass(frozen=True, slots=True)
class MatchEnd:
    """The order ends without (more) fills: ``expired`` (IOC/FOK, expiry, reduce-only) or
    ``filled`` (a quote-sized order whose budget buys no further quantity step)."""

    status: Literal["expired", "filled"]
    reason: str
    ts_event: int


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What one trade did to one order: a fill (``complete`` when that finished it), an end, or
    both (an IOC order filled in part whose rest expires)."""

    progress: MatchProgress
    fill: FillQuote | None = None
    complete: bool = False
    end: MatchEnd | None = None

    @property
    def finished(self) -> bool:
        return self.complete or self.end is not None


def reducible_quantity(side: str, position: Decimal) -> Decimal:
    """How much an order on ``side`` can reduce a signed ``position`` without flipping it."""
    if side == "sell":
        return max(position, ZERO)
    return max(-position, ZERO)


def match_trade(order: Order, progress: MatchProgress, trade: MarketTrade, rule: FillRule, *,
                position: Decimal = ZERO) -> MatchResult | None:
    """What ``trade`` does to ``order`` (which has ``progress``); None when it is not eligible.

    ``position`` is the account's signed position in the symbol before this trade (for
    reduce-only orders). The caller applies the result and hands the order the next trade
    unless the result ``finished`` it.
    """
    if trade.ts_event < order.ts_event:
        return None
    if order.expires_at is not None and trade.ts_event >= order.expires_at:
        return MatchResult(progress, end=MatchEnd("expired", "expired: its time in force ended", order.expires_at))
    arrival = not progress.arrived
    if arrival:
        progress = MatchProgress(filled_quantity=progress.filled_quantity, spent_quote=progress.spent_quote,
                                 arrived=True)
    once = order.time_in_force in ("IOC", "FOK")

    remaining = None if order.quantity is None else order.quantity - progress.filled_quantity
    capped_by_position = False
    if order.reduce_only:
        reducible = reducible_quantity(order.side, position)
        if reducible <= 0:
            return MatchResult(progress, end=MatchEnd("expired", "reduce_only: no position left to reduce",
                                                      trade.ts_event))
        if remaining is None or reducible < remaining:
            remaining, capped_by_position = reducible, True

    available = rule.available(trade.amount)
    remaining_quote = None
    if order.quote_quantity is not None:
        remaining_quote = order.quote_quantity - progress.spent_quote
    if order.order_type == "market":
        quote = rule.market(order, trade.price, remaining=remaining, available=available,
                            remaining_quote=remaining_quote)
        whole = quote if available is None else rule.market(order, trade.price, remaining=remaining,
                                                            remaining_quote=remaining_quote)
    else:
        if order.limit_price is None or not limit_reached(order.side, order.limit_price, trade.price):
            if once:
                return MatchResult(progress, end=MatchEnd(
                    "expired", f"{order.time_in_force.lower()}: the limit was not reached on arrival", trade.ts_event))
            return MatchResult(progress)
        quote = rule.limit(order, trade.price, resting=not arrival, remaining=remaining, available=available)
        whole = quote if available is None else rule.limit(order, trade.price, resting=not arrival,
                                                           remaining=remaining)

    if quote is None:
        if progress.filled_quantity > 0:
            return MatchResult(progress, end=MatchEnd("filled", "quote_quantity spent", trade.ts_event))
        if available is not None and whole is not None:
            # This trade is too small for one quantity step of the order: the next may not be.
            return _nothing_at_once(order, progress, trade) if once else MatchResult(progress)
        return MatchResult(progress, end=MatchEnd(
            "expired", f"quote_quantity: {order.quote_quantity} buys less than one quantity step "
                       f"({rule.quantity_step}) at {trade.price}", trade.ts_event))
    if order.time_in_force == "FOK" and whole is not None and quote.quantity < whole.quantity:
        return _nothing_at_once(order, progress, trade)

    progress = progress.after(quote)
    if order.quote_quantity is not None:
        complete = whole is None or quote.quantity >= whole.quantity
    else:
        complete = progress.filled_quantity == order.quantity or (capped_by_position and quote.quantity == remaining)
    if complete:
        return MatchResult(progress, fill=quote, complete=True)
    if once:
        return MatchResult(progress, fill=quote, end=MatchEnd(
            "expired", f"{order.time_in_force.lower()}: the rest was not filled on arrival", trade.ts_event))
    return MatchResult(progress, fill=quote)


def _nothing_at_once(order: Order, progress: MatchProgress, trade: MarketTrade) -> MatchResult:
    what = "not fillable in full" if order.time_in_force == "FOK" else "nothing fillable"
    return MatchResult(progress, end=MatchEnd("expired", f"{order.time_in_force.lower()}: {what} on arrival",
                                              trade.ts_event))
