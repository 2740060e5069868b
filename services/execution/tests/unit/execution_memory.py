"""In-memory stand-ins for the service layer's unit tests: the store port and md.ticks.v1 history.

They keep exactly what the PostgreSQL store keeps (order rows with their state and broker state,
transitions, fills in application order, positions, balances, kill-switch events, the outbox) and
apply a transaction all or nothing, so a test can fail one on purpose and see the service
recover. The real store is tested against PostgreSQL in tests/integration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from tradeflow_execution.domain.paper_exchange import LoggedTrade
from tradeflow_execution.store import Changes, KillSwitchEvent, LoadedState, TrackedOrder
from tradeflow_trading.orders import OPEN
from tradeflow_trading.positions import Balances


@dataclass
class Tables:
    accounts: dict = field(default_factory=dict)  # id -> initial balances
    orders: dict = field(default_factory=dict)  # cid -> TrackedOrder (a copy)
    transitions: list = field(default_factory=list)
    fills: list = field(default_factory=list)
    positions: dict = field(default_factory=dict)
    fold_marks: dict = field(default_factory=dict)
    balances: dict = field(default_factory=dict)
    kill_switch_events: list = field(default_factory=list)
    outbox: list = field(default_factory=list)
    amendments: dict = field(default_factory=dict)  # amendment id -> (OrderAmendment, status, reason)

    def copy(self) -> Tables:
        """Rows are immutable values except orders (copied); containers are new."""
        return Tables(dict(self.accounts), {cid: _copy(t) for cid, t in self.orders.items()}, list(self.transitions),
                      list(self.fills), dict(self.positions), dict(self.fold_marks), dict(self.balances),
                      list(self.kill_switch_events), list(self.outbox), dict(self.amendments))


def _copy(tracked: TrackedOrder) -> TrackedOrder:
    return dataclasses.replace(tracked, trace=dict(tracked.trace), broker_state=dict(tracked.broker_state))


class StoreFailure(RuntimeError):
    pass


class MemoryTransaction:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def known_orders(self, client_order_ids: Sequence[str]) -> set[str]:
        return {cid for cid in client_order_ids if cid in self.tables.orders}

    async def position_fills(self, key):
        return [f for f in self.tables.fills if (f.account_id, f.exchange, f.symbol) == key]

    async def known_amendments(self, amendment_ids: Sequence[str]) -> set[str]:
        return {a for a in amendment_ids if a in self.tables.amendments}

    async def new_kill_switch_events(self, events: Sequence[KillSwitchEvent]) -> set[str]:
        known = {e.event_id for e in self.tables.kill_switch_events}
        return {e.event_id for e in events} - known

    async def save(self, changes: Changes) -> None:
        t = self.tables
        if any(o.client_order_id in t.orders for o in changes.new_orders):
            raise StoreFailure("an order stored twice")
        for tracked in changes.new_orders:
            t.orders[tracked.client_order_id] = _copy(tracked)
        for cid, tracked in changes.orders.items():
            t.orders[cid] = _copy(tracked)
        t.transitions.extend(changes.events)
        known = {f.fill_id for f in t.fills}
        if any(f.fill_id in known for f in changes.fills):
            raise StoreFailure("a fill stored twice")
        t.fills.extend(changes.fills)
        t.positions.update(changes.positions)
        t.fold_marks.update(changes.fold_marks)
        t.balances.update(changes.balances)
        known_events = {e.event_id for e in t.kill_switch_events}
        t.kill_switch_events.extend(e for e in changes.kill_switch_events if e.event_id not in known_events)
        t.outbox.extend(changes.messages)
        for amendment in changes.new_amendments:
            if amendment.amendment_id in t.amendments:
                raise StoreFailure("an amendment stored twice")
            t.amendments[amendment.amendment_id] = (amendment, "sent", "")
        for outcome in changes.amendment_outcomes.values():
            t.amendments[outcome.amendment_id] = (t.amendments[outcome.amendment_id][0], outcome.status, outcome.reason)


class MemoryStore:
    def __init__(self) -> None:
        self.tables = Tables()
        self.fail_in: int | None = None  # this many transactions commit, then one fails
        self.commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        draft = self.tables.copy()
        yield MemoryTransaction(draft)
        if self.fail_in is not None:
            self.fail_in -= 1
            if self.fail_in < 0:
                self.fail_in = None
                raise StoreFailure("the database went away at commit")
        self.tables = draft
        self.commits += 1

    async def ensure_accounts(self, accounts) -> list[str]:
        for account in accounts:
            if account.id not in self.tables.accounts:
                self.tables.accounts[account.id] = dict(account.balances)
                self.tables.balances[account.id] = Balances.of(account.balances)
        return []

    async def load(self, account_ids) -> LoadedState:
        t = self.tables
        halted: set[str] = set()
        for event in t.kill_switch_events:
            if event.account_id == "*" and not event.engaged:
                halted.clear()
            elif event.engaged:
                halted.add(event.account_id)
            else:
                halted.discard(event.account_id)
        return LoadedState(
            positions={k: p for k, p in t.positions.items() if k[0] in account_ids},
            fold_marks={k: m for k, m in t.fold_marks.items() if k[0] in account_ids},
            balances={a: b for a, b in t.balances.items() if a in account_ids},
            open_orders=[_copy(o) for o in t.orders.values()
                         if o.state.status in OPEN and o.account_id in account_ids],
            halted=halted)

    async def account_fills(self, account_id: str):
        return [f for f in self.tables.fills if f.account_id == account_id]

    async def initial_balances(self, account_id: str) -> dict[str, Decimal]:
        return dict(self.tables.accounts.get(account_id, {}))

    async def replace_account_state(self, account_id, positions, fold_marks, balances) -> None:
        t = self.tables
        t.positions = {k: p for k, p in t.positions.items() if k[0] != account_id} | dict(positions)
        t.fold_marks = {k: m for k, m in t.fold_marks.items() if k[0] != account_id} | dict(fold_marks)
        t.balances[account_id] = balances

    async def order_status(self, client_order_id: str) -> str | None:
        tracked = self.tables.orders.get(client_order_id)
        return None if tracked is None else tracked.state.status


    async def sent_amendments(self, account_ids):
        return [a for a, status, _ in self.tables.amendments.values() if status == "sent" and a.account_id in account_ids]


class LogHistory:
    """md.ticks.v1 history from a list: what has been "published" so far (``published``)."""

    def __init__(self) -> None:
        self.published: list[LoggedTrade] = []
        self.reads = 0

    async def trades_since(self, exchange: str, symbol: str, since_ns: int, consumed_through):
        self.reads += 1
        partition = next((t.partition for t in self.published if (t.tick.exchange, t.tick.symbol) == (exchange, symbol)),
                         None)
        if partition is None:
            return [], -1
        in_partition = [t for t in self.published if t.partition == partition]
        trades = [t for t in in_partition if (t.tick.exchange, t.tick.symbol) == (exchange, symbol)
                  and t.tick.ts_event >= since_ns]
        return trades, in_partition[-1].offset
