"""An order as risk is asked for it, before the gate: from a signal, an operator, or a protective trigger.

:func:`from_signal` turns a strategy's intent into an :class:`OrderRequest` (sizing an entry
that carries no quantity; an exit sells the whole position as risk knows it), or the
:class:`~tradeflow_risk.domain.reasons.Rejection` of bad input; a sized entry too small to
ever fill (below the market's quantity step, minimum quantity or minimum notional at the
decision price: tradeflow_trading.sizing.below_minimum) is ``below_minimum_size``. Every
request carries its deterministic ``client_order_id`` (tradeflow_trading.ids) and the
``decision_id`` its decision is stored under (unique: one decision per signal, manual request,
or position and trigger).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from tradeflow.messages import Order, Signal
from tradeflow_trading.ids import (
    client_order_id_for_manual,
    client_order_id_for_protective_exit,
    client_order_id_for_signal,
)
from tradeflow_trading.money import ZERO, mul
from tradeflow_trading.positions import Position, split_symbol
from tradeflow_trading.sizing import (
    BelowMinimumSize,
    EntryMinimums,
    Sizing,
    SizingError,
    SizingInputs,
    below_minimum,
    size_entry,
)

from tradeflow_risk.domain import reasons
from tradeflow_risk.domain.account import AccountBook, TrackedOrder
from tradeflow_risk.domain.market_rules import MarketRules
from tradeflow_risk.domain.reasons import Rejection, text


@dataclass(frozen=True, slots=True)
class OrderRequest:
    decision_id: str
    client_order_id: str
    account_id: str
    exchange: str
    symbol: str
    side: str
    order_type: str
    ts_event: int
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None
    limit_price: Decimal | None = None
    reduce_only: bool = False
    origin: str = "signal"
    signal_id: str = ""
    strategy_id: str = ""
    decision_price: Decimal | None = None

    @property
    def base(self) -> str:
        return split_symbol(self.symbol)[0]

    @property
    def quote(self) -> str:
        return split_symbol(self.symbol)[1]

    def price(self, mark: Decimal | None) -> Decimal | None:
        return self.limit_price or self.decision_price or mark

    def notional(self, mark: Decimal | None) -> Decimal | None:
        """Quote value of the order: its quote amount, or quantity x (limit, decision price or mark)."""
        if self.quote_quantity is not None:
            return self.quote_quantity
        price = self.price(mark)
        return mul(self.quantity, price) if price is not None and self.quantity is not None else None

    def reduces(self, position: Position) -> bool:
        """Whether the order only shrinks ``position`` (reducing accounts pass nothing else)."""
        if self.reduce_only:
            return True
        if position.is_flat or self.quantity is None:
            return False
        opposite = (self.side == "sell") == (position.quantity > 0)
        return opposite and self.quantity <= abs(position.quantity)

    def with_quantity(self, quantity: Decimal) -> OrderRequest:
        return replace(self, quantity=quantity)

    def to_order(self) -> Order:
        return Order(client_order_id=self.client_order_id, account_id=self.account_id, exchange=self.exchange,
                     symbol=self.symbol, side=self.side, order_type=self.order_type, quantity=self.quantity,
                     quote_quantity=self.quote_quantity, limit_price=self.limit_price, reduce_only=self.reduce_only,
                     origin=self.origin, signal_id=self.signal_id, strategy_id=self.strategy_id,
                     decision_price=self.decision_price, ts_event=self.ts_event)


def signal_decision_id(signal_id: str) -> str:
    return f"signal:{signal_id}"


def manual_decision_id(account_id: str, request_id: str) -> str:
    return f"manual:{account_id}:{request_id}"


def amendment_decision_id(client_order_id: str, request_id: str) -> str:
    return f"amend:{client_order_id}:{request_id}"


def amendment_id(client_order_id: str, number: int) -> str:
    """The order's ``number``-th approved amendment (from 1): deterministic, applied once by execution."""
    return f"{client_order_id}:{number}"


def protective_decision_id(account_id: str, exchange: str, symbol: str, opened_at: int, trigger: str) -> str:
    return f"protective:{account_id}:{exchange}:{symbol}:{opened_at}:{trigger}"


@dataclass(frozen=True, slots=True)
class SizingContext:
    """The numbers sizing reads besides the book: equity with the signal's symbol at its price."""

    method: Sizing
    equity: Decimal
    atr: Decimal | None
    returns_stdev: Decimal | None


