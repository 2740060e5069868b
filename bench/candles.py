"""Candle storage: tick write rate of the candle-builder's write path, and one-year chart reads.

On a private PostgreSQL cluster (tradeflow.infra.LocalInfra in a temp dir, free loopback port),
in two databases of the same cluster — the TimescaleDB schema (the Apache build here: hypertables,
5m..1w as views) and the plain-PostgreSQL schema (``upgrade(url, use_timescaledb=False)``) —
this script measures:

1. ``CandleStore.write_ticks`` with batches of 20,000 ticks, 400,000 ticks in all (ticks/s).
   Baseline, same run, same rows: a plain binary ``COPY`` of each batch into an unindexed
   UNLOGGED table (the floor: what the wire and the server's COPY cost without the staging
   move, the unique index and WAL). Target: >= 100,000 ticks/s.
2. ``CandleStore.fetch_candles`` of one year (525,600 rows of candles_1m, one symbol) as 1h
   (8,760 candles) and as 1d (365 candles): median and p95 (nearest rank, so with 10 runs the
   slowest) in ms. Baseline, same run: the same aggregate as a plain ``GROUP BY`` over a
   temporary copy of the year's rows. Target: < 200 ms. A read that misses it is reported as
   such (a ``..._within_target`` line with value 0, and a note on stderr); the figure is the
   finding.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``; progress goes to stderr.
Run: ``make bench`` or ``.venv/bin/python bench/candles.py [--ticks N --runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, free_port, log  # noqa: E402

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
TICKS_T0_NS = 1_772_445_600 * SECOND_NS  # 2026-03-02 10:00 UTC
BATCH = 20_000
WRITE_TARGET_TICKS_PER_S = 100_000
READ_TARGET_MS = 200.0

# One non-leap calendar year of 1m candles: 525,600 rows, 8,760 hours, 365 days.
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)
CANDLE_EXCHANGE, CANDLE_SYMBOL = "bench", "BTC/USDT"
EXPECTED_ROWS = {"1h": 8_760, "1d": 365}
TIMEFRAME_WIDTH = {"1h": "1 hour", "1d": "1 day"}

_COPY_BASELINE_DDL = """
CREATE UNLOGGED TABLE IF NOT EXISTS bench_ticks_copy (
    exchange text, symbol text, trade_id text, price float8, amount float8, side text,
    ts_ns int8, ts_recv_ns int8
)
"""
_COPY_BASELINE = (
    "COPY bench_ticks_copy (exchange, symbol, trade_id, price, amount, side, ts_ns, ts_recv_ns) "
    "FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ["text", "text", "text", "float8", "float8", "text", "int8", "int8"]

_COPY_CANDLES_1M = (
    "COPY candles_1m (exchange, symbol, ts, open, high, low, close, volume, trades) FROM STDIN (FORMAT BINARY)"
)
_CANDLE_TYPES = ["text", "text", "timestamptz", "float8", "float8", "float8", "float8", "float8", "int4"]


def make_ticks(n: int, symbols: int = 20) -> list:
    """n valid trades over ~1 hour for ``symbols`` instruments, random-walk prices."""
    from tradeflow.messages import Tick

    rng = random.Random(7)
    prices = [100.0 + i for i in range(symbols)]
    ticks = []
    step = 10_000_000  # 10 ms between trades: 400k ticks span ~67 minutes
    for i in range(n):
        s = i % symbols
        prices[s] *= 1 + rng.gauss(0, 0.0005)
        ts = TICKS_T0_NS + i * step
        ticks.append(Tick(exchange="bench-ticks", symbol=f"S{s:02d}/USDT", trade_id=str(i), price=prices[s],
                          amount=rng.random(), side="buy" if i % 2 else "sell", ts_event=ts, ts_recv=ts + 1_000_000))
    return ticks


def make_year_of_candles() -> list[tuple]:
    """525,600 consecutive 1m candles of one symbol (random walk), as COPY rows."""
    rng = random.Random(11)
    rows = []
    price = 40_000.0
    minutes = int((YEAR_END - YEAR_START) / timedelta(minutes=1))
    for m in range(minutes):
        open_ = price
        price *= 1 + rng.gauss(0, 0.0008)
        high = max(open_, price) * (1 + rng.random() * 0.0004)
        low = min(open_, price) * (1 - rng.random() * 0.0004)
        rows.append((CANDLE_EXCHANGE, CANDLE_SYMBOL, YEAR_START + timedelta(minutes=m),
                     open_, high, low, price, rng.random() * 10, rng.randrange(1, 200)))
    return rows


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with 10 values, p95 is the slowest run)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def bench_write(url: str, ticks: list) -> tuple[float, float]:
    """(write_ticks rate, plain-COPY baseline rate) in ticks/s, same rows, same batches."""
    import psycopg
    from tradeflow.db.engine import libpq_url
    from tradeflow_candle_builder.adapters.candle_store import CandleStore

    batches = [ticks[i:i + BATCH] for i in range(0, len(ticks), BATCH)]

    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        await conn.execute(_COPY_BASELINE_DDL)
        started = time.perf_counter()
        for batch in batches:
            async with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_BASELINE) as copy:
                copy.set_types(_COPY_TYPES)
                for t in batch:
                    await copy.write_row(
                        (t.exchange, t.symbol, t.trade_id, t.price, t.amount, t.side, t.ts_event, t.ts_recv))
        baseline = len(ticks) / (time.perf_counter() - started)
        await conn.execute("DROP TABLE bench_ticks_copy")

    store = CandleStore(url)
    await store.start()
    try:
        started = time.perf_counter()
        for batch in batches:
            new = await store.write_ticks(batch)
            if new != len(batch):  # a fresh database must take every tick
                raise RuntimeError(f"write_ticks stored {new} of {len(batch)} new ticks")
        rate = len(ticks) / (time.perf_counter() - started)
    finally:
        await store.stop()
    return rate, baseline


async def load_year(url: str, rows: list[tuple]) -> float:
    """COPY the year of 1m candles into candles_1m, then ANALYZE (as autovacuum would); seconds."""
    import psycopg
    from tradeflow.db.engine import libpq_url

    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        async with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_CANDLES_1M) as copy:
            copy.set_types(_CANDLE_TYPES)
            for row in rows:
                await copy.write_row(row)
        await conn.execute("VACUUM ANALYZE candles_1m")
    return time.perf_counter() - started


def baseline_query(mode: str, width: str) -> str:
    """The timeframe's aggregate as a plain GROUP BY over the temp copy (no view, no hypertable)."""
    if mode == "postgres":
        bucket = f"date_bin(INTERVAL '{width}', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00')"
        open_, close = "(array_agg(open ORDER BY ts))[1]", "(array_agg(close ORDER BY ts DESC))[1]"
    else:
        bucket = f"time_bucket(INTERVAL '{width}', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00')"
        open_, close = "first(open, ts)", "last(close, ts)"
    return (
        f"SELECT {bucket} AS b, {open_}, max(high), min(low), {close}, sum(volume), sum(trades) "
        f"FROM bench_year_copy WHERE ts >= %s AND ts < %s GROUP BY b ORDER BY b"
    )


