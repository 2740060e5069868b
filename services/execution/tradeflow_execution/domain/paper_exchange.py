"""The paper exchange: every open paper order matched against md.ticks.v1 in the log's order.

Pure (no Kafka, no database, no clock). Determinism is the point (docs/adr/0019): the same
trades give the same fills and fill ids whenever the orders arrive and whatever restarts:

- A symbol's market data is its trades **in the order of the md.ticks.v1 log** (its
  partition's offsets). Ingest publishes each symbol in event-time order, ties in ``ts_recv``
  order, so this is the event-time order the design means, and unlike a sort of what has
  arrived so far it cannot change when a trade arrives late.
- An order meets the trades of its symbol with an event time at or after its ``ts_event``,
  each once, in that order (:func:`tradeflow_trading.matching.match_trade` says what each does).
  Its **cursor** is the offset of the newest trade it has met; a trade at or below the cursor
  (a redelivery after a restart, a trade already met while reading history) is skipped.
- An order that arrives after some of its trades were consumed meets them from the **window**
  of recent trades kept per symbol when that window reaches back past its ``ts_event``
  (:meth:`PaperExchange.covers`); otherwise the caller reads the symbol's trades back from
  md.ticks.v1 and hands them to :meth:`PaperExchange.place` as ``history``.
- Orders of one symbol meet a trade in the order of their ``ts_event``, then client order id.
- A trade that is not valid market data (the candle-builder dead-letters it) fills nothing.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec
from tradeflow.marketdata import tick_rejection_reason
from tradeflow.messages import Order, Tick
from tradeflow_trading.fills import FillRule
from tradeflow_trading.matching import MarketTrade, MatchProgress, match_trade
from tradeflow_trading.money import ZERO, to_decimal

from tradeflow_execution.domain.broker import (
    AmendRefused,
    BrokerStateChanged,
    BrokerUpdate,
    FillUpdate,
    OrderUpdate,
)

PositionOf = Callable[[str, str, str], Decimal]  # (account, exchange, symbol) -> signed quantity
NO_CURSOR = -1


def is_fillable(tick: Tick) -> bool:
    """Valid market data (positive price, side, ids). The rule's "future event time" check is left
    out on purpose: it depends on the wall clock, and paper fills must not."""
    return tick_rejection_reason(tick, now_ns=tick.ts_event) is None


@dataclass(slots=True)
class LoggedTrade:
    """A trade at its place in md.ticks.v1."""

    tick: Tick
    partition: int
    offset: int

    def market_trade(self) -> MarketTrade:
        tick = self.tick
        return MarketTrade(tick.trade_id, to_decimal(tick.price), to_decimal(tick.amount), tick.ts_event)


@dataclass(slots=True)
class _PaperOrder:
    order: Order
    rule: FillRule
    progress: MatchProgress
    cursor: int

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.order.ts_event, self.order.client_order_id)


@dataclass(slots=True)
class _Tape:
    """One symbol: its recent trades (offset order) and its resting orders (meeting order)."""

    window: deque[LoggedTrade] = field(default_factory=deque)
    orders: list[_PaperOrder] = field(default_factory=list)
    descents: int = 0  # neighbours in the window whose event time goes down (0: sorted by event time)

    def append(self, trade: LoggedTrade, max_trades: int, max_span_ns: int) -> None:
        window = self.window
        ts = trade.tick.ts_event
        if window and ts < window[-1].tick.ts_event:
            self.descents += 1
        window.append(trade)
        while len(window) > max_trades or ts - window[0].tick.ts_event > max_span_ns:
            gone = window.popleft()
            if window and window[0].tick.ts_event < gone.tick.ts_event:
                self.descents -= 1

    def since(self, ts_event: int) -> list[LoggedTrade]:
        """The window's trades at or after ``ts_event``, in log order."""
        window = self.window
        if self.descents:
            return [t for t in window if t.tick.ts_event >= ts_event]
        first = bisect.bisect_left(window, ts_event, key=lambda t: t.tick.ts_event)
        return [window[i] for i in range(first, len(window))]


