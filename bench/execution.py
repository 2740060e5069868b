"""Execution throughput: approved orders on risk.orders.v1 -> paper fills, persisted and published.

On a private broker and database: 20 symbols of trades go to a fresh ticks topic; the execution
service (the real app from its ServiceDefinition, in a child process so its memory is its own)
consumes them, then a burst of market orders of 10 paper accounts arrives on its orders topic.
Each order is stored, placed on the paper exchange, filled from the trade window and published
(submitted, accepted, filled on exec.orders.v1 and the fill on exec.fills.v1, through the outbox).
The rate runs from the first filled order to the moment every order is filled and every one of
its messages has left the outbox. In the same run, the baseline: raw aiokafka consumption of the
same order messages (getmany, no decode).

Prints JSON lines ``{"name", "value", "unit", "baseline"}``. Target (issue 14): at least 2,000
orders/s on one process. Run: ``make bench`` or ``.venv/bin/python bench/execution.py [--orders N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, free_port, log, peak_rss_mb  # noqa: E402

S = 1_000_000_000
T0 = 1_772_445_600 * S  # 2026-03-02 10:00 UTC
SYMBOLS = [f"S{n:02d}/USDT" for n in range(20)]
ACCOUNTS = [f"bench-{n}" for n in range(10)]
EXCHANGE = "bench"
TRADES_PER_SYMBOL = 400


def topics(run: str) -> dict[str, str]:
    return {name: f"bench.{run}.{name}" for name in ("orders", "risk_events", "ticks", "order_events", "fills")}


async def produce(bootstrap: str, items: list[tuple[str, str, object]]) -> float:
    from tradeflow.bus import Producer
    from tradeflow.settings import CommonSettings
    from tradeflow.telemetry import Telemetry

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("bench", settings), client_id="bench-producer")
    await producer.start()
    started = time.perf_counter()
    for start in range(0, len(items), 20_000):
        await asyncio.gather(*(producer.send(topic, key, value) for topic, key, value in items[start:start + 20_000]))
    elapsed = time.perf_counter() - started
    await producer.stop()
    return len(items) / elapsed


def trades(topic: str) -> list:
    from tradeflow.messages import Tick

    items = []
    for n in range(TRADES_PER_SYMBOL):
        for s, symbol in enumerate(SYMBOLS):
            ts = T0 + n * S // 4
            tick = Tick(exchange=EXCHANGE, symbol=symbol, trade_id=f"{n}", price=100.0 + s + (n % 7) / 10,
                        amount=5.0, side="buy", ts_event=ts, ts_recv=ts)
            items.append((topic, f"{EXCHANGE}:{symbol}", tick))
    return items


def orders(topic: str, count: int) -> list:
    """Market orders valid from inside the last trades of each symbol: they fill from the window."""
    from tradeflow.messages import Order

    last = T0 + (TRADES_PER_SYMBOL - 1) * S // 4
    items = []
    for n in range(count):
        account = ACCOUNTS[n % len(ACCOUNTS)]
        order = Order(client_order_id=f"bench{n:08d}", account_id=account, exchange=EXCHANGE,
                      symbol=SYMBOLS[n % len(SYMBOLS)], side="buy" if n % 3 else "sell", order_type="market",
                      quantity=Decimal("0.01"), decision_price=Decimal("100"),
                      ts_event=last - (1 + n % 20) * S, signal_id=f"sig-{n}")
        items.append((topic, account, order))
    return items


async def raw_consume_rate(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        seen, started = 0, time.perf_counter()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def run_service(args: dict) -> dict:
    """Child process: execution consumes the trades, says "ready", then handles the burst."""
    from tradeflow_execution.bootstrap import OUTBOX_TABLE, SERVICE
    from tradeflow_execution.settings import ExecutionSettings

    t = args["topics"]
    settings = ExecutionSettings(
        kafka_bootstrap=args["bootstrap"], database_url=args["database_url"], log_level="WARNING",
        http_port=free_port(), consumer_session_timeout_ms=6000, consumer_group=t["orders"] + "-group",
        orders_topic=t["orders"], risk_events_topic=t["risk_events"],
        ticks_topic=t["ticks"], order_events_topic=t["order_events"],
        fills_topic=t["fills"],
        accounts=[{"id": a, "exchange": EXCHANGE, "balances": {"USDT": "1000000"}} for a in ACCOUNTS])
    app = SERVICE.create_app(settings)
    registry = app.state.telemetry.registry
    n, ticks = args["n"], args["ticks"]

    def sample(name: str, labels: dict) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    async def until(condition, what: str, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached after {timeout_s:.0f} s")
            await asyncio.sleep(0.005)

    async with app.router.lifespan_context(app):
        await until(lambda: sample("tradeflow_messages_consumed_total", {"topic": t["ticks"]}) >= ticks, "trades")
        print("ready", flush=True)
        filled = lambda: sample("tradeflow_execution_order_transitions_total", {"status": "filled"})  # noqa: E731
        await until(lambda: filled() > 0, "first fill")
        started, first, cpu0 = time.perf_counter(), filled(), time.process_time()
        await until(lambda: filled() >= n, "every order filled")
        filled_after = time.perf_counter() - started
        await until(lambda: sample("tradeflow_outbox_published_total", {"outbox": OUTBOX_TABLE}) >= 4 * n,
                    "every order published")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
        history_reads = sample("tradeflow_execution_history_reads_total", {})
    return {"rate": (n - first) / elapsed, "filled_rate": (n - first) / filled_after, "cpu_us_per_order": cpu / (n - first) * 1e6,
            "history_reads": history_reads, "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(run_service(json.loads(args.child)))), flush=True)
        return 0

    from tradeflow.admin import ensure_topics
    from tradeflow_db.migrate import upgrade
    from tradeflow_ops.infra import LocalInfra

    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-") as tmp:
        Path(tmp).chmod(0o755)  # the database runs as the postgres user when we are root
        infra = LocalInfra(Path(tmp), kafka_port=free_port(), db_port=free_port())
        try:
            infra.up()
            upgrade(infra.database_url)
            t = topics("exec")
            from tradeflow_execution.bootstrap import topic_specs
            from tradeflow_execution.settings import ExecutionSettings

            specs = topic_specs(ExecutionSettings(**{f"execution_{k}_topic": v for k, v in t.items()}))
            asyncio.run(ensure_topics(infra.kafka_bootstrap, list(specs.values())))
            tick_items = trades(t["ticks"])
            asyncio.run(produce(infra.kafka_bootstrap, tick_items))
            order_items = orders(t["orders"], args.orders)
            child = subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps({
                    "bootstrap": infra.kafka_bootstrap, "database_url": infra.database_url, "topics": t,
                    "n": args.orders, "ticks": len(tick_items)})],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                line = child.stdout.readline()
                if line.strip() != "ready":
                    log(child.stderr.read()[-4000:])
                    return 1
                produce_rate = asyncio.run(produce(infra.kafka_bootstrap, order_items))
                log(f"produced {args.orders} orders at {produce_rate:,.0f}/s")
                out, err = child.communicate(timeout=900)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            if child.returncode != 0:
                log(err[-4000:])
                return 1
            result = json.loads(out.strip().splitlines()[-1])
            baseline = asyncio.run(raw_consume_rate(infra.kafka_bootstrap, t["orders"], args.orders))
            emit("execution_paper_orders_persisted", result["rate"], "orders/s", baseline)
            emit("execution_cpu_per_order", result["cpu_us_per_order"], "us/order")
            emit("execution_peak_rss", result["peak_rss_mb"], "MB")
            log(f"orders filled (stored) at {result['filled_rate']:,.0f}/s; published at {result['rate']:,.0f}/s")
            log(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            log(f"history reads: {result['history_reads']:.0f} (orders met their trades in the window)")
        finally:
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
