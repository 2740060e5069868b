"""Can faust-streaming build 1m candles from md.ticks.v1 fast enough? (ADR 0004)

Target (the backbone issue): >= 50,000 ticks/s end to end in one process on the 2-core box
that also runs the broker and PostgreSQL, peak memory < 300 MB with 1,000 symbols.

One run: start a private Tansu, create a 12-partition ticks topic per data set (20 and 1,000
symbols), produce N Tick messages (MessagePack, key ``exchange:symbol``, Kafka timestamp =
event time), then consume them with each engine in its own child process (so each one's peak
memory is its own and no engine warms another's caches):

- ``aiokafka``: a plain consumer group, ``getmany`` batches, msgspec decode, 1m OHLCV state in
  a dict, a commit per batch. The design the ADR falls back to, and the baseline.
- ``faust``: the idiomatic faust shape: an agent, one event at a time, OHLCV state in a
  tumbling 60 s windowed Table (event time = the Kafka timestamp) backed by its changelog topic.
- ``faust_take``: the same App with ``stream.take()`` batches; each batch is folded locally and
  each touched (market, minute) is written once per batch to a changelog-backed Table.
- ``faust_stream_only``: a faust agent with the state in a plain dict, no Table: what faust's
  consumer and stream machinery alone cost per tick, i.e. the ceiling of any faust design.

Rates run from the first tick an engine sees to the last, so the group join (about half the
session timeout on Tansu) and faust's topic creation and table recovery are reported separately
as startup. An engine stops after all N ticks or after ``--budget`` seconds of processing,
whichever comes first (faust would need minutes for all N). The run fails (exit 1) when an
engine errors, when an engine's state does not hold exactly the ticks it processed, or when an
engine that processed all N built other candles than aiokafka: a fast wrong answer is no result.

Run: ``.venv/bin/python bench/faust_candles.py`` (or ``make bench``); ``--ticks``, ``--symbols``
and ``--budget`` change the data sets. Results are JSON lines on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PrivateTansu, emit, log, peak_rss_mb  # noqa: E402
from tradeflow.codec import decode, encode  # noqa: E402
from tradeflow.messages import Tick  # noqa: E402

PARTITIONS = 12
MINUTE_NS = 60 * 1_000_000_000
EVENT_SPAN_MINUTES = 10  # the produced ticks' event times spread over this many minutes
TARGET_TICKS_PER_S = 50_000
TARGET_PEAK_RSS_MB = 300
FAUST_SHAPES = {"faust": "windowed", "faust_take": "take", "faust_stream_only": "stream"}
ENGINES = ("aiokafka", *FAUST_SHAPES)
SESSION_TIMEOUT_S = 6.0  # Tansu joins a group in about half the session timeout
STARTUP_TIMEOUT_S = 30.0  # join + (faust) topic creation and table recovery before the first tick
BUDGET_S = 10.0  # default processing-time budget per engine and data set (see Progress)
TAKE_MAX = 2000  # faust stream.take(): at most this many ticks per batch ...
TAKE_WITHIN_S = 0.2  # ... or what arrived within this time

# OHLCV state of one (market, minute): a list so it is JSON-serialisable for faust's changelog.
# [open_ts, open, high, low, close_ts, close, volume, trades]
State = list


def apply_tick(state: State | None, ts: int, price: float, amount: float) -> State:
    """Fold one trade into a 1m candle state (open = earliest event time, close = latest;
    equal event times keep arrival order)."""
    if not state:
        return [ts, price, price, price, ts, price, amount, 1]
    if ts < state[0]:
        state[0], state[1] = ts, price
    if price > state[2]:
        state[2] = price
    if price < state[3]:
        state[3] = price
    if ts >= state[4]:
        state[4], state[5] = ts, price
    state[6] += amount
    state[7] += 1
    return state


def merge_states(into: State | None, other: State) -> State:
    """Combine two partial states of the same candle, ``other`` having arrived later."""
    if not into:
        return list(other)
    if other[0] < into[0]:
        into[0], into[1] = other[0], other[1]
    into[2] = max(into[2], other[2])
    into[3] = min(into[3], other[3])
    if other[4] >= into[4]:
        into[4], into[5] = other[4], other[5]
    into[6] += other[6]
    into[7] += other[7]
    return into


def candles_digest(candles: dict[tuple[str, int], State]) -> dict:
    """A small summary of a set of candles: engines that built the same candles agree on it
    (up to float rounding, see ``same_candles``), and a wrong candle changes it."""
    return {
        "candles": len(candles),
        "trades": sum(s[7] for s in candles.values()),
        "open_sum": sum(s[1] for s in candles.values()),
        "high_sum": sum(s[2] for s in candles.values()),
        "low_sum": sum(s[3] for s in candles.values()),
        "close_sum": sum(s[5] for s in candles.values()),
        "volume": sum(s[6] for s in candles.values()),
    }


# --- data ------------------------------------------------------------------------------------


def make_ticks(count: int, symbols: int, start_ns: int) -> list[tuple[str, Tick]]:
    """``count`` trades round-robin over ``symbols`` markets, event time rising evenly."""
    step_ns = EVENT_SPAN_MINUTES * MINUTE_NS // count
    ticks = []
    for i in range(count):
        symbol = f"SYM{i % symbols:04d}/USDT"
        ts = start_ns + i * step_ns
        tick = Tick(
            exchange="bench",
            symbol=symbol,
            trade_id=str(i),
            price=100.0 + (i * 7919 % 100_003) / 10_000.0,  # varies within every market
            amount=0.001 * (1 + i % 17),
            side="buy" if i % 2 else "sell",
            ts_event=ts,
            ts_recv=ts + 1_000_000,
        )
        ticks.append((f"bench:{symbol}", tick))
    return ticks


async def create_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()


async def produce_ticks(bootstrap: str, topic: str, ticks: list[tuple[str, Tick]]) -> float:
    """Produce all ticks (enqueue a chunk, then await its acks together); returns ticks/s."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024, acks=1)
    await producer.start()
    try:
        started = time.perf_counter()
        chunk = 20_000
        for offset in range(0, len(ticks), chunk):
            futures = [
                await producer.send(
                    topic,
                    value=encode(tick),
                    key=key.encode(),
                    timestamp_ms=tick.ts_event // 1_000_000,  # event time: faust windows by it
                )
                for key, tick in ticks[offset : offset + chunk]
            ]
            await asyncio.gather(*futures)
        return len(ticks) / (time.perf_counter() - started)
    finally:
        await producer.stop()


