"""What does tradeflow.bus cost over raw aiokafka? (produce and consume messages/s)

One run on a private Tansu: a 12-partition topic, N Tick messages over 100 keys.

- produce: raw ``AIOKafkaProducer.send`` of pre-encoded bytes (the baseline) vs
  ``Producer.send_many`` (encode + content-type/schema/traceparent headers + ordered backlog +
  metrics), each to its own topic, same producer settings.
- consume: raw ``AIOKafkaConsumer.getmany`` that only counts (the baseline) vs ``Consumer``
  with a trivial handler (schema check + msgspec decode + Record + one span per batch +
  lag/metrics + commits), each its own group on the same topic. Rates run from the first
  record to the last, so the group join (about half the session timeout on Tansu) is left out.

Each figure is the best of ``--repeat`` interleaved rounds (the box is shared: the best round
is the least disturbed one), as a wall-clock rate and as CPU microseconds per message of this
process (the broker runs in its own process), which contention disturbs much less.

Acceptance: the Consumer's overhead stays small (< 2x raw, i.e. its rate > 50% of raw).
Run: ``.venv/bin/python bench/bus.py [--messages N] [--repeat R]``; prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import PrivateTansu, emit, log  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from tradeflow.admin import ensure_topics  # noqa: E402
from tradeflow.bus import Consumer, DeadLetters, Producer, Record  # noqa: E402
from tradeflow.codec import encode  # noqa: E402
from tradeflow.messages import Tick  # noqa: E402
from tradeflow.settings import ServiceSettings  # noqa: E402
from tradeflow.telemetry import Telemetry  # noqa: E402
from tradeflow.topics import TopicSpec  # noqa: E402

KEYS = [f"binance:SYM{i}/USDT" for i in range(100)]


class Clock:
    """Wall-clock rate and CPU time per message of one measured section."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.running = False
        self.result: tuple[float, float] = (0.0, 0.0)

    def __enter__(self) -> Clock:
        self.running = True
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        self.result = (self.messages / wall, cpu * 1e6 / self.messages)


def ticks(n: int) -> list[tuple[str, Tick]]:
    base = 1_700_000_000_000_000_000
    return [
        (key, Tick(exchange="binance", symbol=key.split(":")[1], trade_id=str(i), price=100.0 + i % 50,
                   amount=0.25, side="buy" if i % 2 else "sell", ts_event=base + i, ts_recv=base + i))
        for i in range(n)
        for key in (KEYS[i % len(KEYS)],)
    ]


async def produce_raw(bootstrap: str, topic: str, items: list[tuple[str, Tick]], settings: ServiceSettings) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=settings.producer_linger_ms,
                                max_batch_size=settings.producer_max_batch_bytes)
    await producer.start()
    try:
        with Clock(len(items)) as clock:
            acks = [await producer.send(topic, encode(tick), key=key.encode()) for key, tick in items]
            await asyncio.gather(*acks)
        return clock.result
    finally:
        await producer.stop()


async def produce_bus(producer: Producer, spec: TopicSpec, items: list[tuple[str, Tick]]) -> float:
    with Clock(len(items)) as clock:
        await producer.send_many(spec, items)
    return clock.result


async def consume_raw(bootstrap: str, topic: str, n: int, group: str) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        clock = Clock(n)
        seen = 0
        while seen < n:
            batch = await consumer.getmany(timeout_ms=250, max_records=5000)
            if batch and not clock.running:
                clock.__enter__()
            seen += sum(len(records) for records in batch.values())
            if batch:
                await consumer.commit()
        clock.__exit__()
        return clock.result
    finally:
        await consumer.stop()


async def consume_bus(settings: ServiceSettings, telemetry: Telemetry, producer: Producer, spec: TopicSpec,
                      n: int, group: str) -> float:
    seen = 0
    clock = Clock(n)
    done = asyncio.Event()

    async def handle(records: list[Record]) -> None:
        nonlocal seen
        if not clock.running:
            clock.__enter__()  # the first batch's decode is in its cost, its fetch is not
        seen += len(records)
        if seen >= n:
            clock.__exit__()
            done.set()

    consumer = Consumer(settings, telemetry, topics=[spec], group_id=group, handler=handle,
                        dead_letters=DeadLetters(producer, telemetry))
    await consumer.start()
    try:
        await asyncio.wait_for(done.wait(), 300)
        return clock.result
    finally:
        await consumer.stop()


async def run(bootstrap: str, n: int, repeat: int) -> None:
    settings = ServiceSettings(environment="test", kafka_bootstrap=bootstrap, consumer_session_timeout_ms=6000)
    telemetry = Telemetry("bench-bus", settings)
    items = ticks(n)
    producer = Producer(settings, telemetry, client_id="bench")
    await producer.start()
    results: dict[str, list[tuple[float, float]]] = {"raw_p": [], "bus_p": [], "raw_c": [], "bus_c": []}
    try:
        for round_ in range(repeat):
            raw_spec = TopicSpec(f"bench.raw.{round_}", "exchange:symbol", Tick, 12)
            bus_spec = TopicSpec(f"bench.bus.{round_}", "exchange:symbol", Tick, 12)
            await ensure_topics(bootstrap, [raw_spec, bus_spec], with_dlq=False)
            log(f"round {round_ + 1}/{repeat}: produce {n} raw / bus, consume raw / bus")
            results["raw_p"].append(await produce_raw(bootstrap, raw_spec.name, items, settings))
            results["bus_p"].append(await produce_bus(producer, bus_spec, items))
            results["raw_c"].append(await consume_raw(bootstrap, bus_spec.name, n, f"bench-raw-{round_}"))
            results["bus_c"].append(
                await consume_bus(settings, telemetry, producer, bus_spec, n, f"bench-bus-{round_}")
            )
    finally:
        await producer.stop()
        telemetry.shutdown()

    def best(name: str) -> tuple[float, float]:
        return max(r[0] for r in results[name]), min(r[1] for r in results[name])

    (raw_p, raw_p_cpu), (bus_p, bus_p_cpu) = best("raw_p"), best("bus_p")
    (raw_c, raw_c_cpu), (bus_c, bus_c_cpu) = best("raw_c"), best("bus_c")
    emit("bus.produce.rate", bus_p, "msg/s", raw_p)
    emit("bus.produce.cpu", bus_p_cpu, "us/msg", raw_p_cpu)
    emit("bus.consume.rate", bus_c, "msg/s", raw_c)
    emit("bus.consume.cpu", bus_c_cpu, "us/msg", raw_c_cpu)
    emit("bus.consume.overhead", raw_c / bus_c, "x raw time", 2.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with PrivateTansu() as broker:
        asyncio.run(run(broker.bootstrap, args.messages, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