class PaperExchange:
    """The open orders of every paper account, and the trades they meet."""

    def __init__(self, *, position_of: PositionOf, window_trades: int = 500, window_ns: int = 3_600 * 10**9) -> None:
        self._position_of = position_of
        self._window_trades = window_trades
        self._window_ns = window_ns
        self._tapes: dict[tuple[str, str], _Tape] = {}
        self._where: dict[str, tuple[str, str]] = {}  # client order id -> its tape

    # --- placing and restoring ----------------------------------------------------------------

    def covers(self, order: Order) -> bool:
        """Whether the window holds every trade the order must meet that was already consumed:
        it holds a trade older than the order, and every trade of the symbol since."""
        tape = self._tapes.get((order.exchange, order.symbol))
        return tape is not None and bool(tape.window) and tape.window[0].tick.ts_event < order.ts_event

    def place(self, order: Order, rule: FillRule, *, history: Sequence[LoggedTrade] | None = None,
              history_end: int = NO_CURSOR) -> list[BrokerUpdate]:
        """A new order meets the trades already consumed, then rests for the next ones.

        Without ``history`` the window must cover it (:meth:`covers`). ``history`` is the
        symbol's trades read back from md.ticks.v1 (offset order) up to the offset
        ``history_end`` (the end of the partition when it was read).
        """
        if order.client_order_id in self._where:
            raise ValueError(f"order {order.client_order_id} is already on the paper exchange")
        tape = self._tape(order.exchange, order.symbol)
        paper = _PaperOrder(order, rule, MatchProgress(), NO_CURSOR)
        if history is None:
            if not self.covers(order):
                raise ValueError(f"order {order.client_order_id}: the trade window does not reach back to its "
                                 "ts_event; read the history")
            trades = tape.since(order.ts_event)
            end = tape.window[-1].offset
        else:
            trades = [t for t in history if is_fillable(t.tick)]
            end = max(history_end, tape.window[-1].offset if tape.window else NO_CURSOR)
        updates: list[BrokerUpdate] = []
        delta = ZERO
        for trade in trades:
            if trade.offset <= paper.cursor:
                continue
            finished, delta = self._meet(paper, trade, trade.market_trade(), delta, updates)
            if finished:
                return updates
        paper.cursor = max(paper.cursor, end)
        self._rest(tape, paper)
        return updates

    def restore(self, order: Order, rule: FillRule, progress: MatchProgress, cursor: int) -> None:
        """An open order after a restart: it rests again where it was (nothing is matched now)."""
        if order.client_order_id in self._where:
            raise ValueError(f"order {order.client_order_id} is already on the paper exchange")
        self._rest(self._tape(order.exchange, order.symbol), _PaperOrder(order, rule, progress, cursor))

    # --- the market ---------------------------------------------------------------------------

    def on_trade(self, tick: Tick, partition: int, offset: int) -> list[BrokerUpdate]:
        """A trade consumed from md.ticks.v1: kept in the window and met by the resting orders."""
        if not is_fillable(tick):
            return []
        tape = self._tape(tick.exchange, tick.symbol)
        trade = LoggedTrade(tick, partition, offset)
        if self._window_trades:
            tape.append(trade, self._window_trades, self._window_ns)
        if not tape.orders:
            return []
        updates: list[BrokerUpdate] = []
        market_trade: MarketTrade | None = None
        deltas: dict[str, Decimal] = {}  # account -> its position change from this trade's fills
        for paper in list(tape.orders):
            if offset <= paper.cursor:
                continue  # met already (a redelivery, or read in its history)
            if tick.ts_event < paper.order.ts_event:
                paper.cursor = offset
                continue
            if market_trade is None:
                market_trade = trade.market_trade()
            account = paper.order.account_id
            finished, deltas[account] = self._meet(paper, trade, market_trade, deltas.get(account, ZERO), updates)
            if finished:
                self._remove(tape, paper)
        return updates

    # --- requests on resting orders -------------------------------------------------------------

    def cancel(self, client_order_id: str) -> bool:
        """Take a resting order off the book; False when it is not on it."""
        key = self._where.get(client_order_id)
        if key is None:
            return False
        tape = self._tapes[key]
        for paper in tape.orders:
            if paper.order.client_order_id == client_order_id:
                self._remove(tape, paper)
                return True
        return False

    def amend(self, client_order_id: str, *, quantity: Decimal | None = None,
              limit_price: Decimal | None = None) -> Order:
        """A resting order with a new quantity and/or limit price (it keeps its place and fills)."""
        paper = self._find(client_order_id)
        if paper is None:
            raise AmendRefused(f"order {client_order_id} is not resting on the paper exchange")
        order = paper.order
        changes: dict[str, object] = {}
        if quantity is not None:
            if order.quantity is None:
                raise AmendRefused(f"order {client_order_id} is sized in the quote currency; its quantity cannot change")
            if not quantity.is_finite() or quantity <= paper.progress.filled_quantity:
                raise AmendRefused(f"order {client_order_id}: quantity {quantity} must exceed the filled "
                                   f"{paper.progress.filled_quantity}")
            changes["quantity"] = quantity
        if limit_price is not None:
            if order.order_type != "limit":
                raise AmendRefused(f"order {client_order_id} is a market order; it has no limit price")
            if not limit_price.is_finite() or limit_price <= 0:
                raise AmendRefused(f"order {client_order_id}: limit price must be positive, got {limit_price}")
            changes["limit_price"] = limit_price
        paper.order = msgspec.structs.replace(order, **changes)
        return paper.order

    # --- what the service stores -----------------------------------------------------------------

    def is_resting(self, client_order_id: str) -> bool:
        return client_order_id in self._where

    def resting(self, account_id: str) -> frozenset[str]:
        """The client order ids of an account's resting orders."""
        return frozenset(paper.order.client_order_id for tape in self._tapes.values() for paper in tape.orders
                         if paper.order.account_id == account_id)

    def state_of(self, client_order_id: str) -> dict[str, object]:
        """The cursor and arrival of a resting order (stored with it, for :meth:`restore`)."""
        paper = self._find(client_order_id)
        if paper is None:
            return {}
        return {"cursor": paper.cursor, "arrived": paper.progress.arrived}

    # --- internals --------------------------------------------------------------------------------

    def _meet(self, paper: _PaperOrder, trade: LoggedTrade, market_trade: MarketTrade, delta: Decimal,
              updates: list[BrokerUpdate]) -> tuple[bool, Decimal]:
        """``paper`` meets one trade; appends its updates; (finished, the account's position delta)."""
        paper.cursor = trade.offset
        order = paper.order
        position = self._position_of(order.account_id, order.exchange, order.symbol) + delta
        result = match_trade(order, paper.progress, market_trade, paper.rule, position=position)
        if result is None:
            return False, delta
        arrived_now = result.progress.arrived and not paper.progress.arrived
        paper.progress = result.progress
        if arrived_now and result.fill is None and result.end is None:
            updates.append(BrokerStateChanged(order.client_order_id))  # resting from now on: store it
        if result.fill is not None:
            fill = FillRule.to_fill(order, result.fill, trade_id=trade.tick.trade_id, ts_event=trade.tick.ts_event)
            updates.append(FillUpdate(fill, complete=result.complete))
            delta += fill.quantity if fill.side == "buy" else -fill.quantity
        if result.end is not None:
            updates.append(OrderUpdate(order.client_order_id, result.end.status, result.end.ts_event,
                                       reason=result.end.reason))
        return result.finished, delta

    def _tape(self, exchange: str, symbol: str) -> _Tape:
        tape = self._tapes.get((exchange, symbol))
        if tape is None:
            tape = self._tapes[(exchange, symbol)] = _Tape()
        return tape

    def _rest(self, tape: _Tape, paper: _PaperOrder) -> None:
        bisect.insort(tape.orders, paper, key=lambda p: p.sort_key)
        self._where[paper.order.client_order_id] = (paper.order.exchange, paper.order.symbol)

    def _remove(self, tape: _Tape, paper: _PaperOrder) -> None:
        tape.orders.remove(paper)
        self._where.pop(paper.order.client_order_id, None)

    def _find(self, client_order_id: str) -> _PaperOrder | None:
        key = self._where.get(client_order_id)
        if key is None:
            return None
        return next((p for p in self._tapes[key].orders if p.order.client_order_id == client_order_id), None)