# --- engines (each runs in a child process) --------------------------------------------------


class Progress:
    """Counts processed ticks and their volume; done after all N ticks or the time budget.

    faust runs at a small fraction of aiokafka's rate, so it gets a processing-time budget
    instead of all N ticks: that keeps `make bench` within a few minutes, and a rate measured
    over ``budget_s`` seconds of steady processing is as good as one over all N.
    """

    def __init__(self, expected: int, budget_s: float) -> None:
        self.expected = expected
        self.budget_s = budget_s
        self.count = 0
        self.volume = 0.0
        self.created = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.count_at_last = 0
        self.done = asyncio.Event()
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()

    def add(self, n: int, volume: float) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.count += n
        self.volume += volume
        if not self.done.is_set() and (self.count >= self.expected or now - self.first >= self.budget_s):
            self.last, self.count_at_last = now, self.count
            self.done.set()

    def result(self, candles: dict[tuple[str, int], State]) -> dict:
        """The figures, and whether ``candles`` hold exactly the ticks processed so far."""
        if self.error is not None:
            raise self.error
        assert self.first is not None and self.last is not None
        digest = candles_digest(candles)
        return {
            "ticks": self.count_at_last,
            "complete": self.count_at_last >= self.expected,
            "ticks_per_s": self.count_at_last / (self.last - self.first),
            "startup_s": self.first - self.created,
            "peak_rss_mb": peak_rss_mb(),
            # Read together with the state (no await in between), so they must agree exactly.
            "consistent": digest["trades"] == self.count and math.isclose(digest["volume"], self.volume),
            "digest": digest,
        }


async def run_aiokafka(bootstrap: str, topic: str, expected: int, budget_s: float) -> dict:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-aiokafka-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
        heartbeat_interval_ms=1000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    candles: dict[tuple[str, int], State] = {}
    progress = Progress(expected, budget_s)
    await consumer.start()
    try:
        while not progress.done.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                volume = 0.0
                for record in records:
                    tick = decode(Tick, record.value)
                    key = (f"{tick.exchange}:{tick.symbol}", tick.ts_event - tick.ts_event % MINUTE_NS)
                    candles[key] = apply_tick(candles.get(key), tick.ts_event, tick.price, tick.amount)
                    volume += tick.amount
                progress.add(len(records), volume)
            if batches:
                await consumer.commit()  # what the real service does once per batch/interval
        return progress.result(candles)
    finally:
        await consumer.stop()


def faust_app(bootstrap: str, name: str, **overrides):
    import faust

    settings = dict(
        broker=f"kafka://{bootstrap}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=1.0,
        broker_request_timeout=30.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        table_standby_replicas=0,
        # The one documented knob that helped: let the producer batch changelog writes
        # (default linger 0 sends them nearly one by one). Others tried made no difference.
        producer_linger=0.02,
    )
    settings.update(overrides)
    return faust.App(name, **settings)


