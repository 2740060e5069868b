"""The risk service layer: decoded messages in, decisions stored and announced out. No Kafka here.

Every change happens under one lock (per process) and inside one :class:`UnitOfWork` (per
batch or request) that locks the accounts' rows; an account whose row version moved since this
process last saw it is reloaded first, so decisions on several replicas, and the API racing the
consumers, never both pass a limit only one of them fits (docs/adr/0018).

- :meth:`RiskService.on_trading`: fills, order events and signals of a batch of the trading
  topics. Fills and order events are applied first; then each account's signals are decided in
  arrival order, except that while a market order of the account is in flight (not settled:
  terminal on exec.orders.v1 with every fill it reported applied) its later signals wait,
  without blocking the consumer: they stay queued (their offsets uncommitted, see
  :meth:`committable_offsets`) and are decided in the batch that settles the order. A signal
  already decided (a redelivery) gets its stored decision published again.
  A live account's reconciliation status (exec.accounts.v1) is applied first: until execution
  reports ``agreed`` the account is halted and nothing of it is approved (ADR 0022).
- :meth:`RiskService.on_market`: candles and trades: marks, bars, protective exits on every
  trade of a held symbol, and the loss limits on equity marked to market.
- The API's calls: manual orders, limits, kill switch, resume, the account's risk view.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from tradeflow.messages import (
    AccountStatus,
    Candle,
    Fill,
    Order,
    OrderAmendment,
    OrderEvent,
    RiskEvent,
    Signal,
    Tick,
)
from tradeflow.telemetry import Telemetry
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.ids import client_order_id_for_signal
from tradeflow_trading.money import ZERO
from tradeflow_trading.orders import TERMINAL

from tradeflow_risk.adapters.store import (
    LimitsVersion,
    RiskStore,
    StoredAccount,
    StoredDecision,
    UnitOfWork,
    stored_message,
)
from tradeflow_risk.domain import gate, reasons, requests, states
from tradeflow_risk.domain.account import NS_PER_DAY, AccountBook, amended_order
from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.domain.market import MarketData
from tradeflow_risk.domain.market_rules import UNKNOWN_MARKET, MarketRules
from tradeflow_risk.domain.profiles import Profiles
from tradeflow_risk.domain.protective import exit_trigger, watermark_after
from tradeflow_risk.domain.reasons import Rejection, text
from tradeflow_risk.domain.states import StateChange, daily_pnl, drawdown_pct, observe_equity

log = logging.getLogger(__name__)

DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class UnknownAccountError(LookupError):
    """An API call names an account that is not in TRADEFLOW_ACCOUNTS."""


@dataclass(frozen=True, slots=True)
class Topics:
    orders: str
    events: str


class OrderNotFoundError(LookupError):
    """An amendment names an order risk never approved."""


class OrderFinishedError(Exception):
    """An amendment names an order that is no longer open."""

    def __init__(self, client_order_id: str, status: str) -> None:
        super().__init__(f"order {client_order_id} is {status}: only open orders can be amended")
        self.status = status


@dataclass(frozen=True, slots=True)
class AmendmentDecision:
    """An amendment as published: the approved OrderAmendment, or the RiskEvent of the rejection."""

    decision_id: str
    account_id: str
    amendment: OrderAmendment | None = None
    event: RiskEvent | None = None
    replayed: bool = False


@dataclass(slots=True)
class PendingSignal:
    """A consumed signal waiting for its decision; ``offset`` holds back its partition's commit."""

    signal: Signal
    topic: str = ""
    partition: int = -1
    offset: int = -1
    traceparent: str | None = None  # the record's W3C traceparent header, as it came
    checked: bool = False  # looked up among the stored decisions (a redelivery is answered from there)
    prior: StoredDecision | None = None  # its stored decision, when it had one


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision as published: the approved Order, or the RiskEvent of the rejection."""

    decision_id: str
    account_id: str
    order: Order | None = None
    event: RiskEvent | None = None
    replayed: bool = False

    @property
    def approved(self) -> bool:
        return self.order is not None

    @property
    def reason(self) -> str:
        return self.event.reason if self.event is not None else ""


def context_of(traceparent: str | None) -> Context | None:
    """The trace context a W3C ``traceparent`` header names (None: the decision starts a trace)."""
    return propagate.extract({"traceparent": traceparent}) if traceparent else None


def annotate_decision(span, decision: Decision) -> None:
    """The decision on its span (docs/adr/0023): approved or rejected, the stable reason code and
    message, and the order it made; ``tradeflow.outcome`` is kept for dashboards that read it."""
    span.set_attribute("tradeflow.outcome", "approved" if decision.approved else decision.reason)
    span.set_attribute("tradeflow.risk.decision", "approved" if decision.approved else "rejected")
    span.set_attribute("tradeflow.risk.decision_id", decision.decision_id)
    if decision.event is not None:
        span.set_attribute("tradeflow.risk.reason", decision.event.reason)
        if decision.event.message:
            span.set_attribute("tradeflow.risk.message", decision.event.message)
    order = decision.order
    if order is not None:
        span.set_attribute("tradeflow.client_order_id", order.client_order_id)
        span.set_attribute("tradeflow.order.side", order.side)
        span.set_attribute("tradeflow.order.type", order.order_type)
        span.set_attribute("tradeflow.market", f"{order.exchange}:{order.symbol}")
        if order.quantity is not None:
            span.set_attribute("tradeflow.order.quantity", str(order.quantity))
        if order.quote_quantity is not None:
            span.set_attribute("tradeflow.order.quote_quantity", str(order.quote_quantity))
        if order.limit_price is not None:
            span.set_attribute("tradeflow.order.limit_price", str(order.limit_price))


class MarketsView(Protocol):
    """What the service asks of the exchange markets (adapters.exchange_markets.ExchangeMarkets)."""

    def rules(self, exchange: str, symbol: str) -> MarketRules | None: ...

    def symbols(self, exchange: str) -> frozenset[str] | None: ...


class CalendarsView(Protocol):
    """What the service asks of the trading hours (adapters.instrument_calendars.InstrumentCalendars)."""

    def market_open(self, exchange: str, symbol: str, ts_ns: int) -> tuple[bool | None, str]: ...


def _baselines(book: AccountBook) -> tuple:
    """What observing equity may move without a state change: the day, its starting equity, the peak."""
    control = book.control
    return control.day, control.day_start_equity, control.equity_peak


def equity_currency(config: AccountConfig, configured: str | None) -> str:
    return configured or next(iter(config.balances), "USDT")


class RiskService:
    """The service layer (a service Component: ``start`` loads the state, readiness waits for it)."""

    name = "risk-state"

    def __init__(self, *, accounts: Sequence[AccountConfig], profiles: Profiles, store: RiskStore, market: MarketData,
                 markets: MarketsView, calendars: CalendarsView, topics: Topics, telemetry: Telemetry,
                 wall_clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._accounts = {account.id: account for account in accounts}
        self._profiles = profiles
        self._store = store
        self.market = market
        self._markets = markets
        self._calendars = calendars
        self._topics = topics
        self._tracer = telemetry.tracer
        self._tracing = telemetry.tracing  # spans only where they go somewhere (an OTLP endpoint)
        self._now = wall_clock_ns
        self._lock = asyncio.Lock()
        self.books: dict[str, AccountBook] = {}
        self._limits: dict[str, LimitsVersion] = {}
        self._pending: dict[str, deque[PendingSignal]] = {}
        self._pending_ids: dict[str, set[str]] = {}
        self._holders: dict[tuple[str, str], set[str]] = {}  # (exchange, symbol) -> accounts with a position
        self._held: dict[str, set[tuple[str, str]]] = {}  # account -> its keys in _holders
        self._exits_done: set[str] = set()  # protective decision ids stored (one exit per position and trigger)
        self._exits_refused: set[str] = set()  # protective exits refused in the current state (said once)
        self._dirty_marks: set[tuple[str, str]] = set()
        self._dirty_watermarks: set[tuple[str, str]] = set()
        self._dirty_controls: set[str] = set()
        self.loaded = False

        self._decisions = telemetry.counter("tradeflow_risk_decisions_total", "Decisions by outcome and reason",
                                            ("origin", "outcome", "reason"))
        self._decision_seconds = telemetry.histogram("tradeflow_risk_decision_seconds", "Time to decide one order",
                                                     buckets=DECISION_BUCKETS)
        self._replayed = telemetry.counter("tradeflow_risk_decisions_replayed_total",
                                           "Redelivered inputs answered with their stored decision")
        self._waiting = telemetry.gauge("tradeflow_risk_signals_waiting",
                                        "Signals waiting for an order of their account to settle")
        self._equity = telemetry.gauge("tradeflow_risk_equity", "Equity marked to market", ("account",))
        self._drawdown = telemetry.gauge("tradeflow_risk_drawdown_pct", "Fall of equity from its peak", ("account",))
        self._exposure = telemetry.gauge("tradeflow_risk_gross_exposure", "Positions plus open orders", ("account",))
        self._daily_pnl = telemetry.gauge("tradeflow_risk_daily_pnl", "Equity minus the equity at the day's start",
                                          ("account",))
        self._kill_switch = telemetry.gauge("tradeflow_risk_kill_switch_engaged",
                                            "1 while the account's kill switch is engaged", ("account",))
        self._state = telemetry.gauge("tradeflow_risk_account_state", "1 for the account's current state",
                                      ("account", "state"))
        self._protective = telemetry.counter("tradeflow_risk_protective_exits_total", "Protective exits approved",
                                             ("trigger",))

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        ids = sorted(self._accounts)
        await self._store.ensure_accounts(ids)
        stored = await self._store.load(ids)
        self.books = {account_id: self._book(stored[account_id]) for account_id in ids}
        self._limits = await self._store.latest_limits()
        for exchange, symbol, price, ts_event in await self._store.load_marks():
            self.market.set_mark(exchange, symbol, price, ts_event)
        self._reindex()
        for book in self.books.values():
            self._report(book)
        self.loaded = True
        log.info("risk state loaded: %d accounts, %d open orders, %d positions", len(self.books),
                 sum(len(b.open_orders()) for b in self.books.values()),
                 sum(1 for b in self.books.values() for _ in b.held_symbols()))

    async def stop(self) -> None:
        """Nothing to release: the market state is saved by MarketStateSaver's stop."""

    async def ready(self) -> tuple[bool, str]:
        if not self.loaded:
            return False, "loading accounts, positions and open orders"
        return True, f"{len(self.books)} accounts loaded"

    def _book(self, stored: StoredAccount) -> AccountBook:
        config = self._accounts[stored.account_id]
        book = AccountBook(config, equity_currency(config, self._profiles.account(config.id).equity_currency))
        for fill in stored.fills:
            book.apply_fill(fill)
        book.orders = {t.order.client_order_id: t for t in stored.orders}
        book.order_times = sorted(stored.order_times)
        book.control = stored.control
        book.control.live = config.mode == "live"
        book.version = stored.version
        book.advance_clock(stored.clock)
        book.watermarks = {symbol: w for symbol, w in stored.watermarks.items()
                           if symbol in book.positions and book.positions[symbol].opened_at == w.opened_at}
        return book

    def _reindex(self, account_ids: Iterable[str] | None = None) -> None:
        """Which accounts hold each (exchange, symbol): again for ``account_ids``, else for all.

        Per account, not over every book: a unit with a new fill reindexes its accounts only."""
        for account_id in (self.books if account_ids is None else account_ids):
            book = self.books[account_id]
            held = {(book.exchange, symbol) for symbol in book.held_symbols()}
            before = self._held.get(account_id, set())
            for key in before - held:
                holders = self._holders[key]
                holders.discard(account_id)
                if not holders:
                    del self._holders[key]
            for key in held - before:
                self._holders.setdefault(key, set()).add(account_id)
            self._held[account_id] = held

    async def _sync(self, uow: UnitOfWork, account_ids: Iterable[str]) -> set[str]:
        """Reload the accounts whose row moved since this process saw it; the reloaded ids."""
        stale = [a for a in account_ids if a in self.books and uow.versions.get(a) != self.books[a].version]
        if not stale:
            return set()
        stored = await self._store.load(stale, uow.conn)
        for account_id in stale:
            self.books[account_id] = self._book(stored[account_id])
            self._pending_reset_exits(account_id)
            for pending in self._pending.get(account_id, ()):
                pending.checked, pending.prior = False, None  # another replica may have decided it meanwhile
        self._limits.update({a: v for a, v in (await self._store.latest_limits()).items() if a in stale})
        self._reindex(stale)
        log.info("reloaded %d account(s) changed elsewhere: %s", len(stale), ", ".join(stale))
        return set(stale)

    def _invalidate(self, account_ids: Iterable[str]) -> None:
        """After a failed unit of work: memory may be ahead of the database, reload on next use."""
        for account_id in account_ids:
            if account_id in self.books:
                self.books[account_id].version = -1

    def _pending_reset_exits(self, account_id: str) -> None:
        prefix = f"protective:{account_id}:"
        self._exits_refused = {d for d in self._exits_refused if not d.startswith(prefix)}

    # --- what a decision reads ----------------------------------------------------------------------

    def limits(self, account_id: str) -> RiskLimits:
        stored = self._limits.get(account_id)
        return stored.limits if stored is not None else self._profiles.account(account_id).limits

    def limits_version(self, account_id: str) -> LimitsVersion:
        stored = self._limits.get(account_id)
        if stored is not None:
            return stored
        return LimitsVersion(account_id, 0, self._profiles.account(account_id).limits, "settings", "")

    def _rules(self, exchange: str, symbol: str) -> MarketRules:
        return self._markets.rules(exchange, symbol) or UNKNOWN_MARKET

    def _gate_context(self, request: requests.OrderRequest) -> gate.GateContext:
        market_open, calendar = self._calendars.market_open(request.exchange, request.symbol, request.ts_event)
        return gate.GateContext(self.limits(request.account_id), self._rules(request.exchange, request.symbol),
                                self.market, market_open, calendar)

    def _mark_of(self, book: AccountBook, override: tuple[str, Decimal] | None = None) -> Callable[[str], Decimal | None]:
        def mark_of(symbol: str) -> Decimal | None:
            if override is not None and symbol == override[0]:
                return override[1]
            return self.market.mark(book.exchange, symbol)
        return mark_of

    # --- the trading topics ------------------------------------------------------------------------

    def _enqueue(self, pending: PendingSignal) -> None:
        account_id = pending.signal.account_id
        ids = self._pending_ids.setdefault(account_id, set())
        if pending.signal.signal_id in ids:
            return  # redelivered while still waiting
        ids.add(pending.signal.signal_id)
        self._pending.setdefault(account_id, deque()).append(pending)

    async def on_trading(self, fills: Sequence[Fill] = (), events: Sequence[OrderEvent] = (),
                         signals: Sequence[PendingSignal] = (),
                         statuses: Sequence[AccountStatus] = ()) -> list[Decision]:
        """Apply reconciliation statuses, fills and order events, then decide the signals that may be decided now."""
        async with self._lock:
            for pending in signals:
                self._enqueue(pending)
            waiting = [a for a, queue in self._pending.items() if queue]
            involved = ({f.account_id for f in fills} | {e.account_id for e in events} | set(waiting)
                        | {s.account_id for s in statuses}) & self.books.keys()
            if not fills and not events and not waiting and not involved:
                return []
            unchecked = [p for q in self._pending.values() for p in q if not p.checked]
            known_fills = [f for f in fills if f.account_id in self.books]
            try:
                async with self._store.unit_of_work(
                        involved, fills=known_fills,
                        decision_ids=[requests.signal_decision_id(p.signal.signal_id) for p in unchecked]) as uow:
                    self._checked(unchecked, uow.stored)
                    if await self._sync(uow, involved):
                        await self._recheck(uow)
                    self._apply_statuses(uow, statuses)
                    changed = self._apply_trading(uow, events)
                    decisions, consumed = self._decide_waiting(uow)
                    changed.update(d.account_id for d in decisions if d.approved and not d.replayed)
                    for account_id in changed:
                        book = self.books[account_id]
                        uow.save_control(account_id, book.control, book.clock)
            except BaseException:
                self._invalidate(involved)
                for queue in self._pending.values():  # the commit may have happened: look them up again
                    for pending in queue:
                        pending.checked, pending.prior = False, None
                raise
            self._committed(uow)
            for account_id, count in consumed.items():
                queue, ids = self._pending[account_id], self._pending_ids[account_id]
                for _ in range(count):
                    ids.discard(queue.popleft().signal.signal_id)
            self._waiting.set(sum(len(q) for q in self._pending.values()))
            self._count(decisions)
            return decisions

    @staticmethod
    def _checked(pending: Iterable[PendingSignal], stored: dict[str, StoredDecision]) -> None:
        for p in pending:
            p.checked, p.prior = True, stored.get(requests.signal_decision_id(p.signal.signal_id))

    async def _recheck(self, uow: UnitOfWork) -> None:
        """Look up again the waiting signals of reloaded accounts (another replica may have decided them)."""
        unchecked = [p for q in self._pending.values() for p in q if not p.checked]
        if unchecked:
            self._checked(unchecked, await uow.stored_decisions(
                [requests.signal_decision_id(p.signal.signal_id) for p in unchecked]))

    def _apply_statuses(self, uow: UnitOfWork, statuses: Sequence[AccountStatus]) -> None:
        """Execution's reconciliation of live accounts: a mismatch (or a restart) halts, agreement lifts that."""
        for status in statuses:
            book = self.books.get(status.account_id)
            if book is None or not book.control.live:
                continue
            message = "; ".join(status.differences) or status.message
            before = (book.control.reconciliation, book.control.reconciliation_message)
            change = states.reconciliation(book.control, status.reconciliation, message)
            if change is not None:
                log.log(logging.ERROR if status.reconciliation == "mismatch" else logging.INFO,
                        "account %s: reconciliation %s -> %s (%s)", book.account_id, change.details["previous"],
                        status.reconciliation, message or "no detail")
                self._announce(uow, book, change, status.ts_event)
            elif before != (book.control.reconciliation, book.control.reconciliation_message):
                uow.save_control(book.account_id, book.control, book.clock)

    def _apply_trading(self, uow: UnitOfWork, events: Sequence[OrderEvent]) -> set[str]:
        """The unit's new fills and the order events: positions, cash, orders, then the loss limits."""
        changed: set[str] = set()
        for fill in uow.new_fills:
            book = self.books[fill.account_id]
            tracked = book.orders.get(fill.client_order_id)
            book.apply_fill(fill)
            if tracked is not None:
                uow.order_progress(tracked)
            changed.add(fill.account_id)
        for event in events:
            book = self.books.get(event.account_id)
            if book is None:
                continue
            tracked = book.orders.get(event.client_order_id)
            if tracked is not None and book.apply_order_event(event):
                uow.order_progress(tracked)
                changed.add(event.account_id)
        if uow.new_fills:
            self._reindex({fill.account_id for fill in uow.new_fills})
        for account_id in changed:
            self._observe(uow, self.books[account_id])
        return changed

    def _decide_waiting(self, uow: UnitOfWork) -> tuple[list[Decision], dict[str, int]]:
        """Decide, per account in arrival order, the signals that need not wait; (decisions, popped)."""
        decisions: list[Decision] = []
        consumed: dict[str, int] = {}
        for account_id, queue in self._pending.items():
            book = self.books.get(account_id)
            count = 0
            for pending in queue:
                if pending.prior is not None:
                    decisions.append(self._replay(uow, pending.prior, account_id, pending.traceparent))
                elif book is not None and book.blocking_order() is not None:
                    break
                else:
                    decisions.append(self._decide_signal(uow, pending, book))
                count += 1
            if count:
                consumed[account_id] = count
        return decisions, consumed

    def _replay(self, uow: UnitOfWork, prior: StoredDecision, account_id: str, traceparent: str | None) -> Decision:
        message = stored_message(prior)
        topic = self._topics.orders if isinstance(message, Order) else self._topics.events
        uow.publish(traceparent, topic, account_id, message)
        self._replayed.inc()
        if isinstance(message, Order):
            return Decision(prior.decision_id, account_id, order=message, replayed=True)
        return Decision(prior.decision_id, account_id, event=message, replayed=True)

    def _decide_signal(self, uow: UnitOfWork, pending: PendingSignal, book: AccountBook | None) -> Decision:
        signal = pending.signal
        if not self._tracing:
            # No exporter: a span would go nowhere, and making one cost a third of a decision. The
            # order carries the signal's traceparent as it came, so the trace goes on downstream.
            return self._decide(uow, pending, book, pending.traceparent)
        # A span of its own, continuing the signal's trace; not made current (nothing inside reads the
        # current span: the outbox row takes the span's traceparent), which costs a context attach less.
        span = self._tracer.start_span(
            "risk decide", context=context_of(pending.traceparent), kind=SpanKind.INTERNAL,
            attributes={"tradeflow.signal_id": signal.signal_id, "tradeflow.account_id": signal.account_id})
        try:
            decision = self._decide(uow, pending, book, span)
            annotate_decision(span, decision)
            return decision
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()

    def _decide(self, uow: UnitOfWork, pending: PendingSignal, book: AccountBook | None,
                trace_context: trace.Span | str | None) -> Decision:
        signal = pending.signal
        started = time.perf_counter()
        if book is None:
            result: requests.OrderRequest | Rejection = Rejection.of(
                reasons.UNKNOWN_ACCOUNT, f"account {signal.account_id!r} is not configured (TRADEFLOW_ACCOUNTS)",
                account_id=signal.account_id)
        else:
            new_day = book.control.day is None or signal.ts_event // NS_PER_DAY > book.control.day
            book.advance_clock(signal.ts_event)
            if new_day:  # a new UTC day of event time may clear yesterday's daily loss first
                self._observe(uow, book)
            result = self._signal_request(signal, book)
            if isinstance(result, requests.OrderRequest):
                result = gate.check(result, book, self._gate_context(result))
        client_order_id = (result.client_order_id if isinstance(result, requests.OrderRequest)
                           else client_order_id_for_signal(signal.signal_id))
        decision = self._record(uow, requests.signal_decision_id(signal.signal_id), signal.account_id, "signal",
                                result, book, signal.ts_event, signal_id=signal.signal_id,
                                client_order_id=client_order_id, trace_context=trace_context)
        self._decision_seconds.observe(time.perf_counter() - started)
        return decision

    def _signal_request(self, signal: Signal, book: AccountBook) -> requests.OrderRequest | Rejection:
        problem = requests.symbol_problem(signal.exchange, signal.symbol, book, self._markets.symbols(signal.exchange))
        if problem is not None:
            return problem
        mark = self.market.mark(signal.exchange, signal.symbol)
        rules = self._rules(signal.exchange, signal.symbol)
        sizing = None
        if signal.intent in ("enter_long", "enter_short") and signal.quantity is None:
            price = signal.price if signal.price is not None else mark
            equity = book.equity(self._mark_of(book, (signal.symbol, price) if price is not None else None))
            sizing = requests.SizingContext(self._profiles.sizing(book.account_id, signal.strategy_id), equity,
                                            self.market.atr(signal.exchange, signal.symbol),
                                            self.market.returns_stdev(signal.exchange, signal.symbol))
        return requests.from_signal(signal, book, mark, rules, sizing)

    def _record(self, uow: UnitOfWork, decision_id: str, account_id: str, origin: str,
                result: requests.OrderRequest | Rejection, book: AccountBook | None, ts_event: int, *,
                signal_id: str = "", client_order_id: str = "",
                trace_context: trace.Span | Context | str | None = None) -> Decision:
        """Store the decision and queue what it announces (the order, or the rejection's event)."""
        if isinstance(result, Rejection):
            event = RiskEvent(event_id=f"rejection:{decision_id}", account_id=account_id, kind="rejection",
                              reason=result.reason, message=result.message, severity="warning",
                              state=book.state if book is not None else None, client_order_id=client_order_id,
                              signal_id=signal_id, details=result.details, ts_event=ts_event)
            payload = uow.add_decision(decision_id, account_id, origin, event, result.reason, ts_event)
            uow.publish(trace_context, self._topics.events, account_id, event, payload)
            return Decision(decision_id, account_id, event=event)
        order = result.to_order()
        assert book is not None
        book.track(order)
        payload = uow.add_decision(decision_id, account_id, origin, order, "", ts_event)
        uow.publish(trace_context, self._topics.orders, account_id, order, payload)
        return Decision(decision_id, account_id, order=order)

    def _committed(self, uow: UnitOfWork) -> None:
        """After the commit: the books of the accounts the unit saved are at their rows' new version."""
        for account_id, version in uow.new_versions().items():
            self.books[account_id].version = version
            self._report(self.books[account_id])

    def _count(self, decisions: Iterable[Decision]) -> None:
        # Counted per label set, then one increment each: a batch's decisions share a few labels.
        counts: Counter[tuple[str, str, str]] = Counter()
        for decision in decisions:
            if decision.replayed:
                continue
            origin = decision.order.origin if decision.order is not None else decision.decision_id.split(":", 1)[0]
            counts[(origin, "approved" if decision.approved else "rejected", decision.reason)] += 1
        for labels, count in counts.items():
            self._decisions.labels(*labels).inc(count)

    # --- states --------------------------------------------------------------------------------------

    def _observe(self, uow: UnitOfWork, book: AccountBook) -> None:
        """Equity after a change: day, peak, broken loss limits (published and saved with the unit)."""
        before = _baselines(book)
        equity = book.equity(self._mark_of(book))
        for change in observe_equity(book.control, self.limits(book.account_id), equity, book.clock):
            self._announce(uow, book, change, book.clock)
        if _baselines(book) != before:
            uow.save_control(book.account_id, book.control, book.clock)

    def _announce(self, uow: UnitOfWork, book: AccountBook, change: StateChange, ts_event: int) -> None:
        """The events of a state change: the change (or breach), and the kill switch when it moved."""
        account_id = book.account_id
        version = uow.versions.get(account_id, 0) + 1
        serial = uow.next_serial()
        severity = change.severity or (
            "critical" if change.after == "halted" else "warning" if change.after == "reducing" else "info")
        kind = "limit_breach" if change.breach else "state_change"
        uow.publish(None, self._topics.events, account_id, RiskEvent(
            event_id=f"{kind}:{account_id}:{version}:{serial}", account_id=account_id, kind=kind, reason=change.reason,
            message=change.message, severity=severity, state=change.after,
            details={**change.details, "before": change.before}, ts_event=ts_event))
        if change.kill_switch is not None:
            uow.publish(None, self._topics.events, account_id, self._kill_switch_event(
                book, change.kill_switch, change.reason, change.message, version, serial, ts_event))
        if change.after != change.before:
            self._pending_reset_exits(account_id)
        uow.save_control(account_id, book.control, book.clock)

    def _kill_switch_event(self, book: AccountBook, engaged: bool, reason: str, message: str, version: int,
                           serial: int, ts_event: int) -> RiskEvent:
        return RiskEvent(event_id=f"kill_switch:{book.account_id}:{version}:{serial}", account_id=book.account_id,
                         kind="kill_switch", reason=reason, message=message,
                         severity="critical" if engaged else "info", state=book.state,
                         details={"engaged": "true" if engaged else "false"}, ts_event=ts_event)

    # --- market data -----------------------------------------------------------------------------------

    async def on_market(self, candles: Sequence[Candle] = (), ticks: Sequence[Tick] = ()) -> list[Decision]:
        """Marks and bars; protective exits on every trade of a held symbol; loss limits on the new equity."""
        for candle in candles:
            self.market.on_candle(candle)
            self._dirty_marks.add((candle.exchange, candle.symbol))
        async with self._lock:
            exits: dict[str, dict[str, tuple[str, Decimal, int]]] = {}
            touched: set[str] = set()
            for tick in ticks:
                price = self.market.on_tick(tick)
                key = (tick.exchange, tick.symbol)
                self._dirty_marks.add(key)
                for account_id in self._holders.get(key, ()):
                    book = self.books[account_id]
                    book.advance_clock(tick.ts_event)
                    touched.add(account_id)
                    trigger = self._protective_trigger(book, tick.symbol, price)
                    if trigger is not None:
                        exits.setdefault(account_id, {}).setdefault(tick.symbol, (trigger, price, tick.ts_event))
            for candle in candles:
                for account_id in self._holders.get((candle.exchange, candle.symbol), ()):
                    self.books[account_id].advance_clock(candle.ts_end)
                    touched.add(account_id)
            changes: dict[str, list[StateChange]] = {}
            for account_id in touched:
                book = self.books[account_id]
                before = _baselines(book)
                found = observe_equity(book.control, self.limits(account_id), book.equity(self._mark_of(book)), book.clock)
                if _baselines(book) != before:  # stored by the market-state saver (no version bump: facts)
                    self._dirty_controls.add(account_id)
                self._report(book)
                if found:
                    changes[account_id] = found
            if not exits and not changes:
                return []
            return await self._act_on_market(exits, changes)

    def _protective_trigger(self, book: AccountBook, symbol: str, price: Decimal) -> str | None:
        position = book.position(symbol)
        if position.is_flat:
            return None
        watermark = watermark_after(book.watermarks.get(symbol), position, price)
        if watermark != book.watermarks.get(symbol):
            book.watermarks[symbol] = watermark
            self._dirty_watermarks.add((book.account_id, symbol))
        rules = self._profiles.protective(book.account_id, book.strategy_of(symbol))
        if rules is None or not rules.any or book.exiting(symbol):
            return None
        hit = exit_trigger(position, rules, price, watermark, self.market.atr(book.exchange, symbol))
        if hit is None:
            return None
        decision_id = requests.protective_decision_id(book.account_id, book.exchange, symbol, position.opened_at, hit[0])
        if decision_id in self._exits_done or decision_id in self._exits_refused:
            return None
        return hit[0]

    async def _act_on_market(self, exits: dict[str, dict[str, tuple[str, Decimal, int]]],
                             changes: dict[str, list[StateChange]]) -> list[Decision]:
        involved = set(exits) | set(changes)
        decisions: list[Decision] = []
        try:
            async with self._store.unit_of_work(involved) as uow:
                reloaded = await self._sync(uow, involved)
                for account_id in sorted(involved):
                    book = self.books[account_id]
                    if account_id in reloaded:  # the stale book's findings do not count: look again
                        found = observe_equity(book.control, self.limits(account_id),
                                               book.equity(self._mark_of(book)), book.clock)
                    else:
                        found = changes.get(account_id, [])
                    for change in found:
                        self._announce(uow, book, change, book.clock)
                    for symbol, (trigger, price, ts_event) in exits.get(account_id, {}).items():
                        decision = await self._protective_exit(uow, book, symbol, trigger, price, ts_event)
                        if decision is not None:
                            decisions.append(decision)
        except BaseException:
            self._invalidate(involved)
            raise
        self._committed(uow)
        self._count(decisions)
        return decisions

    async def _protective_exit(self, uow: UnitOfWork, book: AccountBook, symbol: str, trigger: str, price: Decimal,
                               ts_event: int) -> Decision | None:
        position = book.position(symbol)
        if position.is_flat or book.exiting(symbol):
            return None
        request = requests.protective_exit(book, position, trigger, price, ts_event, book.strategy_of(symbol))
        if request.quantity is None or request.quantity <= 0:
            return None
        if await uow.stored_decisions([request.decision_id]):
            self._exits_done.add(request.decision_id)
            return None
        with self._tracer.start_as_current_span("risk protective exit", attributes={
                "tradeflow.account_id": book.account_id, "tradeflow.symbol": symbol, "tradeflow.trigger": trigger}) as span:
            result = gate.check(request, book, self._gate_context(request))
            if isinstance(result, Rejection):
                # Not stored: once the account may trade again the exit fires on the next trade.
                self._exits_refused.add(request.decision_id)
                event = RiskEvent(event_id=f"rejection:{request.decision_id}:{uow.versions.get(book.account_id, 0)}",
                                  account_id=book.account_id, kind="rejection", reason=result.reason,
                                  message=f"{trigger} exit of {symbol} refused: {result.message}", severity="critical",
                                  state=book.state, client_order_id=request.client_order_id,
                                  details={**result.details, "trigger": trigger}, ts_event=ts_event)
                uow.publish(trace.set_span_in_context(span), self._topics.events, book.account_id, event)
                refused = Decision(request.decision_id, book.account_id, event=event)
                annotate_decision(span, refused)
                return refused
            decision = self._record(uow, request.decision_id, book.account_id, "protective", result, book, ts_event,
                                    client_order_id=request.client_order_id, trace_context=trace.set_span_in_context(span))
            annotate_decision(span, decision)
            self._exits_done.add(request.decision_id)
            self._protective.labels(trigger).inc()
            uow.publish(None, self._topics.events, book.account_id, RiskEvent(
                event_id=f"protective_exit:{request.decision_id}", account_id=book.account_id, kind="protective_exit",
                reason=trigger, message=f"{trigger} of {symbol} at {text(price)}: exit {text(request.quantity)}",
                severity="warning", state=book.state, client_order_id=request.client_order_id,
                details={"trigger": trigger, "price": text(price), "quantity": text(request.quantity),
                         "average_price": text(position.average_price)}, ts_event=ts_event))
            uow.save_control(book.account_id, book.control, book.clock)
            return decision

    async def save_market_state(self) -> None:
        """Store the marks, watermarks and day/peak that changed since the last call."""
        marks, self._dirty_marks = self._dirty_marks, set()
        watermarks, self._dirty_watermarks = self._dirty_watermarks, set()
        controls, self._dirty_controls = self._dirty_controls, set()
        try:
            await self._store.save_market_state(
                [(e, s, m.price, m.ts_event) for e, s in marks if (m := self.market.marks.get((e, s))) is not None],
                [(a, s, w) for a, s in watermarks if (w := self.books[a].watermarks.get(s)) is not None],
                [(a, self.books[a].control) for a in controls if a in self.books])
        except BaseException:
            self._dirty_marks |= marks
            self._dirty_watermarks |= watermarks
            self._dirty_controls |= controls
            raise

    # --- the API --------------------------------------------------------------------------------------

    def _require(self, account_id: str) -> AccountBook:
        book = self.books.get(account_id)
        if book is None:
            raise UnknownAccountError(f"unknown account {account_id!r}; configured: {', '.join(sorted(self.books))}")
        return book

    async def manual_order(self, *, account_id: str, exchange: str, symbol: str, side: str, order_type: str,
                           quantity: Decimal, limit_price: Decimal | None, request_id: str | None) -> Decision:
        """POST /v1/orders: the same gate; the request id (Idempotency-Key) makes a retry get the same decision."""
        request_id = request_id or uuid.uuid4().hex
        decision_id = requests.manual_decision_id(account_id, request_id)
        client_order_id = requests.client_order_id_for_manual(account_id, request_id)
        book = self.books.get(account_id)
        involved = [account_id] if book is not None else []
        async with self._lock:
            try:
                async with self._store.unit_of_work(involved, decision_ids=[decision_id]) as uow:
                    await self._sync(uow, involved)
                    book = self.books.get(account_id)
                    prior = uow.stored.get(decision_id)
                    if prior is not None:
                        return self._replay(uow, prior, account_id, None)
                    ts_event = self._now()
                    with self._tracer.start_as_current_span("risk manual order", attributes={
                            "tradeflow.account_id": account_id}) as span:
                        started = time.perf_counter()
                        result = self._manual_request(book, account_id, request_id, exchange, symbol, side, order_type,
                                                      quantity, limit_price, ts_event)
                        decision = self._record(uow, decision_id, account_id, "manual", result, book, ts_event,
                                                client_order_id=client_order_id,
                                                trace_context=trace.set_span_in_context(span))
                        self._decision_seconds.observe(time.perf_counter() - started)
                        annotate_decision(span, decision)
                    if decision.approved:
                        uow.save_control(account_id, book.control, book.clock)
            except BaseException:
                self._invalidate(involved)
                raise
            self._committed(uow)
            self._count([decision])
            return decision

    async def amend_order(self, *, client_order_id: str, quantity: Decimal | None, limit_price: Decimal | None,
                          reason: str, request_id: str | None) -> AmendmentDecision:
        """PATCH /v1/orders/{id}: the open order as amended through the gate (gate.check_amendment);
        approved, an OrderAmendment on risk.orders.v1 for execution. The request id (Idempotency-Key)
        makes a retry get the stored decision. OrderNotFoundError / OrderFinishedError otherwise."""
        request_id = request_id or uuid.uuid4().hex
        decision_id = requests.amendment_decision_id(client_order_id, request_id)
        account_id = next((a for a, b in self.books.items() if client_order_id in b.orders), None)
        if account_id is None:
            row = await self._store.order_row(client_order_id)
            if row is None or row[0] not in self.books:
                raise OrderNotFoundError(f"no order {client_order_id} approved by risk")
            account_id = row[0]  # finished, or approved by another replica: the unit looks again
        async with self._lock:
            try:
                async with self._store.unit_of_work([account_id]) as uow:
                    await self._sync(uow, [account_id])
                    book = self.books[account_id]
                    prior, approved_before = await uow.amendment_lookup(decision_id, client_order_id)
                    if prior is not None:
                        message = stored_message(prior, OrderAmendment)
                        topic = self._topics.orders if isinstance(message, OrderAmendment) else self._topics.events
                        uow.publish(None, topic, account_id, message)
                        self._replayed.inc()
                        return AmendmentDecision(decision_id, account_id, replayed=True, **(
                            {"amendment": message} if isinstance(message, OrderAmendment) else {"event": message}))
                    tracked = book.orders.get(client_order_id)
                    if tracked is None or tracked.terminal:
                        status = tracked.status if tracked is not None else (
                            (await self._store.order_row(client_order_id)) or ("", "finished"))[1]
                        raise OrderFinishedError(client_order_id, status if status in TERMINAL else "finished")
                    ts_event = self._now()
                    with self._tracer.start_as_current_span("risk amend order", attributes={
                            "tradeflow.account_id": account_id, "tradeflow.client_order_id": client_order_id}) as span:
                        result = requests.amendment(tracked, decision_id, quantity, limit_price, ts_event)
                        if isinstance(result, requests.OrderRequest):
                            result = gate.check_amendment(result, book, self._gate_context(result))
                        if isinstance(result, requests.OrderRequest) and result.quantity is not None \
                                and result.quantity <= max(tracked.filled_quantity, tracked.applied_quantity):
                            result = Rejection.of(reasons.INVALID_QUANTITY, f"quantity {text(result.quantity)} (cut "
                                                  "to the market's step) does not exceed what is filled",
                                                  quantity=result.quantity, filled=tracked.filled_quantity)
                        decision = self._record_amendment(uow, decision_id, book, tracked, result, quantity,
                                                          limit_price, reason, approved_before + 1, ts_event, span)
                        span.set_attribute("tradeflow.risk.decision",
                                           "approved" if decision.amendment is not None else "rejected")
            except OrderFinishedError:
                raise  # refused before anything changed
            except BaseException:
                self._invalidate([account_id])
                raise
            self._committed(uow)
            outcome = "approved" if decision.amendment is not None else "rejected"
            self._decisions.labels("amendment", outcome, decision.event.reason if decision.event else "").inc()
            return decision

    def _record_amendment(self, uow: UnitOfWork, decision_id: str, book: AccountBook, tracked, result,
                          quantity: Decimal | None, limit_price: Decimal | None, reason: str, number: int,
                          ts_event: int, span) -> AmendmentDecision:
        account_id, cid = book.account_id, tracked.order.client_order_id
        if isinstance(result, Rejection):
            event = RiskEvent(event_id=f"rejection:{decision_id}", account_id=account_id, kind="rejection",
                              reason=result.reason, message=f"amendment of {cid} refused: {result.message}",
                              severity="warning", state=book.state, client_order_id=cid, details=result.details,
                              ts_event=ts_event)
            uow.add_amendment(decision_id, account_id, cid, event, result.reason, ts_event)
            uow.publish(trace.set_span_in_context(span), self._topics.events, account_id, event)
            return AmendmentDecision(decision_id, account_id, event=event)
        amendment = OrderAmendment(
            amendment_id=requests.amendment_id(cid, number), client_order_id=cid, account_id=account_id,
            exchange=tracked.order.exchange, symbol=tracked.order.symbol,
            quantity=result.quantity if quantity is not None else None,
            limit_price=limit_price, reason=reason, ts_event=ts_event)
        uow.add_amendment(decision_id, account_id, cid, amendment, "", ts_event)
        uow.publish(trace.set_span_in_context(span), self._topics.orders, account_id, amendment)
        # Counted at once when it grows the order (never less exposure than may be at the exchange);
        # a smaller size waits for execution's ``amended`` event.
        mark = self.market.mark(book.exchange, tracked.order.symbol)
        before, notional_before = tracked.order, tracked.open_notional(mark)
        tracked.order = amended_order(before, amendment.quantity, amendment.limit_price)
        if tracked.open_notional(mark) < notional_before:
            tracked.order = before
        uow.order_progress(tracked)
        uow.save_control(account_id, book.control, book.clock)
        return AmendmentDecision(decision_id, account_id, amendment=amendment)

    def _manual_request(self, book: AccountBook | None, account_id: str, request_id: str, exchange: str, symbol: str,
                        side: str, order_type: str, quantity: Decimal, limit_price: Decimal | None,
                        ts_event: int) -> requests.OrderRequest | Rejection:
        if book is None:
            return Rejection.of(reasons.UNKNOWN_ACCOUNT, f"account {account_id!r} is not configured", account_id=account_id)
        problem = requests.symbol_problem(exchange, symbol, book, self._markets.symbols(exchange))
        if problem is not None:
            return problem
        request = requests.manual(account_id, request_id, exchange, symbol, side, order_type, quantity, limit_price,
                                  ts_event, self.market.mark(exchange, symbol))
        if isinstance(request, Rejection):
            return request
        return gate.check(request, book, self._gate_context(request))

    async def set_limits(self, account_id: str, limits: RiskLimits, changed_by: str) -> LimitsVersion:
        """A new version of the account's limits (kept with who and when); the next decision uses it."""
        self._require(account_id)
        async with self._lock, self._store.unit_of_work([account_id]) as uow:
            await self._sync(uow, [account_id])
            book = self.books[account_id]
            version = await uow.save_limits(account_id, limits, changed_by)
            self._limits[account_id] = version
            uow.publish(None, self._topics.events, account_id, RiskEvent(
                event_id=f"limits_changed:{account_id}:{version.version}", account_id=account_id, kind="limits_changed",
                reason="limits_changed", message=f"limits version {version.version} by {changed_by}",
                severity="info", state=book.state, details={"version": str(version.version), "changed_by": changed_by},
                ts_event=self._now()))
            uow.save_control(account_id, book.control, book.clock)
        self._committed(uow)
        return version

    async def limits_history(self, account_id: str) -> list[LimitsVersion]:
        self._require(account_id)
        return await self._store.limits_history(account_id)

    async def set_kill_switch(self, target: str, engaged: bool, reason: str) -> list[str]:
        """Engage or disengage the kill switch of one account or (``*``) of every account.

        An engage publishes its kill_switch event even when already engaged: execution then
        cancels whatever is open again (an operator pressing the button means it).
        """
        ids = sorted(self.books) if target == "*" else [self._require(target).account_id]
        ts_event = self._now()
        async with self._lock:
            try:
                async with self._store.unit_of_work(ids) as uow:
                    await self._sync(uow, ids)
                    for account_id in ids:
                        book = self.books[account_id]
                        change = states.set_kill_switch(book.control, engaged, reason)
                        if change is not None:
                            self._announce(uow, book, change, ts_event)
                        elif engaged:
                            uow.publish(None, self._topics.events, account_id, self._kill_switch_event(
                                book, True, reasons.KILL_SWITCH, f"kill switch engaged: {reason}".rstrip(": "),
                                uow.versions.get(account_id, 0) + 1, uow.next_serial(), ts_event))
                            uow.save_control(account_id, book.control, book.clock)
            except BaseException:
                self._invalidate(ids)
                raise
            self._committed(uow)
        return ids

    async def resume(self, account_id: str, note: str) -> StateChange | None:
        """The operator resumes a reducing or halted account (breaches cleared, baselines restarted)."""
        self._require(account_id)
        async with self._lock:
            try:
                async with self._store.unit_of_work([account_id]) as uow:
                    await self._sync(uow, [account_id])
                    book = self.books[account_id]
                    change = states.resume(book.control, book.equity(self._mark_of(book)), note)
                    if change is not None:
                        self._announce(uow, book, change, self._now())
            except BaseException:
                self._invalidate([account_id])
                raise
            self._committed(uow)
            return change

    async def refresh(self, account_id: str) -> AccountBook:
        """The account, reloaded first when another replica changed it."""
        book = self._require(account_id)
        async with self._lock:
            if await self._store.version(account_id) != book.version:
                async with self._store.unit_of_work([account_id]) as uow:
                    await self._sync(uow, [account_id])
        return self.books[account_id]

    def risk_view(self, account_id: str) -> dict:
        """GET /v1/accounts/{id}/risk."""
        book = self._require(account_id)
        mark_of = self._mark_of(book)
        equity = book.equity(mark_of)
        control = book.control
        exposure = {symbol: text(book.exposure(symbol, mark_of(symbol))) for symbol in sorted(book.exposed_symbols())}
        positions = [{"symbol": p.symbol, "quantity": text(p.quantity), "average_price": text(p.average_price),
                      "mark": text(mark_of(p.symbol)), "realized_pnl": text(p.realized_pnl),
                      "unrealized_pnl": text(p.unrealized_pnl(mark_of(p.symbol) or p.average_price))}
                     for p in sorted(book.positions.values(), key=lambda p: p.symbol) if not p.is_flat]
        orders = [{"client_order_id": t.order.client_order_id, "symbol": t.order.symbol, "side": t.order.side,
                   "order_type": t.order.order_type, "quantity": text(t.order.quantity),
                   "quote_quantity": text(t.order.quote_quantity), "limit_price": text(t.order.limit_price),
                   "status": t.status, "filled_quantity": text(t.filled_quantity), "origin": t.order.origin}
                  for t in book.orders.values()]
        limits = self.limits(account_id)
        cooldown_until = None
        if limits.cooldown_losing_trades is not None and book.loss_streak >= limits.cooldown_losing_trades:
            cooldown_until = book.last_loss_ts + limits.cooldown_minutes * gate.NS_PER_MINUTE
        return {
            "account_id": account_id, "state": control.state, "reasons": control.reasons(),
            "kill_switch": {"engaged": control.kill_switch, "reason": control.kill_switch_reason,
                            "automatic": control.kill_switch_auto},
            "reconciliation": ({"status": control.reconciliation, "message": control.reconciliation_message}
                               if control.live else None),
            "equity_currency": book.equity_currency, "equity": text(equity), "equity_peak": text(control.equity_peak),
            "drawdown_pct": text(drawdown_pct(control, equity).quantize(Decimal("0.0001"))),
            "daily_pnl": text(daily_pnl(control, equity)), "day_start_equity": text(control.day_start_equity),
            "exposure": exposure, "gross_exposure": text(sum((Decimal(v) for v in exposure.values()), ZERO)),
            "positions": positions, "open_orders": orders,
            "balances": {c: text(a) for c, a in sorted(book.balances.amounts.items())},
            "signals_waiting": len(self._pending.get(account_id, ())),
            "losing_streak": book.loss_streak, "cooldown_until_ns": cooldown_until,
            "limits_version": self.limits_version(account_id).version,
        }

    def _report(self, book: AccountBook) -> None:
        mark_of = self._mark_of(book)
        equity = book.equity(mark_of)
        self._equity.labels(book.account_id).set(float(equity))
        self._drawdown.labels(book.account_id).set(float(drawdown_pct(book.control, equity)))
        self._exposure.labels(book.account_id).set(float(book.gross_exposure(mark_of)))
        self._daily_pnl.labels(book.account_id).set(float(daily_pnl(book.control, equity)))
        self._kill_switch.labels(book.account_id).set(1 if book.control.kill_switch else 0)
        for state in ("active", "reducing", "halted"):
            self._state.labels(book.account_id, state).set(1 if book.state == state else 0)

    # --- commits of the trading consumer ----------------------------------------------------------------

    def held_offsets(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition) the offset of its first signal still waiting (commits stop there)."""
        held: dict[tuple[str, int], int] = {}
        for queue in self._pending.values():
            for pending in queue:
                if pending.offset >= 0:
                    key = (pending.topic, pending.partition)
                    held[key] = min(held.get(key, pending.offset), pending.offset)
        return held

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions revoked: their waiting signals are the next owner's now."""
        for account_id, queue in self._pending.items():
            kept = deque(p for p in queue if (p.topic, p.partition) not in partitions)
            if len(kept) != len(queue):
                self._pending[account_id] = kept
                self._pending_ids[account_id] = {p.signal.signal_id for p in kept}
