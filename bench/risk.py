"""How fast does risk decide? (issue 13: decisions/s for 100 accounts; p99 signal to order)

One run on a private Tansu and a private PostgreSQL (LocalInfra in a temp dir, free loopback
ports), risk as its own process (``tradeflow run risk``), and in this process the signal
producer, a stand-in for execution (tests/risk_support.PaperExecution: every order submitted,
filled and reported back, so the determinism rule lets the account's next signal through) and
the readers of the output topics. Every decision is stored with its outbox row before it is
published; a figure counts a decision when its order or rejection is on the topic.

- ``risk_decisions_per_s_no_wait``: ``--signals`` signals of 100 accounts whose limits refuse
  them (max_order_notional), sent at once when risk is ready: decisions that never wait for an
  execution round trip, i.e. what consuming, deciding, storing and publishing cost. Baseline: a
  raw aiokafka consumer reading the same signals in the same run (the most any consumer of the
  topic can do). Target: at least 5,000 decisions/s.
- ``risk_decisions_per_s_with_execution``: the same number of signals of 100 other accounts
  (enter 1, exit, ... all approved) sent at once: each account's next signal waits for its
  previous market order to be filled and reported back (docs/adr/0018), so this is 100 accounts
  over the round trip risk -> execution -> risk.
- ``risk_service_layer_decisions_per_s``: the same kind of decisions through the service layer
  alone (``RiskService.on_trading`` in this process, batches of 500, the database but no broker):
  what the decisions cost without the topics.
- ``risk_signal_to_order_p50_ms`` / ``_p99_ms``: then ``--rate`` signals/s for ``--seconds`` s, on
  topics of their own with a risk process of their own (on Tansu a fetch costs more the more batches a
  partition holds: see ``signal_to_order``); the time from a signal on its topic (the broker's ack, as
  the floor counts it) to its order arriving at the reader of risk.orders.v1 (consume, decide, commit,
  outbox relay, broker both ways). Target: p99 under 20 ms. ``risk_signal_sent_to_order_*`` count from
  the send instead (the strategy's produce included).
  ``risk_signal_to_handover_*`` / ``risk_handover_to_reader_*`` split that time at the order
  record's create time (when risk's outbox relay handed it to its producer; 1 ms resolution).
- ``risk_cpu_us_per_decision_no_wait`` / ``risk_cpu_ms_per_signal_paced``: the CPU time the risk
  process spent (``/proc/<pid>/stat``) per decision of the first phase and per signal of the paced
  one (with execution's answers): the cost of a decision, which a loaded box does not inflate
  the way it inflates wall-clock figures.

Run: ``.venv/bin/python bench/risk.py [--signals N] [--rate R] [--seconds S]``; prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO))

from _common import CpuShares, assign_at_end, cpu_s, emit, free_port, log, stop  # noqa: E402
from _floor import floor as run_floor  # noqa: E402
from _floor import services_fetch_wait_ms  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from tradeflow.admin import ensure_topics  # noqa: E402
from tradeflow.bus import Producer  # noqa: E402
from tradeflow.codec import decode  # noqa: E402
from tradeflow.messages import Order, RiskEvent  # noqa: E402
from tradeflow.settings import CommonSettings, ServiceSettings  # noqa: E402
from tradeflow.telemetry import Telemetry  # noqa: E402
from tradeflow.topics import ALL_TOPICS, EXEC_FILLS, EXEC_ORDERS, RISK_EVENTS, RISK_ORDERS, STRATEGY_SIGNALS  # noqa: E402

from tests.risk_support import EXCHANGE, PaperExecution, signal  # noqa: E402

ACCOUNTS = 100
TARGET_DECISIONS_PER_S = 5_000
TARGET_P99_MS = 20.0
BIN = Path(sys.executable).parent


def account_id(a: int, kind: str = "bench") -> str:
    return f"{kind}{a:03d}"


def burst(signals: int, first_cycle: int = 0, kind: str = "bench") -> list:
    """Per account alternating enter 1 / exit, accounts interleaved."""
    per_account = signals // ACCOUNTS
    return [signal(account_id(a, kind), first_cycle + n, "enter_long" if n % 2 == 0 else "exit",
                   quantity="1" if n % 2 == 0 else None)
            for n in range(per_account) for a in range(ACCOUNTS)]


async def raw_consume_rate(bootstrap: str, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count, started = 0, time.perf_counter()
        while count < expected:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                count += len(batch)
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class Outputs:
    """Reads risk.orders.v1 and risk.events.v1 from now on: when each decision arrived."""

    def __init__(self, bootstrap: str, fetch_max_wait_ms: int, orders_topic: str = RISK_ORDERS.name,
                 events_topic: str = RISK_EVENTS.name) -> None:
        self._bootstrap = bootstrap
        self._orders_topic, self._events_topic = orders_topic, events_topic
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self.arrivals: dict[str, float] = {}  # signal id -> perf_counter at arrival
        # signal id -> the order record's timestamp (s, wall clock, 1 ms resolution): when risk's outbox
        # relay handed it to its producer (the record's create time), i.e. after consume, decide, commit
        # and the relay's read
        self.created: dict[str, float] = {}
        self.first: float | None = None

    async def __aenter__(self) -> Outputs:
        # One consumer for both topics (as the floor's one reader): every fetch costs the broker and this
        # process CPU on the same 2 cores. Tansu answers a waiting fetch at its deadline, which adds to
        # the latency; a shorter wait costs the broker more fetches per second (--reader-wait-ms).
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                          fetch_max_wait_ms=self._fetch_max_wait_ms)
        await self._consumer.start()
        await assign_at_end(self._consumer, [self._orders_topic, self._events_topic])
        self._task = asyncio.create_task(self._run(self._consumer))
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            for tp, batch in (await consumer.getmany(timeout_ms=100)).items():
                now = time.perf_counter()
                self.first = self.first or now
                for record in batch:
                    message = decode(Order if tp.topic == self._orders_topic else RiskEvent, record.value)
                    if message.signal_id:
                        self.arrivals.setdefault(message.signal_id, now)
                        self.created.setdefault(message.signal_id, record.timestamp / 1000)

    async def wait_for(self, signal_ids: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not signal_ids <= self.arrivals.keys():
            if time.monotonic() > deadline:
                missing = len(signal_ids - self.arrivals.keys())
                raise TimeoutError(f"{missing} of {len(signal_ids)} signals undecided after {timeout_s:.0f}s")
            await asyncio.sleep(0.05)


def start_risk(bootstrap: str, database_url: str, port: int, log_path: Path,
               topics: dict[str, str] | None = None) -> subprocess.Popen:
    """``topics``: risk's topic settings by name (``signals`` -> TRADEFLOW_RISK_SIGNALS_TOPIC), else the design's."""
    env = {**os.environ, **{f"TRADEFLOW_RISK_{name.upper()}_TOPIC": topic for name, topic in (topics or {}).items()},
           "TRADEFLOW_ENVIRONMENT": "test", "TRADEFLOW_KAFKA_BOOTSTRAP": bootstrap,
           "TRADEFLOW_DATABASE_URL": database_url, "TRADEFLOW_HTTP_PORT": str(port), "TRADEFLOW_LOG_LEVEL": "WARNING",
           "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000", "TRADEFLOW_PRODUCER_LINGER_MS": "1",
           "TRADEFLOW_ACCOUNTS": json.dumps([{"id": account_id(a, kind), "exchange": EXCHANGE,
                                              "balances": {"USDT": "1000000000"}, "fees": {"maker": "0", "taker": "0"}}
                                             for kind in ("bench", "refused") for a in range(ACCOUNTS)]),
           "TRADEFLOW_RISK_ACCOUNT_PROFILES": json.dumps({account_id(a, "refused"): {"limits": {"max_order_notional": "1"}}
                                                          for a in range(ACCOUNTS)})}
    with log_path.open("w") as out:
        return subprocess.Popen([str(BIN / "tradeflow"), "run", "risk"], env=env, stdout=out, stderr=subprocess.STDOUT)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"risk exited with {process.returncode}")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("risk not ready")
            await asyncio.sleep(0.3)


async def preloaded_rate(port: int, process: subprocess.Popen, expected: int) -> tuple[float, float, int]:
    """Risk started on a topic that already holds ``expected`` refused signals: decisions/s and risk's
    CPU per decision from the first poll of its /metrics that shows a decision to the one that shows
    every decision published (its outbox relay's count). What it decided before that first poll is
    left out of both. Nothing of this process competes for the cores meanwhile but a poll each 100 ms."""
    import httpx

    def counters(text: str) -> tuple[float, float]:
        decided = published = 0.0
        for line in text.splitlines():
            if line.startswith("tradeflow_risk_decisions_total{"):
                decided += float(line.rsplit(" ", 1)[1])
            elif line.startswith("tradeflow_outbox_published_total{"):
                published += float(line.rsplit(" ", 1)[1])
        return decided, published

    start: tuple[float, float, float] | None = None  # (time, decisions, risk's CPU) at the first decision seen
    deadline = time.monotonic() + 600
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"risk exited with {process.returncode}")
            try:
                decided, published = counters((await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text)
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            now, cpu = time.perf_counter(), cpu_s(process.pid)
            if start is None and decided > 0:
                start = (now, decided, cpu)
            if start is not None and published >= expected:
                counted = expected - start[1]
                return counted / (now - start[0]), (cpu - start[2]) / counted, int(counted)
            await asyncio.sleep(0.1)
    raise TimeoutError("risk did not publish every decision of the preloaded burst")


async def service_layer_rate(database_url: str, signals: int, batch: int = 500) -> float:
    """Refused signals of 100 accounts through RiskService.on_trading, no broker: decisions/s."""
    from tradeflow_db import Database
    from tradeflow_db.outbox import Outbox
    from tradeflow_risk.adapters.exchange_markets import ExchangeMarkets
    from tradeflow_risk.adapters.instrument_calendars import InstrumentCalendars
    from tradeflow_risk.adapters.store import OUTBOX_TABLE, RiskStore
    from tradeflow_risk.domain.limits import RiskLimits
    from tradeflow_risk.domain.market import MarketData
    from tradeflow_risk.domain.profiles import AccountProfile, Profiles
    from tradeflow_risk.service import PendingSignal, RiskService, Topics

    from tests.risk_support import account

    database = Database(database_url, name="bench-risk", max_connections=2)
    await database.start()
    try:
        service = RiskService(
            accounts=[account(account_id(a, "layer"), cash="1000000000") for a in range(ACCOUNTS)],
            profiles=Profiles({"*": AccountProfile(limits=RiskLimits(max_order_notional=1))}, {}),
            store=RiskStore(database, Outbox(OUTBOX_TABLE)), market=MarketData("1h"), markets=ExchangeMarkets([], []),
            calendars=InstrumentCalendars(None, 60), topics=Topics("bench-orders", "bench-events"),
            telemetry=Telemetry("bench-risk-layer", CommonSettings()))
        await service.start()
        pending = [PendingSignal(s, "signals", 0, n) for n, s in enumerate(burst(signals, kind="layer"))]
        started = time.perf_counter()
        for first in range(0, len(pending), batch):
            await service.on_trading(signals=pending[first:first + batch])
        rate = len(pending) / (time.perf_counter() - started)
        async with database.connection() as conn:  # nobody relays these: the next phases start clean
            await conn.execute("DELETE FROM risk_outbox")
        return rate
    finally:
        await database.stop()


async def run(bootstrap: str, database_url: str, args: argparse.Namespace, log_path: Path, broker_pid: int,
              database_pid: int) -> None:
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    await ensure_topics(settings, ALL_TOPICS, with_dlq=True)
    # The signals' producer lingers 1 ms, as risk's own does here (TRADEFLOW_PRODUCER_LINGER_MS): a
    # strategy service set for latency. The tools' default (5 ms) would be the sender's wait, not risk's.
    producer = Producer(ServiceSettings(environment="test", kafka_bootstrap=bootstrap, producer_linger_ms=1),
                        Telemetry("bench-risk", settings), client_id="bench-risk")
    await producer.start()
    # Two bursts of refused signals (decisions that wait for nothing): one on the topic before risk
    # starts, one sent once it is ready; the later one's candles come after the earlier one's.
    preloaded = burst(args.signals, kind="refused")
    refused = burst(args.signals, first_cycle=args.signals // ACCOUNTS, kind="refused")
    # The baseline reads the same signals from a topic of their own: risk's input is sent only once
    # risk is ready, so the rate counts risk's whole work (signals decided before /readyz said so
    # made earlier runs report up to 270,000/s).
    raw_topic = dataclasses.replace(STRATEGY_SIGNALS, name="bench.risk.raw-signals")
    await ensure_topics(settings, [raw_topic])
    await producer.send_many(raw_topic, [(s.account_id, s) for s in refused])
    raw = max([await raw_consume_rate(bootstrap, raw_topic.name, len(refused)) for _ in range(2)])
    log(f"raw consume of {len(refused):,} signals: {raw:,.0f}/s")

    floor = None
    if not args.no_floor:
        # One hop that does nothing where risk stands, on topics like its own: the broker's and the
        # client's share of the signal-to-order time in this run.
        floor_topics = [dataclasses.replace(STRATEGY_SIGNALS, name="floor.signals"),
                        dataclasses.replace(RISK_ORDERS, name="floor.orders")]
        await ensure_topics(settings, floor_topics)
        floor = await asyncio.to_thread(
            run_floor, bootstrap, name="risk_signal_to_order", chain=[t.name for t in floor_topics], side_topic=None,
            keys=[account_id(a).encode() for a in range(ACCOUNTS)], rate=args.rate, seconds=args.seconds,
            relay_wait_ms=services_fetch_wait_ms(), reader_wait_ms=args.reader_wait_ms, broker_pid=broker_pid)

    layer = await service_layer_rate(database_url, len(refused))
    emit("risk_service_layer_decisions_per_s", layer, "decisions/s")
    log(f"the service layer alone (database, no broker): {layer:,.0f} decisions/s")

    await producer.send_many(STRATEGY_SIGNALS, [(s.account_id, s) for s in preloaded])
    port = free_port()
    process = start_risk(bootstrap, database_url, port, log_path)
    try:
        rate, cpu_per_decision, counted = await preloaded_rate(port, process, len(preloaded))
        emit("risk_decisions_per_s_preloaded", rate, "decisions/s", raw)
        emit("risk_cpu_us_per_decision_preloaded", cpu_per_decision * 1e6, "us")
        log(f"decisions of signals already on the topic when risk starts, counted by its own metrics from its first "
            f"decision: {rate:,.0f}/s over the last {counted:,} of {len(preloaded):,} (raw consume {raw:,.0f}/s; "
            f"target {TARGET_DECISIONS_PER_S:,}/s: {'met' if rate >= TARGET_DECISIONS_PER_S else 'MISSED'}); "
            f"risk's CPU: {cpu_per_decision * 1e6:,.0f} us per decision")
        async with Outputs(bootstrap, args.reader_wait_ms) as outputs, PaperExecution(
                bootstrap, orders_topic=RISK_ORDERS.name, events_topic=EXEC_ORDERS.name,
                fills_topic=EXEC_FILLS.name):
            await wait_ready(port, process)
            cpu_ready = cpu_s(process.pid)
            # The others' CPU in the same window: the database and the broker do part of each decision's work.
            others = CpuShares({"database": database_pid, "broker": broker_pid, "bench": os.getpid()},
                               trees=frozenset({"database"}))
            others.start()
            started = time.perf_counter()
            await producer.send_many(STRATEGY_SIGNALS, [(s.account_id, s) for s in refused])
            await outputs.wait_for({s.signal_id for s in refused}, timeout_s=600)
            rate = len(refused) / (max(outputs.arrivals.values()) - started)
            cpu_per_decision = (cpu_s(process.pid) - cpu_ready) / len(refused)
            elapsed = max(outputs.arrivals.values()) - started
            shares = others.stop()
            emit("risk_decisions_per_s_no_wait", rate, "decisions/s", raw)
            emit("risk_cpu_us_per_decision_no_wait", cpu_per_decision * 1e6, "us")
            log(f"decisions that wait for nothing: {rate:,.0f}/s over {len(refused):,} signals of {ACCOUNTS} accounts "
                f"(raw consume {raw:,.0f}/s; target {TARGET_DECISIONS_PER_S:,}/s: "
                f"{'met' if rate >= TARGET_DECISIONS_PER_S else 'MISSED'}); risk's CPU: "
                f"{cpu_per_decision * 1e6:,.0f} us per decision; "
                + ", ".join(f"{name}'s {share / 100 * elapsed / len(refused) * 1e6:,.0f} us" for name, share in shares.items()))
            for name, share in shares.items():
                emit(f"risk_no_wait_{name}_cpu_us_per_decision", share / 100 * elapsed / len(refused) * 1e6, "us")

            approved = burst(args.signals)
            started = time.perf_counter()
            await producer.send_many(STRATEGY_SIGNALS, [(s.account_id, s) for s in approved])
            await outputs.wait_for({s.signal_id for s in approved}, timeout_s=900)
            rate = len(approved) / (max(outputs.arrivals[s.signal_id] for s in approved) - started)
            emit("risk_decisions_per_s_with_execution", rate, "decisions/s")
            log(f"decisions with an execution round trip before each account's next one: {rate:,.0f}/s over "
                f"{len(approved):,} signals of {ACCOUNTS} accounts")
    finally:
        stop(process)

    try:
        await signal_to_order(bootstrap, database_url, args, log_path, producer, floor)
    finally:
        await producer.stop()


async def signal_to_order(bootstrap: str, database_url: str, args: argparse.Namespace, log_path: Path,
                          producer: Producer, floor) -> None:
    """The latency phase, on topics of its own with a risk process of its own.

    Tansu's in-memory storage costs the broker more per fetch the more batches a partition holds
    (its CPU rose from 35% to over 100% of a core in 80 s at a constant 100 signals/s, after the
    bursts above): on the bursts' topics this phase would measure the broker's growth, not risk.
    Apache Kafka finds an offset through its index. The database keeps what the bursts stored."""
    topics = {name: dataclasses.replace(spec, name=f"bench.latency.{spec.name}")
              for name, spec in (("signals", STRATEGY_SIGNALS), ("exec_orders", EXEC_ORDERS),
                                 ("exec_fills", EXEC_FILLS), ("orders", RISK_ORDERS), ("events", RISK_EVENTS))}
    await ensure_topics(CommonSettings(kafka_bootstrap=bootstrap), list(topics.values()), with_dlq=True)
    signals_topic = topics["signals"]
    port = free_port()
    process = start_risk(bootstrap, database_url, port, log_path, {name: spec.name for name, spec in topics.items()})
    try:
        async with Outputs(bootstrap, args.reader_wait_ms, topics["orders"].name, topics["events"].name) as outputs, \
                PaperExecution(bootstrap, orders_topic=topics["orders"].name, events_topic=topics["exec_orders"].name,
                               fills_topic=topics["exec_fills"].name):
            await wait_ready(port, process)
            paced = burst(args.rate * args.seconds, first_cycle=args.signals // ACCOUNTS + 2)
            sent: dict[str, float] = {}  # signal id -> perf_counter when handed to the producer
            on_topic: dict[str, float] = {}  # signal id -> perf_counter when the broker acknowledged it
            wall = time.time() - time.perf_counter()  # perf_counter -> wall clock, to compare with record times
            interval = 1.0 / args.rate
            cpu_paced = cpu_s(process.pid)
            started = time.perf_counter()
            for n, s in enumerate(paced):
                delay = started + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[s.signal_id] = time.perf_counter()
                producer.send(signals_topic, s.account_id, s).add_done_callback(
                    lambda _, signal_id=s.signal_id: on_topic.setdefault(signal_id, time.perf_counter()))
            await outputs.wait_for(set(sent), timeout_s=60)
            cpu_per_signal = (cpu_s(process.pid) - cpu_paced) / len(sent)
            # From the signal on its topic (the broker's ack, as the floor counts) to its order at the
            # reader: risk's hop. From the send, the strategy's produce (linger, send, ack) is in too.
            latencies = sorted((outputs.arrivals[i] - t) * 1000 for i, t in on_topic.items())
            from_send = sorted((outputs.arrivals[i] - t) * 1000 for i, t in sent.items())
            p50 = statistics.median(latencies)
            p99 = percentile(latencies, 0.99)
            emit("risk_signal_sent_to_order_p50_ms", statistics.median(from_send), "ms")
            emit("risk_signal_sent_to_order_p99_ms", percentile(from_send, 0.99), "ms")
            # The two halves of the way (the record's create time has 1 ms resolution): signal sent ->
            # order handed to risk's producer (signal produce, risk's fetch, queueing behind other
            # batches, the decision's transaction, the relay's wake and read), then -> on the topic at
            # the reader (produce, broker, the reader's fetch).
            to_handover = [(outputs.created[i] - (t + wall)) * 1000 for i, t in sent.items()]
            to_reader = [(outputs.arrivals[i] + wall - outputs.created[i]) * 1000 for i in sent]
            for name, values in (("risk_signal_to_handover", to_handover), ("risk_handover_to_reader", to_reader)):
                emit(f"{name}_p50_ms", statistics.median(values), "ms")
                emit(f"{name}_p99_ms", percentile(sorted(values), 0.99), "ms")
            emit("risk_signal_to_order_p50_ms", p50, "ms")
            emit("risk_signal_to_order_p99_ms", p99, "ms", floor.p99_ms if floor else None)
            emit("risk_cpu_ms_per_signal_paced", cpu_per_signal * 1e3, "ms")
            log(f"signal on its topic to order at the reader at {args.rate}/s ({len(latencies)} signals): p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms (target p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'}"
                + (f"; the floor's p99 {floor.p99_ms:.1f} ms)" if floor else ")"))
            log(f"from the signal's send (its produce included): p50 {statistics.median(from_send):.1f} ms, p99 "
                f"{percentile(from_send, 0.99):.1f} ms; risk's CPU: {cpu_per_signal * 1e3:.2f} ms per signal (with "
                "execution's answers)")
            log(f"of which signal sent -> order handed to risk's producer: p50 {statistics.median(to_handover):.1f} ms, "
                f"p99 {percentile(sorted(to_handover), 0.99):.1f} ms; handed over -> at the reader: p50 "
                f"{statistics.median(to_reader):.1f} ms, p99 {percentile(sorted(to_reader), 0.99):.1f} ms")
            log(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=20_000, help="signals of the throughput phase")
    parser.add_argument("--rate", type=int, default=100, help="signals/s of the latency phase")
    parser.add_argument("--seconds", type=int, default=20, help="length of the latency phase")
    parser.add_argument("--reader-wait-ms", type=int, default=1,
                        help="fetch wait of this process's readers of risk's output (execution's place)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor (one hop that does nothing where risk stands) measured first")
    args = parser.parse_args()

    from tradeflow_db.migrate import upgrade
    from tradeflow_ops.infra import LocalInfra

    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-risk-") as tmp:
        Path(tmp).chmod(0o755)  # the database runs as the postgres user when we are root
        infra = LocalInfra(Path(tmp), kafka_port=free_port(), db_port=free_port())
        try:
            infra.up()
            upgrade(infra.database_url)
            # This process's start-up objects out of the collector's reach, as risk does with its own
            # (FreezeStartupObjects): a full collection here would delay the arrivals it timestamps.
            gc.collect()
            gc.freeze()
            status = infra.status()
            asyncio.run(run(infra.kafka_bootstrap, infra.database_url, args, Path(tmp) / "risk.log",
                            status.kafka.pid, status.postgres.pid))
        except Exception:
            log_file = Path(tmp) / "risk.log"
            if log_file.exists():
                log(log_file.read_text()[-3000:])
            raise
        finally:
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
