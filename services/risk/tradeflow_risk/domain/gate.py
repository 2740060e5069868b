"""The gate: every order request passes the same checks, in this order (:data:`CHECK_ORDER`).

1. ``account_state``: a halted account (kill switch, or a loss limit with action halt) refuses
   everything; a reducing one refuses what does not reduce a position.
2. ``cooldown``: after ``cooldown_losing_trades`` losing trades in a row, entries wait
   ``cooldown_minutes`` from the last loss (event time).
3. ``trading_hours``: the instrument's market calendar is open at the order's event time.
4. ``max_orders_per_minute``: approved orders with event time in the last 60 s, this one included.
5. ``max_open_orders``: open orders, this one included.
6. ``precision``: the quantity cut down to the market's amount step, then at least its minimum
   amount and minimum cost; a limit price on the price step.
7. ``max_order_notional``; 8. ``max_position_notional`` (the symbol's exposure: position plus
   open orders, plus this order); 9. ``max_gross_exposure`` (every symbol's exposure, plus this
   order); 10. ``max_correlated_exposure`` (the symbols whose returns correlate with this one at
   the threshold or more, plus this order).
11. ``free_balance``: a buy needs the quote currency not reserved by open buys (notional plus
    the taker fee; a quote-sized buy its amount), a sell the base not promised to open sells.

Checks that cannot refuse a safe order skip it: reduce-only orders skip the cooldown and the
exposure checks (7-10); protective exits also skip the order counters (4, 5), so a stop is never
throttled. A check passes an order that lands exactly on its limit. The first failing check
decides; its rejection carries the numbers that broke it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from tradeflow_trading.money import ONE, ZERO, is_multiple, mul, quantize_down

from tradeflow_risk.domain import reasons
from tradeflow_risk.domain.account import NS_PER_SECOND, AccountBook
from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.domain.market_rules import MarketRules
from tradeflow_risk.domain.reasons import Rejection, text
from tradeflow_risk.domain.requests import OrderRequest

CHECK_ORDER = ("account_state", "cooldown", "trading_hours", "max_orders_per_minute", "max_open_orders", "precision",
               "max_order_notional", "max_position_notional", "max_gross_exposure", "max_correlated_exposure",
               "free_balance")
NS_PER_MINUTE = 60 * NS_PER_SECOND


class Marks(Protocol):
    def mark(self, exchange: str, symbol: str) -> Decimal | None: ...

    def correlated(self, exchange: str, symbol: str, candidates, threshold: Decimal) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class GateContext:
    limits: RiskLimits
    rules: MarketRules
    market: Marks
    market_open: bool | None = None  # None: no calendar known for the instrument (24/7)
    calendar: str = ""


def _account_state(request: OrderRequest, book: AccountBook, ctx: GateContext) -> Rejection | None:
    control = book.control
    if control.kill_switch:
        return Rejection.of(reasons.KILL_SWITCH, f"the kill switch of {book.account_id} is engaged "
                                                 f"({control.kill_switch_reason or 'no reason given'})",
                            state="halted")
    if not control.reconciled:
        waiting = control.reconciliation_message or "waiting for execution's first reconciliation"
        return Rejection.of(reasons.ACCOUNT_NOT_RECONCILED, f"live account {book.account_id} is not reconciled with "
                                                            f"the exchange ({control.reconciliation}): {waiting}",
                            state="halted", reconciliation=control.reconciliation)
    state = control.state
    if state == "halted":
        return Rejection.of(reasons.ACCOUNT_HALTED, f"account {book.account_id} is halted: "
                                                    + "; ".join(control.reasons()), state=state)
    if state == "reducing" and not request.reduces(book.position(request.symbol)):
        return Rejection.of(reasons.ACCOUNT_REDUCING, f"account {book.account_id} is reducing: only orders that "
                                                      "reduce a position pass", state=state,
                            position=book.position(request.symbol).quantity)
    return None


def _cooldown(request: OrderRequest, book: AccountBook, ctx: GateContext) -> Rejection | None:
    limit = ctx.limits.cooldown_losing_trades
    if request.reduce_only or limit is None or book.loss_streak < limit:
        return None
    until = book.last_loss_ts + ctx.limits.cooldown_minutes * NS_PER_MINUTE
    if request.ts_event < until:
        return Rejection.of(reasons.COOLDOWN, f"{book.loss_streak} losing trades in a row (cooldown after {limit}): "
                                              f"entries wait {ctx.limits.cooldown_minutes} min from the last loss",
                            losing_trades=book.loss_streak, limit=limit, until_ns=until)
    return None


def _trading_hours(request: OrderRequest, book: AccountBook, ctx: GateContext) -> Rejection | None:
    if not ctx.limits.enforce_trading_hours or ctx.market_open is None or ctx.market_open:
        return None
    return Rejection.of(reasons.MARKET_CLOSED, f"{request.exchange} {request.symbol}: its market ({ctx.calendar}) "
                                               "is closed at the order's time", calendar=ctx.calendar,
                        ts_event=request.ts_event)


def _orders_per_minute(request: OrderRequest, book: AccountBook, ctx: GateContext) -> Rejection | None:
    limit = ctx.limits.max_orders_per_minute
    if request.origin == "protective" or limit is None:
        return None
    count = book.orders_in_window(request.ts_event) + 1
    if count > limit:
        return Rejection.of(reasons.MAX_ORDERS_PER_MINUTE, f"{count} orders within a minute exceed "
                                                           f"max_orders_per_minute {limit}", orders=count, limit=limit)
    return None


def _open_orders(request: OrderRequest, book: AccountBook, ctx: GateContext) -> Rejection | None:
    limit = ctx.limits.max_open_orders
    if request.origin == "protective" or limit is None:
        return None
    count = len(book.open_orders()) + 1
    if count > limit:
        return Rejection.of(reasons.MAX_OPEN_ORDERS, f"{count} open orders exceed max_open_orders {limit}",
                            open_orders=count, limit=limit)
    return None


def _precision(request: OrderRequest, book: AccountBook, ctx: GateContext) -> OrderRequest | Rejection:
    rules = ctx.rules
    mark = ctx.market.mark(request.exchange, request.symbol)
    if request.limit_price is not None and rules.price_step is not None and not is_multiple(request.limit_price,
                                                                                            rules.price_step):
        return Rejection.of(reasons.PRICE_PRECISION, f"limit price {text(request.limit_price)} is not a multiple of "
                                                     f"the price step {text(rules.price_step)}",
                            limit_price=request.limit_price, price_step=rules.price_step)
    if request.quantity is not None:
        quantity = quantize_down(request.quantity, rules.quantity_step)
        minimum = rules.min_amount
        if quantity <= 0 or (minimum is not None and quantity < minimum):
            return Rejection.of(reasons.BELOW_MIN_QUANTITY,
                                f"quantity {text(request.quantity)} (cut to the step {text(rules.quantity_step)}: "
                                f"{text(quantity)}) is below the minimum {text(minimum or rules.quantity_step)}",
                                quantity=request.quantity, step=rules.quantity_step, min_amount=minimum)
        request = request.with_quantity(quantity)
    notional = request.notional(mark)
    if rules.min_cost is not None and notional is not None and notional < rules.min_cost:
        return Rejection.of(reasons.BELOW_MIN_NOTIONAL, f"notional {text(notional)} is below the market's minimum "
                                                        f"{text(rules.min_cost)}", notional=notional,
                            min_cost=rules.min_cost)
    return request


def _need_notional(request: OrderRequest, ctx: GateContext) -> Decimal | Rejection:
    notional = request.notional(ctx.market.mark(request.exchange, request.symbol))
    if notional is None:
        return Rejection.of(reasons.NO_PRICE, f"no price to value the {request.symbol} order at")
    return notional


def _order_notional(request: OrderRequest, book: AccountBook, ctx: GateContext, notional: Decimal) -> Rejection | None:
    limit = ctx.limits.max_order_notional
    if limit is not None and notional > limit:
        return Rejection.of(reasons.MAX_ORDER_NOTIONAL, f"order notional {text(notional)} exceeds max_order_notional "
                                                        f"{text(limit)}", notional=notional, limit=limit)
    return None


def _position_notional(request: OrderRequest, book: AccountBook, ctx: GateContext, notional: Decimal) -> Rejection | None:
    limit = ctx.limits.position_limit(request.symbol)
    if limit is None:
        return None
    current = book.exposure(request.symbol, ctx.market.mark(request.exchange, request.symbol))
    if current + notional > limit:
        return Rejection.of(reasons.MAX_POSITION_NOTIONAL,
                            f"{request.symbol} exposure {text(current)} + order {text(notional)} exceeds "
                            f"max_position_notional {text(limit)}", exposure=current, notional=notional, limit=limit)
    return None


def _gross_exposure(request: OrderRequest, book: AccountBook, ctx: GateContext, notional: Decimal) -> Rejection | None:
    limit = ctx.limits.max_gross_exposure
    if limit is None:
        return None
    current = book.gross_exposure(lambda symbol: ctx.market.mark(request.exchange, symbol))
    if current + notional > limit:
        return Rejection.of(reasons.MAX_GROSS_EXPOSURE, f"gross exposure {text(current)} + order {text(notional)} "
                                                        f"exceeds max_gross_exposure {text(limit)}",
                            exposure=current, notional=notional, limit=limit)
    return None


def _correlated_exposure(request: OrderRequest, book: AccountBook, ctx: GateContext,
                         notional: Decimal) -> Rejection | None:
    limit = ctx.limits.max_correlated_exposure
    if limit is None:
        return None
    group = ctx.market.correlated(request.exchange, request.symbol, book.exposed_symbols(),
                                  ctx.limits.correlation_threshold)
    current = sum((book.exposure(s, ctx.market.mark(request.exchange, s)) for s in group), ZERO)
    if current + notional > limit:
        return Rejection.of(reasons.MAX_CORRELATED_EXPOSURE,
                            f"exposure {text(current)} of the group {', '.join(group)} (returns correlated at "
                            f"{text(ctx.limits.correlation_threshold)} or more) + order {text(notional)} exceeds "
                            f"max_correlated_exposure {text(limit)}", exposure=current, notional=notional,
                            limit=limit, group=",".join(group))
    return None


def _free_balance(request: OrderRequest, book: AccountBook, ctx: GateContext, notional: Decimal) -> Rejection | None:
    if request.side == "buy":
        free = book.free_quote(request.quote, lambda symbol: ctx.market.mark(request.exchange, symbol))
        need = notional if request.quote_quantity is not None else mul(notional, ONE + book.config.fees.taker)
        currency = request.quote
    else:
        free = book.free_base(request.base)
        need = request.quantity or ZERO
        currency = request.base
    if need > free:
        return Rejection.of(reasons.INSUFFICIENT_BALANCE, f"needs {text(need)} {currency}, {text(free)} free "
                                                          "(balance less open orders)", need=need, free=free,
                            currency=currency)
    return None


def check(request: OrderRequest, book: AccountBook, ctx: GateContext) -> OrderRequest | Rejection:
    """The approved request (quantity cut to the market's step) or the first rejection."""
    for simple in (_account_state, _cooldown, _trading_hours, _orders_per_minute, _open_orders):
        rejection = simple(request, book, ctx)
        if rejection is not None:
            return rejection
    normalized = _precision(request, book, ctx)
    if isinstance(normalized, Rejection):
        return normalized
    request = normalized
    notional = _need_notional(request, ctx)
    if isinstance(notional, Rejection):
        return notional
    if not request.reduce_only:
        for exposure_check in (_order_notional, _position_notional, _gross_exposure, _correlated_exposure):
            rejection = exposure_check(request, book, ctx, notional)
            if rejection is not None:
                return rejection
    rejection = _free_balance(request, book, ctx, notional)
    return rejection if rejection is not None else request


def check_amendment(request: OrderRequest, book: AccountBook, ctx: GateContext) -> OrderRequest | Rejection:
    """An open order as amended, through :func:`check` as if it were new: the book is looked at
    without the order's current version (its exposure, reserved cash and open-order slot are the
    amended order's now), so the amended size and price meet every limit a new order would."""
    current = book.orders.pop(request.client_order_id, None)
    try:
        return check(request, book, ctx)
    finally:
        if current is not None:
            book.orders[request.client_order_id] = current
