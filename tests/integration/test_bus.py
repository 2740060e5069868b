"""The bus against a real broker: ordering, dead letters, redelivery, commits, tracing, reconnects."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tradeflow.admin import describe_topics, ensure_topics, list_topics
from tradeflow.bus import (
    Consumer,
    DeadLetters,
    Producer,
    ProducerStoppedError,
    Record,
    TopicReader,
    from_time,
    partition_for_key,
)
from tradeflow.codec import (
    HEADER_ERROR_REASON,
    HEADER_SCHEMA,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    HEADER_TRACEPARENT,
    decode,
    encode,
    header_value,
)
from tradeflow.messages import Candle, Fill, Tick
from tradeflow.settings import ServiceSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import TopicSpec
from tradeflow_ops.infra.processes import free_port
from tradeflow_ops.infra.tansu import TansuBroker

pytestmark = pytest.mark.integration

KEYS = [f"binance:SYM{i}/USDT" for i in range(12)]


def make_settings(bootstrap: str) -> ServiceSettings:
    # Tansu completes a group join after about half the session timeout: keep it short.
    return ServiceSettings(
        environment="test",
        kafka_bootstrap=bootstrap,
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
    )


def tick(key: str, seq: int) -> Tick:
    exchange, symbol = key.split(":", 1)
    return Tick(
        exchange=exchange, symbol=symbol, trade_id=str(seq), price=100.0 + seq, amount=0.5,
        side="buy", ts_event=1_700_000_000_000_000_000 + seq, ts_recv=1_700_000_000_000_000_000 + seq,
    )


async def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def metric(telemetry: Telemetry, name: str, **labels: str) -> float:
    value = telemetry.registry.get_sample_value(name, labels)
    return value or 0.0


async def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 15.0):
    """Every record of ``topic`` (no group: nothing committed), waiting for ``expected`` of them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()  # fresh metadata
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


