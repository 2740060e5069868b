"""The live broker: one live account's orders at its exchange through ccxt (ADR 0022).

Behind the broker port (domain/broker.py) with ``in_process = False``: the service stores an
order as ``submitted`` before :meth:`LiveBroker.submit` sends it with its client order id, so the
exchange itself refuses a second order under that id. What the exchange answers moves the order;
a timeout or a dropped connection answers :class:`OutcomeUnknown` and the order stays in flight
until the exchange is asked for it by its client order id (:meth:`_check_in_flight`, every
``in_flight_interval_s`` once the order is ``in_flight_threshold_s`` old; only after
``in_flight_retries`` answers "no such order" is it rejected as ``not_found_at_exchange``).

Updates after the call come from one background task per account that polls the exchange every
``poll_interval_s`` (open orders, the account's trades since the newest known, the orders that
left the open list) and, at its start, after every failed round that is followed by a good one
(a reconnect) and on request, runs a full reconciliation: the known fills are read back from the
database, missing transitions and fills are applied (fill ids are the exchange's trade ids, so a
fill seen twice is stored once), orders at the exchange that execution never sent are adopted,
and the exchange's balances are compared with the fold of the fills: a difference that the fills
cannot explain halts the account (:class:`AccountMismatch`). The account is ready once its first
reconciliation succeeded; until then it refuses new orders (``account_not_ready``).

The network is used outside the service's lock; the updates are computed from what was fetched
*under* the lock against the service's current view (:meth:`LiveHost.apply_from_broker`), so an
answer that raced the poll is never applied twice. Calls go through the request hold (after a
429/418) and the circuit breaker of libs/exchanges. What differs per exchange is beside it: how
orders are created, asked for by client order id and canceled (adapters/order_calls.py) and how
the account's trades are paged (adapters/account_trades.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import msgspec
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.messages import Fill, Order, OrderAmendment
from tradeflow_exchanges.circuit_breaker import CircuitBreaker
from tradeflow_exchanges.reconnect_budget import ReconnectBudget
from tradeflow_exchanges.request_hold import RequestHold, retry_after_seconds
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.money import to_decimal
from tradeflow_trading.positions import Balances

from tradeflow_execution.adapters.account_trades import ExchangeCalls, account_trades
from tradeflow_execution.adapters.order_calls import order_calls
from tradeflow_execution.domain.broker import (
    AmendNotApplied,
    AmendRefused,
    BrokerSnapshot,
    BrokerState,
    BrokerUpdate,
    FillUpdate,
    OpenOrder,
    OrderAmended,
    OrderUpdate,
    OutcomeUnknown,
)
from tradeflow_execution.domain.live import (
    NOT_FOUND_AT_EXCHANGE,
    RATE_LIMITED,
    AccountMismatch,
    AccountPending,
    AdoptedOrder,
    ExchangeOrder,
    exchange_reason,
    order_updates,
    slippage_bps,
)
from tradeflow_execution.live_metrics import LiveMetrics
from tradeflow_execution.store import TrackedOrder

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
Compute = Callable[[Mapping[str, TrackedOrder]], list[BrokerUpdate]]


@dataclass(frozen=True, slots=True)
class LiveTimings:
    poll_interval_s: float = 1.0
    in_flight_interval_s: float = 2.0
    in_flight_threshold_s: float = 5.0
    in_flight_retries: int = 3
    request_timeout_s: float = 10.0
    fills_lookback_s: float = 7 * 86_400.0
    balance_checks: int = 3  # a balance difference must persist this many rounds in a row to halt
    reconcile_interval_s: float = 60.0  # a full reconciliation (balances included) at least this often
    user_stream: bool = True  # watch_orders (the user data stream) wakes a round at once
    stream_poll_interval_s: float = 15.0  # the polling period while the user data stream is up


class LiveHost(Protocol):
    """What the broker needs of the service."""

    def live_orders(self, account_id: str) -> Mapping[str, TrackedOrder]:
        """The account's open orders (in flight included) as the service holds them."""

    async def known_fills(self, account_id: str) -> list[Fill]:
        """Every stored fill of the account."""

    async def stored_order_status(self, client_order_id: str) -> str | None:
        """The stored status of an order, None when execution never had it."""

    def balances(self, account_id: str) -> Balances: ...

    async def apply_from_broker(self, account_id: str, compute: Compute) -> None:
        """Under the service's lock: ``compute(open orders)`` and apply its updates in one transaction."""


class ExchangeUnavailable(Exception):
    """The call was not made: the request hold or the circuit breaker keeps the exchange alone."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Malformed(ValueError):
    """An exchange answer that cannot be read."""


@dataclass(slots=True)
class InFlight:
    order: Order
    since: float  # monotonic seconds
    misses: int = 0


@dataclass(slots=True)
class PendingAmend:
    """An amendment whose answer never came: resolved by asking the exchange, never sent again."""

    amendment: OrderAmendment
    order: Order  # the order as amended
    old_exchange_order_id: str
    since: float  # monotonic seconds
    misses: int = 0


@dataclass(slots=True)
class Fetched:
    """One round's view of the exchange."""

    open_orders: dict[str, tuple[ExchangeOrder, dict]] = field(default_factory=dict)
    ended: dict[str, ExchangeOrder] = field(default_factory=dict)  # ours that left the open list
    not_found: set[str] = field(default_factory=set)
    trades: list[dict] = field(default_factory=list)
    order_of_trade: dict[str, str] = field(default_factory=dict)  # exchange order id -> client order id
    adopt: dict[str, tuple[ExchangeOrder, dict]] = field(default_factory=dict)
    extra_fills: dict[str, list[Fill]] = field(default_factory=dict)  # fetched by order id