async def bench_reads(url: str, mode: str, runs: int) -> dict[str, dict[str, list[float]]]:
    """Per timeframe: the fetch_candles and baseline durations (ms) of ``runs`` runs each."""
    import psycopg
    from tradeflow.db.engine import libpq_url
    from tradeflow_candle_builder.adapters.candle_store import CandleStore

    results: dict[str, dict[str, list[float]]] = {}
    store = CandleStore(url)
    await store.start()
    try:
        async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
            await conn.execute(
                "CREATE TEMPORARY TABLE bench_year_copy AS SELECT ts, open, high, low, close, volume, trades "
                "FROM candles_1m WHERE exchange = %s AND symbol = %s", (CANDLE_EXCHANGE, CANDLE_SYMBOL))
            await conn.execute("ANALYZE bench_year_copy")
            for timeframe, expected in EXPECTED_ROWS.items():
                fetched, baseline = [], []
                query = baseline_query(mode, TIMEFRAME_WIDTH[timeframe])
                for run in range(runs + 1):  # run 0 warms caches and plans; not counted
                    started = time.perf_counter()
                    candles = await store.fetch_candles(
                        CANDLE_EXCHANGE, CANDLE_SYMBOL, timeframe, YEAR_START, YEAR_END, limit=10_000)
                    elapsed = (time.perf_counter() - started) * 1000
                    if len(candles) != expected:
                        raise RuntimeError(f"{mode} {timeframe}: fetched {len(candles)} candles, expected {expected}")
                    started = time.perf_counter()
                    cursor = await conn.execute(query, (YEAR_START, YEAR_END))
                    rows = await cursor.fetchall()
                    baseline_elapsed = (time.perf_counter() - started) * 1000
                    if len(rows) != expected:
                        raise RuntimeError(f"{mode} {timeframe} baseline: {len(rows)} rows, expected {expected}")
                    if run:
                        fetched.append(elapsed)
                        baseline.append(baseline_elapsed)
                results[timeframe] = {"fetch": fetched, "baseline": baseline}
    finally:
        await store.stop()
    return results


