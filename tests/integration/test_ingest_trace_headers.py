"""Where a trade's trace begins (docs/adr/0023): ingest's publisher and `tradeflow replay` put the
traceparent of one span per published batch on every tick of the batch, exported over OTLP."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.admin import TopicsExist
from tradeflow.bus import DeadLetters, Producer
from tradeflow.codec import decode, header_value
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_TICKS
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.bootstrap import INGEST_TOPICS
from tradeflow_ingest.replay import publish_replay_file
from tradeflow_ingest.settings import IngestSettings

from tests.fakes.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration
T0 = 1_772_445_600_000_000_000


async def read(bootstrap: str, topic: str, exchange: str) -> list[tuple[Tick, str | None]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    tick = decode(Tick, r.value)
                    if tick.exchange == exchange:
                        found.append((tick, header_value(r.headers, "traceparent")))
        return sorted(found, key=lambda item: int(item[0].trade_id))
    finally:
        await consumer.stop()


def ticks(exchange: str, first: int, count: int) -> list[Tick]:
    return [Tick(exchange=exchange, symbol=f"S{n % 3}/USDT", trade_id=str(n), price=100.0 + n, amount=1.0,
                 side="buy", ts_event=T0 + n, ts_recv=time.time_ns()) for n in range(first, first + count)]


async def test_each_published_batch_is_one_span_whose_traceparent_every_tick_carries(kafka_bootstrap, unique_name):
    receiver = await OtlpReceiver().start()
    exchange = f"tr{unique_name[-8:]}"
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, otlp_endpoint=receiver.endpoint)
    await TopicsExist(settings, INGEST_TOPICS).start()
    telemetry = Telemetry("ingest", settings)
    producer = Producer(settings, telemetry, client_id=f"test-{unique_name}")
    await producer.start()
    try:
        publisher = TickPublisher(producer, DeadLetters(producer, telemetry), telemetry)
        first = await publisher.publish(ticks(exchange, 0, 7))
        second = await publisher.publish(ticks(exchange, 7, 5))
        assert (first.published, second.published) == (7, 5)
    finally:
        await producer.stop()
        telemetry.shutdown()  # flushes the spans to the receiver
    try:
        published = await read(kafka_bootstrap, MD_TICKS.name, exchange)
        assert len(published) == 12
        parents = [traceparent for _, traceparent in published]
        assert all(parents) and len(set(parents[:7])) == 1 and len(set(parents[7:])) == 1
        assert parents[0] != parents[7] and parents[0].split("-")[1] != parents[7].split("-")[1]  # two traces
        spans = {s.span_id: s for s in receiver.spans if s.name == "ingest publish"}
        assert len(spans) == 2
        for traceparent, count, first_id, last_id in ((parents[0], 7, "0", "6"), (parents[7], 5, "7", "11")):
            _, trace_id, span_id, flags = traceparent.split("-")
            span = spans[span_id]
            assert span.trace_id == trace_id and span.parent_span_id == "" and int(flags, 16) & 1
            assert span.service == "ingest"
            assert span.attributes["messaging.batch.message_count"] == count
            assert span.attributes["tradeflow.exchange"] == exchange
            assert (span.attributes["tradeflow.first_trade_id"], span.attributes["tradeflow.last_trade_id"]) == (
                first_id, last_id)
    finally:
        await receiver.stop()


async def test_without_tracing_ticks_carry_no_traceparent(kafka_bootstrap, unique_name):
    exchange = f"nt{unique_name[-8:]}"
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap)
    telemetry = Telemetry("ingest", settings)
    assert not telemetry.tracing
    producer = Producer(settings, telemetry, client_id=f"test-{unique_name}")
    await producer.start()
    try:
        await TickPublisher(producer, DeadLetters(producer, telemetry), telemetry).publish(ticks(exchange, 0, 3))
    finally:
        await producer.stop()
    assert [traceparent for _, traceparent in await read(kafka_bootstrap, MD_TICKS.name, exchange)] == [None] * 3


async def test_a_replay_traces_each_batch_on_its_own_topic(kafka_bootstrap, unique_name, tmp_path):
    receiver = await OtlpReceiver().start()
    exchange, topic = f"rp{unique_name[-8:]}", f"ticks-{unique_name}"
    lines = ["ts,exchange,symbol,price,amount,side,trade_id"]
    lines += [f"{T0 // 1_000_000 + n},{exchange},BTC/USDT,{100 + n},1,buy,{n}" for n in range(8)]
    lines.insert(4, "not,a,valid,line,,,")  # skipped: no span or tick of its own
    path = tmp_path / "trades.csv"
    path.write_text("\n".join(lines) + "\n")
    settings = CommonSettings(kafka_bootstrap=kafka_bootstrap, otlp_endpoint=receiver.endpoint)
    try:
        report = await publish_replay_file(path, settings, batch_size=3, topic=topic)
        assert report.published == 8 and report.skipped_total == 1 and report.topic == topic
        assert f"published 8 ticks to {topic}" in report.summary()
        published = await read(kafka_bootstrap, topic, exchange)
        parents = [traceparent for _, traceparent in published]
        assert [len(set(parents[i:i + 3])) for i in (0, 3, 6)] == [1, 1, 1] and len(set(parents)) == 3
        await receiver.wait_for(lambda r: len([s for s in r.spans if s.name == "ingest publish"]) >= 3, 10, "spans")
        spans = [s for s in receiver.spans if s.name == "ingest publish"]
        assert sorted(s.attributes["messaging.batch.message_count"] for s in spans) == [2, 3, 3]
        assert {s.span_id for s in spans} == {p.split("-")[2] for p in parents}
        assert {s.attributes["messaging.destination.name"] for s in spans} == {topic}
    finally:
        await receiver.stop()
