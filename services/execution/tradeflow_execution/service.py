"""The execution service layer: approved orders to their account's broker, and what comes back.

No Kafka here (tradeflow_execution.consumption hands it decoded inputs) and no SQL (the store
port). Every input runs under one lock, so the in-memory state (open orders, positions,
balances) and the stored state move together:

- :meth:`handle_orders`: a new order (unique client order id) is stored as ``submitted``
  before its broker sees it; bad input becomes ``rejected`` with its reason in the same
  transaction; a redelivered order changes and publishes nothing. Then the brokers place the
  valid ones and their answers (accepted, fills, ...) are stored in a second transaction.
- :meth:`handle_trades`: trades from md.ticks.v1 drive the paper broker; its fills are stored.
- :meth:`handle_amendments`: OrderAmendment/1 from risk.orders.v1, each ``amendment_id`` applied
  once (stored; a redelivery changes nothing): the broker changes the open order and an
  exec.orders.v1 transition of the same status says what the order is now (reason ``amended``)
  or that it stayed as it was (``amend_refused: ...``). A live broker is asked only after the
  amendment is stored as sent; an answer that never came is resolved by asking the exchange.
- :meth:`handle_risk_events`: a kill switch engaged for an account cancels its open orders
  (each event once, by its id) and rejects its new orders until it is released (reduce-only
  orders still pass: they only lower exposure).
- :meth:`cancel`, :meth:`reconcile`: the API's requests.
- :meth:`apply_from_broker`: a live broker's updates (ADR 0022), computed under the lock against
  the current open orders: transitions, fills, adopted external orders, balance mismatches (a
  halt of the account's new orders and an alert on ops.alerts.v1).

Every state change is written with its messages (exec.orders.v1 transitions with ``seq``,
exec.fills.v1 fills) into the outbox in the same transaction. When a batch fails after
something changed in memory, the service reloads its state from the database before the next
input (the same path as a restart): in-flight orders are resolved by their broker, resting
paper orders go back on the paper exchange at their stored cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import AccountStatus, Alert, Fill, Order, OrderAmendment, RiskEvent
from tradeflow.time import NS_PER_S
from tradeflow.topics import EXEC_ACCOUNTS, OPS_ALERTS
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.money import BPS, ZERO, div
from tradeflow_trading.orders import OPEN, IllegalTransition, OrderState
from tradeflow_trading.positions import Balances, Position, fill_order, split_symbol

from tradeflow_execution.domain.broker import (
    AmendNotApplied,
    AmendRefused,
    Broker,
    BrokerStateChanged,
    BrokerUpdate,
    FillUpdate,
    OpenOrder,
    OrderAmended,
    OrderUpdate,
    OutcomeUnknown,
    TradeDriven,
)
from tradeflow_execution.domain.live import AccountMismatch, AccountPending, AdoptedOrder
from tradeflow_execution.domain.markets import Markets
from tradeflow_execution.domain.paper_exchange import LoggedTrade
from tradeflow_execution.metrics import ExecutionMetrics
from tradeflow_execution.order_traces import OrderTracing
from tradeflow_execution.store import (
    AmendmentOutcome,
    Changes,
    ExecutionStore,
    FoldMark,
    KillSwitchEvent,
    OutboxMessage,
    PositionKey,
    StoreTransaction,
    TrackedOrder,
)

log = logging.getLogger(__name__)

ALL_ACCOUNTS = "*"


class OrderNotFound(LookupError):
    """No order has this client order id."""


class OrderFinished(Exception):
    """The order is no longer open."""

    def __init__(self, client_order_id: str, status: str) -> None:
        super().__init__(f"order {client_order_id} is {status}: only open orders can be canceled")
        self.status = status


class UnknownAccount(LookupError):
    """No account has this id."""


@dataclass(frozen=True, slots=True)
class IncomingOrder:
    order: Order
    traceparent: str | None = None  # the W3C traceparent the order was published with


@dataclass(frozen=True, slots=True)
class OutputTopics:
    order_events: str
    fills: str
    alerts: str = OPS_ALERTS.name
    accounts: str = EXEC_ACCOUNTS.name  # live accounts' reconciliation status, for risk (ADR 0022)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    account_id: str
    agreed: bool
    differences: tuple[str, ...]
    repaired: bool
    fills: int


@dataclass(frozen=True, slots=True)
class PositionView:
    position: Position
    mark: Decimal | None

    @property
    def unrealized_pnl(self) -> Decimal | None:
        return None if self.mark is None else self.position.unrealized_pnl(self.mark)


class ExecutionService:
    """A service Component: loads its state at start; then handles orders, trades, events, requests."""

    def __init__(self, *, accounts: Sequence[AccountConfig], brokers: Mapping[str, Broker],
                 trade_driven: Sequence[TradeDriven], markets: Markets, store: ExecutionStore,
                 topics: OutputTopics, metrics: ExecutionMetrics, tracing: OrderTracing,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self._accounts = {account.id: account for account in accounts}
        self._brokers = dict(brokers)
        self._trade_driven = list(trade_driven)
        self._markets = markets
        self._store = store
        self._topics = topics
        self._metrics = metrics
        self._tracing = tracing
        self._clock = clock
        self._lock = asyncio.Lock()
        self._loaded = False  # False before start and after a failed batch: reload before the next
        self._open: dict[str, TrackedOrder] = {}
        self._positions: dict[PositionKey, Position] = {}
        self._fold_marks: dict[PositionKey, FoldMark] = {}
        self._balances: dict[str, Balances] = {}
        self._halted: set[str] = set()
        self._mismatched: dict[str, tuple[str, ...]] = {}  # live accounts halted by reconciliation (ADR 0022)
        self.name = "execution-service"

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            await self._load()

    async def stop(self) -> None:
        async with self._lock:  # the batch in hand finishes first
            self._loaded = False

    @asynccontextmanager
    async def _batch(self) -> AsyncIterator[None]:
        async with self._lock:
            if not self._loaded:
                await self._load()
            try:
                yield
            except (OrderNotFound, OrderFinished, UnknownAccount):
                raise  # refused before anything changed
            except BaseException:
                self._loaded = False  # memory may be ahead of the database: reload before the next input
                raise
            finally:
                self._refresh_gauges()

    async def _load(self) -> None:
        """The stored state, open orders back with their brokers, in-flight orders resolved."""
        for warning in await self._store.ensure_accounts(list(self._accounts.values())):
            log.warning(warning)
        loaded = await self._store.load(list(self._accounts))
        self._positions, self._fold_marks = loaded.positions, loaded.fold_marks
        self._balances, self._halted = loaded.balances, loaded.halted
        self._open = {tracked.client_order_id: tracked for tracked in loaded.open_orders}
        for driven in self._trade_driven:
            driven.reset()
        changes = Changes()
        ordered = sorted(loaded.open_orders, key=lambda t: (t.state.order.ts_event, t.client_order_id))
        in_flight = [t for t in ordered if t.state.status == "submitted"]
        for tracked in ordered:
            broker = self._brokers.get(tracked.account_id)
            if broker is None:
                log.warning("open order %s of account %s has no broker (account now %s): left as it is",
                            tracked.client_order_id, tracked.account_id, self._accounts[tracked.account_id].mode)
            elif tracked.state.status != "submitted":
                state = tracked.state
                self._apply(await broker.restore(OpenOrder(state.order, state.status, state.filled_quantity,
                                                           state.spent_quote, tracked.broker_state)), changes)
        for tracked in in_flight:
            broker = self._brokers.get(tracked.account_id)
            if broker is not None and tracked.client_order_id in self._open:
                self._apply(await broker.resolve(tracked.state.order), changes)
        for amendment in await self._store.sent_amendments(list(self._accounts)):
            broker = self._brokers.get(amendment.account_id)
            if amendment.client_order_id not in self._open or broker is None:
                changes.amendment_outcomes[amendment.amendment_id] = AmendmentOutcome(
                    amendment.amendment_id, "refused", "order_finished: the order ended before the answer came")
            else:  # asked for, never sent again
                state = self._open[amendment.client_order_id].state
                self._apply(await broker.resolve_amendment(amendment, state.order, state.exchange_order_id), changes)
        await self._commit(changes)
        self._loaded = True
        log.info("execution state loaded: %d accounts, %d open orders (%d were in flight), %d positions",
                 len(self._accounts), len(self._open), len(in_flight), len(self._positions))

    # --- inputs -------------------------------------------------------------------------------------

    async def handle_orders(self, incoming: Sequence[IncomingOrder]) -> None:
        """Approved orders from risk: each stored once, checked, then placed with its broker."""
        async with self._batch():
            now = self._clock()
            fresh: dict[str, TrackedOrder] = {}
            spans = []
            for item in incoming:
                order = item.order
                if order.client_order_id in fresh:
                    self._metrics.duplicates.inc()
                    continue
                span, trace = self._tracing.start_order(order, item.traceparent)
                if span is not None:
                    spans.append(span)
                fresh[order.client_order_id] = TrackedOrder(OrderState(order), trace, now)
            try:
                remote: list[TrackedOrder] = []
                changes = Changes()
                async with self._store.transaction() as tx:
                    known = await tx.known_orders(list(fresh))
                    for client_order_id, tracked in fresh.items():
                        if client_order_id in known:
                            self._metrics.duplicates.inc()
                            continue
                        self._open[client_order_id] = tracked
                        changes.new_orders.append(tracked)  # stored as it stands when the transaction ends
                        self._record(tracked, now, changes)  # submitted
                        problem = self._problem(tracked.state.order)
                        broker = self._brokers.get(tracked.account_id)
                        if problem is not None:
                            self._apply_status(OrderUpdate(client_order_id, "rejected", now, reason=problem), changes)
                        elif broker.in_process:
                            # Nothing leaves the process: the order and what its broker did are
                            # stored together (a crash before the commit undoes both).
                            self._apply(await broker.submit(tracked.state.order), changes)
                        else:
                            remote.append(tracked)  # stored as submitted before the broker hears of it
                    await self._save(tx, changes)
                self._after_commit(changes)
                if remote:
                    changes = Changes()
                    for tracked in remote:
                        self._apply(await self._brokers[tracked.account_id].submit(tracked.state.order), changes)
                    await self._commit(changes)
            finally:
                for span in spans:
                    span.end()

    async def handle_amendments(self, amendments: Sequence[OrderAmendment]) -> None:
        """Approved amendments from risk: each applied once, then answered on exec.orders.v1."""
        async with self._batch():
            fresh: dict[str, OrderAmendment] = {}
            for amendment in amendments:
                fresh.setdefault(amendment.amendment_id, amendment)
            changes = Changes()
            remote: list[OrderAmendment] = []
            async with self._store.transaction() as tx:
                known = await tx.known_amendments(list(fresh))
                for amendment_id, amendment in fresh.items():
                    if amendment_id in known:  # redelivered or replayed: applied once already
                        continue
                    changes.new_amendments.append(amendment)
                    tracked = self._open.get(amendment.client_order_id)
                    broker = self._brokers.get(amendment.account_id)
                    if tracked is not None and (tracked.account_id != amendment.account_id or broker is None):
                        self._apply([AmendNotApplied(amendment.client_order_id, amendment_id,
                                                     f"invalid_order: the order is not of account {amendment.account_id}"
                                                     " or has no broker", self._clock())], changes)
                    elif tracked is None:
                        status = await self._store.order_status(amendment.client_order_id) or "unknown to execution"
                        self._apply([AmendNotApplied(amendment.client_order_id, amendment_id,
                                                     f"order_finished: the order is {status}", self._clock())], changes)
                    elif broker.in_process:
                        self._apply(await self._amend(broker, amendment), changes)  # stored with its outcome
                    else:
                        remote.append(amendment)  # stored as sent before the broker is asked
                await self._save(tx, changes)
            self._after_commit(changes)
            if remote:
                changes = Changes()
                for amendment in remote:
                    self._apply(await self._amend(self._brokers[amendment.account_id], amendment), changes)
                await self._commit(changes)

    async def _amend(self, broker: Broker, amendment: OrderAmendment) -> list[BrokerUpdate]:
        try:
            return await broker.amend(amendment)
        except AmendRefused as exc:
            return [AmendNotApplied(amendment.client_order_id, amendment.amendment_id, str(exc), self._clock())]

    async def handle_trades(self, trades: Sequence[LoggedTrade]) -> None:
        """Trades of md.ticks.v1 in log order per partition: they fill paper orders."""
        async with self._batch():
            changes = Changes()
            for trade in trades:
                for driven in self._trade_driven:
                    updates = driven.on_trade(trade.tick, trade.partition, trade.offset)
                    if updates:
                        self._apply(updates, changes)
            await self._commit(changes)

    async def handle_risk_events(self, events: Sequence[RiskEvent]) -> None:
        """Kill-switch events (others are risk's business): engaged cancels the account's open orders."""
        kills = [KillSwitchEvent(e.event_id, e.account_id, e.details.get("engaged") == "true", e.message or e.reason,
                                 e.ts_event) for e in events if e.kind == "kill_switch"]
        if not kills:
            return
        async with self._batch():
            async with self._store.transaction() as tx:
                new_ids = await tx.new_kill_switch_events(kills)
            changes = Changes()
            for event in kills:
                if event.event_id not in new_ids:
                    continue
                new_ids.discard(event.event_id)  # an id twice in one batch is applied once
                changes.kill_switch_events.append(event)
                self._fold_kill_switch(event)
                if event.engaged:
                    await self._cancel_all(event, changes)
            await self._commit(changes)

    # --- requests -------------------------------------------------------------------------------------

    async def cancel(self, client_order_id: str, reason: str = "canceled on request") -> OrderState:
        """Cancel an open order; OrderNotFound or OrderFinished otherwise."""
        async with self._batch():
            tracked = self._open.get(client_order_id)
            if tracked is None:
                status = await self._store.order_status(client_order_id)
                if status is None:
                    raise OrderNotFound(f"no order {client_order_id}")
                raise OrderFinished(client_order_id, status)
            broker = self._brokers.get(tracked.account_id)
            if broker is None:
                raise OrderFinished(client_order_id, f"{tracked.state.status} without a broker")
            changes = Changes()
            self._apply(await broker.cancel(client_order_id, reason), changes)
            await self._commit(changes)
            return tracked.state

    async def reconcile(self, account_id: str) -> Reconciliation:
        """Positions and balances recomputed from the fills (repaired when they differ), and the
        broker's open orders against the service's."""
        account = self._accounts.get(account_id)
        if account is None:
            raise UnknownAccount(f"no account {account_id!r} in TRADEFLOW_ACCOUNTS")
        exchange_problems: list[str] = []
        live_reconcile = getattr(self._brokers.get(account_id), "reconcile", None)
        if live_reconcile is not None:  # a live broker: the exchange's orders, fills and balances first
            try:
                await live_reconcile()
            except Exception as exc:  # noqa: BLE001 - reported in the answer
                exchange_problems.append(f"exchange reconciliation failed: {exc}")
        async with self._batch():
            fills = await self._store.account_fills(account_id)
            balances = Balances.of(await self._store.initial_balances(account_id))
            positions: dict[PositionKey, Position] = {}
            marks: dict[PositionKey, FoldMark] = {}
            for fill in sorted(fills, key=fill_order):
                key = (fill.account_id, fill.exchange, fill.symbol)
                positions[key] = positions.get(key, Position(*key)).apply(fill)
                marks[key] = fill_order(fill)
                balances = balances.apply(fill)
            differences = _position_differences(
                {k: p for k, p in self._positions.items() if k[0] == account_id}, positions)
            differences += _balance_differences(self._balances.get(account_id, Balances()), balances)
            repaired = bool(differences)
            if repaired:
                await self._store.replace_account_state(account_id, positions, marks, balances)
                self._positions = {k: p for k, p in self._positions.items() if k[0] != account_id} | positions
                self._fold_marks = {k: m for k, m in self._fold_marks.items() if k[0] != account_id} | marks
                self._balances[account_id] = balances
            broker = self._brokers.get(account_id)
            if broker is not None:
                theirs = (await broker.snapshot(0)).open_orders
                ours = {cid for cid, t in self._open.items() if t.account_id == account_id}
                if theirs != ours:
                    differences.append(f"open orders: the broker has {sorted(theirs)}, execution has {sorted(ours)}")
            differences += exchange_problems + [f"halted: {d}" for d in self._mismatched.get(account_id, ())]
            for difference in differences:
                log.warning("reconcile %s: %s", account_id, difference)
            return Reconciliation(account_id, not differences, tuple(differences), repaired, len(fills))

    # --- views (the API) ------------------------------------------------------------------------------

    @property
    def accounts(self) -> list[AccountConfig]:
        return list(self._accounts.values())

    def balances(self, account_id: str) -> Balances:
        return self._balances.get(account_id, Balances())

    def positions(self, account_id: str | None = None) -> list[PositionView]:
        views = []
        for key, position in sorted(self._positions.items()):
            if account_id is not None and key[0] != account_id:
                continue
            views.append(PositionView(position, self._mark(position.exchange, position.symbol)))
        return views

    def position_quantity(self, account_id: str, exchange: str, symbol: str) -> Decimal:
        """The signed quantity held (what a reduce-only order may reduce)."""
        position = self._positions.get((account_id, exchange, symbol))
        return ZERO if position is None else position.quantity

    def is_halted(self, account_id: str) -> bool:
        return account_id in self._halted or ALL_ACCOUNTS in self._halted

    # --- live brokers (ADR 0022) -------------------------------------------------------------------------

    def live_orders(self, account_id: str) -> dict[str, TrackedOrder]:
        return {cid: t for cid, t in self._open.items() if t.account_id == account_id}

    async def known_fills(self, account_id: str) -> list[Fill]:
        return await self._store.account_fills(account_id)

    async def stored_order_status(self, client_order_id: str) -> str | None:
        return await self._store.order_status(client_order_id)

    def mismatch(self, account_id: str) -> tuple[str, ...]:
        return self._mismatched.get(account_id, ())

    async def apply_from_broker(self, account_id: str,
                                compute: Callable[[Mapping[str, TrackedOrder]], Sequence[BrokerUpdate]]) -> None:
        """A live broker's updates, computed under the lock against the current open orders and
        applied in one transaction: adopted orders stored, account mismatches halt and alert; the
        account's reconciliation status (pending, agreed, mismatch) goes to risk on exec.accounts.v1."""
        async with self._batch():
            updates = list(compute(self.live_orders(account_id)))
            if not updates:
                return
            changes = Changes()
            adopted = [u.order.client_order_id for u in updates if isinstance(u, AdoptedOrder)]
            known: set[str] = set()
            if adopted:
                async with self._store.transaction() as tx:
                    known = await tx.known_orders(adopted)
            for update in updates:
                if isinstance(update, AdoptedOrder):
                    cid = update.order.client_order_id
                    if cid in known or cid in self._open:
                        continue
                    tracked = TrackedOrder(OrderState(update.order), {}, self._clock())
                    self._open[cid] = tracked
                    changes.new_orders.append(tracked)
                    self._record(tracked, update.ts_event, changes)
                    changes.messages.append(OutboxMessage(self._topics.alerts, "execution", Alert(
                        service="execution", severity="warning", kind="external_order_adopted",
                        message=f"account {account_id}: order {cid} ({update.exchange_order_id}) at the exchange "
                                "was not sent by Tradeflow; adopted",
                        labels={"account_id": account_id, "client_order_id": cid}, ts_event=update.ts_event), {}))
                elif isinstance(update, AccountPending):
                    changes.messages.append(self._account_status(update.account_id, "pending", (), update.ts_event))
                elif isinstance(update, AccountMismatch) and not update.differences:
                    changes.messages.append(self._account_status(update.account_id, "agreed", (), update.ts_event))
                    if self._mismatched.pop(update.account_id, None) is not None:
                        log.warning("account %s: balances agree with the fills again; halt lifted", update.account_id)
                        changes.messages.append(OutboxMessage(self._topics.alerts, "execution", Alert(
                            service="execution", severity="info", kind="position_mismatch_resolved",
                            message=f"account {update.account_id}: the exchange's balances agree with its fills again",
                            labels={"account_id": update.account_id}, ts_event=update.ts_event), {}))
                elif isinstance(update, AccountMismatch):
                    first = update.account_id not in self._mismatched
                    self._mismatched[update.account_id] = update.differences
                    if first:
                        changes.messages.append(self._account_status(update.account_id, "mismatch",
                                                                      update.differences, update.ts_event))
                        log.error("account %s halted by reconciliation: %s", update.account_id,
                                  "; ".join(update.differences))
                        changes.messages.append(OutboxMessage(self._topics.alerts, "execution", Alert(
                            service="execution", severity="critical", kind="position_mismatch",
                            message=f"account {update.account_id} halted: the exchange's balances differ from "
                                    f"its fills: {'; '.join(update.differences)}",
                            labels={"account_id": update.account_id}, ts_event=update.ts_event), {}))
                else:
                    self._apply([update], changes)
            await self._commit(changes)

    def _account_status(self, account_id: str, status: str, differences: Sequence[str], ts_event: int) -> OutboxMessage:
        messages = {"pending": "execution started: not reconciled yet",
                    "agreed": "the exchange's open orders, fills and balances agree with execution's",
                    "mismatch": "the exchange's balances differ from the fills"}
        return OutboxMessage(self._topics.accounts, account_id, AccountStatus(
            event_id=f"account_status:{account_id}:{status}:{ts_event}", account_id=account_id,
            reconciliation=status, differences=list(differences), message=messages[status], ts_event=ts_event), {})

    # --- applying broker updates ----------------------------------------------------------------------

    def _problem(self, order: Order) -> str | None:
        account = self._accounts.get(order.account_id)
        problem = self._markets.problem(order, account)
        if problem is not None:
            return problem
        if order.account_id not in self._brokers:
            return f"no_broker: account {order.account_id} is {account.mode}; live trading is not available yet"
        if self.is_halted(order.account_id) and not order.reduce_only:
            return f"kill_switch: account {order.account_id} is halted by its kill switch"
        if order.account_id in self._mismatched and not order.reduce_only:
            return (f"reconcile_halt: account {order.account_id} is halted: its exchange balances differ from "
                    "its fills")
        return None

    def _apply(self, updates: Sequence[BrokerUpdate], changes: Changes) -> None:
        for update in updates:
            if isinstance(update, FillUpdate):
                self._apply_fill(update, changes)
            elif isinstance(update, OrderUpdate):
                self._apply_status(update, changes)
            elif isinstance(update, BrokerStateChanged):
                tracked = self._open.get(update.client_order_id)
                if tracked is not None:
                    changes.orders[tracked.client_order_id] = tracked
            elif isinstance(update, OutcomeUnknown):
                self._metrics.unknown_outcomes.inc()
                log.warning("order %s stays in flight: %s", update.client_order_id, update.reason)
            elif isinstance(update, (OrderAmended, AmendNotApplied)):
                self._apply_amendment(update, changes)

    def _apply_status(self, update: OrderUpdate, changes: Changes) -> None:
        tracked = self._open.get(update.client_order_id)
        if tracked is None:
            self._refuse(f"{update.status} for order {update.client_order_id}, which is not open")
            return
        try:
            state = tracked.state.move(update.status, reason=update.reason, exchange_order_id=update.exchange_order_id)
        except IllegalTransition as exc:
            self._refuse(str(exc))
            return
        tracked.state = state
        self._record(tracked, update.ts_event, changes)

    def _apply_amendment(self, update: OrderAmended | AmendNotApplied, changes: Changes) -> None:
        """The broker's answer to an amendment: the order's transition (same status, next seq) with
        reason ``amended`` or ``amend_refused: ...``, and the amendment's outcome stored."""
        tracked = self._open.get(update.client_order_id)
        applied = isinstance(update, OrderAmended)
        reason = "amended" if applied else f"amend_refused: {update.reason}"
        changes.amendment_outcomes[update.amendment_id] = AmendmentOutcome(
            update.amendment_id, "applied" if applied else "refused", "" if applied else update.reason)
        if tracked is None:  # ended meanwhile: the order's own transitions said how
            log.info("amendment %s of %s: %s (the order is no longer open)", update.amendment_id,
                     update.client_order_id, reason)
            return
        try:
            if applied:
                state = tracked.state.amended(update.order, exchange_order_id=update.exchange_order_id)
            else:
                state = tracked.state.amended(tracked.state.order, reason=reason)
        except (IllegalTransition, ValueError) as exc:
            self._refuse(f"amendment {update.amendment_id}: {exc}")
            return
        tracked.state = state
        if not applied:
            log.info("amendment %s of %s refused: %s", update.amendment_id, update.client_order_id, update.reason)
        self._record(tracked, update.ts_event, changes)

    def _apply_fill(self, update: FillUpdate, changes: Changes) -> None:
        fill = update.fill
        tracked = self._open.get(fill.client_order_id)
        if tracked is None:
            self._refuse(f"fill {fill.fill_id} for order {fill.client_order_id}, which is not open")
            return
        try:
            state = tracked.state.fill(fill.quantity, fill.price, fee=fill.fee, complete=update.complete)
        except (IllegalTransition, ValueError) as exc:
            self._refuse(f"fill {fill.fill_id}: {exc}")
            return
        tracked.state = state
        key = (fill.account_id, fill.exchange, fill.symbol)
        self._positions[key] = changes.positions[key] = self._positions.get(key, Position(*key)).apply(fill)
        mark = fill_order(fill)
        newest = self._fold_marks.get(key)
        if newest is not None and mark < newest:
            changes.refold.add(key)  # folded again in fill order before it is stored (_save)
        else:
            self._fold_marks[key] = changes.fold_marks[key] = mark
        balances = self._balances.get(fill.account_id, Balances()).apply(fill)
        self._balances[fill.account_id] = changes.balances[fill.account_id] = balances
        changes.fills.append(fill)
        # Every fill gets a span of its own in the order's trace, with its price (docs/adr/0023).
        trace = self._tracing.fill(tracked.trace, fill)
        changes.messages.append(OutboxMessage(self._topics.fills, fill.account_id, fill, trace))
        self._record(tracked, fill.ts_event, changes, trace=trace)

    def _record(self, tracked: TrackedOrder, ts_event: int, changes: Changes, *,
                trace: Mapping[str, str] | None = None) -> None:
        """The order's current state as a transition: stored, published, and its row updated."""
        event = tracked.state.event(ts_event)
        changes.events.append(event)
        changes.messages.append(OutboxMessage(self._topics.order_events, tracked.account_id, event,
                                              tracked.trace if trace is None else trace))
        changes.orders[tracked.client_order_id] = tracked
        if not tracked.state.is_open:
            self._open.pop(tracked.client_order_id, None)

    def _refuse(self, what: str) -> None:
        self._metrics.illegal.inc()
        log.error("broker update refused by the order state table: %s", what)

    # --- kill switch ----------------------------------------------------------------------------------

    def _fold_kill_switch(self, event: KillSwitchEvent) -> None:
        if event.account_id == ALL_ACCOUNTS and not event.engaged:
            self._halted.clear()
        elif event.engaged:
            self._halted.add(event.account_id)
        else:
            self._halted.discard(event.account_id)

    async def _cancel_all(self, event: KillSwitchEvent, changes: Changes) -> None:
        reason = f"kill_switch: {event.reason}" if event.reason else "kill_switch"
        targets = sorted(cid for cid, t in self._open.items()
                         if event.account_id in (ALL_ACCOUNTS, t.account_id) and t.account_id in self._brokers)
        for client_order_id in targets:
            tracked = self._open.get(client_order_id)
            if tracked is None:
                continue
            self._apply(await self._brokers[tracked.account_id].cancel(client_order_id, reason), changes)
            self._metrics.kill_switches.inc()

    # --- storing --------------------------------------------------------------------------------------

    async def _commit(self, changes: Changes) -> None:
        if not changes:
            return
        async with self._store.transaction() as tx:
            await self._save(tx, changes)
        self._after_commit(changes)

    async def _save(self, tx: StoreTransaction, changes: Changes) -> None:
        for client_order_id, tracked in changes.orders.items():
            broker = self._brokers.get(tracked.account_id)
            # A remote broker's state (the mid at submission) is kept after the order ends: its slippage.
            keep = broker is not None and (tracked.state.is_open or not broker.in_process)
            tracked.broker_state = dict(broker.broker_state(client_order_id)) if keep else {}
        for key in sorted(changes.refold):
            # A fill older than the position's newest (an order that met past trades): the
            # position is the fold of all its fills in fill order, whenever each became known.
            fills = {f.fill_id: f for f in await tx.position_fills(key)}
            fills.update((f.fill_id, f) for f in changes.fills if (f.account_id, f.exchange, f.symbol) == key)
            self._positions[key] = changes.positions[key] = Position.fold(*key, fills.values())
            changes.fold_marks[key] = self._fold_marks[key]
        await tx.save(changes)

    def _after_commit(self, changes: Changes) -> None:
        """Metrics of what is now stored (never of what a failed transaction rolled back)."""
        metrics = self._metrics
        statuses: dict[str, int] = {}
        for event in changes.events:
            statuses[event.status] = statuses.get(event.status, 0) + 1
            if event.status == "rejected":
                metrics.rejections.labels(event.reason.split(":", 1)[0]).inc()
        for status, count in statuses.items():
            metrics.transitions.labels(status).inc(count)
        for outcome in changes.amendment_outcomes.values():
            metrics.amendments.labels(outcome.status).inc()
        now = self._clock()
        notional: dict[tuple[str, str], float] = {}
        for fill in changes.fills:
            _, quote_currency = split_symbol(fill.symbol)
            key = (fill.liquidity, quote_currency)
            notional[key] = notional.get(key, 0.0) + float(fill.quantity * fill.price)
            tracked = changes.orders.get(fill.client_order_id)
            if tracked is None:
                continue
            metrics.order_to_fill.observe(max(0, now - tracked.received_ns) / NS_PER_S)
            decision = tracked.state.order.decision_price
            if decision:
                worse = fill.price - decision if fill.side == "buy" else decision - fill.price
                metrics.slippage.observe(float(div(worse * BPS, decision)))
        for currency in {currency for _, currency in notional}:
            metrics.notional.labels(currency).inc(sum(v for (_, c), v in notional.items() if c == currency))
        for liquidity in {liquidity for liquidity, _ in notional}:
            metrics.fills.labels(liquidity).inc(sum(1 for f in changes.fills if f.liquidity == liquidity))

    def _refresh_gauges(self) -> None:
        counts = dict.fromkeys(OPEN, 0)
        for tracked in self._open.values():
            counts[tracked.state.status] += 1
        for status, count in counts.items():
            self._metrics.open_orders.labels(status).set(count)

    def _mark(self, exchange: str, symbol: str) -> Decimal | None:
        for driven in self._trade_driven:
            mark = driven.mark(exchange, symbol)
            if mark is not None:
                return mark
        return None


def _position_differences(stored: Mapping[PositionKey, Position], folded: Mapping[PositionKey, Position]) -> list[str]:
    differences = []
    for key in sorted(set(stored) | set(folded)):
        mine, fold = stored.get(key), folded.get(key)
        ours = _position_values(mine)
        theirs = _position_values(fold)
        if ours != theirs:
            differences.append(f"position {key[1]}:{key[2]}: stored {ours}, the fold of the fills gives {theirs}")
    return differences


def _position_values(position: Position | None) -> tuple:
    if position is None:
        return (ZERO, ZERO, ZERO, ())
    fees = tuple(sorted((c, a) for c, a in position.fees.items() if a != 0))
    return (position.quantity, position.average_price, position.realized_pnl, fees)


def _balance_differences(stored: Balances, folded: Balances) -> list[str]:
    differences = []
    for currency in sorted(set(stored.amounts) | set(folded.amounts)):
        if stored.get(currency) != folded.get(currency):
            differences.append(f"balance {currency}: stored {stored.get(currency)}, "
                               f"the starting balance and the fills give {folded.get(currency)}")
    return differences
