"""The in-memory bus keeps the rules of the Kafka bus that service code relies on."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import pytest
from tradeflow.bus import (
    FROM_END,
    Handlers,
    Record,
    TopicPartition,
    from_offsets,
    from_time,
    partition_for_key,
)
from tradeflow.codec import HEADER_ERROR_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_TOPIC, encode
from tradeflow.messages import Candle, Order, OrderAmendment, Tick
from tradeflow.testing import MemoryBus, TestClock
from tradeflow.topics import MD_CANDLES, MD_TICKS, RISK_ORDERS

TICKS = dataclasses.replace(MD_TICKS, partitions=4)
KEYS = [f"x:S{i}/USDT" for i in range(8)]


def tick(key: str, seq: int, ts_event: int = 1_700_000_000_000_000_000) -> Tick:
    exchange, symbol = key.split(":")
    return Tick(exchange=exchange, symbol=symbol, trade_id=str(seq), price=float(seq + 1), amount=1.0, side="buy",
                ts_event=ts_event + seq, ts_recv=ts_event + seq)


def candle(key: str) -> Candle:
    exchange, symbol = key.split(":")
    return Candle(exchange=exchange, symbol=symbol, timeframe="1m", ts_start=0, ts_end=60_000_000_000,
                  open=1.0, high=1.0, low=1.0, close=1.0, volume=1.0, trades=1)


async def test_a_key_stays_on_the_producers_partition_in_send_order():
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    for seq in range(20):
        for key in KEYS:
            ack = await producer.send(TICKS, key, tick(key, seq))
            assert ack.partition == partition_for_key(key, range(TICKS.partitions))
    by_key: dict[str, list[str]] = {}
    for record in bus.broker.records(TICKS.name):
        by_key.setdefault(record.key.decode(), []).append(record.header("schema"))
    assert set(by_key) == set(KEYS) and all(len(v) == 20 for v in by_key.values())
    values = [v for v in bus.broker.values(TICKS) if v.symbol == "S3/USDT"]
    assert [v.trade_id for v in values] == [str(s) for s in range(20)]


async def test_a_group_splits_the_partitions_and_a_new_member_resumes_after_the_commits():
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    seen: dict[str, list[tuple[str, int]]] = {"a": [], "b": [], "c": []}

    def handler(name):
        async def handle(records: list[Record]) -> None:
            seen[name].extend((r.key, int(r.value.trade_id)) for r in records)
        return handle

    dead = bus.dead_letters(producer)
    a = bus.consumer(topics=[TICKS], group_id="g", handler=handler("a"), dead_letters=dead)
    b = bus.consumer(topics=[TICKS], group_id="g", handler=handler("b"), dead_letters=dead)
    await a.start()
    await b.start()
    assert a.assignment() | b.assignment() == {TopicPartition(TICKS.name, p) for p in range(4)}
    assert not a.assignment() & b.assignment()
    for seq in range(10):
        for key in KEYS:
            producer.send(TICKS, key, tick(key, seq))
    await bus.settle()
    assert len(seen["a"]) + len(seen["b"]) == 80
    await a.stop()
    await b.stop()
    for key in KEYS:
        producer.send(TICKS, key, tick(key, 10))
    c = bus.consumer(topics=[TICKS], group_id="g", handler=handler("c"), dead_letters=dead)
    await c.start()
    await bus.settle()
    assert sorted(seen["c"]) == sorted((key, 10) for key in KEYS)  # only what came after the commits
    await c.stop()


async def test_a_failing_handler_gets_the_same_batch_again_and_nothing_is_skipped():
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    handled: list[int] = []
    failures = [RuntimeError("database away"), RuntimeError("still away")]

    async def handle(records: list[Record]) -> None:
        if failures:
            raise failures.pop(0)
        handled.extend(int(r.value.trade_id) for r in records)

    consumer = bus.consumer(topics=[TICKS], group_id="g", handler=handle, dead_letters=bus.dead_letters(producer))
    await consumer.start()
    for seq in range(5):
        producer.send(TICKS, KEYS[0], tick(KEYS[0], seq))
    await bus.settle()
    assert handled == [0, 1, 2, 3, 4]
    assert consumer.redeliveries == 2
    await consumer.stop()


async def test_undecodable_and_mismatched_values_go_to_the_dlq_with_the_reason():
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    handled: list[Record] = []

    async def handle(records: list[Record]) -> None:
        handled.extend(records)

    consumer = bus.consumer(topics=[TICKS], group_id="g", handler=handle, dead_letters=bus.dead_letters(producer))
    await consumer.start()
    producer.send_raw(TICKS.name, KEYS[0].encode(), b"\x01not msgpack")
    producer.send_raw(TICKS.name, KEYS[0].encode(), encode(candle(KEYS[0])), [("schema", b"Candle/1")])
    producer.send(TICKS, KEYS[0], tick(KEYS[0], 7))
    await bus.settle()
    assert [r.value.trade_id for r in handled] == ["7"]
    dlq = bus.broker.records(TICKS.dlq)
    reasons = [r.header(HEADER_ERROR_REASON) for r in dlq]
    assert reasons[0].startswith("undecodable:") and reasons[1].startswith("schema_mismatch:")
    assert [r.header(HEADER_SOURCE_TOPIC) for r in dlq] == [TICKS.name] * 2
    assert [r.header(HEADER_SOURCE_OFFSET) for r in dlq] == ["0", "1"]
    assert dlq[0].value == b"\x01not msgpack" and dlq[0].key == KEYS[0].encode()
    await consumer.stop()


async def test_a_topic_with_two_types_decodes_each_record_as_its_schema_header_says():
    orders = dataclasses.replace(RISK_ORDERS, name="orders-two-types", partitions=1)
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    handled: list[Record] = []

    async def handle(records: list[Record]) -> None:
        handled.extend(records)

    consumer = bus.consumer(topics=[orders], group_id="g", handler=handle, dead_letters=bus.dead_letters(producer))
    await consumer.start()
    order = Order(client_order_id="o1", account_id="a", exchange="x", symbol="BTC/USDT", side="buy",
                  order_type="limit", quantity=Decimal("1"), limit_price=Decimal("100"), ts_event=1)
    amendment = OrderAmendment(amendment_id="o1:1", client_order_id="o1", account_id="a", exchange="x",
                               symbol="BTC/USDT", quantity=Decimal("2"), ts_event=2)
    producer.send(orders, "a", order)
    producer.send(orders, "a", amendment)
    assert bus.broker.values(orders) == [order, amendment]
    producer.send(orders, "a", tick(KEYS[0], 1))  # a schema the topic does not carry
    await bus.settle()
    assert [r.value for r in handled] == [order, amendment]
    assert [r.header(HEADER_ERROR_REASON)[:16] for r in bus.broker.records(orders.dlq)] == ["schema_mismatch:"]
    await consumer.stop()


async def test_handlers_by_type_and_by_topic_see_their_records_in_order():
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    candles = dataclasses.replace(MD_CANDLES, partitions=2)
    per_tick: list[str] = []
    candle_batches: list[int] = []

    async def on_tick(record: Record) -> None:
        per_tick.append(record.value.trade_id)

    async def on_candles(records: list[Record]) -> None:
        candle_batches.append(len(records))

    with pytest.raises(ValueError, match="no handler for the records of md.candles.v1"):
        bus.consumer(topics=[TICKS, candles], group_id="g", handler=Handlers().on(Tick, on_tick),
                     dead_letters=bus.dead_letters(producer))
    handlers = Handlers().on(Tick, on_tick).on_batch(candles, on_candles)
    with pytest.raises(ValueError, match="registered already"):
        handlers.on(Tick, on_tick)
    consumer = bus.consumer(topics=[TICKS, candles], group_id="g", handler=handlers,
                            dead_letters=bus.dead_letters(producer))
    for seq in range(5):
        producer.send(TICKS, KEYS[1], tick(KEYS[1], seq))
        producer.send(candles, KEYS[1], candle(KEYS[1]))
    await consumer.start()
    await bus.settle()
    assert per_tick == ["0", "1", "2", "3", "4"]
    assert sum(candle_batches) == 5 and len(candle_batches) == 1  # one batch: one call
    await consumer.stop()


async def test_committable_offsets_hold_back_what_a_new_member_reads_again():
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    one = dataclasses.replace(TICKS, partitions=1)
    tp = TopicPartition(one.name, 0)
    seen: list[int] = []

    async def handle(records: list[Record]) -> None:
        seen.extend(int(r.value.trade_id) for r in records)

    consumer = bus.consumer(topics=[one], group_id="g", handler=handle, dead_letters=bus.dead_letters(producer),
                            committable_offsets=lambda: {tp: 2})
    await consumer.start()
    for seq in range(5):
        producer.send(one, KEYS[0], tick(KEYS[0], seq))
    await bus.settle()
    await consumer.stop()
    again = bus.consumer(topics=[one], group_id="g", handler=handle, dead_letters=bus.dead_letters(producer))
    await again.start()
    await bus.settle()
    assert seen == [0, 1, 2, 3, 4, 2, 3, 4]
    await again.stop()


async def test_readers_start_at_the_beginning_the_end_a_time_or_offsets_and_follow():
    clock = TestClock(start_ns=1_000 * 1_000_000)
    bus = MemoryBus(clock=clock)
    producer = bus.producer()
    await producer.start()
    one = dataclasses.replace(TICKS, partitions=1)
    for seq in range(3):
        producer.send(one, KEYS[0], tick(KEYS[0], seq))
        await clock.advance(1)
    producer.send_raw(one.name, KEYS[0].encode(), None)  # a tombstone
    everything = await bus.reader(one).read()
    assert [r.value.trade_id if r.value else None for r in everything] == ["0", "1", "2", None]
    assert everything[-1].raw_value is None
    since = await bus.reader(one, start=from_time(2_000)).read()
    assert [r.offset for r in since] == [1, 2, 3]
    assert [r.offset for r in await bus.reader(one, start=from_offsets({0: 2})).read()] == [2, 3]
    assert await bus.reader(one, start=FROM_END).read() == []

    reader = bus.reader(one, start=FROM_END)
    batches = []

    async def follow():
        async for batch in reader.follow():
            batches.append(batch)

    task = asyncio.create_task(follow())
    await bus.settle()
    producer.send(one, KEYS[0], tick(KEYS[0], 9))
    await bus.settle()
    task.cancel()
    assert batches[0].caught_up and batches[0].records == []
    assert [r.value.trade_id for b in batches for r in b.records] == ["9"]


async def test_membership_gives_each_partition_to_one_member_and_moves_them_when_one_leaves():
    bus = MemoryBus()
    events: list[tuple[str, str, list[int]]] = []

    def callbacks(name):
        async def assigned(partitions: frozenset[int]) -> None:
            events.append((name, "assigned", sorted(partitions)))

        async def revoked(partitions: frozenset[int]) -> None:
            events.append((name, "revoked", sorted(partitions)))
        return {"on_assigned": assigned, "on_revoked": revoked}

    bus.broker.create_topic("subs", 4)
    a = bus.membership(topic="subs", group_id="g", **callbacks("a"))
    b = bus.membership(topic="subs", group_id="g", **callbacks("b"))
    await a.start()
    assert a.partitions == {0, 1, 2, 3}
    await b.start()
    assert a.partitions | b.partitions == {0, 1, 2, 3} and not a.partitions & b.partitions
    # Eager: a gives everything up before anyone gets the new assignment.
    assert events[1] == ("a", "revoked", [0, 1, 2, 3])
    await a.stop()
    assert b.partitions == {0, 1, 2, 3} and a.partitions == frozenset()