def report_reads(mode_name: str, results: dict[str, dict[str, list[float]]]) -> None:
    for timeframe, runs in results.items():
        fetch, baseline = runs["fetch"], runs["baseline"]
        median, p95 = statistics.median(fetch), percentile(fetch, 0.95)
        prefix = f"candles_fetch_1y_{timeframe}_{mode_name}"
        emit(f"{prefix}_median", median, "ms", statistics.median(baseline))
        emit(f"{prefix}_p95", p95, "ms", percentile(baseline, 0.95))
        met = p95 < READ_TARGET_MS
        emit(f"{prefix}_within_{READ_TARGET_MS:.0f}ms_target", int(met), "bool")
        verdict = "meets" if met else "MISSES"
        log(f"{mode_name} {timeframe} ({EXPECTED_ROWS[timeframe]} candles from 525,600 1m rows): "
            f"median {median:.1f} ms, p95 {p95:.1f} ms; {verdict} the {READ_TARGET_MS:.0f} ms target "
            f"(plain GROUP BY baseline: median {statistics.median(baseline):.1f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=10, help="timed reads per timeframe and mode")
    args = parser.parse_args()

    from tradeflow.db.migrate import upgrade
    from tradeflow.infra import LocalInfra

    ticks = make_ticks(args.ticks)
    year = make_year_of_candles()
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-candles-") as tmp:
        Path(tmp).chmod(0o755)  # the database runs as the postgres user when we are root
        infra = LocalInfra(Path(tmp), kafka_port=free_port(), db_port=free_port())
        try:
            infra.up(kafka=False)  # the database only: LocalInfra stops it by its recorded pid
            databases = []
            main_mode = upgrade(infra.database_url).mode
            databases.append((main_mode, infra.database_url))
            plain_url = infra.create_database("tradeflow_bench_plain")
            databases.append((upgrade(plain_url, use_timescaledb=False).mode, plain_url))
            for mode, url in databases:
                mode_name = mode.replace("-", "_")
                rate, baseline = asyncio.run(bench_write(url, ticks))
                emit(f"candles_write_ticks_{mode_name}", rate, "ticks/s", baseline)
                log(f"{mode}: write_ticks {rate:,.0f} ticks/s (plain COPY into unlogged table {baseline:,.0f}/s; "
                    f"target {WRITE_TARGET_TICKS_PER_S:,}/s: {'met' if rate >= WRITE_TARGET_TICKS_PER_S else 'MISSED'})")
                seconds = asyncio.run(load_year(url, year))
                log(f"{mode}: loaded {len(year):,} 1m candles in {seconds:.1f} s")
                report_reads(mode_name, asyncio.run(bench_reads(url, mode, args.runs)))
        finally:
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