async def run_faust(bootstrap: str, topic: str, expected: int, budget_s: float, shape: str) -> dict:
    from datetime import timedelta

    import faust

    overrides = json.loads(os.environ.get("BENCH_FAUST_SETTINGS", "{}"))  # for tuning experiments
    app = faust_app(bootstrap, f"bench-faust-{uuid.uuid4().hex[:8]}", **overrides)
    ticks_topic = app.topic(topic, value_serializer="raw", key_serializer="raw", partitions=PARTITIONS)
    progress = Progress(expected, budget_s)
    candles: dict[tuple[str, int], State] = {}
    # The table's changelog records: JSON keys (market, or (market, window)) and JSON states.
    table_schema = faust.Schema(key_serializer="json", value_serializer="json")

    if shape == "stream":
        # No table: faust's consumer/stream machinery alone, state in a plain dict.
        table = None

        @app.agent(ticks_topic)
        async def build_candles(stream):
            try:
                async for value in stream:
                    tick = decode(Tick, value)
                    key = (f"{tick.exchange}:{tick.symbol}", tick.ts_event - tick.ts_event % MINUTE_NS)
                    candles[key] = apply_tick(candles.get(key), tick.ts_event, tick.price, tick.amount)
                    progress.add(1, tick.amount)
            except Exception as exc:
                progress.fail(exc)

    elif shape == "windowed":
        # The idiomatic shape: a tumbling 1m window per market, keyed by the message key,
        # windowed by event time (the Kafka timestamp the producer set from ts_event).
        table = (
            app.Table("candles-1m", default=list, partitions=PARTITIONS, schema=table_schema)
            .tumbling(60, expires=timedelta(minutes=EVENT_SPAN_MINUTES + 5))
            .relative_to_stream()
        )

        @app.agent(ticks_topic)
        async def build_candles(stream):
            try:
                async for value in stream:
                    tick = decode(Tick, value)
                    market = f"{tick.exchange}:{tick.symbol}"
                    table[market] = apply_tick(
                        table[market].current(), tick.ts_event, tick.price, tick.amount
                    )
                    progress.add(1, tick.amount)
            except Exception as exc:  # faust's supervisor would restart the agent and only log it
                progress.fail(exc)

    else:  # take
        # Batches: fold a batch locally, then write each touched (market, minute) once. A table
        # written after take() is outside any one event, so faust needs use_partitioner=True
        # (the changelog partition then follows the table key, not the source partition).
        table = app.Table(
            "candles-1m", default=list, partitions=PARTITIONS, schema=table_schema, use_partitioner=True
        )

        @app.agent(ticks_topic)
        async def build_candles(stream):
            try:
                async for values in stream.take(TAKE_MAX, within=TAKE_WITHIN_S):
                    folded: dict[str, State] = {}
                    volume = 0.0
                    for value in values:
                        tick = decode(Tick, value)
                        key = f"{tick.exchange}:{tick.symbol}|{tick.ts_event - tick.ts_event % MINUTE_NS}"
                        folded[key] = apply_tick(folded.get(key), tick.ts_event, tick.price, tick.amount)
                        volume += tick.amount
                    for key, partial in folded.items():
                        table[key] = merge_states(table[key], partial)
                    progress.add(len(values), volume)
            except Exception as exc:
                progress.fail(exc)

    await app.start()
    try:
        await asyncio.wait_for(progress.done.wait(), STARTUP_TIMEOUT_S + budget_s)
        result = progress.result(candles if table is None else faust_table_candles(table, shape))
    except TimeoutError:
        raise TimeoutError(
            f"processed {progress.count} of {expected} ticks within {STARTUP_TIMEOUT_S + budget_s:.0f}s"
        ) from None
    finally:
        await app.stop()
    return result


def faust_table_candles(table, shape: str) -> dict[tuple[str, int], State]:
    """The candles held in the faust table, in the digest's (market, bucket_ns) form."""
    candles: dict[tuple[str, int], State] = {}
    if shape == "take":
        for key, state in table.items():
            market, _, bucket = key.rpartition("|")
            candles[(market, int(bucket))] = state
    else:
        # The windowed table's underlying mapping is keyed by (key, (window_start, window_end)).
        for (market, (start_s, _end_s)), state in table.table.data.items():
            candles[(market, round(start_s) * 1_000_000_000)] = state
    return candles