class LiveBroker:
    """The broker of one live account."""

    in_process = False

    def __init__(self, account: AccountConfig, exchange: Any, *, symbols: Sequence[str], timings: LiveTimings,
                 metrics: LiveMetrics, breaker: CircuitBreaker, rate_limit_wait_s: float = 60.0,
                 reconnect_budget: ReconnectBudget | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.account_id = account.id
        self._account = account
        self._exchange = exchange
        self._trades = account_trades(exchange, ExchangeCalls(self._call, self._fetch_list, self._malformed))
        self._orders = order_calls(exchange, self._call, self._fetch_list)  # create, ask by client order id, cancel
        self._symbols = set(symbols)
        self._timings = timings
        self._metrics = metrics
        self._breaker = breaker
        self._hold = RequestHold()
        self._rate_limit_wait_s = rate_limit_wait_s
        self._clock = clock
        self._host: LiveHost | None = None
        self._in_flight: dict[str, InFlight] = {}
        self._seen_fills: set[str] = set()
        self._since_ms: dict[str, int] = {}  # per symbol: trades are fetched from here
        self._mids: dict[str, Decimal] = {}
        self._offsets: dict[str, Decimal] = {}  # adopted orders: executed before their adoption
        self._pending_cancels: dict[str, str] = {}  # in-flight orders to cancel once found (their reason)
        self._pending_amends: dict[str, PendingAmend] = {}  # amendments with an unknown outcome, by client order id
        self._history_before: dict[str, int] = {}  # adopted orders: their trades before this (ms) are history
        self._exchange_ids: dict[str, str] = {}  # exchange order id -> client order id
        self._need_full = True
        self._full_requested: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._reconnects = reconnect_budget or ReconnectBudget(10, 300.0)
        self.stream_up = False
        self._mismatch_rounds = 0
        self.ready = False
        self._ready_event = asyncio.Event()
        self.halted_reason = ""
        self.last_error = "not reconciled yet"
        self.reconciliations = 0

    # --- wiring ---------------------------------------------------------------------------------------

    def attach(self, host: LiveHost) -> None:
        self._host = host

    async def start(self) -> None:
        # Risk holds the account until the first reconciliation reports agreement (exec.accounts.v1).
        await self._host.apply_from_broker(self.account_id, lambda _open: [AccountPending(self.account_id, self._clock.now_ns())])
        self._full_requested = asyncio.Event()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"live-broker-{self.account_id}")
        if self._timings.user_stream and self._exchange.has.get("watchOrders"):
            self._watcher = asyncio.create_task(self._watch(), name=f"live-stream-{self.account_id}")

    async def stop(self) -> None:
        for task in (self._watcher, self._task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._watcher = None
        await self._exchange.close()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the first reconciliation; whether it succeeded."""
        return await self._wait(self._ready_event, timeout_s)

    async def _wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Wait for ``event`` up to ``timeout_s`` of the clock's time; whether it was set."""
        if event.is_set():
            return True
        waiting = asyncio.ensure_future(event.wait())
        sleeping = asyncio.ensure_future(self._clock.sleep(timeout_s))
        try:
            await asyncio.wait((waiting, sleeping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            sleeping.cancel()
        return event.is_set()

    async def _watch(self) -> None:
        """The user data stream (``watch_orders``): every event wakes a poll round at once, whose
        REST answers are what is applied; a lost stream is reconnected within the reconnect budget
        and followed by a full reconciliation."""
        lost = False
        while True:
            wait = self._reconnects.wait_s(self._clock.monotonic())
            if wait > 0:
                await self._clock.sleep(wait)
            self._reconnects.record_attempt(self._clock.monotonic())
            try:
                while True:
                    orders = await self._exchange.watch_orders()
                    self.stream_up = True
                    self._metrics.stream_events.labels(self.account_id).inc(len(orders))
                    if lost:  # reconnected: reconcile what the gap may have hidden
                        lost = False
                        self._full_requested.set()
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - polling carries on; the stream is tried again
                if self.stream_up or not lost:
                    log.warning("account %s: user data stream lost (%s); polling every %.1f s",
                                self.account_id, _short(exc), self._timings.poll_interval_s)
                self.stream_up = False
                lost = True
                self._metrics.stream_losses.labels(self.account_id).inc()
                self._full_requested.set()
                self._wake.set()
                await self._clock.sleep(min(self._timings.poll_interval_s, 1.0))

    # --- the broker port ------------------------------------------------------------------------------

    async def submit(self, order: Order) -> list[BrokerUpdate]:
        cid = order.client_order_id
        if not self.ready:
            return [OrderUpdate(cid, "rejected", self._clock.now_ns(),
                                reason=f"account_not_ready: {self.account_id} has not been reconciled ({self.last_error})")]
        if order.quote_quantity is not None:
            return [OrderUpdate(cid, "rejected", self._clock.now_ns(),
                                reason="invalid_quantity: quote-sized orders are not sent to live exchanges")]
        problem = await self._precision_problem(order)
        if problem is not None:
            return [OrderUpdate(cid, "rejected", self._clock.now_ns(), reason=problem)]
        held = self._hold.remaining_s(self._clock.monotonic())
        if 0 < held <= self._timings.request_timeout_s:  # a short hold after a 429: wait it out, then send
            await self._clock.sleep(held)
        await self._note_mid(order)
        params: dict[str, Any] = self._orders.create_params(cid)
        if order.order_type == "limit" and order.time_in_force in ("IOC", "FOK"):
            params["timeInForce"] = order.time_in_force
        price = str(order.limit_price) if order.limit_price is not None else None
        try:
            raw = await self._call(self._exchange.create_order, order.symbol, order.order_type, order.side,
                                   str(order.quantity), price, params)
        except ExchangeUnavailable as exc:  # never sent: a definite answer
            return [OrderUpdate(cid, "rejected", self._clock.now_ns(), reason=f"{exc.reason}: {exc}")]
        except Exception as exc:  # noqa: BLE001 - classified below
            return self._refusal_or_unknown(order, exc)
        if self._orders.status(raw) is None:  # placed, its state not in the answer (Bybit, Kraken, OKX): ask
            try:
                raw = await self._orders.by_client_id(order.symbol, cid, raw.get("id"))
            except Exception as exc:  # noqa: BLE001 - placed: the in-flight check asks again by its id
                self._track_in_flight(order)
                return [OutcomeUnknown(cid, f"placed, its state not read: {_short(exc)}")]
        try:
            theirs = self._exchange_order(raw, cid)
        except Malformed as exc:
            self._malformed(f"create answer of {cid}", exc)
            self._track_in_flight(order)
            return [OutcomeUnknown(cid, f"unreadable create answer: {exc}")]
        self._exchange_ids[theirs.exchange_order_id] = cid
        fills = await self._order_fills(order, theirs) if theirs.executed > 0 else []
        updates = order_updates("submitted", Decimal(0), theirs, [f for f in fills if f.fill_id not in self._seen_fills])
        return self._emit(order, updates)

    async def cancel(self, client_order_id: str, reason: str) -> list[BrokerUpdate]:
        tracked = self._host.live_orders(self.account_id).get(client_order_id) if self._host else None
        if tracked is None:
            return []
        order = tracked.state.order
        if client_order_id in self._in_flight or tracked.state.status == "submitted":
            # Nothing to cancel by yet: canceled once the exchange says it has it (_cancel_pending).
            self._pending_cancels[client_order_id] = reason
            return [OutcomeUnknown(client_order_id, "cancel of an order in flight: canceled once it is found")]
        eid = tracked.state.exchange_order_id or None
        try:
            raw = await self._orders.cancel(order.symbol, client_order_id, eid)
            if self._orders.status(raw) is None:  # the answer has no state (Bybit, Kraken, OKX): ask for it
                raw = await self._orders.by_client_id(order.symbol, client_order_id, eid)
            theirs = self._exchange_order(raw, client_order_id)
        except Exception as exc:  # noqa: BLE001 - a fill may have won the race: ask what the order is now
            log.info("cancel of %s refused (%s): asking the exchange for the order", client_order_id, exc)
            try:
                theirs = self._exchange_order(await self._orders.by_client_id(order.symbol, client_order_id, eid),
                                              client_order_id)
            except Exception as again:  # noqa: BLE001
                return [OutcomeUnknown(client_order_id, f"cancel: {again}")]
        fills = await self._order_fills(order, theirs) if theirs.executed > tracked.state.filled_quantity else []
        updates = order_updates(tracked.state.status, tracked.state.filled_quantity, theirs,
                                [f for f in fills if f.fill_id not in self._seen_fills])
        updates = [OrderUpdate(u.client_order_id, u.status, u.ts_event, reason=reason)
                   if isinstance(u, OrderUpdate) and u.status == "canceled" else u for u in updates]
        return self._emit(order, updates)

    async def amend(self, amendment: OrderAmendment) -> list[BrokerUpdate]:
        """Amend through ccxt's ``edit_order`` where the exchange has it (``has["editOrder"]``).

        The client order id stays the order's identity: the edit is sent with it as the (new)
        client order id; Binance spot answers with a replacement order (``cancelReplace``: a new
        exchange order id, tracked from then on). Only an order with nothing filled is amended, and
        on Binance with ``cancelRestrictions=ONLY_NEW``: a fill that races the amendment makes the
        exchange refuse the cancel (the order keeps its size: it can never be overfilled), and the
        replacement is the whole amended quantity. An answer that never comes leaves the amendment
        pending until the exchange is asked (:meth:`_check_amends`)."""
        import ccxt

        cid = amendment.client_order_id
        tracked = self._host.live_orders(self.account_id).get(cid) if self._host else None
        if tracked is None:
            raise AmendRefused(f"order_finished: order {cid} is not open")
        state = tracked.state
        if not self._exchange.has.get("editOrder"):
            raise AmendRefused(f"amend_not_supported: {self._account.exchange} has no order editing in ccxt "
                               "(has['editOrder'] is false): cancel the order and place a new one")
        if state.status == "submitted" or cid in self._in_flight:
            raise AmendRefused("order_in_flight: the exchange has not confirmed the order yet")
        if cid in self._pending_amends:
            raise AmendRefused("amend_in_flight: the outcome of an earlier amendment is not known yet")
        if state.filled_quantity > 0:
            raise AmendRefused(f"partially_filled: {state.filled_quantity} of the order is filled; a live order is "
                               "amended only before its first fill (cancel the rest and place a new order)")
        if not self.ready:
            raise AmendRefused(f"account_not_ready: {self.account_id} has not been reconciled ({self.last_error})")
        order = state.order
        changes: dict[str, Any] = {}
        if amendment.quantity is not None:
            changes["quantity"] = amendment.quantity
        if amendment.limit_price is not None:
            if order.order_type != "limit":
                raise AmendRefused(f"invalid_order: order {cid} is a market order; it has no limit price")
            changes["limit_price"] = amendment.limit_price
        new = msgspec.structs.replace(order, **changes)
        problem = await self._precision_problem(new)
        if problem is not None:
            raise AmendRefused(problem)
        params = self._orders.edit_params(cid)  # Binance: refused by the exchange once anything filled
        price = str(new.limit_price) if new.limit_price is not None else None
        old_eid = state.exchange_order_id
        try:
            raw = await self._call(self._exchange.edit_order, old_eid, order.symbol, order.order_type, order.side,
                                   str(new.quantity - state.filled_quantity), price, params)
        except ExchangeUnavailable as exc:  # never sent
            raise AmendRefused(f"{exc.reason}: {exc}") from None
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:  # answered: not done
            return self._amend_failed(amendment, "refused", f"{RATE_LIMITED}: {_short(exc)}")
        except (ccxt.NetworkError, ccxt.BadResponse) as exc:
            refused = _cancel_replace_failure(exc)
            if refused is None and not isinstance(exc, ccxt.RequestTimeout) and isinstance(exc, ccxt.BadResponse):
                refused = ("refused", _short(exc))
            if refused is None:  # a timeout or a dropped connection: ask, never send again
                self._metrics.exchange_errors.labels(self.account_id, "unknown_outcome").inc()
                self._pending_amends[cid] = PendingAmend(amendment, new, old_eid, self._clock.monotonic())
                return [OutcomeUnknown(cid, f"amend {amendment.amendment_id}: {type(exc).__name__}: {_short(exc)}")]
            return self._amend_failed(amendment, *refused)
        except ccxt.ExchangeError as exc:
            refused = _cancel_replace_failure(exc) or ("refused", f"{exchange_reason(type(exc).__name__, str(exc))}: "
                                                                  f"{_short(exc)}")
            return self._amend_failed(amendment, *refused)
        except Exception as exc:  # noqa: BLE001 - whatever else happened, the exchange is asked
            self._pending_amends[cid] = PendingAmend(amendment, new, old_eid, self._clock.monotonic())
            return [OutcomeUnknown(cid, f"amend {amendment.amendment_id}: {type(exc).__name__}: {_short(exc)}")]
        try:
            theirs = self._exchange_order(raw, cid)
        except Malformed as exc:
            self._malformed(f"amend answer of {cid}", exc)
            self._pending_amends[cid] = PendingAmend(amendment, new, old_eid, self._clock.monotonic())
            return [OutcomeUnknown(cid, f"unreadable amend answer: {exc}")]
        return await self._amended(amendment, new, theirs)

    async def _amended(self, amendment: OrderAmendment, new: Order, theirs: ExchangeOrder) -> list[BrokerUpdate]:
        """The replacement the exchange reports: the amendment applied, and whatever it did since."""
        cid = amendment.client_order_id
        self._exchange_ids[theirs.exchange_order_id] = cid
        updates: list[BrokerUpdate] = [OrderAmended(cid, amendment.amendment_id, new, theirs.ts_event,
                                                    exchange_order_id=theirs.exchange_order_id)]
        fills = await self._order_fills(new, theirs) if theirs.executed > 0 else []
        updates += order_updates("accepted", Decimal(0), theirs, [f for f in fills if f.fill_id not in self._seen_fills])
        return self._emit(new, updates)

    def _amend_failed(self, amendment: OrderAmendment, outcome: str, detail: str) -> list[BrokerUpdate]:
        """The exchange kept the order (``refused``: a fill may have won the race, the next round
        finds it), or canceled it and refused the replacement (``canceled``: the order ends so)."""
        cid = amendment.client_order_id
        self._metrics.exchange_errors.labels(self.account_id, "amend_refused").inc()
        if self._wake is not None:
            self._wake.set()  # a fill that raced the amendment is looked for at once
        now = self._clock.now_ns()
        if outcome == "canceled":
            return [AmendNotApplied(cid, amendment.amendment_id, f"replacement_refused: {detail}", now),
                    OrderUpdate(cid, "canceled", now, reason=f"canceled at the exchange by the amendment, whose "
                                                             f"replacement was refused: {detail}")]
        return [AmendNotApplied(cid, amendment.amendment_id, f"exchange_refused: {detail}", now)]

    async def resolve_amendment(self, amendment: OrderAmendment, order: Order,
                                exchange_order_id: str) -> list[BrokerUpdate]:
        """At a (re)load: an amendment stored as sent is asked for by the amend check, never sent again."""
        changes: dict[str, Any] = {}
        if amendment.quantity is not None:
            changes["quantity"] = amendment.quantity
        if amendment.limit_price is not None:
            changes["limit_price"] = amendment.limit_price
        self._pending_amends[amendment.client_order_id] = PendingAmend(
            amendment, msgspec.structs.replace(order, **changes), exchange_order_id,
            self._clock.monotonic() - self._timings.in_flight_threshold_s)
        self._need_full = True
        return []

    async def resolve(self, order: Order) -> list[BrokerUpdate]:
        """At a (re)load: the order is asked for by the in-flight check, never sent again."""
        self._track_in_flight(order)
        self._need_full = True
        return []

    async def restore(self, open_order: OpenOrder) -> list[BrokerUpdate]:
        """At a (re)load: the next round reconciles it with the exchange."""
        state = open_order.broker_state
        if state.get("mid"):
            self._mids[open_order.order.client_order_id] = Decimal(str(state["mid"]))
        if state.get("executed_before_adoption"):
            self._offsets[open_order.order.client_order_id] = Decimal(str(state["executed_before_adoption"]))
            self._history_before[open_order.order.client_order_id] = int(state.get("history_before_ms", 0))
        self._need_full = True
        return []

    async def snapshot(self, fills_since_ns: int) -> BrokerSnapshot:
        fetched = await self._fetch_open()
        balances = await self._fetch_balances()
        return BrokerSnapshot(open_orders=frozenset(fetched), balances=balances)

    def broker_state(self, client_order_id: str) -> BrokerState:
        state = {}
        if (mid := self._mids.get(client_order_id)) is not None:
            state["mid"] = str(mid)
        if (offset := self._offsets.get(client_order_id)) is not None:
            state["executed_before_adoption"] = str(offset)
            state["history_before_ms"] = self._history_before.get(client_order_id, 0)
        return state

    async def reconcile(self) -> None:
        """A full reconciliation now (POST /v1/accounts/{id}/reconcile); raises when it fails."""
        await self._full_round()
        if self._wake is not None:
            self._wake.set()

    # --- calls ------------------------------------------------------------------------------------------

    async def _call(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        import ccxt  # imported on use: ccxt takes a second to import

        now = self._clock.monotonic()
        held = self._hold.remaining_s(now)
        if held > 0:
            raise ExchangeUnavailable(RATE_LIMITED, f"requests held for {held:.1f} s after a rate-limit refusal")
        if not self._breaker.try_acquire(now):
            raise ExchangeUnavailable("exchange_unavailable",
                                      f"circuit breaker open for {self._breaker.wait_s(now):.1f} s")
        try:
            result = await method(*args)
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
            headers = getattr(self._exchange, "last_response_headers", None) or {}
            wait = retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))
            self._hold.hold(self._clock.monotonic(), self._rate_limit_wait_s if wait is None else wait)
            self._breaker.record_success()  # it answered
            raise
        except ccxt.NetworkError:
            self._breaker.record_failure(self._clock.monotonic())
            raise
        except ccxt.ExchangeError:
            self._breaker.record_success()
            raise
        self._breaker.record_success()
        return result

    async def _fetch_list(self, method_name: str, parse_name: str, symbol: str, *args: Any) -> list[dict]:
        """A ccxt list call (open orders, trades) whose answer holds an unreadable entry: the other
        entries are read one by one from the answer, the bad ones counted and skipped."""
        import ccxt

        try:
            return await self._call(getattr(self._exchange, method_name), symbol, *args)
        except ccxt.BaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - ccxt's parser failed on the answer as a whole
            raw = getattr(self._exchange, "last_json_response", None)  # set before parsing; no await since
            self._malformed(f"{method_name} answer", exc)
            if not isinstance(raw, list):
                raise Malformed(f"{method_name}: {exc!r}") from None
        market = self._exchange.market(symbol)
        items = []
        for entry in raw:
            try:
                items.append(getattr(self._exchange, parse_name)(entry, market))
            except Exception as exc:  # noqa: BLE001
                self._malformed(f"{method_name} entry {str(entry)[:200]}", exc)
        return items

    def _refusal_or_unknown(self, order: Order, exc: Exception) -> list[BrokerUpdate]:
        import ccxt

        cid = order.client_order_id
        if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)) or (
                isinstance(exc, ccxt.ExchangeError) and not isinstance(exc, ccxt.NetworkError)):
            reason = exchange_reason(type(exc).__name__, str(exc))
            if "Duplicate order" in str(exc):  # the exchange has it already: ask for it
                self._track_in_flight(order)
                return [OutcomeUnknown(cid, "the exchange has this client order id already")]
            self._metrics.exchange_errors.labels(self.account_id, reason).inc()
            return [OrderUpdate(cid, "rejected", self._clock.now_ns(), reason=f"{reason}: {_short(exc)}")]
        # Timeouts, dropped connections, anything else: the outcome is unknown.
        self._metrics.exchange_errors.labels(self.account_id, "unknown_outcome").inc()
        self._track_in_flight(order)
        return [OutcomeUnknown(cid, f"{type(exc).__name__}: {_short(exc)}")]

    def _track_in_flight(self, order: Order) -> None:
        self._in_flight.setdefault(order.client_order_id, InFlight(order, self._clock.monotonic()))
        self._metrics.in_flight.labels(self.account_id).set(len(self._in_flight))

    async def _precision_problem(self, order: Order) -> str | None:
        """ccxt rounds prices and truncates amounts to the market's steps before sending: an order
        off those steps is refused here instead of being changed silently."""
        try:
            await self._exchange.load_markets()
            price_ok = order.limit_price is None or Decimal(self._exchange.price_to_precision(
                order.symbol, str(order.limit_price))) == order.limit_price
            amount_ok = Decimal(self._exchange.amount_to_precision(order.symbol, str(order.quantity))) == order.quantity
        except Exception as exc:  # noqa: BLE001 - the exchange will judge it (the markets could not be read)
            name = type(exc).__name__
            if name == "BadSymbol":
                return f"unknown_market: {order.symbol} is not a market of {self._account.exchange}"
            if name in ("InvalidOrder", "ArgumentsRequired"):  # below the minimum amount
                return f"invalid_quantity: {_short(exc)}"
            log.info("market steps of %s unknown (%s): sent as it is", order.symbol, _short(exc))
            return None
        if not price_ok:
            return f"invalid_price: {order.limit_price} is off the tick size of {order.symbol}"
        if not amount_ok:
            return f"invalid_quantity: {order.quantity} is off the lot size of {order.symbol}"
        return None

    async def _note_mid(self, order: Order) -> None:
        try:
            book = await self._call(self._exchange.fetch_order_book, order.symbol, 5)
            bid, ask = to_decimal(book["bids"][0][0]), to_decimal(book["asks"][0][0])
            self._mids[order.client_order_id] = (bid + ask) / 2
        except Exception as exc:  # noqa: BLE001 - slippage against the mid is then unknown
            log.info("no order book mid for %s: %s", order.client_order_id, _short(exc))

    # --- reading exchange answers --------------------------------------------------------------------

    def _exchange_order(self, raw: Any, client_order_id: str | None = None) -> ExchangeOrder:
        try:
            info = raw["info"] if isinstance(raw.get("info"), dict) else {}
            status = self._orders.status(raw)
            if status is None:
                raise KeyError("status")
            cid = raw.get("clientOrderId") or info.get("clientOrderId") or info.get("origClientOrderId") \
                or client_order_id
            if info.get("origClientOrderId"):  # a cancel's answer names the cancel by clientOrderId
                cid = info["origClientOrderId"]
            if raw.get("id") is None or not cid:
                raise KeyError("id and client order id")
            executed = to_decimal(info["executedQty"]) if "executedQty" in info else to_decimal(raw["filled"] or 0)
            ts = raw.get("lastUpdateTimestamp") or raw.get("timestamp") or self._clock.now_ms()
            return ExchangeOrder(str(cid), str(raw["id"]), status, executed, int(ts) * NS_PER_MS)
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise Malformed(f"order {str(raw)[:200]}: {exc!r}") from None

    def _fill(self, order: Order, trade: dict) -> Fill:
        try:
            if trade.get("id") is None or trade.get("timestamp") is None:
                raise KeyError("id and timestamp")
            fee = trade.get("fee") or {}
            info = trade.get("info") or {}
            maker = trade.get("takerOrMaker")
            return Fill(
                fill_id=self._fill_key(order.symbol, trade),
                client_order_id=order.client_order_id, account_id=self.account_id, exchange=order.exchange,
                symbol=order.symbol, side=order.side,
                quantity=to_decimal(info.get("qty", trade["amount"])),
                price=to_decimal(info.get("price", trade["price"])),
                fee=to_decimal(info.get("commission", fee.get("cost") or 0)),
                fee_currency=str(info.get("commissionAsset") or fee.get("currency") or order.symbol.split("/")[1]),
                liquidity=maker if maker in ("maker", "taker") else "unknown",
                strategy_id=order.strategy_id, ts_event=int(trade["timestamp"]) * NS_PER_MS)
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise Malformed(f"trade {str(trade)[:200]}: {exc!r}") from None

    async def _order_fills(self, order: Order, theirs: ExchangeOrder) -> list[Fill]:
        """The exchange's trades of one order (empty when they cannot be fetched now: a later round will)."""
        try:
            # From a minute before the order (clocks differ); adopted orders carry the exchange's time.
            trades = await self._order_trades(order.symbol, theirs.exchange_order_id,
                                              order.ts_event // NS_PER_MS - 60_000)
        except Exception as exc:  # noqa: BLE001
            log.info("trades of %s not fetched now: %s", order.client_order_id, _short(exc))
            return []
        fills = []
        for trade in trades:
            if self._history(order, trade):
                continue
            try:
                fills.append(self._fill(order, trade))
            except Malformed as exc:
                self._malformed(f"trade of {order.client_order_id}", exc)
        return fills

    def _malformed(self, what: str, exc: Exception) -> None:
        self._metrics.malformed.labels(self.account_id).inc()
        log.warning("account %s: unreadable exchange message (%s) skipped: %s", self.account_id, what, exc)

    def _emit(self, order: Order, updates: list[BrokerUpdate]) -> list[BrokerUpdate]:
        """Fills are remembered as seen (a later round skips them) and their slippage observed."""
        for update in updates:
            if isinstance(update, FillUpdate):
                fill = update.fill
                self._seen_fills.add(fill.fill_id)
                labels = (order.strategy_id or "-", order.symbol)
                decision = slippage_bps(order.side, fill.price, order.decision_price)
                if decision is not None:
                    self._metrics.slippage_decision.labels(*labels).observe(float(decision))
                mid = slippage_bps(order.side, fill.price, self._mids.get(order.client_order_id))
                if mid is not None:
                    self._metrics.slippage_mid.labels(*labels).observe(float(mid))
            elif isinstance(update, OrderUpdate) and update.status != "accepted":
                self._in_flight.pop(update.client_order_id, None)
            elif isinstance(update, OrderUpdate):
                self._in_flight.pop(update.client_order_id, None)
                if update.exchange_order_id:
                    self._exchange_ids[update.exchange_order_id] = update.client_order_id
        self._metrics.in_flight.labels(self.account_id).set(len(self._in_flight))
        return updates

    # --- the background task ------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Rounds: full ones (reconciliation) when due, polls every interval or when the user data
        stream wakes the task, the in-flight check and time-in-force expiry every in-flight interval."""
        last_in_flight = last_full = last_round = 0.0
        failed = False
        timings = self._timings
        while True:
            interval = timings.stream_poll_interval_s if self.stream_up else timings.poll_interval_s
            woken = self._wake.is_set()
            self._wake.clear()  # an event during the round wakes the next one
            try:
                now = self._clock.monotonic()
                due = now - last_full >= timings.reconcile_interval_s
                if self._need_full or failed or due or self._full_requested.is_set():
                    self._full_requested.clear()
                    last_full = last_round = now
                    await self._full_round()
                elif woken or now - last_round >= interval:
                    last_round = now
                    await self._round(full=False)
                failed = False
                if self._clock.monotonic() - last_in_flight >= timings.in_flight_interval_s:
                    last_in_flight = self._clock.monotonic()
                    await self._check_in_flight()
                    await self._check_amends()
                    await self._cancel_pending()
                    await self._expire_orders()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop never dies; the next good round reconciles
                if not failed:
                    log.warning("account %s: exchange round failed (%s); reconciling once it answers again",
                                self.account_id, _short(exc))
                self.last_error = _short(exc)
                failed = True
            await self._wait(self._wake, min(interval, timings.in_flight_interval_s))

    async def _full_round(self) -> None:
        """Reconciliation: known fills re-read, everything the exchange has applied, balances compared."""
        host = self._host
        try:
            fills = await host.known_fills(self.account_id)
            self._seen_fills = {f.fill_id for f in fills}
            lookback_ms = self._clock.now_ms() - int(self._timings.fills_lookback_s * 1000)
            newest: dict[str, int] = {}
            for fill in fills:
                newest[fill.symbol] = max(newest.get(fill.symbol, 0), fill.ts_event // NS_PER_MS)
            for order in host.live_orders(self.account_id).values():
                symbol = order.state.order.symbol
                self._symbols.add(symbol)
                newest[symbol] = min(newest.get(symbol, 2**62), order.state.order.ts_event // NS_PER_MS - 60_000)
            # Trades from the newest known fill (or the oldest open order) of each symbol, or from
            # where the polling got to; a symbol with neither (the account's first start) from a
            # minute ago: older trades are history from before Tradeflow traded the account.
            now_ms = self._clock.now_ms()
            for symbol in self._symbols:
                known = [x for x in (newest.get(symbol), self._since_ms.get(symbol)) if x is not None]
                self._since_ms[symbol] = max(lookback_ms, min(known) if known else now_ms - 60_000)
            self._need_full = False
            await self._round(full=True)
            differences = await self._balance_differences()
            if differences is None:  # trades meanwhile: compared again next round
                self._need_full = True
                self._metrics.reconciliations.labels(self.account_id, "retry").inc()
                return
            if differences:
                self._mismatch_rounds += 1
                if self._mismatch_rounds >= self._timings.balance_checks:
                    await host.apply_from_broker(self.account_id, lambda _open: [AccountMismatch(
                        self.account_id, tuple(differences), self._clock.now_ns())])
                    self.halted_reason = "; ".join(differences)
                    self._metrics.reconciliations.labels(self.account_id, "mismatch").inc()
                else:
                    self._need_full = True  # look again next round: a fill may have been in between
                    self._metrics.reconciliations.labels(self.account_id, "retry").inc()
                    return
            else:
                self._mismatch_rounds = 0
                if self.halted_reason or not self.ready:  # agreement: the first, or the halt lifted
                    await host.apply_from_broker(self.account_id, lambda _open: [AccountMismatch(
                        self.account_id, (), self._clock.now_ns())])
                    self.halted_reason = ""
                self._metrics.reconciliations.labels(self.account_id, "agreed").inc()
            self.reconciliations += 1
            self.ready = True
            self._ready_event.set()
            self.last_error = ""
        except BaseException:
            self._need_full = True
            self._metrics.reconciliations.labels(self.account_id, "failed").inc()
            raise

    async def _fetch_open(self) -> dict[str, tuple[ExchangeOrder, dict]]:
        found: dict[str, tuple[ExchangeOrder, dict]] = {}
        for symbol in sorted(self._symbols):
            for raw in await self._orders.open_orders(symbol):
                try:
                    theirs = self._exchange_order(raw)
                except Malformed as exc:
                    self._malformed("open order", exc)
                    continue
                found[theirs.client_order_id] = (theirs, raw)
                self._exchange_ids.setdefault(theirs.exchange_order_id, theirs.client_order_id)
        return found

    async def _fetch_balances(self) -> dict[str, Decimal]:
        balance = await self._call(self._exchange.fetch_balance)
        totals = balance.get("total") or {}
        return {currency: to_decimal(amount) for currency, amount in totals.items() if amount is not None}

    def _fill_key(self, symbol: str, trade: dict) -> str:
        """The fill id of one of the account's trades: the exchange's trade id, qualified by the
        account (two accounts can be the two sides of one trade) and the symbol (ids are per symbol)."""
        return f"{self.account_id}:{self._account.exchange}:{symbol}:{trade.get('id')}"

    async def _trade_keys(self) -> set[str]:
        keys: set[str] = set()
        for symbol in sorted(self._symbols):
            since = self._since_ms.get(symbol, self._clock.now_ms() - 60_000)
            keys |= {self._fill_key(symbol, t) for t in await self._fetch_trades(symbol, since)}
        return keys

    async def _fetch_trades(self, symbol: str, since_ms: int) -> list[dict]:
        """The account's trades of ``symbol`` from ``since_ms``, all of them however long ago: every
        page and time window the exchange needs (``account_trades``; an outage of days loses no fill)."""
        return await self._trades.since(symbol, since_ms, self._clock.now_ms())

    async def _order_trades(self, symbol: str, exchange_order_id: str, since_ms: int) -> list[dict]:
        """Every trade of one order (placed at or after ``since_ms``), however many pages."""
        return await self._trades.of_order(symbol, exchange_order_id, since_ms, self._clock.now_ms())

    async def _balance_differences(self) -> list[str] | None:
        """The exchange's balances against the fold of the applied fills; None when a trade happened
        meanwhile (the balances are then compared again in the next round).

        The balances are read between two reads of the account's trades: when both reads list the
        same trades, the balances contain exactly those, and they are compared under the service's
        lock once all of them are applied (a fill being applied by a create call is then done).
        """
        known_fills = len(self._seen_fills)  # the set only grows until the comparison below
        before = await self._trade_keys()
        theirs = await self._fetch_balances()
        after = await self._trade_keys()
        if before != after:
            return None
        result: list[str] | None = None

        def compare(_open: Mapping[str, TrackedOrder]) -> list[BrokerUpdate]:
            nonlocal result
            if any(key not in self._seen_fills for key in after):
                return []  # a trade not applied yet: the next round applies it first
            if len(self._seen_fills) != known_fills:
                # A fill came in meanwhile (a create or a cancel that raced a fill, while this
                # waited for the lock): ours has it, the balances read before it may not.
                return []
            ours = self._host.balances(self.account_id)
            result = [f"balance {currency}: the exchange has {theirs.get(currency, Decimal(0))}, "
                      f"the fills give {ours.get(currency)}"
                      for currency in sorted(set(theirs) | set(ours.amounts))
                      if theirs.get(currency, Decimal(0)) != ours.get(currency)]
            return []

        await self._host.apply_from_broker(self.account_id, compare)
        return result

    async def _round(self, *, full: bool) -> None:
        """One poll: open orders, new trades, the orders that ended; applied against the current view."""
        host = self._host
        ours_before = dict(host.live_orders(self.account_id))
        for tracked in ours_before.values():
            self._symbols.add(tracked.state.order.symbol)
        fetched = Fetched(open_orders=await self._fetch_open())
        for symbol in sorted(self._symbols):
            since = self._since_ms.setdefault(symbol, self._clock.now_ms() - 60_000)
            for trade in await self._fetch_trades(symbol, since):
                fill_key = self._fill_key(symbol, trade)
                if fill_key in self._seen_fills:
                    continue
                trade["_symbol"] = symbol
                fetched.trades.append(trade)
        # Ours that left the open list: asked once each for how they ended (in flight: the in-flight
        # check asks; submitted ones only in a full round).
        for cid, tracked in ours_before.items():
            if cid in fetched.open_orders or cid in self._in_flight:
                continue
            if tracked.state.status == "submitted" and not full:
                continue
            eid = tracked.state.exchange_order_id
            try:
                raw = await self._orders.by_client_id(tracked.state.order.symbol, cid, eid or None)
                theirs = self._exchange_order(raw, cid)
            except Malformed as exc:
                self._malformed(f"order {cid}", exc)
                continue
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ != "OrderNotFound":
                    raise
                fetched.not_found.add(cid)
                if tracked.state.status == "submitted":
                    self._track_in_flight(tracked.state.order)
                continue
            fetched.ended[cid] = theirs
            known = tracked.state.filled_quantity + sum(
                (to_decimal(t.get("amount") or 0) for t in fetched.trades if str(t.get("order")) == theirs.exchange_order_id),
                Decimal(0))
            if theirs.executed > known:  # its trades are older than this round's: fetched by order id
                fetched.extra_fills[cid] = await self._order_fills(tracked.state.order, theirs)
        for theirs, _raw in fetched.open_orders.values():
            fetched.order_of_trade[theirs.exchange_order_id] = theirs.client_order_id
        for cid, theirs in fetched.ended.items():
            fetched.order_of_trade[theirs.exchange_order_id] = cid
        for eid, cid in self._exchange_ids.items():
            fetched.order_of_trade.setdefault(eid, cid)
        # Trades of orders nobody knows: ask the exchange whose they are.
        for trade in fetched.trades:
            eid = str(trade.get("order"))
            if eid in fetched.order_of_trade:
                continue
            try:
                raw = await self._orders.by_exchange_id(trade["_symbol"], eid)
                theirs = self._exchange_order(raw)
            except Malformed as exc:
                self._malformed(f"order {eid}", exc)
                continue
            fetched.order_of_trade[eid] = theirs.client_order_id
            fetched.adopt[theirs.client_order_id] = (theirs, raw)
        # Orders open at the exchange that execution never stored: adopted.
        for cid, (theirs, raw) in fetched.open_orders.items():
            if cid not in ours_before:
                fetched.adopt[cid] = (theirs, raw)
        for cid in list(fetched.adopt):
            if cid in ours_before or await host.stored_order_status(cid) is not None:
                del fetched.adopt[cid]  # ours (open, or finished: its late trades are refused and reported)
        await host.apply_from_broker(self.account_id, lambda open_now: self._compute(open_now, fetched))
        for trade in fetched.trades:
            symbol = trade["_symbol"]
            timestamp = trade.get("timestamp")
            if isinstance(timestamp, int):
                self._since_ms[symbol] = max(self._since_ms.get(symbol, 0), timestamp)

    def _compute(self, open_now: Mapping[str, TrackedOrder], fetched: Fetched) -> list[BrokerUpdate]:
        """Under the service's lock: the updates that bring its current view to what was fetched."""
        updates: list[BrokerUpdate] = []
        trades_by_cid: dict[str, list[dict]] = {}
        for trade in fetched.trades:
            cid = fetched.order_of_trade.get(str(trade.get("order")))
            if cid is not None:
                trades_by_cid.setdefault(cid, []).append(trade)
        for cid, (theirs, raw) in sorted(fetched.adopt.items()):
            if cid in open_now:
                continue
            try:
                order = self._adopted_order(theirs, raw)
            except Malformed as exc:
                self._malformed(f"external order {cid}", exc)
                continue
            # What it executed before the trades read here is history (in the configured balances):
            # the adopted order is the rest, and the exchange's executed quantity is offset by it.
            fills = self._fills_of(order, trades_by_cid.get(cid, []))
            offset = max(Decimal(0), theirs.executed - sum((f.quantity for f in fills), Decimal(0)))
            if offset:
                self._offsets[cid] = offset
                # Its trades older than this read are the history the offset stands for.
                self._history_before[cid] = min(
                    [self._since_ms.get(order.symbol, 0)] + [f.ts_event // NS_PER_MS for f in fills])
                order = msgspec.structs.replace(order, quantity=order.quantity - offset)
                theirs = dataclasses.replace(theirs, executed=theirs.executed - offset)
            self._metrics.adopted.labels(self.account_id).inc()
            log.warning("account %s: order %s (%s) at the exchange was not sent by execution: adopted (%s executed "
                        "before)", self.account_id, cid, theirs.exchange_order_id, offset)
            updates.append(AdoptedOrder(order, theirs.exchange_order_id, theirs.ts_event))
            updates += self._emit(order, order_updates("submitted", Decimal(0), theirs, fills))
        for cid, tracked in open_now.items():
            theirs = fetched.open_orders.get(cid, (None, None))[0] or fetched.ended.get(cid)
            if theirs is None or cid in self._pending_amends:  # an amendment's outcome is settled first
                continue
            order = tracked.state.order
            if cid in self._offsets:  # adopted after part of it executed
                theirs = dataclasses.replace(theirs, executed=theirs.executed - self._offsets[cid])
            fills = self._fills_of(order, trades_by_cid.get(cid, []))
            have = {f.fill_id for f in fills}
            fills += [f for f in fetched.extra_fills.get(cid, []) if f.fill_id not in have
                      and f.fill_id not in self._seen_fills]
            if tracked.state.status == "submitted":
                self._metrics.in_flight_resolved.labels(self.account_id, "found").inc()
            updates += self._emit(order, order_updates(tracked.state.status, tracked.state.filled_quantity,
                                                       theirs, fills))
        return updates

    def _history(self, order: Order, trade: dict) -> bool:
        """A trade of an adopted order from before its adoption (in the offset, not a fill)."""
        before = self._history_before.get(order.client_order_id)
        timestamp = trade.get("timestamp")
        return before is not None and isinstance(timestamp, int) and timestamp < before

    def _fills_of(self, order: Order, trades: list[dict]) -> list[Fill]:
        fills = []
        for trade in trades:
            if self._history(order, trade):
                continue
            try:
                fill = self._fill(order, trade)
            except Malformed as exc:
                # Skipped from now on; if it was a real trade, the balances will not agree and the
                # account halts: an unreadable fill is never guessed.
                self._seen_fills.add(self._fill_key(order.symbol, trade))
                self._malformed(f"trade of {order.client_order_id}", exc)
                continue
            if fill.fill_id not in self._seen_fills:
                fills.append(fill)
        return fills

    def _adopted_order(self, theirs: ExchangeOrder, raw: dict) -> Order:
        try:
            quantity = to_decimal(raw["info"]["origQty"]) if "origQty" in (raw.get("info") or {}) \
                else to_decimal(raw["amount"])
            is_limit = raw.get("type") == "limit"
            return Order(client_order_id=theirs.client_order_id, account_id=self.account_id,
                         exchange=self._account.exchange, symbol=raw["symbol"], side=raw["side"],
                         order_type="limit" if is_limit else "market", quantity=quantity,
                         limit_price=to_decimal(self._orders.limit_price(raw)) if is_limit else None,
                         origin="manual", signal_id=f"external:{theirs.exchange_order_id}",
                         ts_event=theirs.ts_event)
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise Malformed(f"external order {str(raw)[:200]}: {exc!r}") from None

    async def _check_in_flight(self) -> None:
        """Orders whose create has no answer: asked for by client order id, never sent again."""
        import ccxt

        host = self._host
        open_now = host.live_orders(self.account_id)
        for cid, pending in list(self._in_flight.items()):
            tracked = open_now.get(cid)
            if tracked is None or tracked.state.status != "submitted":
                self._in_flight.pop(cid, None)
                continue
            if self._clock.monotonic() - pending.since < self._timings.in_flight_threshold_s:
                continue
            order = pending.order
            try:
                raw = await self._orders.by_client_id(order.symbol, cid)
                theirs = self._exchange_order(raw, cid)
            except ccxt.OrderNotFound:
                pending.misses += 1
                log.info("in-flight order %s: the exchange does not have it (%d of %d)", cid, pending.misses,
                         self._timings.in_flight_retries)
                if pending.misses >= self._timings.in_flight_retries:
                    self._metrics.in_flight_resolved.labels(self.account_id, "not_found").inc()
                    reason = (f"{NOT_FOUND_AT_EXCHANGE}: the exchange did not have the order after "
                              f"{pending.misses} queries by its client order id")
                    await host.apply_from_broker(self.account_id, lambda now_open, c=cid, r=reason, o=order: self._emit(
                        o, [OrderUpdate(c, "rejected", self._clock.now_ns(), reason=r)])
                        if c in now_open and now_open[c].state.status == "submitted" else [])
                continue
            except Malformed as exc:
                self._malformed(f"order {cid}", exc)
                continue
            except Exception as exc:  # noqa: BLE001 - no answer: still in flight
                log.info("in-flight order %s not resolved now: %s", cid, _short(exc))
                continue
            fills = await self._order_fills(order, theirs) if theirs.executed > 0 else []

            def compute(now_open, c=cid, t=theirs, f=fills, o=order):
                current = now_open.get(c)
                if current is None:
                    return []
                self._metrics.in_flight_resolved.labels(self.account_id, "found").inc()
                return self._emit(o, order_updates(current.state.status, current.state.filled_quantity, t,
                                                   [x for x in f if x.fill_id not in self._seen_fills]))

            await host.apply_from_broker(self.account_id, compute)

    async def _check_amends(self) -> None:
        """Amendments without an answer: the exchange is asked which order it has under the client
        order id (the replacement, or the old one as it stands); only its answer settles them."""
        import ccxt

        host = self._host
        for cid, pending in list(self._pending_amends.items()):
            tracked = host.live_orders(self.account_id).get(cid)
            if tracked is None:
                self._pending_amends.pop(cid, None)
                await host.apply_from_broker(self.account_id, lambda _open, p=pending: [AmendNotApplied(
                    p.amendment.client_order_id, p.amendment.amendment_id,
                    "order_finished: the order ended before the amendment was resolved", self._clock.now_ns())])
                continue
            if self._clock.monotonic() - pending.since < self._timings.in_flight_threshold_s:
                continue
            symbol = pending.order.symbol
            try:
                replacement = next((theirs for theirs, _raw in (await self._fetch_open()).values()
                                    if theirs.client_order_id == cid
                                    and theirs.exchange_order_id != pending.old_exchange_order_id), None)
                if replacement is None:
                    old = self._exchange_order(await self._call(
                        self._exchange.fetch_order, pending.old_exchange_order_id, symbol, {}), cid)
                    if old.status in ("CANCELED", "EXPIRED"):  # replaced (and maybe filled at once), or not
                        latest = self._exchange_order(await self._call(
                            self._exchange.fetch_order, None, symbol, {"clientOrderId": cid}), cid)
                        if latest.exchange_order_id != pending.old_exchange_order_id:
                            replacement = latest
            except (ccxt.OrderNotFound, Malformed) as exc:
                log.info("amendment of %s not resolved now: %s", cid, _short(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - no answer: still pending
                log.info("amendment of %s not resolved now: %s", cid, _short(exc))
                continue
            if replacement is not None:
                self._pending_amends.pop(cid, None)
                updates = await self._amended(pending.amendment, pending.order, replacement)
            elif old.status in ("NEW", "PARTIALLY_FILLED") and pending.misses + 1 < self._timings.in_flight_retries:
                pending.misses += 1  # the request may still be on its way: asked again next time
                continue
            else:
                self._pending_amends.pop(cid, None)
                self._wake.set()  # the old order's end (filled, canceled) is the next round's to apply
                updates = [AmendNotApplied(cid, pending.amendment.amendment_id,
                                           f"amend_not_applied: the exchange has the order unchanged ({old.status})",
                                           self._clock.now_ns())]
            self._metrics.in_flight_resolved.labels(self.account_id, "amendment").inc()
            await host.apply_from_broker(self.account_id, lambda now_open, u=updates, c=cid: u if c in now_open else [])

    async def _cancel_pending(self) -> None:
        """Cancels asked for while their order was in flight (a kill switch, an operator), now that
        the exchange has answered for the order; the end is what the exchange says."""
        open_now = self._host.live_orders(self.account_id)
        for cid, reason in list(self._pending_cancels.items()):
            tracked = open_now.get(cid)
            if tracked is None:
                self._pending_cancels.pop(cid, None)  # ended (rejected, not found, filled)
                continue
            if tracked.state.status == "submitted":
                continue
            self._pending_cancels.pop(cid, None)
            updates = await self.cancel(cid, reason)
            await self._host.apply_from_broker(self.account_id, lambda now_open, u=updates, c=cid: u if c in now_open else [])

    async def _expire_orders(self) -> None:
        """Open orders past their time in force (``expires_at``) are canceled; the end is what the exchange says."""
        now = self._clock.now_ns()
        host = self._host
        due = [cid for cid, t in host.live_orders(self.account_id).items()
               if t.state.order.expires_at is not None and t.state.order.expires_at <= now
               and t.state.status != "submitted"]
        for cid in due:
            updates = await self.cancel(cid, "time_in_force")
            updates = [OrderUpdate(u.client_order_id, "expired", u.ts_event, reason="time_in_force: expired by execution")
                       if isinstance(u, OrderUpdate) and u.status == "canceled" else u for u in updates]
            await host.apply_from_broker(self.account_id, lambda now_open, u=updates, c=cid: u if c in now_open else [])


def _cancel_replace_failure(exc: Exception) -> tuple[str, str] | None:
    """Binance's cancelReplace failure body (-2021 / -2022, in the ccxt error's message): whether the
    exchange kept the order (``refused``) or canceled it and refused the replacement (``canceled``),
    with its words; None when the error is not such a body."""
    text = str(exc)
    start = text.find("{")
    if start < 0:
        return None
    try:
        body = json.loads(text[start:])
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or "cancelResult" not in data:
        return None
    cancel, new = data.get("cancelResponse") or {}, data.get("newOrderResponse") or {}
    if data.get("cancelResult") == "SUCCESS" and data.get("newOrderResult") != "SUCCESS":
        return "canceled", f"{new.get('code')} {new.get('msg')}"
    return "refused", f"{cancel.get('code')} {cancel.get('msg')}"


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."

