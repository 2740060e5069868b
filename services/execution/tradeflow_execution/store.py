"""What the service layer stores, and the port it stores it through.

One :class:`Changes` holds everything a batch changed: order rows, their transitions (which are
also the exec.orders.v1 messages), fills, positions, balances, applied risk events and the
outbox messages. :meth:`StoreTransaction.save` writes it in one database transaction, so a
state change and its announcement are stored together or not at all (ADR 0015's outbox).
The PostgreSQL store (adapters/postgres_store.py) is the implementation the service runs on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from tradeflow.messages import Fill, Message, OrderAmendment, OrderEvent
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.orders import OrderState
from tradeflow_trading.positions import Balances, Position

PositionKey = tuple[str, str, str]  # account, exchange, symbol
FoldMark = tuple[int, str]  # tradeflow_trading.positions.fill_order of a position's newest fill
TraceHeaders = Mapping[str, str]


@dataclass(slots=True)
class TrackedOrder:
    """An order as the service holds it: its state, where its trace continues, when it came."""

    state: OrderState
    trace: TraceHeaders  # W3C headers of the order's span: its fills continue that trace
    received_ns: int
    broker_state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def client_order_id(self) -> str:
        return self.state.client_order_id

    @property
    def account_id(self) -> str:
        return self.state.order.account_id


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    topic: str
    key: str
    message: Message
    trace: TraceHeaders


@dataclass(frozen=True, slots=True)
class KillSwitchEvent:
    """A kill-switch event of risk.events.v1 as applied (``account_id`` may be ``*``)."""

    event_id: str
    account_id: str
    engaged: bool
    reason: str
    ts_event: int


@dataclass(frozen=True, slots=True)
class AmendmentOutcome:
    """Where an amendment stands: ``sent`` (a live broker was asked, no answer yet), ``applied``, ``refused``."""

    amendment_id: str
    status: str
    reason: str = ""


@dataclass(slots=True)
class Changes:
    """Everything one batch changed, written in one transaction."""

    new_orders: list[TrackedOrder] = field(default_factory=list)  # inserted with their state when saved
    orders: dict[str, TrackedOrder] = field(default_factory=dict)  # rows to write (new ones are inserted)
    events: list[OrderEvent] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    positions: dict[PositionKey, Position] = field(default_factory=dict)
    fold_marks: dict[PositionKey, FoldMark] = field(default_factory=dict)  # stored with the positions
    refold: set[PositionKey] = field(default_factory=set)  # positions that got a fill older than their newest
    balances: dict[str, Balances] = field(default_factory=dict)
    kill_switch_events: list[KillSwitchEvent] = field(default_factory=list)
    messages: list[OutboxMessage] = field(default_factory=list)
    new_amendments: list[OrderAmendment] = field(default_factory=list)  # inserted as sent, before the outcomes
    amendment_outcomes: dict[str, AmendmentOutcome] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.new_orders or self.orders or self.events or self.fills or self.positions or self.balances
                    or self.kill_switch_events or self.messages or self.new_amendments or self.amendment_outcomes)


@dataclass(slots=True)
class LoadedState:
    """The service's state as stored: positions, balances, open orders, engaged kill switches."""

    positions: dict[PositionKey, Position]
    fold_marks: dict[PositionKey, FoldMark]
    balances: dict[str, Balances]
    open_orders: list[TrackedOrder]
    halted: set[str]


class StoreTransaction(Protocol):
    async def known_orders(self, client_order_ids: Sequence[str]) -> set[str]:
        """Which of these client order ids are stored already (an order is created at most once)."""

    async def new_kill_switch_events(self, events: Sequence[KillSwitchEvent]) -> set[str]:
        """The ids of ``events`` not applied before (they are recorded by :meth:`save`)."""

    async def position_fills(self, key: PositionKey) -> list[Fill]:
        """The stored fills of one position (to fold it again in fill order)."""

    async def known_amendments(self, amendment_ids: Sequence[str]) -> set[str]:
        """Which of these amendment ids are stored already (an amendment is applied at most once)."""

    async def save(self, changes: Changes) -> None:
        """Write ``changes``; raises (rolling the transaction back) when an order or a fill was
        stored before (another writer got there first: the service reloads)."""


class ExecutionStore(Protocol):
    async def ensure_accounts(self, accounts: Sequence[AccountConfig]) -> list[str]:
        """Record new accounts with their starting balances; warnings for changed configurations."""

    async def load(self, account_ids: Sequence[str]) -> LoadedState:
        """The stored state of these accounts."""

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """One database transaction (committed on exit, rolled back on error)."""

    async def account_fills(self, account_id: str) -> list[Fill]:
        """Every fill of an account (reconciliation folds them in fill order)."""

    async def initial_balances(self, account_id: str) -> dict[str, Decimal]:
        """The balances the account started with."""

    async def replace_account_state(self, account_id: str, positions: Mapping[PositionKey, Position],
                                    fold_marks: Mapping[PositionKey, FoldMark], balances: Balances) -> None:
        """Overwrite an account's positions and balances (reconciliation repairs)."""

    async def order_status(self, client_order_id: str) -> str | None:
        """The stored status of an order, None when unknown."""

    async def sent_amendments(self, account_ids: Sequence[str]) -> list[OrderAmendment]:
        """Amendments sent to a live broker whose answer never came (resolved at a load)."""
