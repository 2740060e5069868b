"""What risk knows of one account: positions, cash, orders in flight, recent orders, closed
trades, and its trading state (kill switch and breaches).

Positions and balances are the fold of the account's fills (tradeflow_trading.positions), in
the order they arrived. An order risk approved is *tracked* from its decision until it is
**settled**: terminal on exec.orders.v1 *and* every fill it reported applied (the terminal
event and the fills travel on different topics, so either may come first). Until then it
counts as open for exposure and free balance, and a tracked MARKET order blocks the account's
next signals (docs/adr/0018, the determinism rule).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import msgspec
from tradeflow.messages import Fill, Order, OrderEvent
from tradeflow.time import NS_PER_SECOND
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.money import ONE, ZERO, mul
from tradeflow_trading.orders import TERMINAL
from tradeflow_trading.positions import Balances, Position, split_symbol

RATE_WINDOW_NS = 60 * NS_PER_SECOND
NS_PER_DAY = 86_400 * NS_PER_SECOND

TradingState = Literal["active", "reducing", "halted"]


@dataclass(slots=True)
class TrackedOrder:
    """An approved order and what exec.orders.v1 and exec.fills.v1 said of it so far."""

    order: Order
    status: str = "submitted"
    seq: int = 0
    filled_quantity: Decimal = ZERO  # cumulative, from exec.orders.v1
    applied_quantity: Decimal = ZERO  # from the fills applied to the position
    applied_notional: Decimal = ZERO

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def settled(self) -> bool:
        return self.terminal and self.applied_quantity >= self.filled_quantity

    @property
    def is_market(self) -> bool:
        return self.order.order_type == "market"

    def open_quantity(self) -> Decimal | None:
        """Base quantity still to reach the position (None: a quote-sized order not yet terminal)."""
        if self.terminal:
            return max(ZERO, self.filled_quantity - self.applied_quantity)
        if self.order.quantity is None:
            return None
        return max(ZERO, self.order.quantity - self.applied_quantity)

    def open_notional(self, price: Decimal | None) -> Decimal:
        """Quote value still to reach the position, at the order's own price (limit or decision) or ``price``."""
        quantity = self.open_quantity()
        if quantity is None:  # quote-sized: what is left of the amount
            return max(ZERO, (self.order.quote_quantity or ZERO) - self.applied_notional)
        reference = self.order.limit_price or self.order.decision_price or price
        return mul(quantity, reference) if reference is not None else ZERO


def amended_order(order: Order, quantity: Decimal | None, limit_price: Decimal | None) -> Order:
    """``order`` with a new quantity and/or limit price (None: unchanged)."""
    changes = {}
    if quantity is not None and order.quantity is not None:
        changes["quantity"] = quantity
    if limit_price is not None and order.order_type == "limit":
        changes["limit_price"] = limit_price
    return msgspec.structs.replace(order, **changes) if changes else order


@dataclass(frozen=True, slots=True)
class Breach:
    """A loss limit that broke, and what it does to the account until cleared."""

    reason: str  # max_daily_loss, max_drawdown_pct
    action: Literal["halt", "reduce"]
    message: str
    ts_event: int


