"""The strategy service in its tests: its settings, the app in the test process, candles in and
signals out through the broker (integration and end-to-end tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.bus import Producer
from tradeflow.codec import decode
from tradeflow.messages import Candle, Signal
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import market_key
from tradeflow_strategy.bootstrap import SERVICE
from tradeflow_strategy.settings import StrategySettings
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategy import CandleFrame
from tradeflow_trading.strategy.parity import history_intents


def service_settings(kafka_bootstrap: str, database_url: str, api_key: str, name: str, *,
                     accounts: list[dict[str, Any]], candle_api: str = "http://127.0.0.1:9",
                     **extra: Any) -> StrategySettings:
    """Settings of a strategy service with topics and a consumer group of its own (``name``),
    syncing, writing its status and reloading files quickly (tests wait for them)."""
    return StrategySettings(
        environment="test", kafka_bootstrap=kafka_bootstrap, database_url=database_url, api_keys=api_key,
        topic_candles=f"candles-{name}", topic_fills=f"fills-{name}", topic_signals=f"signals-{name}",
        consumer_group=f"strategy-{name}", consumer_session_timeout_ms=6000, instance_refresh_s=0.2,
        status_interval_s=0.2, reload_interval_s=0.1, candle_builder_url=candle_api, accounts=json.dumps(accounts),
        **extra)


@contextlib.asynccontextmanager
async def strategy_app(settings: StrategySettings, api_key: str, *, ready: bool = False,
                       ) -> AsyncIterator[httpx.AsyncClient]:
    """The service's app running in the test process (lifespan), and a client sending the API
    key; with ``ready``, once /readyz says 200 (its consumer joined)."""
    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy",
                                 headers={"Authorization": f"Bearer {api_key}"}) as client:
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 30
            while ready and (answer := await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, answer.text
                await asyncio.sleep(0.2)
            yield client


async def publish_candles(bootstrap: str, topic: str, candles: Sequence[Candle]) -> None:
    """Send ``candles`` in order (key exchange:symbol, as the candle-builder does) and wait for the acks."""
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("test-candles", settings), client_id="test-candles")
    await producer.start()
    try:
        await producer.send_many(topic, [(market_key(c.exchange, c.symbol), c) for c in candles])
    finally:
        await producer.stop()


async def read_signals(bootstrap: str, topic: str, until: Callable[[list[Signal]], bool], *, timeout_s: float,
                       idle_s: float = 1.5) -> list[Signal]:
    """Every signal on ``topic`` from its start, in topic order per partition: read until
    ``until(signals)`` holds and then nothing new came for ``idle_s`` (so extras would show)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    signals: list[Signal] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not consumer.partitions_for_topic(topic):
            await consumer.topics()
            assert time.monotonic() < deadline, f"no topic {topic}"
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        quiet_since = None
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                signals += [decode(Signal, r.value) for r in records]
            if batch:
                quiet_since = None
            elif until(signals):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= idle_s:
                    return signals
            assert time.monotonic() < deadline, f"timed out: {len(signals)} signals on {topic}"
    finally:
        await consumer.stop()


async def rewind_group(bootstrap: str, group: str, topic: str, offset_of: Callable[[int, int], int]) -> list[Candle]:
    """Commit earlier offsets for ``group`` on ``topic`` (as if the last commits never happened),
    ``offset_of(partition, end offset)`` per partition, and return the candles the group will
    get again (from those offsets on). Joins the group to do it (brokers refuse commits from
    outside an active group), so no other member may be running."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                session_timeout_ms=6000)
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
            assert time.monotonic() < deadline, "never assigned"
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        offsets = {tp: offset_of(tp.partition, ends[tp]) for tp in partitions}
        await consumer.commit(offsets)
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        again: list[Candle] = []
        while batch := await consumer.getmany(timeout_ms=1000):
            again += [decode(Candle, r.value) for records in batch.values() for r in records]
        return again
    finally:
        await consumer.stop()


def sma_cross_signals(instance_id: str, account_id: str, exchange: str, symbol: str, params: dict, frame: CandleFrame,
                      first_ts: int) -> list[Signal]:
    """The signals an sma_cross instance publishes for the candles of ``frame`` from ``first_ts``
    (the backtest's decisions over the whole history, with design.md's ids)."""
    return [i.signal(instance_id=instance_id, account_id=account_id, exchange=exchange, strategy="sma_cross")
            for i in history_intents(SmaCross(params), frame, symbol) if i.ts_start >= first_ts]
