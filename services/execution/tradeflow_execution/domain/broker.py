"""The broker port: what execution asks of the broker behind an account, and what it hears back.

One :class:`Broker` per account: the paper broker (fills from md.ticks.v1 by the fill rule)
or the live ccxt broker of an exchange account (docs/adr/0019, 0022). The service stores an
order as ``submitted`` *before* it calls :meth:`Broker.submit` with the order's client order
id, so a crash or a timeout mid-call leaves an order in flight that :meth:`Broker.resolve`
settles by asking the broker by that id; nothing is ever re-sent blindly or assumed rejected.

A broker answers with :data:`BrokerUpdate` values, which the service applies to the order's
state (the state table of ``tradeflow_trading.orders``), its fills, the positions and the
balances, and publishes in the same transaction. Updates that happen later (a resting order
filled by the market, an exchange's own cancel) reach the service the same way: the paper
broker's from :meth:`TradeDriven.on_trade`, a live broker's through the update sink it is
given (:data:`UpdateSink`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from tradeflow.messages import Fill, Order, OrderAmendment, OrderStatus, Tick

BrokerState = Mapping[str, Any]  # what a broker needs to find an order again after a restart (JSON)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The broker moved an order to ``status`` (accepted, canceled, expired, rejected, filled)."""

    client_order_id: str
    status: OrderStatus
    ts_event: int
    reason: str = ""
    exchange_order_id: str = ""


@dataclass(frozen=True, slots=True)
class FillUpdate:
    """A fill of an order; ``complete`` says whether it finished the order (None: when its
    quantity is reached)."""

    fill: Fill
    complete: bool | None = None


@dataclass(frozen=True, slots=True)
class OutcomeUnknown:
    """A call whose outcome the broker could not learn (timeout, disconnect): the order stays
    in flight until :meth:`Broker.resolve` gets an answer."""

    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class BrokerStateChanged:
    """No transition, but what the broker must find again after a restart changed (the paper
    order met its first trade and rests: it fills as a maker from now on): store it."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class OrderAmended:
    """The broker changed the order as ``amendment_id`` asked: ``order`` is what it is now (its
    new quantity and/or limit price); ``exchange_order_id`` is new when the exchange replaced it
    (Binance's cancelReplace) and empty when it kept its id."""

    client_order_id: str
    amendment_id: str
    order: Order
    ts_event: int
    exchange_order_id: str = ""


@dataclass(frozen=True, slots=True)
class AmendNotApplied:
    """The broker did not change the order (refused, or found unchanged after an unknown outcome)."""

    client_order_id: str
    amendment_id: str
    reason: str
    ts_event: int


BrokerUpdate = OrderUpdate | FillUpdate | OutcomeUnknown | BrokerStateChanged | OrderAmended | AmendNotApplied
UpdateSink = Callable[[list[BrokerUpdate]], Awaitable[None]]


class AmendRefused(ValueError):
    """An amendment the broker refuses (finished order, quantity below what is filled, ...)."""


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An open order as the service stored it, handed back to its broker after a restart."""

    order: Order
    status: OrderStatus
    filled_quantity: Decimal
    spent_quote: Decimal  # notional + fees of its fills
    broker_state: BrokerState


@dataclass(frozen=True, slots=True)
class BrokerSnapshot:
    """What the broker holds, for reconciliation: its open orders, the fills it reports since a
    time, and its balances (None where the broker keeps none of its own: paper)."""

    open_orders: frozenset[str]
    fills: tuple[Fill, ...] = ()
    balances: Mapping[str, Decimal] | None = None


class Broker(Protocol):
    """The broker of one account."""

    account_id: str
    # True when submit and cancel have no effect outside this process (paper): an order and its
    # broker's answer are then stored in one transaction, since a crash before the commit undoes
    # both. False (live): the order is stored as submitted before the broker is called.
    in_process: bool

    async def submit(self, order: Order) -> list[BrokerUpdate]:
        """Place ``order`` under its client order id (a retried create cannot duplicate it)."""

    async def cancel(self, client_order_id: str, reason: str) -> list[BrokerUpdate]:
        """Cancel an open order; the updates say how it ended (a fill may have won the race)."""

    async def amend(self, amendment: OrderAmendment) -> list[BrokerUpdate]:
        """Change an open order's quantity and/or limit price (the amendment's non-None fields):
        :class:`OrderAmended`, or AmendRefused raised (nothing changed), or :class:`OutcomeUnknown`
        (live: the exchange did not answer; resolved by asking it, never by sending it again)."""

    async def resolve_amendment(self, amendment: OrderAmendment, order: Order,
                                exchange_order_id: str) -> list[BrokerUpdate]:
        """At a (re)load: settle an amendment stored as sent whose answer never came, by asking
        (``order`` and ``exchange_order_id``: the order as stored, before the amendment)."""

    async def resolve(self, order: Order) -> list[BrokerUpdate]:
        """Settle an order in flight (stored as submitted, no answer yet) by asking for it by id."""

    async def restore(self, open_order: OpenOrder) -> list[BrokerUpdate]:
        """Take back an open order after a restart; the updates say what happened meanwhile."""

    async def snapshot(self, fills_since_ns: int) -> BrokerSnapshot:
        """The broker's own view of the account (reconciliation)."""

    def broker_state(self, client_order_id: str) -> BrokerState:
        """What to store with the order so that :meth:`restore` finds it again."""


class TradeDriven(Protocol):
    """Brokers that fill from the market data execution consumes (the paper broker)."""

    def on_trade(self, tick: Tick, partition: int, offset: int) -> list[BrokerUpdate]:
        """One trade of md.ticks.v1 at its place in the log; the updates it caused."""

    def mark(self, exchange: str, symbol: str) -> Decimal | None:
        """The price of the latest trade seen, for unrealized P&L."""

    def reset(self) -> None:
        """Forget every order and trade (the service restores its open orders next)."""