@dataclass(slots=True)
class AccountControl:
    """The account's trading state, persisted: kill switch, breaches, the day and the equity peak."""

    kill_switch: bool = False
    kill_switch_reason: str = ""
    kill_switch_auto: bool = False  # engaged by a breach (a resume disengages it), not by an operator
    breaches: dict[str, Breach] = field(default_factory=dict)
    day: int | None = None  # UTC days since the epoch of the account's clock
    day_start_equity: Decimal | None = None
    equity_peak: Decimal | None = None
    # A live account's reconciliation as execution last reported it (exec.accounts.v1): pending,
    # agreed or mismatch. Only ``agreed`` lets its orders pass; ``live`` comes from the settings.
    reconciliation: str = "pending"
    reconciliation_message: str = ""
    live: bool = False

    @property
    def reconciled(self) -> bool:
        return not self.live or self.reconciliation == "agreed"

    @property
    def state(self) -> TradingState:
        if self.kill_switch or not self.reconciled or any(b.action == "halt" for b in self.breaches.values()):
            return "halted"
        if self.breaches:
            return "reducing"
        return "active"

    def reasons(self) -> list[str]:
        reasons = [f"kill_switch: {self.kill_switch_reason}".rstrip(": ")] if self.kill_switch else []
        if not self.reconciled:
            code = "reconciliation_mismatch" if self.reconciliation == "mismatch" else "account_not_reconciled"
            reasons.append(f"{code}: {self.reconciliation_message}".rstrip(": "))
        return reasons + [f"{b.reason}: {b.message}" for b in self.breaches.values()]


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A position that went flat (or crossed zero): its P&L after the quote-currency fees."""

    symbol: str
    strategy_id: str
    pnl: Decimal
    ts_event: int


@dataclass(slots=True)
class TradeStats:
    """Closed trades of one strategy instance (capped Kelly reads them)."""

    wins: int = 0
    losses: int = 0
    won: Decimal = ZERO
    lost: Decimal = ZERO

    @property
    def closed(self) -> int:
        return self.wins + self.losses

    def record(self, pnl: Decimal) -> None:
        if pnl > 0:
            self.wins, self.won = self.wins + 1, self.won + pnl
        else:
            self.losses, self.lost = self.losses + 1, self.lost - pnl

    @property
    def win_rate(self) -> Decimal | None:
        return Decimal(self.wins) / Decimal(self.closed) if self.closed else None

    @property
    def payoff_ratio(self) -> Decimal | None:
        if not self.wins or not self.losses or self.lost == 0:
            return None
        return (self.won / self.wins) / (self.lost / self.losses)


@dataclass(slots=True)
class _OpenTrade:
    realized: Decimal
    fees: Decimal
    strategy_id: str


@dataclass(slots=True)
class Watermark:
    """Best and worst trade price since a position opened (trailing stops)."""

    opened_at: int
    high: Decimal
    low: Decimal


class AccountBook:
    """One account as risk knows it; mutated only by the service layer under its lock."""

    def __init__(self, config: AccountConfig, equity_currency: str) -> None:
        self.config = config
        self.account_id = config.id
        self.exchange = config.exchange
        self.equity_currency = equity_currency
        self.positions: dict[str, Position] = {}
        self.balances = Balances.of(config.balances)
        self.orders: dict[str, TrackedOrder] = {}
        self.order_times: list[int] = []  # ts_event of rate-counted approved orders, sorted
        self.control = AccountControl()
        self.version = 0  # the database row's version this book reflects
        self.clock = 0  # newest event time seen for the account (ns)
        self.loss_streak = 0
        self.last_loss_ts = 0
        self.stats: dict[str, TradeStats] = {}
        self.watermarks: dict[str, Watermark] = {}
        self._open_trades: dict[str, _OpenTrade] = {}

    # --- folds ---------------------------------------------------------------------------------

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(self.account_id, self.exchange, symbol)

    def apply_fill(self, fill: Fill) -> ClosedTrade | None:
        """Apply a (new) fill: position, cash, its order's progress; the trade it closed, if any."""
        symbol = fill.symbol
        before = self.positions.get(symbol) or Position(fill.account_id, fill.exchange, symbol)
        after = before.apply(fill)
        self.positions[symbol] = after
        self.balances = self.balances.apply(fill)
        self.advance_clock(fill.ts_event)
        tracked = self.orders.get(fill.client_order_id)
        if tracked is not None:
            tracked.applied_quantity += fill.quantity
            tracked.applied_notional += mul(fill.quantity, fill.price)
            if tracked.settled:
                del self.orders[fill.client_order_id]
        _, quote = split_symbol(symbol)
        closed = None
        if not before.is_flat and (after.is_flat or (after.quantity > 0) != (before.quantity > 0)):
            opened = self._open_trades.pop(symbol, None)
            if opened is not None:
                pnl = (after.realized_pnl - opened.realized) - (after.fees.get(quote, ZERO) - opened.fees)
                closed = ClosedTrade(symbol, opened.strategy_id, pnl, fill.ts_event)
                self._record(closed)
        if not after.is_flat and symbol not in self._open_trades:
            # The trade's costs start with the fee of the fill that opened it (when it opens from
            # flat; a fill that crosses zero pays its fee to the trade it closed).
            opening_fee = fill.fee if before.is_flat and fill.fee_currency == quote else ZERO
            self._open_trades[symbol] = _OpenTrade(after.realized_pnl, after.fees.get(quote, ZERO) - opening_fee,
                                                   fill.strategy_id)
        if after.is_flat:
            self.watermarks.pop(symbol, None)
        return closed

    def _record(self, trade: ClosedTrade) -> None:
        self.stats.setdefault(trade.strategy_id, TradeStats()).record(trade.pnl)
        if trade.pnl < 0:
            self.loss_streak += 1
            self.last_loss_ts = trade.ts_event
        else:
            self.loss_streak = 0

    def apply_order_event(self, event: OrderEvent) -> bool:
        """Apply a transition of a tracked order once (by ``seq``); False when not new or not ours."""
        tracked = self.orders.get(event.client_order_id)
        if tracked is None or event.seq <= tracked.seq:
            return False
        tracked.status, tracked.seq = event.status, event.seq
        tracked.filled_quantity = max(tracked.filled_quantity, event.filled_quantity)
        if event.reason == "amended" or event.reason.startswith("amend_refused"):
            # Execution's word on an amendment: the order's size and price as they now stand
            # (a refused one puts back what an approval may have counted ahead of it).
            tracked.order = amended_order(tracked.order, event.quantity, event.limit_price)
        # No clock advance: an order event's time is the executor's clock, not market time.
        if tracked.settled:
            del self.orders[event.client_order_id]
        return True

    def track(self, order: Order) -> None:
        """An approved order: open from now on; counted by the rate limit unless protective."""
        self.orders[order.client_order_id] = TrackedOrder(order)
        if order.origin != "protective":
            bisect.insort(self.order_times, order.ts_event)
            # Only the minute before the newest order matters to the rate limit (event time).
            cut = bisect.bisect_left(self.order_times, self.order_times[-1] - RATE_WINDOW_NS)
            if cut:
                del self.order_times[:cut]
        self.advance_clock(order.ts_event)

    def advance_clock(self, ts_event: int) -> None:
        if ts_event > self.clock:
            self.clock = ts_event

    # --- what the checks read ------------------------------------------------------------------

    def blocking_order(self) -> str | None:
        """A market order not yet settled: the account's next signals wait for it."""
        for client_order_id, tracked in self.orders.items():
            if tracked.is_market:
                return client_order_id
        return None

    def open_orders(self) -> list[TrackedOrder]:
        return [t for t in self.orders.values() if not t.terminal]

    def orders_in_window(self, ts_event: int) -> int:
        """Approved orders with event time in (ts - 60 s, ts]."""
        return bisect.bisect_right(self.order_times, ts_event) - bisect.bisect_right(
            self.order_times, ts_event - RATE_WINDOW_NS)

    def pending_exit_quantity(self, symbol: str) -> Decimal:
        """Base quantity of reduce-only orders of ``symbol`` still on their way."""
        total = ZERO
        for tracked in self.orders.values():
            if tracked.order.symbol == symbol and tracked.order.reduce_only:
                total += tracked.open_quantity() or ZERO
        return total

    def exposure(self, symbol: str, mark: Decimal | None) -> Decimal:
        """Position at ``mark`` (its average price without one) plus open orders that add to it."""
        position = self.positions.get(symbol)
        total = ZERO
        if position is not None and not position.is_flat:
            total = position.notional(mark if mark is not None else position.average_price)
        for tracked in self.orders.values():
            if tracked.order.symbol == symbol and not tracked.order.reduce_only:
                total += tracked.open_notional(mark)
        return total

    def exposed_symbols(self) -> set[str]:
        symbols = {s for s, p in self.positions.items() if not p.is_flat}
        symbols.update(t.order.symbol for t in self.orders.values() if not t.order.reduce_only)
        return symbols

    def gross_exposure(self, mark_of: Callable[[str], Decimal | None]) -> Decimal:
        return sum((self.exposure(s, mark_of(s)) for s in self.exposed_symbols()), ZERO)

    def free_quote(self, quote: str, mark_of: Callable[[str], Decimal | None]) -> Decimal:
        """Cash of ``quote`` not reserved by open buys (their notional plus the taker fee)."""
        reserved = ZERO
        for tracked in self.orders.values():
            order = tracked.order
            if order.side != "buy" or split_symbol(order.symbol)[1] != quote:
                continue
            open_quantity = tracked.open_quantity()
            if open_quantity is None:
                reserved += tracked.open_notional(None)
            else:
                reserved += mul(tracked.open_notional(mark_of(order.symbol)), ONE + self.config.fees.taker)
        return self.balances.get(quote) - reserved

    def free_base(self, base: str) -> Decimal:
        """Holdings of ``base`` not promised to open sells."""
        promised = ZERO
        for tracked in self.orders.values():
            if tracked.order.side == "sell" and split_symbol(tracked.order.symbol)[0] == base:
                promised += tracked.open_quantity() or ZERO
        return self.balances.get(base) - promised

    def equity(self, mark_of: Callable[[str], Decimal | None]) -> Decimal:
        """Cash plus holdings in the equity currency: each currency at the mark of
        ``CURRENCY/EQUITY`` (or the position's average price); currencies without either count 0."""
        total = ZERO
        for currency, amount in self.balances.amounts.items():
            if amount == 0:
                continue
            if currency == self.equity_currency:
                total += amount
                continue
            symbol = f"{currency}/{self.equity_currency}"
            price = mark_of(symbol)
            if price is None:
                position = self.positions.get(symbol)
                price = position.average_price if position is not None and not position.is_flat else None
            if price is not None:
                total += mul(amount, price)
        return total

    def strategy_of(self, symbol: str) -> str:
        """The strategy instance whose fill opened the current position in ``symbol`` ('' if unknown)."""
        opened = self._open_trades.get(symbol)
        return opened.strategy_id if opened is not None else ""

    def exiting(self, symbol: str) -> bool:
        """A protective exit of ``symbol`` is on its way."""
        return any(t.order.symbol == symbol and t.order.origin == "protective" for t in self.orders.values())

    def held_symbols(self) -> Iterable[str]:
        return (s for s, p in self.positions.items() if not p.is_flat)

    @property
    def state(self) -> TradingState:
        return self.control.state