def symbol_problem(exchange: str, symbol: str, book: AccountBook, known_symbols: frozenset[str] | None) -> Rejection | None:
    """An order on ``exchange``/``symbol`` for ``book``'s account: the account's exchange, a
    BASE/QUOTE symbol, and one of the exchange's markets where they are known."""
    if exchange != book.exchange:
        return Rejection.of(reasons.UNKNOWN_SYMBOL, f"account {book.account_id} trades on {book.exchange}, not {exchange}",
                            exchange=exchange, account_exchange=book.exchange)
    try:
        split_symbol(symbol)
    except ValueError:
        return Rejection.of(reasons.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not BASE/QUOTE", symbol=symbol)
    if known_symbols is not None and symbol not in known_symbols:
        return Rejection.of(reasons.UNKNOWN_SYMBOL, f"{exchange} has no market {symbol}", symbol=symbol,
                            exchange=exchange)
    return None


def from_signal(signal: Signal, book: AccountBook, mark: Decimal | None, rules: MarketRules,
                sizing: SizingContext | None) -> OrderRequest | Rejection:
    """The order a signal asks for (market, at the signal's event time), or why there is none."""
    price = signal.price if signal.price is not None else mark
    if signal.quantity is not None and signal.quantity <= 0:
        return Rejection.of(reasons.INVALID_QUANTITY, f"quantity must be positive, got {text(signal.quantity)}",
                            quantity=signal.quantity)
    if price is not None and price <= 0:
        return Rejection.of(reasons.NO_PRICE, f"the signal's price must be positive, got {text(price)}", price=price)
    if price is None:
        return Rejection.of(reasons.NO_PRICE, f"no price for {signal.symbol}: the signal has none and no trade or "
                                              "candle of it was seen yet", symbol=signal.symbol)

    def order(side: str, quantity: Decimal | None = None, **changes) -> OrderRequest:
        # Built once with its final fields (dataclasses.replace of a request was a tenth of a decision).
        return OrderRequest(decision_id=signal_decision_id(signal.signal_id),
                            client_order_id=client_order_id_for_signal(signal.signal_id), account_id=signal.account_id,
                            exchange=signal.exchange, symbol=signal.symbol, side=side, order_type="market",
                            ts_event=signal.ts_event, quantity=quantity, origin="signal", signal_id=signal.signal_id,
                            strategy_id=signal.strategy_id, decision_price=price, **changes)

    if signal.intent == "exit":
        position = book.position(signal.symbol)
        return _closing(order("buy"), position, book)
    if signal.intent == "target":
        if signal.target_quantity is None:
            return Rejection.of(reasons.INVALID_ORDER, "intent target needs target_quantity")
        return _towards(order("buy"), book.position(signal.symbol), book, signal.target_quantity)
    side = "buy" if signal.intent == "enter_long" else "sell"
    if signal.quantity is not None:
        return order(side, signal.quantity)
    assert sizing is not None, "entries without quantity need a sizing context"
    free_cash = book.free_quote(split_symbol(signal.symbol)[1], lambda s: price if s == signal.symbol else None)
    stats = book.stats.get(signal.strategy_id)
    inputs = SizingInputs(price=price, equity=sizing.equity, free_cash=max(ZERO, free_cash), atr=sizing.atr,
                          returns_stdev=sizing.returns_stdev,
                          win_rate=stats.win_rate if stats else None, payoff_ratio=stats.payoff_ratio if stats else None,
                          closed_trades=stats.closed if stats else 0)
    numbers = {"method": sizing.method.method, "equity": sizing.equity, "free_cash": inputs.free_cash}
    try:
        size = size_entry(sizing.method, inputs, side, rules.quantity_step)
    except BelowMinimumSize as exc:
        return Rejection.of(reasons.BELOW_MINIMUM_SIZE, str(exc), **numbers, price=price, step=rules.quantity_step)
    except SizingError as exc:
        return Rejection.of(reasons.SIZING_FAILED, str(exc), **numbers)
    # An entry too small to ever fill is refused here, by the rule the backtest skips it with.
    minimums = EntryMinimums(rules.quantity_step, rules.min_amount, rules.min_cost)
    short = below_minimum(size, price, minimums, taker_fee=book.config.fees.taker)
    if short is not None:
        return Rejection.of(reasons.BELOW_MINIMUM_SIZE, f"{sizing.method.method}: {short.message}", **numbers,
                            quote_quantity=size.quote, quantity=size.quantity, price=price,
                            step=rules.quantity_step, min_amount=rules.min_amount, min_cost=rules.min_cost)
    return order(side, size.quantity, quote_quantity=size.quote)


def _open_quantity(position: Position, book: AccountBook) -> Decimal:
    """The position less what reduce-only orders already on their way will take off it."""
    pending = book.pending_exit_quantity(position.symbol)
    if position.quantity > 0:
        return max(ZERO, position.quantity - pending)
    return min(ZERO, position.quantity + pending)


def _closing(base: OrderRequest, position: Position, book: AccountBook) -> OrderRequest | Rejection:
    remaining = _open_quantity(position, book)
    if remaining == 0:
        return Rejection.of(reasons.NOTHING_TO_EXIT, f"no open {base.symbol} position to exit (as risk knows it)",
                            position=position.quantity)
    return replace(base, side="sell" if remaining > 0 else "buy", quantity=abs(remaining), reduce_only=True)


def _towards(base: OrderRequest, position: Position, book: AccountBook, target: Decimal) -> OrderRequest | Rejection:
    current = _open_quantity(position, book)
    delta = target - current
    if delta == 0:
        return Rejection.of(reasons.NOTHING_TO_EXIT, f"the {base.symbol} position is already {text(target)}",
                            position=current, target=target)
    reduce_only = current != 0 and abs(target) < abs(current) and (target == 0 or (target > 0) == (current > 0))
    return replace(base, side="buy" if delta > 0 else "sell", quantity=abs(delta), reduce_only=reduce_only)


def manual(account_id: str, request_id: str, exchange: str, symbol: str, side: str, order_type: str,
           quantity: Decimal, limit_price: Decimal | None, ts_event: int, mark: Decimal | None) -> OrderRequest | Rejection:
    """An operator's order (POST /v1/orders); ``ts_event`` is the time of the request."""
    if quantity <= 0:
        return Rejection.of(reasons.INVALID_QUANTITY, f"quantity must be positive, got {text(quantity)}",
                            quantity=quantity)
    if order_type == "limit" and (limit_price is None or limit_price <= 0):
        return Rejection.of(reasons.INVALID_ORDER, "a limit order needs a positive limit_price",
                            limit_price=limit_price)
    if order_type == "market" and limit_price is not None:
        return Rejection.of(reasons.INVALID_ORDER, "a market order takes no limit_price", limit_price=limit_price)
    return OrderRequest(decision_id=manual_decision_id(account_id, request_id),
                        client_order_id=client_order_id_for_manual(account_id, request_id), account_id=account_id,
                        exchange=exchange, symbol=symbol, side=side, order_type=order_type, ts_event=ts_event,
                        quantity=quantity, limit_price=limit_price if order_type == "limit" else None, origin="manual",
                        decision_price=limit_price if order_type == "limit" else mark)


def protective_exit(book: AccountBook, position: Position, trigger: str, price: Decimal, ts_event: int,
                    strategy_id: str) -> OrderRequest:
    """The reduce-only market exit of the whole position, one per position (its open time) and trigger."""
    quantity = _open_quantity(position, book)
    return OrderRequest(
        decision_id=protective_decision_id(book.account_id, position.exchange, position.symbol, position.opened_at,
                                           trigger),
        client_order_id=client_order_id_for_protective_exit(book.account_id, position.exchange, position.symbol,
                                                            position.opened_at, trigger),
        account_id=book.account_id, exchange=position.exchange, symbol=position.symbol,
        side="sell" if position.quantity > 0 else "buy", order_type="market", ts_event=ts_event,
        quantity=abs(quantity), reduce_only=True, origin="protective", strategy_id=strategy_id, decision_price=price)


def amendment(tracked: TrackedOrder, decision_id: str, quantity: Decimal | None, limit_price: Decimal | None,
              ts_event: int) -> OrderRequest | Rejection:
    """The open order as it would be amended, as a request for the gate (the same checks as a new
    order of that size and price), or why the amendment itself is invalid."""
    order = tracked.order
    if quantity is not None:
        if order.quantity is None:
            return Rejection.of(reasons.INVALID_ORDER, f"order {order.client_order_id} is sized in the quote currency: "
                                                       "its quantity cannot change")
        if quantity <= 0:
            return Rejection.of(reasons.INVALID_QUANTITY, f"quantity must be positive, got {text(quantity)}",
                                quantity=quantity)
    if limit_price is not None:
        if order.order_type != "limit":
            return Rejection.of(reasons.INVALID_ORDER, f"order {order.client_order_id} is a market order: it has no "
                                                       "limit price", limit_price=limit_price)
        if limit_price <= 0:
            return Rejection.of(reasons.INVALID_ORDER, f"limit_price must be positive, got {text(limit_price)}",
                                limit_price=limit_price)
    new_quantity = quantity if quantity is not None else order.quantity
    new_price = limit_price if limit_price is not None else order.limit_price
    if new_quantity == order.quantity and new_price == order.limit_price:
        return Rejection.of(reasons.INVALID_ORDER, f"order {order.client_order_id} already has quantity "
                                                   f"{text(order.quantity)} and limit price {text(order.limit_price)}",
                            quantity=order.quantity, limit_price=order.limit_price)
    filled = max(tracked.filled_quantity, tracked.applied_quantity)
    if new_quantity is not None and new_quantity <= filled:
        return Rejection.of(reasons.INVALID_QUANTITY, f"quantity {text(new_quantity)} must exceed the "
                                                      f"{text(filled)} already filled", quantity=new_quantity,
                            filled=filled)
    return OrderRequest(decision_id=decision_id, client_order_id=order.client_order_id, account_id=order.account_id,
                        exchange=order.exchange, symbol=order.symbol, side=order.side, order_type=order.order_type,
                        ts_event=ts_event, quantity=new_quantity, quote_quantity=order.quote_quantity,
                        limit_price=new_price, reduce_only=order.reduce_only, origin=order.origin,
                        signal_id=order.signal_id, strategy_id=order.strategy_id,
                        decision_price=new_price if order.order_type == "limit" else order.decision_price)
