"""Strategy service throughput: candles on md.candles.v1 in, signals on strategy.signals.v1 out.

100 instances of ``sma_cross`` (10, 30) over 500 markets (each instance trades 5 of them, so
every candle is decided by one instance), on one process. In the same run:

* the baseline: raw aiokafka consumption of the same messages (getmany, no decode);
* the strategy service (the real app from its ServiceDefinition, in a child process, with its
  database, status writer and instance sync; warm-up through a candle-builder process serving
  the stored history), consuming the pre-filled topic: candles handed to the instances per
  second from the first candle to the last, the 500 warm-ups included (each market warms up on
  its first candle, as the consumer reaches its partition's backlog), and apart the rate once
  every market is warm; every signal is acknowledged by the broker before its batch counts as
  handled;
* the SDK's cost per candle, ``LiveRunner.on_candle`` one at a time and ``on_candles`` with
  the runs the service hands over here (a batch of 5,000 records holds about 10 candles per
  market), CPU microseconds.

Target (issue 12): at least 20,000 candles/s on one process, once its markets are warm (the
warm-ups, one candle-builder request per market, happen once per start or rebalance).
Prints JSON lines ``{"name", "value", "unit", "baseline"}``; progress goes to stderr.
Run: ``make bench`` or ``.venv/bin/python bench/strategy.py [--minutes N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, free_port, log, peak_rss_mb, raw_consume_rate  # noqa: E402

MINUTE_NS = 60_000_000_000
T0_NS = 1_767_571_200_000_000_000  # 2026-01-05 00:00 UTC
EXCHANGE = "bench"
MARKETS = 500
INSTANCES = 100
HISTORY = 40  # stored minutes per market before the stream (sma_cross(10, 30) needs 31)
TARGET = 20_000


def market_symbols() -> list[str]:
    return [f"M{i:03d}/USDT" for i in range(MARKETS)]


def instance_definitions() -> list[dict]:
    symbols = market_symbols()
    per = MARKETS // INSTANCES
    return [{"id": f"bench-{i:03d}", "strategy": "sma_cross", "account_id": "bench", "exchange": EXCHANGE,
             "symbols": symbols[i * per:(i + 1) * per], "timeframe": "1m", "params": {"fast": 10, "slow": 30}}
            for i in range(INSTANCES)]


def candles(minutes: range) -> list:
    """Seeded random walks, time order (every market's minute t, then t + 1)."""
    import numpy as np
    from tradeflow.messages import Candle

    rng = np.random.default_rng(3)
    steps = rng.normal(0, 0.003, (MARKETS, HISTORY + minutes.stop))
    closes = np.round(100 * np.exp(np.cumsum(steps, axis=1)), 2)
    out = []
    for t in minutes:
        for m, symbol in enumerate(market_symbols()):
            close = float(closes[m, t])
            open_ = float(closes[m, t - 1]) if t else close
            out.append(Candle(exchange=EXCHANGE, symbol=symbol, timeframe="1m", ts_start=T0_NS + t * MINUTE_NS,
                              ts_end=T0_NS + (t + 1) * MINUTE_NS, open=open_, high=max(open_, close) + 0.01,
                              low=min(open_, close) - 0.01, close=close, volume=1.0, trades=3))
    return out


async def prepare(bootstrap: str, database_url: str, topic: str, minutes: int) -> int:
    """The history in the database, the stream on the topic; returns the streamed candle count."""
    from tradeflow.admin import ensure_topics
    from tradeflow.bus import Producer
    from tradeflow.settings import CommonSettings
    from tradeflow.telemetry import Telemetry
    from tradeflow.topics import MD_CANDLES
    from tradeflow_candle_builder.adapters.candle_store import CandleStore

    store = CandleStore(database_url)
    await store.start()
    try:
        await store.upsert_candles_1m(candles(range(HISTORY)))
    finally:
        await store.stop()
    stream = candles(range(HISTORY, HISTORY + minutes))
    await ensure_topics(bootstrap, [dataclasses.replace(MD_CANDLES, name=topic)])
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("bench", settings), client_id="bench-candles")
    await producer.start()
    try:
        for start in range(0, len(stream), 20_000):
            await producer.send_many(topic, [(f"{c.exchange}:{c.symbol}", c) for c in stream[start:start + 20_000]])
    finally:
        await producer.stop()
    return len(stream)


