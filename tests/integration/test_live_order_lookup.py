"""Orders on Bybit, Kraken and OKX are created with their client order id, asked for by it and canceled
by it (ADR 0022, amendment "Orders by client order id on Bybit and Kraken").

The live broker is made by execution's own wiring from a ``TRADEFLOW_EXCHANGES`` entry whose
URLs point ccxt at a loopback fake of the exchange's order endpoints (fake_account_orders.py).
The broker works against :class:`Orders`, the part of the service that holds the account's
orders and applies what the broker reports, as the service does under its lock; the service's
database and topics are tested with Binance in test_execution_live.py.

Per exchange: a create whose answer is lost (the exchange placed the order) is resolved by
asking by the client order id, also by a broker made anew (a restart); a create the exchange
never got is found absent and rejected ``not_found_at_exchange`` after the configured number of
answers; an order that ended is read by its id (Bybit: from the order history once the realtime
list no longer has it), with its fill; a cancel goes by the client order id. Every create
reached the exchange once: nothing is sent twice.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal as D

import pytest
from tradeflow.messages import Fill, Order
from tradeflow.telemetry import Telemetry
from tradeflow_execution.adapters.live_broker import LiveBroker
from tradeflow_execution.domain.broker import BrokerUpdate, FillUpdate, OrderUpdate, OutcomeUnknown
from tradeflow_execution.domain.live import AdoptedOrder
from tradeflow_execution.live_wiring import create_live_brokers
from tradeflow_execution.settings import ExecutionSettings
from tradeflow_execution.store import TrackedOrder
from tradeflow_trading.ids import client_order_id_for_manual
from tradeflow_trading.orders import OrderState
from tradeflow_trading.positions import Balances

from tests.fakes.fake_account_orders import FakeBybitOrders, FakeKrakenOrders, FakeOkxOrders

pytestmark = pytest.mark.integration

ACCOUNT = "live-lookup"
KRAKEN_SECRET = base64.b64encode(b"kraken-fake-secret-of-some-length").decode()  # ccxt decodes it
RETRIES = 2


@dataclass(frozen=True)
class Venue:
    exchange: str
    symbol: str
    market_id: str
    fake: type
    lookups: tuple[str, ...]  # the requests that ask for an order by its client order id
    id_field: str  # the exchange's name of the client order id
    refuses_free_text_of_20: bool

    def entry(self, fake) -> dict:
        if self.exchange == "bybit":
            return {"secret": "fake-secret", "urls": {"public": fake.url, "private": fake.url}}
        if self.exchange == "okx":
            return {"secret": "fake-secret", "password": "fake-passphrase", "urls": {"rest": fake.rest_url}}
        return {"secret": KRAKEN_SECRET, "urls": {"public": fake.rest_url, "private": fake.rest_url}}


BYBIT = Venue("bybit", "BTC/USDT", "BTCUSDT", FakeBybitOrders, ("/v5/order/realtime", "/v5/order/history"), "orderLinkId", False)
KRAKEN = Venue("kraken", "BTC/USD", "XXBTZUSD", FakeKrakenOrders, ("/0/private/OpenOrders", "/0/private/ClosedOrders"),
               "cl_ord_id", True)
OKX = Venue("okx", "BTC/USDT", "BTC-USDT", FakeOkxOrders, ("/api/v5/trade/order?",), "clOrdId", True)


class Orders:
    """The account's orders as execution holds them, moved by the broker's updates in the order
    the broker gives them (the service applies them the same way, in one transaction)."""

    def __init__(self) -> None:
        self.orders: dict[str, TrackedOrder] = {}
        self.fills: list[Fill] = []

    def add(self, order: Order) -> None:  # stored as submitted before the broker sends it
        self.orders[order.client_order_id] = TrackedOrder(OrderState(order), {}, time.time_ns())

    def status(self, cid: str) -> str:
        return self.orders[cid].state.status

    def apply(self, updates: list[BrokerUpdate]) -> None:
        for update in updates:
            if isinstance(update, AdoptedOrder):  # stored as submitted; the updates after it move it
                self.add(update.order)
            elif isinstance(update, OrderUpdate):
                tracked = self.orders[update.client_order_id]
                tracked.state = tracked.state.move(update.status, reason=update.reason,
                                                   exchange_order_id=update.exchange_order_id)
            elif isinstance(update, FillUpdate):
                tracked = self.orders[update.fill.client_order_id]
                tracked.state = tracked.state.fill(update.fill.quantity, update.fill.price, fee=update.fill.fee,
                                                   complete=update.complete)
                self.fills.append(update.fill)

    # --- LiveHost ---
    def live_orders(self, account_id: str) -> Mapping[str, TrackedOrder]:
        return {cid: t for cid, t in self.orders.items() if t.state.is_open}

    async def known_fills(self, account_id: str) -> list[Fill]:
        return list(self.fills)

    async def stored_order_status(self, client_order_id: str) -> str | None:
        tracked = self.orders.get(client_order_id)
        return tracked.state.status if tracked else None

    def balances(self, account_id: str) -> Balances:
        raise AssertionError("balances are not compared here")

    async def apply_from_broker(self, account_id: str, compute) -> None:
        self.apply(compute(self.live_orders(account_id)))


def make_broker(venue: Venue, fake) -> LiveBroker:
    settings = ExecutionSettings(
        environment="test", live_request_timeout_s=1.0, in_flight_threshold_s=0, in_flight_retries=RETRIES,
        accounts=[{"id": ACCOUNT, "exchange": venue.exchange, "mode": "live", "balances": {"USDT": "10000"}}],
        exchanges=[{"id": venue.exchange, "symbols": [venue.symbol], "api_key": "fake-key", **venue.entry(fake)}])
    (broker,) = create_live_brokers(settings, Telemetry("test-lookup", settings)).values()
    return broker


@pytest.fixture(params=[BYBIT, KRAKEN, OKX], ids=lambda v: v.exchange)
def venue(request) -> Venue:
    return request.param


@pytest.fixture
async def fake(venue) -> AsyncIterator:
    exchange = venue.fake()
    exchange.answer_delay_s = 3.0  # past the client's 1 s timeout
    await exchange.start()
    yield exchange
    await exchange.stop()


@pytest.fixture
async def live(venue, fake) -> AsyncIterator[tuple[LiveBroker, Orders]]:
    orders = Orders()
    broker = make_broker(venue, fake)
    broker.attach(orders)
    broker.ready = True  # the account's first reconciliation (balances) is not what is tested here
    yield broker, orders
    await broker.stop()


def new_order(venue: Venue, name: str, **fields) -> Order:
    # Risk's ids: 32 hex digits (Kraken reads them as a short UUID; free text may have 18 characters).
    cid = client_order_id_for_manual(ACCOUNT, f"{name}-{uuid.uuid4()}")
    base = dict(client_order_id=cid, account_id=ACCOUNT, exchange=venue.exchange, symbol=venue.symbol, side="buy",
                order_type="limit", quantity=D("0.5"), limit_price=D("90"), ts_event=time.time_ns(),
                strategy_id="s1")
    return Order(**{**base, **fields})


async def send(broker: LiveBroker, orders: Orders, order: Order) -> list[BrokerUpdate]:
    orders.add(order)
    updates = await broker.submit(order)
    orders.apply([u for u in updates if not isinstance(u, OutcomeUnknown)])
    return updates


def asked_by_id(venue: Venue, fake, cid: str) -> list[str]:
    return [r for r in fake.requests if any(path in r for path in venue.lookups) and cid in r]


async def test_a_create_whose_answer_was_lost_is_found_by_its_client_order_id_and_never_sent_again(venue, fake, live):
    broker, orders = live
    placed = new_order(venue, "placed")
    fake.time_out_next_create(placed=True)
    (unknown,) = await send(broker, orders, placed)
    assert isinstance(unknown, OutcomeUnknown) and orders.status(placed.client_order_id) == "submitted"
    await broker._check_in_flight()
    theirs = fake.by_client_id(placed.client_order_id)
    assert orders.status(placed.client_order_id) == "accepted"
    assert orders.orders[placed.client_order_id].state.exchange_order_id == theirs.order_id
    assert asked_by_id(venue, fake, placed.client_order_id)
    assert fake.creates == [placed.client_order_id] and len(fake.orders) == 1  # one order, sent once
    # Once found, it is followed like any other: it fills.
    fake.fill(placed.client_order_id, "0.5", "89.5")
    await broker._round(full=True)
    assert orders.status(placed.client_order_id) == "filled"
    assert [(f.quantity, f.price) for f in orders.fills] == [(D("0.5"), D("89.5"))]


async def test_a_create_the_exchange_never_got_is_rejected_not_found_after_the_configured_answers(venue, fake, live):
    broker, orders = live
    lost = new_order(venue, "lost")
    fake.time_out_next_create(placed=False)
    (unknown,) = await send(broker, orders, lost)
    assert isinstance(unknown, OutcomeUnknown)
    for _ in range(RETRIES - 1):
        await broker._check_in_flight()
        assert orders.status(lost.client_order_id) == "submitted"  # one "no such order" is not enough
    await broker._check_in_flight()
    tracked = orders.orders[lost.client_order_id].state
    assert tracked.status == "rejected" and tracked.reason.startswith("not_found_at_exchange")
    # Each time: Bybit realtime then history, Kraken open then closed orders, OKX the order.
    assert len(asked_by_id(venue, fake, lost.client_order_id)) == RETRIES * len(venue.lookups)
    assert fake.creates == [lost.client_order_id] and fake.orders == {}  # never re-sent


async def test_after_a_restart_an_order_in_flight_is_asked_for_by_its_client_order_id(venue, fake, live):
    broker, orders = live
    placed = new_order(venue, "restart")
    fake.time_out_next_create(placed=True)
    await send(broker, orders, placed)
    await broker.stop()
    fake.fill(placed.client_order_id, "0.2", "90")  # while execution is down
    again = make_broker(venue, fake)  # execution started anew: its stored order is in flight
    again.attach(orders)
    try:
        assert await again.resolve(orders.orders[placed.client_order_id].state.order) == []
        await again._check_in_flight()
    finally:
        await again.stop()
    assert orders.status(placed.client_order_id) == "partially_filled"
    assert [(f.quantity, f.price) for f in orders.fills] == [(D("0.2"), D("90"))]
    assert fake.creates == [placed.client_order_id] and len(fake.orders) == 1


async def test_an_order_is_accepted_from_the_create_and_read_by_its_id_once_it_ended(venue, fake, live):
    broker, orders = live
    first = new_order(venue, "ended")
    await send(broker, orders, first)
    # The create's answer has no state on either exchange: the broker asked by the id at once.
    assert orders.status(first.client_order_id) == "accepted"
    fake.fill(first.client_order_id, "0.5", "88")
    if venue is BYBIT:
        fake.realtime_ended = 0  # as after a Bybit restart: only the order history has it
    await broker._round(full=True)
    assert orders.status(first.client_order_id) == "filled"
    assert [(f.quantity, f.price, f.fill_id.split(":")[-1]) for f in orders.fills] == [
        (D("0.5"), D("88"), fake.account_trades[-1].trade_id)]
    if venue is BYBIT:
        assert any("/v5/order/history" in r and first.client_order_id in r for r in fake.requests)


async def test_a_cancel_goes_by_the_client_order_id_and_ends_as_the_exchange_says(venue, fake, live):
    broker, orders = live
    resting, raced = new_order(venue, "resting"), new_order(venue, "raced")
    await send(broker, orders, resting)
    await send(broker, orders, raced)
    orders.apply(await broker.cancel(resting.client_order_id, "kill_switch: manual"))
    tracked = orders.orders[resting.client_order_id].state
    assert (tracked.status, tracked.reason) == ("canceled", "kill_switch: manual")
    assert fake.by_client_id(resting.client_order_id).status == "canceled"
    cancels = [r for r in fake.requests if "cancel" in r.lower()]
    assert len(cancels) == 1 and resting.client_order_id in cancels[0]
    # A fill that beat the cancel: the exchange refuses the cancel, the order ends filled.
    fake.fill(raced.client_order_id, "0.5", "90")
    orders.apply(await broker.cancel(raced.client_order_id, "kill_switch: manual"))
    assert orders.status(raced.client_order_id) == "filled"
    assert fake.creates == [resting.client_order_id, raced.client_order_id]


async def test_an_id_the_exchange_refuses_is_rejected_with_its_reason(venue, fake, live):
    broker, orders = live
    # Not risk's form: 20 characters of free text (Kraken: at most 18; OKX: letters and digits;
    # Bybit: at most 36 of letters, digits, - and _).
    odd = new_order(venue, "odd", client_order_id="manual-order-0000001")
    (update,) = await send(broker, orders, odd)
    if venue.refuses_free_text_of_20:
        assert isinstance(update, OrderUpdate) and update.status == "rejected" and venue.id_field in update.reason
        assert fake.orders == {}
    else:
        assert orders.status(odd.client_order_id) == "accepted"


async def test_an_order_placed_outside_tradeflow_is_adopted_with_its_limit_price(venue, fake, live):
    broker, orders = live
    outside = client_order_id_for_manual(ACCOUNT, f"web-{uuid.uuid4()}")
    fake.place_external(venue.market_id, outside, "0.3", "85.5")
    fake.fill(outside, "0.1", "85")  # better than its limit
    await broker._round(full=True)
    adopted = orders.orders[outside].state
    assert (adopted.status, adopted.filled_quantity) == ("partially_filled", D("0.1"))
    # Kraken's order "price" is the average of its executions: the limit is its description's.
    assert (adopted.order.quantity, adopted.order.limit_price, adopted.order.origin) == (D("0.3"), D("85.5"), "manual")


async def test_every_open_order_is_seen_also_more_than_a_page(venue, fake, live):
    """Bybit's realtime list answers 20 orders unless asked for more (at most 50 a page)."""
    broker, orders = live
    outside = [client_order_id_for_manual(ACCOUNT, f"many-{i}-{uuid.uuid4()}") for i in range(56)]
    for i, cid in enumerate(outside):
        fake.place_external(venue.market_id, cid, "0.01", f"{80 + i}")
    await broker._round(full=True)
    assert {cid: orders.status(cid) for cid in outside if cid in orders.orders} == dict.fromkeys(outside, "accepted")
    if venue is BYBIT:  # two pages of 50 (56 orders), asked for by cursor
        assert len([r for r in fake.requests if "/v5/order/realtime" in r and "limit=50" in r]) >= 2
