"""The candle pipeline (CandlePipeline, its StoreWriter and the consumer group that feeds it, wired by
bootstrap.create_pipeline) on the in-memory bus, the in-memory storage ports and a test clock: what a
user of md.candles.v1 and of the stored candles sees, including the unhappy orders (a redelivered
batch, a late trade, a replay after a restart, undecodable and invalid records). No broker, no
database: the in-memory store is held to the real one by tests/integration/test_candle_store_contract.py.
"""

from __future__ import annotations

import asyncio

import pytest
from tradeflow.codec import HEADER_ERROR_REASON
from tradeflow.messages import Candle, Tick
from tradeflow.testing import MemoryBroker, MemoryBus, TestClock
from tradeflow.topics import MD_CANDLES, MD_TICKS
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.adapters.instrument_store import InstrumentStore
from tradeflow_candle_builder.adapters.memory_store import MemoryCandleStore
from tradeflow_candle_builder.bootstrap import create_pipeline
from tradeflow_candle_builder.instrument_registry import InstrumentRegistry
from tradeflow_candle_builder.settings import CandleBuilderSettings

NS = 1_000_000_000
MINUTE = 60 * NS
T0 = 1_772_445_600 * NS  # Monday 2026-03-02 10:00 UTC: every higher bucket starts here
EXCHANGE, SYMBOL = "binance", "BTC/USDT"
KEY = f"{EXCHANGE}:{SYMBOL}"
NEVER_OPENED = "postgresql://nobody@127.0.0.1:9/never-opened"  # the registry's database: never started


class CandleBuilderProcess:
    """One candle-builder process: pipeline + consumer on ``bus``, storage in ``store``."""

    def __init__(self, bus: MemoryBus, store: MemoryCandleStore, clock: TestClock) -> None:
        settings = CandleBuilderSettings(database_url=NEVER_OPENED, db_batch_ms=0)
        self.producer = bus.producer(client_id="candle-builder")
        dead_letters = bus.dead_letters(self.producer)
        # Not started: no instrument is registered, so every one is 24/7 (UTC-aligned candles).
        registry = InstrumentRegistry(InstrumentStore(CandleStore(NEVER_OPENED)), refresh_s=60)
        self.pipeline, self.consumer = create_pipeline(settings, bus, self.producer, dead_letters, registry,
                                                       store, store.marks, store.sessions, clock)
        self.bus = bus

    async def start(self) -> None:
        for component in (self.producer, self.pipeline, self.consumer):
            await component.start()

    async def stop(self) -> None:
        for component in (self.consumer, self.pipeline, self.producer):
            await component.stop()

    async def settled(self) -> None:
        """Everything consumed, written and emitted."""
        await self.bus.settle()
        await self.pipeline.writer.drain()


def tick(trade_id: int, price: float, at_ns: int, amount: float = 1.0) -> Tick:
    return Tick(exchange=EXCHANGE, symbol=SYMBOL, trade_id=str(trade_id), price=price, amount=amount, side="buy",
                ts_event=at_ns, ts_recv=at_ns + 1000)


# Trades in minutes 0..4 (two each) and one at 05:03, which closes 10:04 (grace 2 s) and with it 10:00-10:05.
TRADES = [tick(10 * m + i, 100.0 + m + i, T0 + m * MINUTE + (10 + 30 * i) * NS, amount=0.5 + i)
          for m in range(5) for i in range(2)] + [tick(99, 110.0, T0 + 5 * MINUTE + 3 * NS)]


def expected_1m(minute: int, revision: int = 0) -> tuple:
    start = T0 + minute * MINUTE
    return ("1m", start, 100.0 + minute, 101.0 + minute, 100.0 + minute, 101.0 + minute, 2.0, 2, revision)


def summary(candle: Candle) -> tuple:
    return (candle.timeframe, candle.ts_start, candle.open, candle.high, candle.low, candle.close, candle.volume,
            candle.trades, candle.revision)


def emitted(bus: MemoryBus) -> list[tuple]:
    return [summary(c) for c in bus.broker.values(MD_CANDLES)]


async def stored(store: MemoryCandleStore) -> list[tuple]:
    return [summary(c) for c in await store.fetch_1m(EXCHANGE, SYMBOL, T0, T0 + 60 * MINUTE)]