async def run_engine(engine: str, bootstrap: str, topic: str, expected: int, budget_s: float) -> dict:
    if engine == "aiokafka":
        return await run_aiokafka(bootstrap, topic, expected, budget_s)
    return await run_faust(bootstrap, topic, expected, budget_s, shape=FAUST_SHAPES[engine])


def worker_main(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(run_engine(args.engine, args.bootstrap, args.topic, args.ticks, args.budget))
    except Exception as exc:  # reported to the parent, which shows it and fails the run
        result = {"error": f"{type(exc).__name__}: {exc}".strip()}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --- orchestration ---------------------------------------------------------------------------


def run_worker(engine: str, bootstrap: str, topic: str, ticks: int, budget_s: float) -> dict:
    cmd = [sys.executable, __file__, "--engine", engine, "--bootstrap", bootstrap, "--topic", topic]
    cmd += ["--ticks", str(ticks), "--budget", str(budget_s)]
    limit_s = STARTUP_TIMEOUT_S + budget_s + 30  # + interpreter start, imports and a clean stop
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s)
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child
        return {"error": f"worker did not finish within {limit_s:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            if "error" in result:
                result["stderr_tail"] = proc.stderr[-3000:]
            return result
    return {"error": f"worker exited {proc.returncode} without a result", "stderr_tail": proc.stderr[-3000:]}


def same_candles(a: dict, b: dict) -> bool:
    """Digests are sums of floats taken in different orders: equal up to rounding."""
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)


def check_result(engine: str, result: dict, reference: dict | None) -> str | None:
    """Why ``result`` is not a valid measurement, or None."""
    if "error" in result:
        return f"failed: {result['error']}\n{result.get('stderr_tail', '')}"
    if not result["consistent"]:
        return f"its state does not hold exactly the ticks it processed: {result['digest']}"
    if result["complete"] and reference and reference.get("complete"):
        if not same_candles(result["digest"], reference["digest"]):
            return f"built other candles than aiokafka: {result['digest']} vs {reference['digest']}"
    return None


def bench_dataset(bootstrap: str, ticks: int, symbols: int, budget_s: float) -> bool:
    topic = f"bench.ticks.{symbols}.{uuid.uuid4().hex[:6]}"
    start_ns = (time.time_ns() // MINUTE_NS - EVENT_SPAN_MINUTES - 1) * MINUTE_NS
    data = make_ticks(ticks, symbols, start_ns)
    asyncio.run(create_topic(bootstrap, topic))
    produced_per_s = asyncio.run(produce_ticks(bootstrap, topic, data))
    del data
    log(f"# {symbols} symbols: produced {ticks} ticks at {produced_per_s:,.0f}/s to {topic}")
    emit(f"produce_{symbols}_symbols", produced_per_s, "ticks/s")

    ok = True
    results: dict[str, dict] = {}
    for engine in ENGINES:
        results[engine] = result = run_worker(engine, bootstrap, topic, ticks, budget_s)
        problem = check_result(engine, result, results.get("aiokafka"))
        if problem:
            log(f"#   {engine}: {problem}")
            ok = False
            continue
        meets = result["ticks_per_s"] >= TARGET_TICKS_PER_S and result["peak_rss_mb"] < TARGET_PEAK_RSS_MB
        log(
            f"#   {engine}: {result['ticks_per_s']:,.0f} ticks/s over {result['ticks']} ticks"
            f"{'' if result['complete'] else ' (time budget)'}, startup {result['startup_s']:.1f}s, "
            f"peak RSS {result['peak_rss_mb']:.0f} MB, {result['digest']['candles']} candles; "
            f"target {'met' if meets else 'MISSED'}"
        )

    baseline = results["aiokafka"].get("ticks_per_s")
    baseline_rss = results["aiokafka"].get("peak_rss_mb")
    for engine, result in results.items():
        name = f"{engine}_candles_{symbols}_symbols"
        is_baseline = engine == "aiokafka"
        emit(name, result.get("ticks_per_s"), "ticks/s", None if is_baseline else baseline)
        emit(f"{name}_peak_rss", result.get("peak_rss_mb"), "MB", None if is_baseline else baseline_rss)
        emit(f"{name}_startup", result.get("startup_s"), "s")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=200_000, help="ticks per data set")
    parser.add_argument("--symbols", default="20,1000", help="comma-separated data sets (markets each)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="processing seconds per engine")
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        return worker_main(args)

    ok = True
    with PrivateTansu() as broker:
        log(
            f"# tansu on {broker.bootstrap}; {args.ticks} ticks per data set, {args.budget:.0f}s budget per engine"
        )
        for symbols in (int(s) for s in args.symbols.split(",")):
            ok = bench_dataset(broker.bootstrap, args.ticks, symbols, args.budget) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
