"""The running ingest service: synthetic market to md.ticks.v1, its API and metrics, and the DLQ."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from itertools import pairwise

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.bus import DeadLetters, Producer
from tradeflow.codec import decode, header_value
from tradeflow.messages import Tick
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_TICKS
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.bootstrap import SERVICE
from tradeflow_ingest.settings import IngestSettings

pytestmark = pytest.mark.integration


async def read_topic(bootstrap: str, topic: str, exchange: str) -> list[tuple[int, int, str, Tick, list]]:
    """(partition, offset, key, tick, headers) of every record of ``exchange`` on ``topic``, up to now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    tick = decode(Tick, r.value)
                    if tick.exchange == exchange:
                        found.append((tp.partition, r.offset, r.key.decode(), tick, list(r.headers)))
        return found
    finally:
        await consumer.stop()


async def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        result = await predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_service_with_five_synthetic_symbols_publishes_them_and_reports_progress(kafka_bootstrap, unique_name):
    exchange = f"syn-{unique_name}"
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, synthetic_symbols=5, synthetic_rate=400.0,
                              synthetic_seed=11, synthetic_exchange=exchange)
    app = SERVICE.create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        async with app.router.lifespan_context(app):
            async def ready():
                return (await client.get("/readyz")).status_code == 200
            await wait_for(ready, 20, "/readyz")

            async def sources_with_trades():
                (source,) = (await client.get("/v1/sources")).json()
                return source if source["published"] >= 300 else None
            source = await wait_for(sources_with_trades, 20, "300 synthetic trades")
            assert source["kind"] == "synthetic" and source["exchange"] == exchange
            assert source["symbols"] == [f"SYM0{i}/USD" for i in range(5)]
            assert source["rate"] == 400.0 and source["running"] is True and source["rejected"] == 0
            last_event = datetime.fromisoformat(source["last_event_time"])
            assert abs((datetime.now(UTC) - last_event).total_seconds()) < 30
            metrics = (await client.get("/metrics")).text
            assert f'tradeflow_ingest_ticks_published_total{{exchange="{exchange}"}}' in metrics

        (stopped,) = (await client.get("/v1/sources")).json()  # the state after a graceful stop
    assert stopped["running"] is False

    found = await read_topic(kafka_bootstrap, MD_TICKS.name, exchange)
    assert len(found) == stopped["published"]  # every acknowledged trade is on the topic, once
    assert len({tick.trade_id for *_, tick, _ in found}) == len(found)
    by_key = defaultdict(list)
    for partition, offset, key, tick, _ in found:
        assert key == f"{exchange}:{tick.symbol}"
        assert tick.price > 0 and tick.amount > 0 and tick.side in ("buy", "sell")
        by_key[key].append((partition, offset, tick))
    assert sorted(by_key) == [f"{exchange}:SYM0{i}/USD" for i in range(5)]
    for records in by_key.values():
        records.sort(key=lambda r: r[1])
        recv = [tick.ts_recv for *_, tick in records]
        assert len({p for p, _, _ in records}) == 1 and all(a < b for a, b in pairwise(recv))
    last_ns = max(tick.ts_event for *_, tick, _ in found)
    assert abs(last_ns / 1e9 - time.time()) < 60  # event time is the wall clock


async def test_an_invalid_tick_goes_to_the_dlq_with_its_reason_and_is_counted(kafka_bootstrap, unique_name):
    exchange = f"feed-{unique_name}"
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap)
    telemetry = Telemetry("ingest-test", settings)
    producer = Producer(settings, telemetry)
    publisher = TickPublisher(producer, DeadLetters(producer, telemetry), telemetry)
    clock = ReceiveClock()
    now = time.time_ns()

    def tick(trade_id: str, price: float, side: str = "buy") -> Tick:
        return Tick(exchange=exchange, symbol="BTC/USDT", trade_id=trade_id, price=price, amount=1.0,
                    side=side, ts_event=now, ts_recv=clock.next())

    await producer.start()
    try:
        outcome = await publisher.publish([tick("1", 100.0), tick("2", float("nan")), tick("3", 101.0, "hold")])
    finally:
        await producer.stop()

    assert (outcome.published, outcome.rejected, outcome.failed) == (1, 2, 0)
    good = await read_topic(kafka_bootstrap, MD_TICKS.name, exchange)
    assert [t.trade_id for *_, t, _ in good] == ["1"]
    dead = await read_topic(kafka_bootstrap, MD_TICKS.dlq, exchange)
    assert [t.trade_id for *_, t, _ in dead] == ["2", "3"]
    reasons = [header_value(headers, "error-reason") for *_, headers in dead]
    assert reasons[0].startswith("invalid_price:") and reasons[1].startswith("invalid_side:")
    assert {key for _, _, key, _, _ in dead} == {f"{exchange}:BTC/USDT"}
    registry = telemetry.registry
    assert registry.get_sample_value("tradeflow_ingest_ticks_published_total", {"exchange": exchange}) == 1
    assert registry.get_sample_value(
        "tradeflow_ingest_ticks_rejected_total", {"exchange": exchange, "reason": "invalid_price"}) == 1
    assert registry.get_sample_value(
        "tradeflow_ingest_ticks_rejected_total", {"exchange": exchange, "reason": "invalid_side"}) == 1
