"""The floor of a latency benchmark: the same hops through the broker with no work in them.

A latency target over N hops of the trading path is only meaningful against what the broker and
the Kafka client alone take for those hops on the same machine in the same run. ``floor`` puts
one ``_hop_relay.py`` process where each service stands (a consumer group at the services' fetch
wait, a producer that does not linger), sends a record per signal at the benchmark's rate (after
a side record on a topic nobody reads, as the trading path sends the trade before its candle),
reads the last topic as the benchmark reads its output, and prints the latency and the CPU of
every process involved.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import CpuShares, assign_at_end, emit, log, stop

RELAY = str(Path(__file__).with_name("_hop_relay.py"))


@dataclasses.dataclass(frozen=True)
class FloorResult:
    p50_ms: float
    p99_ms: float
    cpu_total_pct: float


def services_fetch_wait_ms() -> int:
    """TRADEFLOW_CONSUMER_FETCH_MAX_WAIT_MS's default: the wait every service's consumer uses."""
    from tradeflow.settings import ServiceSettings

    return ServiceSettings.model_fields["consumer_fetch_max_wait_ms"].default


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def floor(bootstrap: str, *, name: str, chain: list[str], side_topic: str | None, keys: list[bytes], rate: float,
          seconds: float, relay_wait_ms: int, reader_wait_ms: int, broker_pid: int) -> FloorResult:
    """``chain``: the topics from the first (sent to) to the last (read); a relay between each two.
    The topics exist already. Emits ``<name>_floor_p50`` / ``_p99`` / ``_cpu_total_pct``."""
    relays = [subprocess.Popen([sys.executable, RELAY, bootstrap, source, target, str(relay_wait_ms)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for source, target in itertools.pairwise(chain)]
    try:
        for relay in relays:
            if relay.stdout.readline().strip() != "ready":
                raise RuntimeError("a floor relay did not start")
        cpu = CpuShares({**{f"floor-hop-{i + 1}": r.pid for i, r in enumerate(relays)}, "broker": broker_pid,
                         "bench": os.getpid()})
        sent, latencies, busy = asyncio.run(_measure(bootstrap, chain, side_topic, keys, rate, seconds,
                                                     reader_wait_ms, cpu))
    finally:
        for relay in relays:
            stop(relay, grace_s=10)
    values = sorted(latencies)
    result = FloorResult(percentile(values, 0.5), percentile(values, 0.99), sum(busy.values()))
    log(f"floor ({len(relays)} hop{'s' if len(relays) > 1 else ''} that do{'' if len(relays) > 1 else 'es'} nothing at a {relay_wait_ms} ms fetch wait, {len(values)} of {sent} "
        f"through): p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms; cpu "
        + ", ".join(f"{process} {share:.1f}%" for process, share in busy.items())
        + f", total {result.cpu_total_pct:.1f}%")
    emit(f"{name}_floor_p50", result.p50_ms, "ms")
    emit(f"{name}_floor_p99", result.p99_ms, "ms")
    emit(f"{name}_floor_cpu_total_pct", result.cpu_total_pct, "% of a core")
    return result


async def _measure(bootstrap: str, chain: list[str], side_topic: str | None, keys: list[bytes], rate: float,
                   seconds: float, reader_wait_ms: int, cpu: CpuShares) -> tuple[int, list[float], dict[str, float]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              fetch_max_wait_ms=reader_wait_ms)
    await producer.start()
    await reader.start()
    sent: dict[bytes, float] = {}
    latencies: dict[bytes, float] = {}
    first, last = chain[0], chain[-1]
    try:
        await assign_at_end(reader, [last])

        async def read() -> None:
            while True:
                for records in (await reader.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for record in records:
                        if record.value in sent:
                            latencies.setdefault(record.value, now - sent[record.value])

        reading = asyncio.create_task(read())
        probe = b"probe"  # the relays' groups have joined once a record went all the way through
        sent[probe] = time.perf_counter()
        deadline = time.monotonic() + 60
        while probe not in latencies:
            await producer.send_and_wait(first, probe, key=probe)
            await asyncio.sleep(0.5)
            if time.monotonic() > deadline:
                raise TimeoutError("the floor's relays did not join their groups")
        del sent[probe], latencies[probe]

        async def send(i: int) -> None:
            key, value = keys[i % len(keys)], f"floor-{i}".encode()
            if side_topic is not None:
                await producer.send(side_topic, value, key=key)
            await (await producer.send(first, value, key=key))
            sent[value] = time.perf_counter()

        interval, pending = 1.0 / rate, []
        cpu.start()
        started = time.perf_counter()
        for i in range(int(seconds * rate)):
            delay = started + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(send(i)))
        await asyncio.gather(*pending)
        busy = cpu.stop()
        deadline = time.monotonic() + 30
        while len(latencies) < len(sent) and time.monotonic() < deadline:  # noqa: ASYNC110 (polls a dict)
            await asyncio.sleep(0.2)
        reading.cancel()
        return len(sent), [v * 1000 for v in latencies.values()], busy
    finally:
        await reader.stop()
        await producer.stop()
