"""The trading path's latency: a candle on md.candles.v1 -> its fill on exec.fills.v1, through the
strategy service, risk and execution (paper), each its own process (`tradeflow run`), on a
private broker and database on loopback.

50 markets, each with its own `sma_cross` (fast 1, slow 2) instance on its own paper account:
the candles of a market zigzag (up, down, up, ...), so after the warm-up every candle is a
cross and gives a signal (enter, exit, enter, ...). Candles go out at ``--rate`` signals per
second spread evenly over the markets (default 100/s: a market every 10 ms, each market every
0.5 s); before each candle, the trade that closes it (the first trade at its end, which the
paper fill rule fills the order at) goes to md.ticks.v1, as ingest would have sent it first.
The latency of a candle is from the moment its send was acknowledged to the moment this
process reads the fill of its order on exec.fills.v1. The candle-builder runs for the
strategy service's warm-up API only (on an unused ticks topic: the candles are this script's).

(a) orders per second through execution (paper, persisted) against the raw consume rate of the
same messages is ``bench/execution.py`` (``execution_paper_orders_persisted``, its baseline the
raw rate): ``make bench`` runs both; ``--with-throughput`` runs it from here too.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``. Target (issue 14): p99 under 50 ms
at 100 signals/s. Run: ``make bench`` or ``.venv/bin/python bench/trading_path.py [--seconds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuShares, assign_at_end, emit, free_port, log, stop  # noqa: E402
from _floor import floor as run_floor  # noqa: E402
from _floor import percentile, services_fetch_wait_ms  # noqa: E402

NS = 1_000_000_000
T0 = 1_772_445_600 * NS  # 2026-03-02 10:00 UTC
MARKETS = 50
EXCHANGE = "benchx"
WARMUP_CANDLES = 4  # per market: sma_cross (1, 2) decides from its third candle; the first signals are left out
SERVICES = ("candle-builder", "strategy", "risk", "execution")
READER_WAIT_MS = 10  # this process's reader of the outputs: one more hop like the services'


def symbol_of(m: int) -> str:
    return f"M{m:02d}/USDT"


def account_of(m: int) -> str:
    return f"lat-{m:02d}"


def price(m: int, i: int) -> float:
    """The zigzag: every close crosses the mean of the last two."""
    return 100.0 + m + (1.0 if i % 2 else 0.0)


def service_env(name: str, bootstrap: str, database_url: str, ports: dict[str, int]) -> dict[str, str]:
    instances = [{"id": f"lat-{m:02d}", "strategy": "sma_cross", "account_id": account_of(m), "exchange": EXCHANGE,
                  "symbols": [symbol_of(m)], "timeframe": "1m", "params": {"fast": 1, "slow": 2}}
                 for m in range(MARKETS)]
    accounts = [{"id": account_of(m), "exchange": EXCHANGE, "balances": {"USDT": "1000000"}} for m in range(MARKETS)]
    env = {**os.environ, "TRADEFLOW_ENVIRONMENT": "test", "TRADEFLOW_API_KEYS": "bench-key-0123456789abcdef",
           "TRADEFLOW_KAFKA_BOOTSTRAP": bootstrap, "TRADEFLOW_DATABASE_URL": database_url,
           "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000", "TRADEFLOW_LOG_LEVEL": "WARNING",
           "TRADEFLOW_HTTP_PORT": str(ports[name]), "TRADEFLOW_ACCOUNTS": json.dumps(accounts)}
    if name == "candle-builder":
        env["TRADEFLOW_CANDLE_BUILDER_TICKS_TOPIC"] = "bench.unused.ticks"
        env["TRADEFLOW_CANDLE_BUILDER_CANDLES_TOPIC"] = "bench.unused.candles"
        # Its topic carries nothing here: no need to ask Tansu for it every 10 ms.
        env["TRADEFLOW_CONSUMER_FETCH_MAX_WAIT_MS"] = "500"
        env["TRADEFLOW_CANDLE_BUILDER_STREAM_FETCH_MAX_WAIT_MS"] = "500"
    if name == "strategy":
        env["TRADEFLOW_STRATEGY_INSTANCES"] = json.dumps(instances)
        env["TRADEFLOW_CANDLE_BUILDER_URL"] = f"http://127.0.0.1:{ports['candle-builder']}"
    return env


def wait_ready(name: str, port: int, process: subprocess.Popen, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{name} not ready after {timeout_s:.0f} s")


async def measure(bootstrap: str, rate: float, seconds: float, cpu: CpuShares) -> dict:
    from aiokafka import AIOKafkaConsumer
    from tradeflow.bus import Producer
    from tradeflow.codec import decode
    from tradeflow.messages import Candle, Fill, Order, Signal, Tick
    from tradeflow.settings import CommonSettings
    from tradeflow.telemetry import Telemetry
    from tradeflow.topics import EXEC_FILLS, MD_CANDLES, MD_TICKS, RISK_ORDERS, STRATEGY_SIGNALS, market_key

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("bench-latency", settings), client_id="bench-latency")
    # What this process reads of the intermediate topics too: where the time goes, by stage.
    watched = {STRATEGY_SIGNALS.name: Signal, RISK_ORDERS.name: Order, EXEC_FILLS.name: Fill}
    reader_of = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 fetch_max_wait_ms=READER_WAIT_MS)
    await producer.start()
    await reader_of.start()
    sent: dict[tuple[str, int], float] = {}  # (account, candle end) -> when its send was acknowledged
    seen: dict[str, dict[tuple[str, int], float]] = {topic: {} for topic in watched}
    latencies = seen[EXEC_FILLS.name]
    try:
        await assign_at_end(reader_of, list(watched))

        async def read_outputs() -> None:
            while True:
                for tp, records in (await reader_of.getmany(timeout_ms=100)).items():
                    now = time.perf_counter()
                    for record in records:
                        message = decode(watched[tp.topic], record.value)
                        # A signal's and its order's ts_event is the candle's end; the fill's is its trade's,
                        # the trade at that end.
                        key = (message.account_id, message.ts_event)
                        if key in sent and key not in seen[tp.topic]:
                            seen[tp.topic][key] = now - sent[key]

        reader = asyncio.create_task(read_outputs())
        per_market = rate / MARKETS
        rounds = WARMUP_CANDLES + int(seconds * per_market)
        interval = 1.0 / rate
        cpu.start()
        started = time.perf_counter()
        pending = []

        async def send(m: int, i: int) -> None:
            symbol, start = symbol_of(m), T0 + i * 60 * NS
            end = start + 60 * NS
            key = market_key(EXCHANGE, symbol)
            # The trade at the candle's end (the first of the next bucket): the paper fill's trade.
            tick = Tick(exchange=EXCHANGE, symbol=symbol, trade_id=f"{m}-{i}", price=price(m, i + 1), amount=1.0,
                        side="buy", ts_event=end, ts_recv=end)
            candle = Candle(exchange=EXCHANGE, symbol=symbol, timeframe="1m", ts_start=start, ts_end=end,
                            open=price(m, i), high=price(m, i), low=price(m, i), close=price(m, i), volume=1.0,
                            trades=1)
            await producer.send(MD_TICKS.name, key, tick)
            sending = producer.send(MD_CANDLES.name, key, candle)
            await sending
            if i >= WARMUP_CANDLES:
                sent[(account_of(m), end)] = time.perf_counter()

        n = 0
        for i in range(rounds):
            for m in range(MARKETS):
                due = started + n * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(send(m, i)))
                n += 1
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
        busy = cpu.stop()
        deadline = time.monotonic() + 30
        while len(latencies) < len(sent) and time.monotonic() < deadline:  # noqa: ASYNC110 (polls a dict)
            await asyncio.sleep(0.2)
        reader.cancel()
        return {"sent": len(sent), "filled": len(latencies), "rate": n / elapsed,
                "latencies_ms": sorted(v * 1000 for v in latencies.values()),
                "signal_ms": sorted(v * 1000 for v in seen[STRATEGY_SIGNALS.name].values()),
                "order_ms": sorted(v * 1000 for v in seen[RISK_ORDERS.name].values()), "cpu": busy}
    finally:
        await reader_of.stop()
        await producer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="signals per second (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the candles flow (default 30)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions per topic (default: each topic's own, 12); fewer cost Tansu less per fetch")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor (the same hops with no work in them) measured first")
    parser.add_argument("--floor-wait-ms", type=int, default=None,
                        help="the floor's fetch wait (default: the services' own, 10 ms)")
    parser.add_argument("--floor-only", action="store_true", help="measure the floor, not the services")
    parser.add_argument("--with-throughput", action="store_true",
                        help="also run bench/execution.py (orders/s through execution against the raw consume rate)")
    args = parser.parse_args()

    from tradeflow.admin import ensure_topics
    from tradeflow.topics import ALL_TOPICS, EXEC_FILLS, MD_CANDLES, MD_TICKS, RISK_ORDERS, STRATEGY_SIGNALS
    from tradeflow_db.migrate import upgrade
    from tradeflow_ops.infra import LocalInfra

    if args.with_throughput:
        subprocess.run([sys.executable, str(Path(__file__).with_name("execution.py"))], check=True)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-") as tmp:
        Path(tmp).chmod(0o755)  # the database runs as the postgres user when we are root
        infra = LocalInfra(Path(tmp), kafka_port=free_port(), db_port=free_port())
        processes: dict[str, subprocess.Popen] = {}
        try:
            infra.up()
            upgrade(infra.database_url)
            topics = ALL_TOPICS if args.partitions is None else [
                dataclasses.replace(spec, partitions=args.partitions) for spec in ALL_TOPICS]
            asyncio.run(ensure_topics(infra.kafka_bootstrap, topics))
            floor = None
            if not args.no_floor:
                # The floor first: the path's four topics (and the trades' one) with nothing but relays.
                floor_topics = {name: spec for name, spec in (
                    ("floor.candles", MD_CANDLES), ("floor.signals", STRATEGY_SIGNALS), ("floor.orders", RISK_ORDERS),
                    ("floor.fills", EXEC_FILLS), ("floor.ticks", MD_TICKS))}
                asyncio.run(ensure_topics(infra.kafka_bootstrap, [
                    dataclasses.replace(spec, name=name, partitions=args.partitions or spec.partitions)
                    for name, spec in floor_topics.items()]))
                floor = run_floor(
                    infra.kafka_bootstrap, name="trading_path", chain=list(floor_topics)[:4], side_topic="floor.ticks",
                    keys=[symbol_of(m).encode() for m in range(MARKETS)], rate=args.rate, seconds=args.seconds,
                    relay_wait_ms=args.floor_wait_ms or services_fetch_wait_ms(), reader_wait_ms=READER_WAIT_MS,
                    broker_pid=infra.status().kafka.pid)
                if args.floor_only:
                    return 0
            ports = {name: free_port() for name in SERVICES}
            for name in SERVICES:
                log_file = open(Path(tmp) / f"{name}.log", "wb")  # noqa: SIM115 (closed with the directory)
                processes[name] = subprocess.Popen(
                    [str(bin_dir / "tradeflow"), "run", name],
                    env=service_env(name, infra.kafka_bootstrap, infra.database_url, ports),
                    stdout=log_file, stderr=subprocess.STDOUT)
                if name == "candle-builder":
                    wait_ready(name, ports[name], processes[name])
            for name in SERVICES:
                wait_ready(name, ports[name], processes[name])
            status = infra.status()
            cpu = CpuShares({**{name: process.pid for name, process in processes.items()},
                             "broker": status.kafka.pid, "database": status.postgres.pid, "bench": os.getpid()},
                            trees=frozenset({"database"}))
            cpu.start()
            time.sleep(5)
            idle = cpu.stop()
            log(f"strategy, risk and execution ready; {args.rate:g} signals/s over {MARKETS} markets "
                f"for {args.seconds:g} s")
            result = asyncio.run(measure(infra.kafka_bootstrap, args.rate, args.seconds, cpu))
            values = result["latencies_ms"]
            log(f"sent {result['sent']} signal candles at {result['rate']:.1f}/s; {result['filled']} filled")
            if result["filled"] < result["sent"]:
                log(f"{result['sent'] - result['filled']} candles had no fill within 30 s")
            emit("trading_path_candle_to_fill_p50", percentile(values, 0.50), "ms")
            # Baseline: the floor's p99 in this run (the target is 50 ms).
            emit("trading_path_candle_to_fill_p99", percentile(values, 0.99), "ms", floor.p99_ms if floor else None)
            emit("trading_path_candle_to_fill_max", values[-1], "ms")
            emit("trading_path_signal_rate", result["rate"], "signals/s", args.rate)
            for stage, key in (("candle_to_signal", "signal_ms"), ("candle_to_approved_order", "order_ms")):
                log(f"{stage}: p50 {percentile(result[key], 0.5):.1f} ms, p99 {percentile(result[key], 0.99):.1f} ms")
            log(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            # Where the CPU goes (% of one core): idle (polling only) and at the measured rate.
            for name in cpu.pids:
                log(f"cpu {name:<15} idle {idle[name]:5.1f}%  at {args.rate:g}/s {result['cpu'][name]:5.1f}%")
                emit(f"trading_path_cpu_{name.replace('-', '_')}_pct", result["cpu"][name], "% of a core",
                     idle[name])
            emit("trading_path_cpu_total_pct", sum(result["cpu"].values()), "% of a core", sum(idle.values()))
        finally:
            for process in processes.values():
                stop(process)
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
