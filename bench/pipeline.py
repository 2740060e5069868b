"""End-to-end candle-builder throughput: ticks on md.ticks.v1 → candles emitted and rows written.

For 20 and 1,000 symbols this script fills a fresh ticks topic on a private broker, then
measures in the same run:

* the baseline: raw aiokafka consumption of the same messages (getmany, no decode), and
* the candle-builder service (the real app from its ServiceDefinition, in a child process so its
  peak memory is its own) consuming them with database writes on, timed from its first completed
  write to the moment every tick's write is done.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``. Targets (issue 2): at least 50,000
ticks/s on one process with database writes on; peak RSS under 300 MB with 1,000 symbols.
Run: ``make bench`` or ``.venv/bin/python bench/pipeline.py [--ticks N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, free_port, log, peak_rss_mb, raw_consume_rate  # noqa: E402

SECOND_NS = 1_000_000_000
T0_NS = 1_772_445_600 * SECOND_NS  # 2026-03-02 10:00 UTC: in the past, so no tick is "in the future"


async def fill_topic(bootstrap: str, topic: str, n: int, symbols: int, trades_per_minute: int, exchange: str) -> float:
    """Produce n valid ticks of new instruments of ``exchange`` keyed exchange:symbol, each symbol
    trading ~trades_per_minute."""
    from tradeflow.admin import ensure_topics
    from tradeflow.bus import Producer
    from tradeflow.messages import Tick
    from tradeflow.settings import CommonSettings
    from tradeflow.telemetry import Telemetry
    from tradeflow.topics import MD_TICKS

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    await ensure_topics(bootstrap, [dataclasses.replace(MD_TICKS, name=topic)])
    producer = Producer(settings, Telemetry("bench", settings), client_id="bench-filler")
    await producer.start()
    rng = random.Random(1)
    step = 60 * SECOND_NS // (symbols * trades_per_minute)
    prices = [100.0 + i for i in range(symbols)]
    started = time.perf_counter()
    pending = []
    ts = T0_NS
    for i in range(n):
        ts += step
        s = rng.randrange(symbols)
        prices[s] *= 1 + rng.gauss(0, 0.0005)
        tick = Tick(exchange=exchange, symbol=f"S{s:04d}/USDT", trade_id=str(i), price=prices[s],
                    amount=rng.random(), side="buy" if i % 2 else "sell",
                    ts_event=ts - rng.randrange(0, SECOND_NS // 2), ts_recv=T0_NS + i)
        pending.append(producer.send(topic, f"{exchange}:{tick.symbol}", tick))
        if len(pending) >= 20_000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return n / elapsed


async def run_service(args: dict) -> dict:
    """Child process: the candle-builder app consuming the pre-filled topic until all is written."""
    from tradeflow_candle_builder.bootstrap import SERVICE
    from tradeflow_candle_builder.settings import CandleBuilderSettings

    settings = CandleBuilderSettings(
        kafka_bootstrap=args["bootstrap"], database_url=args["database_url"], ticks_topic=args["topic"],
        candles_topic=args["topic"] + ".candles", consumer_group=args["topic"] + "-group",
        consumer_session_timeout_ms=6000, log_level="WARNING", http_port=free_port())
    app = SERVICE.create_app(settings)
    n = args["n"]
    async with app.router.lifespan_context(app):
        pipeline = next(c for c in app.state.runtime.components if type(c).__name__ == "CandlePipeline")
        started = first = None
        deadline = time.monotonic() + 300
        while True:
            written = sum(pipeline.writer.written_offsets.values())
            if started is None and written > 0:
                started, first, cpu0 = time.perf_counter(), written, time.process_time()
            if written >= n:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {written} of {n} ticks written after 300 s")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        registry = app.state.telemetry.registry
        candles = sum(registry.get_sample_value("tradeflow_candles_emitted_total", {"timeframe": tf}) or 0
                      for tf in ("1m", "5m", "15m", "1h", "4h", "1d", "1w"))
    return {"rate": (n - first) / elapsed, "cpu_us_per_tick": cpu / (n - first) * 1e6,
            "candles": candles, "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=300_000)
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
        try:
            infra.up()
            mode = upgrade(infra.database_url).mode
            log(f"database mode: {mode}")
            for symbols, per_minute in ((20, 600), (1000, 60)):
                topic = f"bench.ticks.{symbols}"
                # Each data set its own exchange: both measure first-time live data, not the
                # correction of candles the other one stored and emitted (the late path).
                produce_rate = asyncio.run(fill_topic(infra.kafka_bootstrap, topic, args.ticks, symbols, per_minute,
                                                      exchange=f"bench{symbols}"))
                log(f"{symbols} symbols: produced {args.ticks} ticks at {produce_rate:,.0f}/s")
                baseline = asyncio.run(raw_consume_rate(infra.kafka_bootstrap, topic, args.ticks))
                child = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps({
                        "bootstrap": infra.kafka_bootstrap, "database_url": infra.database_url,
                        "topic": topic, "n": args.ticks})],
                    capture_output=True, text=True, timeout=600)
                if child.returncode != 0:
                    log(child.stderr[-4000:])
                    return 1
                result = json.loads(child.stdout.strip().splitlines()[-1])
                emit(f"pipeline_{symbols}_symbols_db_on", result["rate"], "ticks/s", baseline)
                emit(f"pipeline_{symbols}_symbols_cpu_per_tick", result["cpu_us_per_tick"], "us/tick")
                emit(f"pipeline_{symbols}_symbols_peak_rss", result["peak_rss_mb"], "MB")
                log(f"{symbols} symbols: {result['candles']:.0f} candles emitted ({mode})")
        finally:
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
