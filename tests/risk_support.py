"""Shared by risk's tests: accounts, signals, fills and order events as execution would send them,
and a stand-in for the execution service (which is not part of this repository yet).

:class:`PaperExecution` answers every order on the orders topic like a paper broker whose
market trades at a fixed price: ``submitted``, then one fill (fee at the taker rate) and
``filled``. Fills and order events go out on separate topics, like execution's. It remembers
client order ids (a re-published order is not filled twice), as execution must.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.bus import Producer
from tradeflow.codec import decode
from tradeflow.messages import Fill, Message, Order, OrderEvent, RiskEvent, Signal
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.ids import signal_id as make_signal_id
from tradeflow_trading.orders import OrderState

NS = 1_000_000_000
MINUTE = 60 * NS
T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp()) * NS  # a Monday
EXCHANGE = "paper"  # tests that move marks (stored in risk_marks) use an exchange name of their own


def account(account_id: str, cash: str = "10000", taker: str = "0", exchange: str = EXCHANGE, **extra) -> AccountConfig:
    return AccountConfig(id=account_id, exchange=exchange, balances={"USDT": cash},
                         fees={"maker": "0", "taker": taker}, **extra)


def signal(account_id: str, n: int, intent: str = "enter_long", *, symbol: str = "BTC/USDT", quantity=None,
           price: str | None = "100", ts_event: int | None = None, instance: str = "inst", exchange: str = EXCHANGE,
           **extra) -> Signal:
    start = T0 + n * MINUTE
    return Signal(signal_id=make_signal_id(f"{account_id}-{instance}", exchange, symbol, "1m", start, intent),
                  account_id=account_id, strategy_id=instance, exchange=exchange, symbol=symbol, timeframe="1m",
                  intent=intent, quantity=Decimal(quantity) if quantity is not None else None,
                  price=Decimal(price) if price is not None else None,
                  ts_event=ts_event if ts_event is not None else start + MINUTE, **extra)


def execute(order: Order, price: Decimal, taker: Decimal = Decimal(0), trade_id: str = "t1",
            ts_event: int | None = None) -> tuple[list[OrderEvent], list[Fill]]:
    """What a paper broker reports for ``order`` filled at ``price``: the events and the fill."""
    ts = ts_event if ts_event is not None else order.ts_event
    rule = FillRule(FeeSchedule(Decimal(0), taker))
    quote = rule.market(order, price)
    state = OrderState(order)
    submitted = state.event(ts)
    fill = rule.to_fill(order, quote, trade_id=trade_id, ts_event=ts)
    filled = state.fill(quote.quantity, quote.price, complete=True).event(ts)
    return [submitted, filled], [fill]


async def outbox_messages(database_url: str, topic: str, *, delete: bool = True) -> list[tuple[str, Message]]:
    """The (key, message) rows risk's outbox holds for ``topic``, in order (removed unless told)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (await conn.execute(
            "SELECT id, key, schema, payload FROM risk_outbox WHERE topic = %s ORDER BY id", (topic,))).fetchall()
        if delete and rows:
            await conn.execute("DELETE FROM risk_outbox WHERE id = ANY(%s)", ([r[0] for r in rows],))
    return [(key, decode(Order if schema == Order.SCHEMA else RiskEvent, bytes(payload)))
            for _, key, schema, payload in rows]


@asynccontextmanager
async def reading(bootstrap: str, topic: str, *, from_end: bool = False, wait_s: float = 20.0,
                  fetch_max_wait_ms: int = 10):
    """A group-less consumer on every partition of ``topic`` (from its beginning or end), and them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    await consumer.start()
    try:
        deadline = time.monotonic() + wait_s
        await consumer.topics()
        while not (partitions := consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"{topic} was not created"
            await asyncio.sleep(0.1)
            await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await (consumer.seek_to_end(*tps) if from_end else consumer.seek_to_beginning(*tps))
        for tp in tps:
            await consumer.position(tp)  # resolved now, not at the first fetch
        yield consumer, tps
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, until, timeout_s: float = 20.0) -> list:
    """Records of ``topic`` from the beginning until ``until(records)`` holds (raw aiokafka records)."""
    async with reading(bootstrap, topic) as (consumer, _):
        records: list = []
        deadline = time.monotonic() + timeout_s
        while not until(records):
            assert time.monotonic() < deadline, f"timed out reading {topic}: {len(records)} records"
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
        return records


async def read_all(bootstrap: str, topic: str) -> list:
    """Every record ``topic`` holds now (up to its end offsets)."""
    async with reading(bootstrap, topic) as (consumer, tps):
        ends = await consumer.end_offsets(tps)
        records: list = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
        return records


def decoded(records, message_type: type[Message]) -> list:
    return [decode(message_type, r.value) for r in records]


class PaperExecution:
    """A stand-in for the execution service: fills every order at ``price`` (see the module doc)."""

    def __init__(self, bootstrap: str, *, orders_topic: str, events_topic: str, fills_topic: str,
                 price: Decimal = Decimal(100), taker: Decimal = Decimal(0)) -> None:
        self._bootstrap = bootstrap
        self._orders_topic, self._events_topic, self._fills_topic = orders_topic, events_topic, fills_topic
        self.price, self.taker = price, taker
        self.orders: dict[str, Order] = {}
        self._task: asyncio.Task | None = None
        settings = CommonSettings(kafka_bootstrap=bootstrap)
        self._producer = Producer(settings, Telemetry("paper-execution", settings), client_id="paper-execution")

    async def __aenter__(self) -> PaperExecution:
        await self._producer.start()
        self._reading = reading(self._bootstrap, self._orders_topic)
        self._consumer, _ = await self._reading.__aenter__()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._reading.__aexit__(None, None, None)
        await self._producer.stop()

    async def _run(self) -> None:
        while True:
            for batch in (await self._consumer.getmany(timeout_ms=100)).values():
                for record in batch:
                    order = decode(Order, record.value)
                    if order.client_order_id in self.orders:
                        continue
                    self.orders[order.client_order_id] = order
                    events, fills = execute(order, self.price, self.taker, trade_id=f"t-{len(self.orders)}")
                    for fill in fills:
                        self._producer.send(self._fills_topic, order.account_id, fill)
                    for event in events:
                        self._producer.send(self._events_topic, order.account_id, event)