@pytest.fixture
def clock() -> TestClock:
    return TestClock(start_ns=T0 + 60 * MINUTE)  # the trades are in the past, none in the future


async def send(bus: MemoryBus, ticks: list[Tick]) -> None:
    producer = bus.producer(client_id="ingest")
    await producer.start()
    for t in ticks:
        await producer.send(MD_TICKS, KEY, t)


async def run(bus: MemoryBus, store: MemoryCandleStore, clock: TestClock, ticks: list[Tick]) -> CandleBuilderProcess:
    process = CandleBuilderProcess(bus, store, clock)
    await process.start()
    await send(bus, ticks)
    await process.settled()
    return process


async def test_trades_become_closed_1m_and_higher_candles_on_the_topic_and_in_the_store(clock):
    bus, store = MemoryBus(clock=clock), MemoryCandleStore()
    process = await run(bus, store, clock, TRADES)

    five = ("5m", T0, 100.0, 105.0, 100.0, 105.0, 10.0, 10, 0)
    assert emitted(bus) == [expected_1m(m) for m in range(5)] + [five]
    assert all(c.ts_end - c.ts_start == MINUTE for c in bus.broker.values(MD_CANDLES)[:5])
    # The store has the closed minutes and the forming one (so /v1/candles shows it), and every trade.
    assert await stored(store) == [expected_1m(m) for m in range(5)] + [
        ("1m", T0 + 5 * MINUTE, 110.0, 110.0, 110.0, 110.0, 1.0, 1, 0)]
    assert store.tick_count() == 11
    rows = await store.fetch_candles(EXCHANGE, SYMBOL, "5m", None, None, 5)
    assert [(r.open, r.high, r.low, r.close, r.volume, r.trades) for r in rows] == [
        (100.0, 105.0, 100.0, 105.0, 10.0, 10), (110.0, 110.0, 110.0, 110.0, 1.0, 1)]
    # What was emitted is recorded, so a restart knows (the writer had nothing queued).
    assert store.marks.emitted_through == {(EXCHANGE, SYMBOL): T0 + 5 * MINUTE}
    await process.stop()


async def test_a_batch_redelivered_after_a_handler_error_changes_nothing_and_emits_nothing_twice(clock):
    bus, store = MemoryBus(clock=clock), MemoryCandleStore()
    # The first batch fails when the pipeline looks up where the new instrument stands (the
    # database is away); the consumer redelivers it.
    store.fail_next("resume_points", ConnectionError("database unreachable"))
    process = await run(bus, store, clock, TRADES)

    assert process.consumer.redeliveries == 1
    assert emitted(bus) == [expected_1m(m) for m in range(5)] + [("5m", T0, 100.0, 105.0, 100.0, 105.0, 10.0, 10, 0)]
    assert (await stored(store))[:5] == [expected_1m(m) for m in range(5)]
    assert store.tick_count() == 11
    await process.stop()


async def test_a_write_that_fails_is_retried_and_the_candles_are_emitted_once(clock):
    bus, store = MemoryBus(clock=clock), MemoryCandleStore()
    store.fail_next("upsert_candles_1m", ConnectionError("connection reset"))
    process = await run(bus, store, clock, TRADES)

    assert emitted(bus) == [expected_1m(m) for m in range(5)] + [("5m", T0, 100.0, 105.0, 100.0, 105.0, 10.0, 10, 0)]
    assert (await stored(store))[:5] == [expected_1m(m) for m in range(5)]
    await process.stop()


async def test_a_late_trade_corrects_its_candle_with_the_next_revision_and_a_repeated_one_changes_nothing(clock):
    bus, store = MemoryBus(clock=clock), MemoryCandleStore()
    process = await run(bus, store, clock, TRADES)
    before = len(emitted(bus))

    late = tick(500, 120.0, T0 + MINUTE + 50 * NS, amount=1.0)  # for 10:01, emitted already
    await send(bus, [late])
    await process.settled()
    corrected = ("1m", T0 + MINUTE, 101.0, 120.0, 101.0, 120.0, 3.0, 3, 1)
    # 10:00-10:05 is a closed 5m bucket: read back from the store and emitted again, corrected.
    five = ("5m", T0, 100.0, 120.0, 100.0, 105.0, 11.0, 11, 1)
    assert emitted(bus)[before:] == [corrected, five]
    assert (await stored(store))[1] == corrected
    await send(bus, [late])  # the same late trade again (an upstream retry)
    await process.settled()
    assert emitted(bus)[before:] == [corrected, five]
    assert (await stored(store))[1] == corrected and store.tick_count() == 12
    await process.stop()