async def run_service(args: dict) -> dict:
    """Child process: the strategy app consuming the pre-filled topic until every candle is decided."""
    from tradeflow_strategy.bootstrap import SERVICE
    from tradeflow_strategy.settings import StrategySettings

    settings = StrategySettings(
        environment="test", kafka_bootstrap=args["bootstrap"], database_url=args["database_url"],
        topic_candles=args["topic"], topic_fills=args["topic"] + ".fills", topic_signals=args["topic"] + ".signals",
        consumer_group=args["topic"] + "-strategy", consumer_session_timeout_ms=6000, log_level="WARNING",
        candle_builder_url=args["candle_api"], accounts=json.dumps([{"id": "bench", "exchange": EXCHANGE}]),
        instances=json.dumps(instance_definitions()))
    app = SERVICE.create_app(settings)
    n = args["n"]
    # Read the engine's own counts (collecting the Prometheus registry this often would cost more
    # than the service itself).
    engine = next(c for c in app.state.runtime.components if type(c).__name__ == "InstanceSync")._engine

    def handled() -> int:
        return sum(slot.candles for runtime in engine.instances.values() for slot in runtime.slots.values())

    def warm() -> int:
        return sum(slot.runner is not None for runtime in engine.instances.values() for slot in runtime.slots.values())

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 600
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached after 600 s: {handled()} of {n} candles, {warm()} markets warm")
            await asyncio.sleep(0.02)

    async with app.router.lifespan_context(app):
        ready_at = time.perf_counter()
        await until(lambda: handled() > 0, "a first candle")
        first_at, first, cpu_first = time.perf_counter(), handled(), time.process_time()
        # Each market warms up on its first candle (through the candle-builder), here spread over
        # the stream as the consumer reaches each partition's backlog.
        await until(lambda: warm() == MARKETS, "every market warm")
        warm_at, warm_handled, cpu_warm = time.perf_counter(), handled(), time.process_time()
        await until(lambda: handled() >= n, "every candle")
        done_at, cpu_done = time.perf_counter(), time.process_time()
        registry = app.state.telemetry.registry
        signals = sum(s.value for m in registry.collect() if m.name == "tradeflow_strategy_signals"
                      for s in m.samples if s.name.endswith("_total"))
    return {"rate": (n - first) / (done_at - first_at), "cpu_us_per_candle": (cpu_done - cpu_first) / (n - first) * 1e6,
            "warm_rate": (n - warm_handled) / (done_at - warm_at), "warm_measured": n - warm_handled,
            "warm_cpu_us_per_candle": (cpu_done - cpu_warm) / (n - warm_handled) * 1e6,
            "join_s": first_at - ready_at, "warm_up_s": warm_at - first_at, "signals": signals,
            "peak_rss_mb": peak_rss_mb()}


def sdk_cost(run: int) -> tuple[float, float]:
    """CPU us per candle of LiveRunner for sma_cross(10, 30): one at a time, and in runs of ``run``."""
    from tradeflow_trading.strategies.sma_cross import SmaCross
    from tradeflow_trading.strategy import LiveRunner

    stream = candles_of_one_market(20_000)

    def cost(feed) -> float:
        runner = LiveRunner(SmaCross(), exchange=EXCHANGE, symbol="M000/USDT", timeframe="1m")
        runner.warm_up(stream[:100])
        cpu = time.process_time()
        feed(runner, stream[100:])
        return (time.process_time() - cpu) / (len(stream) - 100) * 1e6

    def one_by_one(runner, rest) -> None:
        for candle in rest:
            runner.on_candle(candle)

    def in_runs(runner, rest) -> None:
        for i in range(0, len(rest), run):
            runner.on_candles(rest[i:i + run])

    cost(one_by_one)  # compiles and caches the indicators
    return min(cost(one_by_one) for _ in range(3)), min(cost(in_runs) for _ in range(3))


def candles_of_one_market(n: int) -> list:
    import numpy as np
    from tradeflow.messages import Candle

    closes = np.round(100 * np.exp(np.cumsum(np.random.default_rng(5).normal(0, 0.003, n))), 2)
    return [Candle(exchange=EXCHANGE, symbol="M000/USDT", timeframe="1m", ts_start=T0_NS + t * MINUTE_NS,
                   ts_end=T0_NS + (t + 1) * MINUTE_NS, open=float(closes[t]), high=float(closes[t]) + 0.01,
                   low=float(closes[t]) - 0.01, close=float(closes[t]), volume=1.0, trades=1) for t in range(n)]


