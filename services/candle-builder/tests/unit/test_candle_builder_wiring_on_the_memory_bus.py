"""The candle-builder wired by ``build`` on the in-memory bus and a test clock (no broker; the
database pool is built but never opened): the live stream from md.candles.v1 and the consumer
group's hooks into the pipeline."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import generate_latest
from tradeflow.bus import TopicPartition
from tradeflow.messages import Candle
from tradeflow.testing import MemoryBroker, MemoryBus, TestClock
from tradeflow.topics import MD_CANDLES, MD_TICKS
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.bootstrap import build
from tradeflow_candle_builder.settings import CandleBuilderSettings
from tradeflow_candle_builder.stream.frames import parse_subscription

T0 = 1_772_445_600 * 1_000_000_000
MINUTE = 60 * 1_000_000_000
UNOPENED_DATABASE = "postgresql://nobody@127.0.0.1:9/never-opened"


def candle(minute: int, symbol: str = "BTC/USDT") -> Candle:
    start = T0 + minute * MINUTE
    return Candle(exchange="binance", symbol=symbol, timeframe="1m", ts_start=start, ts_end=start + MINUTE,
                  open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0, trades=4)


def candle_builder(bus: MemoryBus, clock: TestClock):
    settings = CandleBuilderSettings(database_url=UNOPENED_DATABASE)
    return build(settings, bus, CandleStore(UNOPENED_DATABASE), clock)


def metric(bus: MemoryBus, name: str) -> float:
    for line in generate_latest(bus.telemetry.registry).decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


async def test_the_stream_sends_the_candles_emitted_after_it_started_and_skips_undecodable_ones():
    clock = TestClock(start_ns=T0)
    bus = MemoryBus(clock=clock)
    service = candle_builder(bus, clock)
    producer = bus.producer()
    await producer.start()
    await producer.send(MD_CANDLES, "binance:BTC/USDT", candle(0))  # before the stream started: history
    client = service.broadcaster.subscribe(parse_subscription("binance:BTC/USDT", "1m"))
    assert not service.feed.is_positioned()
    await service.feed.start()
    await bus.settle()
    assert service.feed.is_positioned()

    await producer.send(MD_CANDLES, "binance:ETH/USDT", candle(1, "ETH/USDT"))  # not subscribed
    producer.send_raw(MD_CANDLES.name, b"binance:BTC/USDT", b"\xc1 not a candle")
    await producer.send(MD_CANDLES, "binance:BTC/USDT", candle(2))
    await bus.settle()
    frame = await asyncio.wait_for(client.next_frame(), 1)
    assert json.loads(frame)["ts"] == "2026-03-02T10:02:00Z" and json.loads(frame)["symbol"] == "BTC/USDT"
    assert client._queue.empty()  # the candle from before the start and ETH's were not sent
    assert metric(bus, "tradeflow_stream_undecodable_candles_total") == 1
    await service.feed.stop()
    assert not service.feed.is_positioned()


async def test_a_second_replica_takes_half_the_tick_partitions_from_the_pipeline_and_gives_them_back():
    clock = TestClock(start_ns=T0)
    broker = MemoryBroker(clock)
    first = candle_builder(MemoryBus(clock=clock, broker=broker), clock)
    second = candle_builder(MemoryBus(clock=clock, broker=broker), clock)
    partitions = set(range(MD_TICKS.partitions))

    await first.consumer.start()
    assert first.pipeline.aggregator.partitions() == partitions
    assert first.consumer.assignment() == {TopicPartition(MD_TICKS.name, p) for p in partitions}
    await second.consumer.start()
    mine, theirs = first.pipeline.aggregator.partitions(), second.pipeline.aggregator.partitions()
    assert mine and theirs and mine | theirs == partitions and not mine & theirs
    # Nothing written to the database yet: the pipeline lets the consumer commit nothing.
    assert first.pipeline.committable_offsets() == {}
    await second.consumer.stop()
    assert first.pipeline.aggregator.partitions() == partitions
    assert second.pipeline.aggregator.partitions() == set()
    await first.consumer.stop()