async def test_a_replay_after_a_restart_emits_nothing_and_raises_no_revision(clock):
    store = MemoryCandleStore()
    first = await run(MemoryBus(clock=clock), store, clock, TRADES)
    await first.stop()
    before = await stored(store)

    # The broker restarted empty (Tansu keeps nothing): a new process over the same database gets
    # the same trades again, from the start of a new topic, in a new consumer group.
    bus = MemoryBus(clock=clock, broker=MemoryBroker(clock))
    second = await run(bus, store, clock, TRADES)
    assert emitted(bus) == []
    assert await stored(store) == before
    assert store.tick_count() == 11
    await second.stop()


async def test_a_graceful_restart_resumes_from_the_committed_offsets_and_emits_each_candle_once(clock):
    bus, store = MemoryBus(clock=clock), MemoryCandleStore()
    first = await run(bus, store, clock, TRADES)
    await first.stop()

    second = await run(bus, store, clock, [tick(200, 111.0, T0 + 6 * MINUTE + 3 * NS)])  # closes 10:05
    assert emitted(bus) == [expected_1m(m) for m in range(5)] + [
        ("5m", T0, 100.0, 105.0, 100.0, 105.0, 10.0, 10, 0),
        ("1m", T0 + 5 * MINUTE, 110.0, 110.0, 110.0, 110.0, 1.0, 1, 0)]
    assert store.tick_count() == 12
    await second.stop()


async def test_undecodable_and_invalid_trades_go_to_the_dlq_with_their_reason_and_count_for_nothing(clock):
    bus, store = MemoryBus(clock=clock), MemoryCandleStore()
    process = CandleBuilderProcess(bus, store, clock)
    await process.start()
    ingest = bus.producer(client_id="ingest")
    await ingest.start()
    ingest.send_raw(MD_TICKS.name, KEY.encode(), b"\xc1 not a tick")
    await ingest.send(MD_TICKS, KEY, tick(1, -5.0, T0 + NS))  # a negative price
    await ingest.send(MD_TICKS, "binance:ETH/USDT", tick(2, 100.0, T0 + 2 * NS))  # filed under another market
    await send(bus, TRADES)
    await process.settled()

    reasons = [r.header(HEADER_ERROR_REASON) for r in bus.broker.records(MD_TICKS.dlq)]
    assert len(reasons) == 3
    assert reasons[0].startswith("undecodable:")
    assert reasons[1] == "invalid_price: price must be a positive finite number, got -5.0"
    assert reasons[2].startswith("key_mismatch:")
    assert emitted(bus)[:5] == [expected_1m(m) for m in range(5)]
    assert store.tick_count() == 11
    await process.stop()


async def test_a_batch_redelivered_after_its_dlq_send_failed_counts_each_trade_once(clock):
    bus, store = MemoryBus(clock=clock), MemoryCandleStore()
    process = CandleBuilderProcess(bus, store, clock)
    await process.start()
    bus.broker.fail_sends(MD_TICKS.dlq, ConnectionError("DLQ partition leader moved"))
    ingest = bus.producer(client_id="ingest")
    await ingest.start()
    # One batch: an invalid trade (for the DLQ) and the valid ones.
    await asyncio.gather(*[ingest.send(MD_TICKS, KEY, t) for t in [tick(1, -5.0, T0 + NS), *TRADES]])
    while process.consumer.redeliveries == 0:  # noqa: ASYNC110 - no event tells of a redelivery
        await asyncio.sleep(0.001)
    bus.broker.fail_sends(MD_TICKS.dlq, None)
    await process.settled()
    await send(bus, [tick(200, 111.0, T0 + 6 * MINUTE + 3 * NS)])  # closes 10:05
    await process.settled()

    assert len(bus.broker.records(MD_TICKS.dlq)) == 1
    assert emitted(bus)[-1] == ("1m", T0 + 5 * MINUTE, 110.0, 110.0, 110.0, 110.0, 1.0, 1, 0)
    assert (await stored(store))[5] == ("1m", T0 + 5 * MINUTE, 110.0, 110.0, 110.0, 110.0, 1.0, 1, 0)
    await process.stop()
