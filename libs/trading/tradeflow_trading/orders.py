"""The order state table (design.md, "Order states") and an order's state as it moves along it.

    submitted ──> accepted ──> partially_filled ──> filled
        │            │               │  ↺ (more fills)
        │            ├──> canceled <─┤
        │            ├──> expired  <─┘
        │            └──> rejected
        ├──> partially_filled / filled    (an exchange may report the fill before the ack)
        └──> rejected / canceled / expired

``filled``, ``canceled``, ``rejected`` and ``expired`` are terminal. A transition outside the
table is refused with :class:`IllegalTransition` (the caller reports it; the state is kept).
Repeating the current state is not a transition (``partially_filled`` with a new fill is: the
fill itself moves the order, see :meth:`OrderState.fill`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import Order, OrderEvent, OrderStatus

from tradeflow_trading.money import ZERO, div, mul, quantize_price

TRANSITIONS: dict[str, frozenset[str]] = {
    "submitted": frozenset({"accepted", "partially_filled", "filled", "rejected", "canceled", "expired"}),
    "accepted": frozenset({"partially_filled", "filled", "rejected", "canceled", "expired"}),
    "partially_filled": frozenset({"partially_filled", "filled", "canceled", "expired"}),
    "filled": frozenset(),
    "canceled": frozenset(),
    "rejected": frozenset(),
    "expired": frozenset(),
}
TERMINAL: frozenset[str] = frozenset(status for status, moves in TRANSITIONS.items() if not moves)
OPEN: frozenset[str] = frozenset(TRANSITIONS) - TERMINAL


class IllegalTransition(ValueError):
    """A move the state table does not allow (e.g. a fill on a canceled order)."""

    def __init__(self, client_order_id: str, current: str, wanted: str) -> None:
        super().__init__(f"order {client_order_id}: {current} -> {wanted} is not a legal transition")
        self.client_order_id = client_order_id
        self.current = current
        self.wanted = wanted


def can_move(current: str, wanted: str) -> bool:
    return wanted in TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order and where it stands. Immutable: every change returns the next state.

    ``seq`` counts the transitions (the ``submitted`` one is 1) and numbers the
    :class:`OrderEvent` each one publishes. For a quote-sized market buy ``quantity`` is known
    only once filled; ``quote_quantity`` says what it may spend.
    """

    order: Order
    status: OrderStatus = "submitted"
    seq: int = 1
    filled_quantity: Decimal = ZERO
    filled_notional: Decimal = ZERO  # sum of quantity x price of the fills
    filled_fees: Decimal = ZERO  # sum of the fills' fees (the quote currency on paper)
    exchange_order_id: str = ""
    reason: str = ""

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def average_price(self) -> Decimal | None:
        if self.filled_quantity == 0:
            return None
        return quantize_price(div(self.filled_notional, self.filled_quantity))

    @property
    def remaining_quantity(self) -> Decimal | None:
        """Base quantity still to fill; None for a quote-sized order (it fills in one go)."""
        if self.order.quantity is None:
            return None
        return self.order.quantity - self.filled_quantity

    def move(self, status: OrderStatus, *, reason: str = "", exchange_order_id: str = "") -> OrderState:
        """The next state after a transition without a fill (accepted, canceled, ...)."""
        if not can_move(self.status, status):
            raise IllegalTransition(self.client_order_id, self.status, status)
        # The constructor, not dataclasses.replace: this runs for every transition of every order.
        return OrderState(order=self.order, status=status, seq=self.seq + 1, filled_quantity=self.filled_quantity,
                          filled_notional=self.filled_notional, filled_fees=self.filled_fees,
                          exchange_order_id=exchange_order_id or self.exchange_order_id, reason=reason or self.reason)

    def amended(self, order: Order, *, reason: str = "amended", exchange_order_id: str = "") -> OrderState:
        """The same status with ``order``'s new quantity or limit price: a transition of its own
        (next ``seq``) that tells exec.orders.v1 what the order is now (or, with an
        ``amend_refused`` reason, that it stayed as it was)."""
        if not self.is_open:
            raise IllegalTransition(self.client_order_id, self.status, "amended")
        if order.quantity is not None and order.quantity < self.filled_quantity:
            raise ValueError(f"order {self.client_order_id}: quantity {order.quantity} is below the filled "
                             f"{self.filled_quantity}")
        return OrderState(order=order, status=self.status, seq=self.seq + 1, filled_quantity=self.filled_quantity,
                          filled_notional=self.filled_notional, filled_fees=self.filled_fees,
                          exchange_order_id=exchange_order_id or self.exchange_order_id, reason=reason)

    @property
    def spent_quote(self) -> Decimal:
        """What the fills cost in the quote currency, fees included (a quote-sized order's budget)."""
        return self.filled_notional + self.filled_fees

    def fill(self, quantity: Decimal, price: Decimal, *, fee: Decimal = ZERO,
             complete: bool | None = None) -> OrderState:
        """The next state after a fill of ``quantity`` at ``price`` paying ``fee``.

        ``complete`` says whether the order is done (a quote-sized order is, after its one fill);
        by default it is when the filled quantity reaches the order's quantity.
        """
        if quantity <= 0:
            raise ValueError(f"order {self.client_order_id}: fill quantity must be positive, got {quantity}")
        filled = self.filled_quantity + quantity
        if self.order.quantity is not None and filled > self.order.quantity:
            raise ValueError(f"order {self.client_order_id}: fills of {filled} exceed its quantity {self.order.quantity}")
        if complete is None:
            complete = self.order.quantity is not None and filled == self.order.quantity
        status: OrderStatus = "filled" if complete else "partially_filled"
        if not can_move(self.status, status):
            raise IllegalTransition(self.client_order_id, self.status, status)
        return OrderState(order=self.order, status=status, seq=self.seq + 1, filled_quantity=filled,
                          filled_notional=self.filled_notional + mul(quantity, price),
                          filled_fees=self.filled_fees + fee, exchange_order_id=self.exchange_order_id,
                          reason=self.reason)

    def event(self, ts_event: int) -> OrderEvent:
        """The exec.orders.v1 message of the current state."""
        order = self.order
        return OrderEvent(
            client_order_id=order.client_order_id, account_id=order.account_id, exchange=order.exchange,
            symbol=order.symbol, side=order.side, status=self.status, seq=self.seq, quantity=order.quantity,
            exchange_order_id=self.exchange_order_id, filled_quantity=self.filled_quantity,
            average_price=self.average_price, reason=self.reason, strategy_id=order.strategy_id, ts_event=ts_event,
            limit_price=order.limit_price)