class Harness:
    """A producer, dead letters and consumers on one telemetry, all stopped at the end."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.settings = make_settings(bootstrap)
        self.telemetry = Telemetry("test-bus", self.settings)
        self.producer = Producer(self.settings, self.telemetry, client_id="test-bus")
        self.dead_letters = DeadLetters(self.producer, self.telemetry)
        self.consumers: list[Consumer] = []

    def consumer(self, spec: TopicSpec, group: str, handler: Callable[[list[Record]], Awaitable[None]], **kw) -> Consumer:
        consumer = Consumer(
            self.settings, self.telemetry, topics=[spec], group_id=group, handler=handler,
            dead_letters=self.dead_letters, **kw,
        )
        self.consumers.append(consumer)
        return consumer

    async def close(self) -> None:
        for consumer in self.consumers:
            await consumer.stop()
        await self.producer.stop()


@pytest.fixture
async def bus(kafka_bootstrap: str):
    harness = Harness(kafka_bootstrap)
    await harness.producer.start()
    yield harness
    await harness.close()


@pytest.fixture
async def ticks_topic(kafka_bootstrap: str, unique_name: str) -> TopicSpec:
    spec = TopicSpec(f"{unique_name}.ticks", "exchange:symbol", Tick, 4)
    await ensure_topics(kafka_bootstrap, [spec])
    return spec


def by_key(records: list[Record]) -> dict[str, list[int]]:
    sequences: dict[str, list[int]] = defaultdict(list)
    for record in records:
        sequences[record.key].append(int(record.value.trade_id))
    return sequences


async def test_ensure_topics_creates_topic_and_dlq_with_partitions_and_is_idempotent(kafka_bootstrap, unique_name):
    spec = TopicSpec(f"{unique_name}.fills", "account id", Fill, 3, {"retention.ms": "3600000"})
    created = await ensure_topics(kafka_bootstrap, [spec])
    assert created == [spec.name, spec.dlq]
    assert await ensure_topics(kafka_bootstrap, [spec]) == []
    names = await list_topics(kafka_bootstrap)
    assert spec.name in names and spec.dlq in names
    infos = {i.name: i for i in await describe_topics(kafka_bootstrap, [spec.name, spec.dlq])}
    assert infos[spec.name].partitions == 3 and infos[spec.dlq].partitions == 3
    with pytest.raises(KeyError, match="unknown topic"):
        await describe_topics(kafka_bootstrap, [f"{unique_name}.missing"])
    assert f"{unique_name}.missing" not in await list_topics(kafka_bootstrap)  # not auto-created


async def test_every_message_arrives_once_in_per_key_order(bus: Harness, ticks_topic: TopicSpec, unique_name):
    per_key = 250
    items = [(key, tick(key, seq)) for seq in range(per_key) for key in KEYS]
    acks = await bus.producer.send_many(ticks_topic, items)
    assert len(acks) == len(items)
    assert len({ack.partition for ack in acks}) > 1  # keys spread over the partitions
    partition_of_key = {}
    for (key, _), ack in zip(items, acks, strict=True):
        assert partition_of_key.setdefault(key, ack.partition) == ack.partition  # one key, one partition

    received: list[Record] = []

    async def handle(records: list[Record]) -> None:
        received.extend(records)

    await bus.consumer(ticks_topic, unique_name, handle, max_batch=500).start()
    await wait_until(lambda: len(received) >= len(items), what="all messages")
    await asyncio.sleep(0.3)  # nothing extra may follow

    assert len(received) == len(items)
    assert by_key(received) == {key: list(range(per_key)) for key in KEYS}
    first = received[0]
    assert isinstance(first.value, Tick) and first.raw_value == encode(first.value)
    assert header_value(list(first.headers), HEADER_SCHEMA) == "Tick/1"
    assert metric(bus.telemetry, "tradeflow_messages_produced_total", topic=ticks_topic.name) == len(items)
    assert metric(bus.telemetry, "tradeflow_messages_consumed_total", topic=ticks_topic.name) == len(items)
    # Reported (labelled by the group) for the partitions that had messages, and caught up.
    lags = [bus.telemetry.registry.get_sample_value(
        "tradeflow_consumer_lag", {"group": unique_name, "topic": ticks_topic.name, "partition": str(partition)})
        for partition in range(4)]
    assert [lag for lag in lags if lag is not None] and all(lag in (None, 0) for lag in lags), lags


async def test_undecodable_and_mismatched_messages_go_to_the_dlq_and_valid_ones_are_handled(
    bus: Harness, ticks_topic: TopicSpec, unique_name
):
    key = KEYS[0]
    candle = Candle(exchange="binance", symbol="SYM0/USDT", timeframe="1m", ts_start=0, ts_end=60, open=1.0,
                    high=1.0, low=1.0, close=1.0, volume=1.0, trades=1)
    garbage = b"\xc1 definitely not msgpack"
    acks = [
        bus.producer.send(ticks_topic, key, tick(key, 1)),
        bus.producer.send_raw(ticks_topic.name, key.encode(), garbage, [("content-type", b"application/x-msgpack")]),
        bus.producer.send(ticks_topic, key, candle),  # schema header says Candle/1
        bus.producer.send_raw(ticks_topic.name, key.encode(), encode(candle), []),  # no header: decode fails
        bus.producer.send(ticks_topic, key, tick(key, 2)),
    ]
    offsets = [ack.offset for ack in await asyncio.gather(*acks)]

    received: list[Record] = []

    async def handle(records: list[Record]) -> None:
        received.extend(records)

    await bus.consumer(ticks_topic, unique_name, handle).start()
    await wait_until(lambda: len(received) >= 2, what="the valid ticks")
    assert [r.value.trade_id for r in received] == ["1", "2"]

    dead = await read_all(bus.bootstrap, ticks_topic.dlq, expected=3)
    assert len(dead) == 3
    dead.sort(key=lambda r: int(header_value(r.headers, HEADER_SOURCE_OFFSET)))
    reasons = [header_value(r.headers, HEADER_ERROR_REASON) for r in dead]
    assert reasons[0].startswith("undecodable: ")
    assert reasons[1].startswith("schema_mismatch: ") and "Candle/1" in reasons[1] and "Tick/1" in reasons[1]
    assert reasons[2].startswith("undecodable: ") and "missing required field" in reasons[2]
    assert [r.value for r in dead] == [garbage, encode(candle), encode(candle)]  # original bytes
    assert all(r.key == key.encode() for r in dead)
    assert [int(header_value(r.headers, HEADER_SOURCE_OFFSET)) for r in dead] == offsets[1:4]
    assert {header_value(r.headers, HEADER_SOURCE_TOPIC) for r in dead} == {ticks_topic.name}
    assert {header_value(r.headers, HEADER_SOURCE_PARTITION) for r in dead} == {str(acks[0].result().partition)}
    assert header_value(dead[1].headers, HEADER_SCHEMA) == "Candle/1"  # original headers kept
    assert metric(bus.telemetry, "tradeflow_dead_letters_total", topic=ticks_topic.name, reason="undecodable") == 2
    assert metric(bus.telemetry, "tradeflow_dead_letters_total", topic=ticks_topic.name, reason="schema_mismatch") == 1


async def test_a_failing_handler_loses_and_skips_nothing(bus: Harness, ticks_topic: TopicSpec, unique_name):
    per_key = 100
    await bus.producer.send_many(ticks_topic, [(key, tick(key, seq)) for seq in range(per_key) for key in KEYS])

    handled: list[Record] = []
    calls = 0

    async def fail_once(records: list[Record]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database briefly unavailable")
        handled.extend(records)

    await bus.consumer(ticks_topic, unique_name, fail_once, max_batch=200).start()
    await wait_until(lambda: len(handled) >= per_key * len(KEYS), what="every record handled")
    await asyncio.sleep(0.3)
    assert by_key(handled) == {key: list(range(per_key)) for key in KEYS}  # complete, in order, no dupes
    assert metric(bus.telemetry, "tradeflow_handler_errors_total", topic=ticks_topic.name) == 1


async def test_stop_commits_so_the_next_member_continues_after_the_last_handled_record(
    bus: Harness, ticks_topic: TopicSpec, unique_name
):
    key = KEYS[3]
    await bus.producer.send_many(ticks_topic, [(key, tick(key, seq)) for seq in range(50)])
    first: list[Record] = []

    async def collect_first(records: list[Record]) -> None:
        first.extend(records)

    # No periodic commit during the test: only stop() can have committed.
    member = bus.consumer(ticks_topic, unique_name, collect_first, commit_interval_s=3600, max_batch=7)
    await member.start()
    await wait_until(lambda: len(first) >= 50, what="the first 50")
    await member.stop()
    await member.stop()  # twice is fine

    await bus.producer.send_many(ticks_topic, [(key, tick(key, seq)) for seq in range(50, 80)])
    second: list[Record] = []

    async def collect_second(records: list[Record]) -> None:
        second.extend(records)

    await bus.consumer(ticks_topic, unique_name, collect_second, commit_interval_s=3600).start()
    await wait_until(lambda: len(second) >= 30, what="the next 30")
    await asyncio.sleep(0.3)
    assert [int(r.value.trade_id) for r in second] == list(range(50, 80))


async def test_committable_offsets_hold_back_commits(bus: Harness, ticks_topic: TopicSpec, unique_name):
    key = KEYS[5]
    await bus.producer.send_many(ticks_topic, [(key, tick(key, seq)) for seq in range(20)])
    seen: list[Record] = []
    hold_at: dict[TopicPartition, int] = {}

    async def collect(records: list[Record]) -> None:
        seen.extend(records)
        for record in records:  # a stateful service: only the first 5 are "closed"
            if int(record.value.trade_id) == 4:
                hold_at[record.topic_partition] = record.offset + 1

    member = bus.consumer(ticks_topic, unique_name, collect, committable_offsets=lambda: dict(hold_at))
    await member.start()
    await wait_until(lambda: len(seen) >= 20, what="all 20")
    await member.stop()

    again: list[Record] = []

    async def collect_again(records: list[Record]) -> None:
        again.extend(records)

    await bus.consumer(ticks_topic, unique_name, collect_again).start()
    await wait_until(lambda: len(again) >= 15, what="the redelivered 15")
    assert [int(r.value.trade_id) for r in again] == list(range(5, 20))


async def test_trace_context_flows_from_producer_to_the_consumer_span(
    bus: Harness, ticks_topic: TopicSpec, unique_name
):
    spans = InMemorySpanExporter()
    bus.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    key = KEYS[7]
    with bus.telemetry.tracer.start_as_current_span("replay file") as producer_span:
        await bus.producer.send_many(ticks_topic, [(key, tick(key, seq)) for seq in range(10)])
    producer_context = producer_span.get_span_context()

    trace_ids_in_handler: list[int] = []

    async def handle(records: list[Record]) -> None:
        trace_ids_in_handler.append(trace.get_current_span().get_span_context().trace_id)
        for record in records:
            assert record.header(HEADER_TRACEPARENT).startswith(f"00-{producer_context.trace_id:032x}-")

    await bus.consumer(ticks_topic, unique_name, handle).start()
    await wait_until(lambda: bool(trace_ids_in_handler), what="the handler")
    assert set(trace_ids_in_handler) == {producer_context.trace_id}
    await wait_until(lambda: any(s.name == f"{unique_name} process" for s in spans.get_finished_spans()))
    [batch_span] = [s for s in spans.get_finished_spans() if s.name == f"{unique_name} process"][:1]
    assert batch_span.context.trace_id == producer_context.trace_id
    assert producer_context.span_id in {link.context.span_id for link in batch_span.links}
    assert batch_span.attributes["messaging.consumer.group.name"] == unique_name


async def test_producer_and_consumer_wait_for_a_broker_that_comes_up_late(tmp_path: Path, unique_name):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    harness = Harness(bootstrap)
    spec = TopicSpec(f"{unique_name}.ticks", "exchange:symbol", Tick, 2)
    received: list[Record] = []

    async def handle(records: list[Record]) -> None:
        received.extend(records)

    consumer = harness.consumer(spec, unique_name, handle)
    broker = TansuBroker(port, tmp_path / "tansu.log")
    running = None
    try:
        await harness.producer.start()  # returns: retries in the background
        await consumer.start()
        assert not harness.producer.is_connected()
        assert (await harness.producer.ping())[0] is False
        key = KEYS[0]
        acks = [harness.producer.send(spec, key, tick(key, seq)) for seq in range(20)]
        await asyncio.sleep(0.5)
        assert not any(ack.done() for ack in acks)  # waiting in order, not failed

        running = await asyncio.to_thread(broker.start)
        await ensure_topics(bootstrap, [spec])
        results = await asyncio.wait_for(asyncio.gather(*acks), 60)
        assert [r.offset for r in results] == list(range(20))  # same order as sent
        assert harness.producer.is_connected()
        await wait_until(lambda: len(received) >= 20, timeout_s=60, what="consumption after reconnect")
        assert [int(r.value.trade_id) for r in received] == list(range(20))
    finally:
        await harness.close()
        if running is not None:
            broker.stop(running)


async def test_stop_without_a_broker_fails_pending_sends_and_never_hangs(unique_name):
    async def ignore(records: list[Record]) -> None:
        pass

    harness = Harness(f"127.0.0.1:{free_port()}")
    consumer = harness.consumer(TopicSpec(f"{unique_name}.t", "k", Tick, 1), unique_name, ignore)
    await harness.producer.start()
    await consumer.start()
    pending = harness.producer.send(f"{unique_name}.t", "k", tick("a:b", 1))
    await asyncio.wait_for(harness.close(), 10)
    with pytest.raises(ProducerStoppedError):
        await pending
    with pytest.raises(ProducerStoppedError):
        harness.producer.send(f"{unique_name}.t", "k", tick("a:b", 2))
    # never started: stop is still fine
    await Producer(harness.settings, harness.telemetry).stop()


async def test_decimal_values_survive_the_broker_exactly(bus: Harness, kafka_bootstrap, unique_name):
    spec = TopicSpec(f"{unique_name}.fills", "account id", Fill, 2)
    await ensure_topics(kafka_bootstrap, [spec])
    fill = Fill(fill_id="f1", client_order_id="c1", account_id="acct-1", exchange="binance", symbol="BTC/USDT",
                side="buy", quantity=Decimal("0.123456789012345678"), price=Decimal("64123.10"),
                fee=Decimal("0.0000001"), fee_currency="USDT", ts_event=1)
    await bus.producer.send_many(spec, [("acct-1", fill)])
    received: list[Record] = []

    async def handle(records: list[Record]) -> None:
        received.extend(records)

    await bus.consumer(spec, unique_name, handle).start()
    await wait_until(lambda: bool(received), what="the fill")
    assert received[0].value == fill
    assert str(received[0].value.price) == "64123.10"


async def test_a_member_without_partitions_is_ready_and_revoked_partitions_are_committed(
    bus: Harness, kafka_bootstrap, unique_name
):
    spec = TopicSpec(f"{unique_name}.one", "exchange:symbol", Tick, 1)
    await ensure_topics(kafka_bootstrap, [spec])
    key = KEYS[0]
    await bus.producer.send_many(spec, [(key, tick(key, seq)) for seq in range(10)])
    handled: list[int] = []
    revoked: list[set[TopicPartition]] = []

    async def handle(records: list[Record]) -> None:
        handled.extend(int(r.value.trade_id) for r in records)

    async def note_revoked(partitions: set[TopicPartition]) -> None:
        revoked.append(partitions)

    first = bus.consumer(spec, unique_name, handle, commit_interval_s=3600, on_revoked=note_revoked)
    await first.start()
    await wait_until(lambda: len(handled) >= 10, what="the first member's records")
    second = bus.consumer(spec, unique_name, handle, commit_interval_s=3600)
    await second.start()
    await wait_until(lambda: first.is_ready() and second.is_ready() and bool(revoked), timeout_s=30,
                     what="both members joined after the rebalance")
    assert sorted(len(c.assignment()) for c in (first, second)) == [0, 1]  # one idles, still ready
    assert revoked[0] == {TopicPartition(spec.name, 0)}

    # the revoke committed: whoever owns the partition now continues at 10, nothing is redelivered
    await bus.producer.send_many(spec, [(key, tick(key, seq)) for seq in range(10, 15)])
    await wait_until(lambda: len(handled) >= 15, what="the next records")
    await asyncio.sleep(0.3)
    assert handled == list(range(15))


async def test_a_refused_message_fails_alone_and_later_sends_still_work(bus: Harness, ticks_topic: TopicSpec):
    too_big = bus.producer.send_raw(ticks_topic.name, b"k", b"x" * (2 * 1024 * 1024), [])
    fine = bus.producer.send(ticks_topic, KEYS[0], tick(KEYS[0], 1))
    with pytest.raises(Exception, match="MessageSizeTooLarge"):
        await too_big
    assert (await fine).offset >= 0
    assert metric(bus.telemetry, "tradeflow_produce_errors_total", topic=ticks_topic.name) == 1


async def test_send_all_acknowledges_each_message_in_key_order_with_its_own_offset(
    bus: Harness, ticks_topic: TopicSpec
):
    items = [(KEYS[i % 3], tick(KEYS[i % 3], i)) for i in range(300)]
    results = await bus.producer.send_all(ticks_topic, items)
    assert len(results) == 300 and not [r for r in results if isinstance(r, BaseException)]
    by_partition = defaultdict(list)
    for result in results:
        by_partition[result.partition].append(result.offset)
    assert all(offsets == sorted(set(offsets)) for offsets in by_partition.values())  # distinct, increasing
    assert await bus.producer.send_all(ticks_topic, []) == []
    records = await read_all(bus.bootstrap, ticks_topic.name, 300)
    for key in KEYS[:3]:
        seqs = [decode(Tick, r.value).price for r in records if r.key.decode() == key]
        assert seqs == sorted(seqs) and len(seqs) == 100
    assert metric(bus.telemetry, "tradeflow_messages_produced_total", topic=ticks_topic.name) == 300


async def test_a_tombstone_is_sent_and_read_back_as_a_record_without_value(bus: Harness, ticks_topic: TopicSpec):
    # Compacted topics (ingest.subscriptions.v1) delete a key with a record whose value is null.
    await bus.producer.send(ticks_topic, KEYS[0], tick(KEYS[0], 1))
    ack = await bus.producer.send_raw(ticks_topic.name, KEYS[0].encode(), None)
    assert ack.offset >= 1
    records = await read_all(bus.bootstrap, ticks_topic.name, 2)
    assert [r.value is None for r in records if r.key.decode() == KEYS[0]] == [False, True]


async def test_a_reader_reads_from_a_time_until_caught_up_and_by_key(bus: Harness, ticks_topic: TopicSpec):
    for seq in range(30):
        await bus.producer.send(ticks_topic, KEYS[seq % 3], tick(KEYS[seq % 3], seq))
    reader = TopicReader(bus.settings, ticks_topic, client_id="test-reader")
    everything = await reader.read()
    assert sorted(int(r.value.trade_id) for r in everything) == list(range(30))
    assert by_key(everything)[KEYS[1]] == list(range(1, 30, 3))  # per-key order
    mine = await reader.read(keys=[KEYS[2]])
    assert [int(r.value.trade_id) for r in mine] == list(range(2, 30, 3))
    since = await reader.read(start=from_time(min(r.timestamp_ms for r in everything)))
    assert len(since) == 30
    later = await reader.read(start=from_time(int(time.time() * 1000) + 60_000))
    assert later == []  # nothing written since then: from the end, nothing returned
    partition = partition_for_key(KEYS[0], await reader.partitions())
    assert {r.partition for r in await reader.read(keys=[KEYS[0]])} == {partition}


async def test_a_following_reader_resumes_at_its_next_offsets_after_a_broker_restart(tmp_path: Path, unique_name):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    settings = make_settings(bootstrap)
    spec = TopicSpec(f"{unique_name}.ticks", "exchange:symbol", Tick, 2)
    broker = TansuBroker(port, tmp_path / "tansu.log")
    running = await asyncio.to_thread(broker.start)
    producer = Producer(settings, Telemetry("test-reader", settings))
    reader = TopicReader(settings, spec, client_id="test-follow")
    seen: list[str] = []
    caught_up = asyncio.Event()

    async def follow() -> None:
        async for batch in reader.follow():
            seen.extend(r.value.trade_id for r in batch.records)
            if batch.caught_up:
                caught_up.set()

    task = None
    try:
        await ensure_topics(bootstrap, [spec])
        await producer.start()
        await producer.send_many(spec, [(KEYS[0], tick(KEYS[0], seq)) for seq in range(5)])
        task = asyncio.create_task(follow())
        await asyncio.wait_for(caught_up.wait(), 30)
        assert seen == ["0", "1", "2", "3", "4"]

        broker.stop(running)  # Tansu keeps messages in memory: it comes back empty
        await asyncio.sleep(1.0)
        running = await asyncio.to_thread(broker.start)
        await ensure_topics(bootstrap, [spec])
        await asyncio.wait_for(producer.send_many(spec, [(KEYS[0], tick(KEYS[0], seq)) for seq in range(100, 107)]),
                               60)
        await wait_until(lambda: len(seen) > 5, 60, "the trades sent after the restart")
        await asyncio.sleep(1)
        # It went on at its next offset (5) of the partition: on Kafka the log survives a restart,
        # so that is exactly where it stopped; Tansu comes back empty, so offsets 0-4 of the new
        # log (trades 100-104) are below the reader's position and not read (ADR 0013).
        assert seen == ["0", "1", "2", "3", "4", "105", "106"]
        assert max(reader.positions.values()) == 7
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        broker.stop(running)