def start_candle_builder(bootstrap: str, database_url: str, state: Path) -> tuple[subprocess.Popen, str]:
    """``tradeflow run candle-builder`` on a free port (the warm-ups read its GET /v1/candles)."""
    import httpx

    port = free_port()
    env = {**os.environ, "TRADEFLOW_ENVIRONMENT": "test", "TRADEFLOW_KAFKA_BOOTSTRAP": bootstrap,
           "TRADEFLOW_DATABASE_URL": database_url, "TRADEFLOW_HTTP_PORT": str(port), "TRADEFLOW_LOG_LEVEL": "WARNING",
           "TRADEFLOW_CANDLE_BUILDER_TICKS_TOPIC": "bench.idle.ticks",
           "TRADEFLOW_CANDLE_BUILDER_CANDLES_TOPIC": "bench.idle.candles",
           "TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS": "36500", "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000"}
    log_file = (state / "candle-builder.log").open("ab")
    process = subprocess.Popen([str(Path(sys.executable).parent / "tradeflow"), "run", "candle-builder"], env=env,
                               stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"candle-builder exited with {process.returncode}; see {state}/candle-builder.log")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("candle-builder not ready in 60 s")
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=400, help="streamed minutes per market (default 400)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(run_service(json.loads(args.child)))))
        return 0

    from tradeflow_db.migrate import upgrade
    from tradeflow_ops.infra import LocalInfra

    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-") as tmp:
        Path(tmp).chmod(0o755)  # the database runs as the postgres user when we are root
        infra = LocalInfra(Path(tmp), kafka_port=free_port(), db_port=free_port())
        candle_builder = None
        try:
            infra.up()
            upgrade(infra.database_url)
            topic = "bench.candles"
            n = asyncio.run(prepare(infra.kafka_bootstrap, infra.database_url, topic, args.minutes))
            log(f"{n} candles of {MARKETS} markets on {topic}, {HISTORY} minutes each stored before them")
            baseline = asyncio.run(raw_consume_rate(infra.kafka_bootstrap, topic, n))
            candle_builder, candle_api = start_candle_builder(infra.kafka_bootstrap, infra.database_url, Path(tmp))
            child = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps({
                    "bootstrap": infra.kafka_bootstrap, "database_url": infra.database_url, "topic": topic, "n": n,
                    "candle_api": candle_api})],
                capture_output=True, text=True, timeout=900)
            if child.returncode != 0:
                log(child.stderr[-4000:])
                return 1
            result = json.loads(child.stdout.strip().splitlines()[-1])
            log(f"first candle {result['join_s']:.2f} s after start (group join), every market warm "
                f"{result['warm_up_s']:.2f} s later, after which {result['warm_measured']:.0f} candles were left; "
                f"{result['signals']:.0f} signals published")
            emit("strategy_100_instances_500_markets_candles_per_s", result["rate"], "candles/s", baseline)
            emit("strategy_cpu_per_candle", result["cpu_us_per_candle"], "us/candle")
            emit("strategy_once_every_market_is_warm_candles_per_s", result["warm_rate"], "candles/s", baseline)
            emit("strategy_once_every_market_is_warm_cpu_per_candle", result["warm_cpu_us_per_candle"], "us/candle")
            emit("strategy_warm_up_500_markets_spread_over", result["warm_up_s"], "s")
            emit("strategy_peak_rss", result["peak_rss_mb"], "MB")
            emit("strategy_meets_target_once_warm", int(result["warm_rate"] >= TARGET), "bool", 1)
        finally:
            if candle_builder is not None:
                stop(candle_builder)
            infra.down(purge=True)
    run = max(1, 5_000 // MARKETS)
    single, batched = sdk_cost(run)
    emit("sdk_live_sma_cross_one_candle_at_a_time_cpu", single, "us/candle")
    emit(f"sdk_live_sma_cross_runs_of_{run}_cpu", batched, "us/candle", single)
    return 0


if __name__ == "__main__":
    sys.exit(main())
