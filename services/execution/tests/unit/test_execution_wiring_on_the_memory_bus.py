"""Execution wired by ``build`` on the in-memory bus and a test clock (no broker; the database
pool is built but never opened), and its paper path (``create_pipeline``: consumer -> service ->
paper broker) on the in-memory store and md.ticks.v1 history.

Through ``build`` itself nothing of the paper path runs without the database: the service loads
its state from the PostgreSQL store at start and writes every transition through it (the outbox
relay publishes them). ``create_pipeline`` is the part of ``build`` over the store and history
ports, so here it runs on the in-memory ones of the service-layer tests: orders and trades go in
on risk.orders.v1 and md.ticks.v1 of the memory bus, transitions and fills land in the outbox.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from tradeflow.messages import Fill, Order, OrderAmendment, OrderEvent, Tick
from tradeflow.testing import MemoryBus, TestClock
from tradeflow.topics import market_key
from tradeflow_db import Database
from tradeflow_execution.adapters.paper_broker import PaperBroker
from tradeflow_execution.bootstrap import build, create_pipeline, topic_specs
from tradeflow_execution.metrics import ExecutionMetrics
from tradeflow_execution.settings import ExecutionSettings

from services.execution.tests.unit.execution_memory import LogHistory, MemoryStore

UNOPENED_DATABASE = "postgresql://nobody@127.0.0.1:9/never-opened"
S = 1_000_000_000
T0 = 1_772_445_600 * S
PAPER = {"id": "paper-1", "exchange": "sim", "balances": {"USDT": "10000"},
         "fees": {"maker": "0.0002", "taker": "0.001"}, "slippage_bps": "5"}
MARKET = {"exchange": "sim", "symbol": "BTC/USDT", "price_step": "0.01", "quantity_step": "0.0001"}


def settings() -> ExecutionSettings:
    return ExecutionSettings(database_url=UNOPENED_DATABASE, accounts=[PAPER], markets=[MARKET])


def unopened_database(config: ExecutionSettings) -> Database:
    return config.service_database("execution", required_revision="execution_0002", default_pool_size=4)


def test_build_wires_the_service_on_the_given_bus_without_starting_anything():
    clock = TestClock(start_ns=T0)
    bus = MemoryBus(clock=clock)
    config = settings()
    database = unopened_database(config)
    service = build(config, bus, database, clock)

    # In start order (stopped in reverse): topics, pool, producer, history reader, the service, the
    # outbox relay, the live brokers (none here), and the consumer last.
    assert [type(c).__name__ for c in service.components] == [
        "_TopicsExist", "Database", "MemoryProducer", "TickHistory", "ExecutionService", "OutboxRelay",
        "LiveBrokers", "MemoryConsumer"]
    _, db, producer, history, svc, relay, live, consumer = service.components
    assert db is database and producer is service.producer and svc is service.service
    assert consumer is service.consumer and bus.consumers == [consumer]
    assert relay.name == "outbox-relay:execution_outbox" and live.name == "live-brokers" and service.live == {}
    assert [r.topics for r in bus.readers] == [[config.ticks_topic]]  # the history's reader
    # Nothing started: the topics only it publishes to are not created yet (the topics component
    # creates them at start; the memory consumer and reader make theirs when made), nothing is
    # written, producer, consumer and reader are idle.
    specs = topic_specs(config)
    for name in ("order_events", "fills", "alerts", "accounts"):
        with pytest.raises(LookupError):
            bus.broker.partitions(specs[name].name)
    assert all(bus.broker.records(specs[name].name) == [] for name in ("orders", "risk_events", "ticks"))
    assert not consumer.is_ready() and not producer.is_connected() and not bus.readers[0].positioned
    assert consumer.subscribed_topics == [config.orders_topic, config.risk_events_topic, config.ticks_topic]
    assert [c.name for c in service.readiness_checks] == ["broker", "database", "consumer:execution"]
    assert [s.name for s in topic_specs(config).values()] == [
        config.orders_topic, config.risk_events_topic, config.ticks_topic, config.order_events_topic,
        config.fills_topic, config.alerts_topic, config.accounts_topic]


async def test_an_order_on_the_memory_bus_is_filled_by_the_next_trade_at_the_clocks_times():
    clock = TestClock(start_ns=T0 + 3600 * S)
    bus = MemoryBus(clock=clock)
    config = settings()
    store, history = MemoryStore(), LogHistory()
    producer = bus.producer()
    service, paper, consumer = create_pipeline(
        config, bus, bus.dead_letters(producer), store=store, history=history, live={},
        metrics=ExecutionMetrics(bus.telemetry), clock=clock)
    assert isinstance(service._brokers["paper-1"], PaperBroker)  # noqa: SLF001 - the paper account's broker
    specs = topic_specs(config)
    for spec in specs.values():
        bus.broker.ensure(spec)
    await producer.start()
    await service.start()
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            feed = bus.producer()
            await feed.start()
            key = market_key("sim", "BTC/USDT")
            for trade_id, price, ts in (("t0", 100.0, T0), ("t1", 101.0, T0 + S)):
                feed.send(specs["ticks"], key, Tick(exchange="sim", symbol="BTC/USDT", trade_id=trade_id, price=price,
                                                   amount=10.0, side="buy", ts_event=ts, ts_recv=ts))
            await bus.settle()
            feed.send(specs["orders"], "paper-1", Order(
                client_order_id="o1", account_id="paper-1", exchange="sim", symbol="BTC/USDT", side="buy",
                order_type="market", quantity=D("0.5"), ts_event=T0 + S // 2))
            await bus.settle()
    finally:
        await consumer.stop()
        await service.stop()
        await producer.stop()

    events = [m.message for m in store.tables.outbox if isinstance(m.message, OrderEvent)]
    assert [(e.seq, e.status) for e in events] == [(1, "submitted"), (2, "accepted"), (3, "filled")]
    # The service's and the paper broker's times are the injected clock's (it did not move).
    assert [e.ts_event for e in events[:2]] == [clock.now_ns(), clock.now_ns()]
    (fill,) = [m.message for m in store.tables.outbox if isinstance(m.message, Fill)]
    price = (D("101") * D("1.0005")).quantize(D("0.01"))  # the first trade at or after ts_event, 5 bps against
    assert (fill.fill_id, fill.quantity, fill.price, fill.ts_event) == ("o1:t1", D("0.5"), price, T0 + S)
    assert store.tables.orders["o1"].state.status == "filled"
    assert history.reads == 0  # both trades were consumed live: nothing read back
    assert paper.mark("sim", "BTC/USDT") == D("101")


async def test_an_amendment_on_the_memory_bus_changes_a_resting_paper_order_once():
    clock = TestClock(start_ns=T0 + 3600 * S)
    bus = MemoryBus(clock=clock)
    config = settings()
    store, history = MemoryStore(), LogHistory()
    producer = bus.producer()
    service, _paper, consumer = create_pipeline(
        config, bus, bus.dead_letters(producer), store=store, history=history, live={},
        metrics=ExecutionMetrics(bus.telemetry), clock=clock)
    specs = topic_specs(config)
    for spec in specs.values():
        bus.broker.ensure(spec)
    await producer.start()
    await service.start()
    await consumer.start()
    key = market_key("sim", "BTC/USDT")
    amendment = OrderAmendment(amendment_id="lim1:1", client_order_id="lim1", account_id="paper-1", exchange="sim",
                               symbol="BTC/USDT", quantity=D("0.3"), limit_price=D("100.5"), ts_event=T0 + 2 * S)
    try:
        async with asyncio.timeout(20):
            feed = bus.producer()
            await feed.start()
            feed.send(specs["ticks"], key, Tick(exchange="sim", symbol="BTC/USDT", trade_id="t0", price=101.0,
                                               amount=10.0, side="buy", ts_event=T0, ts_recv=T0))
            feed.send(specs["orders"], "paper-1", Order(
                client_order_id="lim1", account_id="paper-1", exchange="sim", symbol="BTC/USDT", side="buy",
                order_type="limit", quantity=D("0.5"), limit_price=D("99"), ts_event=T0 + S))
            await bus.settle()
            # Risk's amendment, then the same one redelivered: applied once.
            feed.send(specs["orders"], "paper-1", amendment)
            feed.send(specs["orders"], "paper-1", amendment)
            await bus.settle()
            # A trade below the new limit (above the old one) fills the new quantity.
            feed.send(specs["ticks"], key, Tick(exchange="sim", symbol="BTC/USDT", trade_id="t1", price=100.4,
                                               amount=10.0, side="sell", ts_event=T0 + 3 * S, ts_recv=T0 + 3 * S))
            await bus.settle()
            # An amendment of the filled order changes nothing and says so in the store.
            feed.send(specs["orders"], "paper-1", OrderAmendment(
                amendment_id="lim1:2", client_order_id="lim1", account_id="paper-1", exchange="sim",
                symbol="BTC/USDT", quantity=D("0.4"), ts_event=T0 + 4 * S))
            await bus.settle()
    finally:
        await consumer.stop()
        await service.stop()
        await producer.stop()

    events = [m.message for m in store.tables.outbox if isinstance(m.message, OrderEvent)]
    assert [(e.seq, e.status, e.reason, e.quantity, e.limit_price) for e in events] == [
        (1, "submitted", "", D("0.5"), D("99")), (2, "accepted", "", D("0.5"), D("99")),
        (3, "accepted", "amended", D("0.3"), D("100.5")), (4, "filled", "amended", D("0.3"), D("100.5"))]
    (fill,) = [m.message for m in store.tables.outbox if isinstance(m.message, Fill)]
    assert (fill.quantity, fill.price) == (D("0.3"), D("100.5"))
    stored = store.tables.orders["lim1"].state
    assert (stored.order.quantity, stored.order.limit_price, stored.filled_quantity) == (D("0.3"), D("100.5"), D("0.3"))
    assert {a: (status, reason) for a, (_, status, reason) in store.tables.amendments.items()} == {
        "lim1:1": ("applied", ""), "lim1:2": ("refused", "order_finished: the order is filled")}
    assert bus.broker.records(specs["orders"].dlq) == []  # the amendments decoded as OrderAmendment/1
