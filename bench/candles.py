"""Candle storage: the candle-builder's write rate, and one-year chart reads.

On a private PostgreSQL cluster (tradeflow_ops.infra.LocalInfra in a temp dir, free loopback port),
in two databases of the same cluster — the TimescaleDB schema (the Apache build here: hypertables,
5m..1w as tables maintained by CandleStore) and the plain-PostgreSQL schema
(``upgrade(url, use_timescaledb=False)``) — this script measures, in this order:

1. Loading one year of 1m candles of one symbol (525,600 rows COPYed into candles_1m, as a
   bulk import would) and ``CandleStore.refresh_higher_timeframes`` over that year (seconds):
   the rebuild a backfill triggers. Everything after runs with that year in the database.
2. The write path with batches of 20,000 ticks, 400,000 ticks in all (ticks/s):
   ``candles_write_ticks``: ``CandleStore.write_ticks`` alone; ``candles_write_path``: what the
   candle-builder's writer does per batch, ``write_ticks`` and ``upsert_candles_1m`` of the
   batch's 1m candles together (the upsert re-aggregates the touched 5m..1w buckets in its
   transaction). Baseline, same run, same rows: a plain binary ``COPY`` of each batch into an
   unindexed UNLOGGED table. Target: >= 100,000 ticks/s.
3. ``CandleStore.fetch_candles`` of the year as 1h (8,760 candles) and as 1d (365 candles):
   median and p95 (nearest rank, so with 10 runs the slowest) in ms. Baseline, same run: the
   same aggregate as a plain ``GROUP BY`` over a temporary copy of the year's rows. Target:
   < 200 ms. A read that misses it is reported as such (a ``..._within_target`` line with
   value 0, and a note on stderr); the figure is the finding.

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


def make_ticks(n: int, exchange: str, symbols: int = 20) -> list:
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
        ticks.append(Tick(exchange=exchange, symbol=f"S{s:02d}/USDT", trade_id=str(i), price=prices[s],
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


def minute_candles_per_batch(batches: list[list]) -> list[list]:
    """Per batch, the state after it of every 1m candle it touched (what the pipeline upserts)."""
    from tradeflow.messages import Candle

    state: dict[tuple[str, str, int], list] = {}
    per_batch = []
    for batch in batches:
        touched = set()
        for t in batch:  # ticks are in event-time order per symbol
            key = (t.exchange, t.symbol, t.ts_event - t.ts_event % MINUTE_NS)
            c = state.get(key)
            if c is None:
                state[key] = [t.price, t.price, t.price, t.price, t.amount, 1]
            else:
                c[1], c[2], c[3], c[4], c[5] = max(c[1], t.price), min(c[2], t.price), t.price, c[4] + t.amount, c[5] + 1
            touched.add(key)
        per_batch.append([
            Candle(exchange=e, symbol=s, timeframe="1m", ts_start=m, ts_end=m + MINUTE_NS, open=state[(e, s, m)][0],
                   high=state[(e, s, m)][1], low=state[(e, s, m)][2], close=state[(e, s, m)][3],
                   volume=state[(e, s, m)][4], trades=state[(e, s, m)][5])
            for e, s, m in sorted(touched)])
    return per_batch


async def bench_write(url: str, ticks: list, path_ticks: list) -> tuple[float, float, float]:
    """(write_ticks rate, whole write path rate, plain-COPY baseline rate) in ticks/s.

    ``path_ticks`` are the same trades under another exchange name (a fresh set of rows).
    """
    import psycopg
    from tradeflow_candle_builder.adapters.candle_store import CandleStore
    from tradeflow_db.engine import libpq_url

    batches = [ticks[i:i + BATCH] for i in range(0, len(ticks), BATCH)]
    path_batches = [path_ticks[i:i + BATCH] for i in range(0, len(path_ticks), BATCH)]
    path_candles = minute_candles_per_batch(path_batches)

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
        # As the candle-builder's StoreWriter does it: both writes of a batch overlap.
        started = time.perf_counter()
        for batch, candles in zip(path_batches, path_candles, strict=True):
            new, _ = await asyncio.gather(store.write_ticks(batch), store.upsert_candles_1m(candles))
            if new != len(batch):
                raise RuntimeError(f"write_ticks stored {new} of {len(batch)} new ticks")
        path_rate = len(path_ticks) / (time.perf_counter() - started)
    finally:
        await store.stop()
    return rate, path_rate, baseline


async def load_year(url: str, rows: list[tuple]) -> tuple[float, float]:
    """COPY the year of 1m candles into candles_1m, then ANALYZE (as autovacuum would), then
    rebuild the higher timeframes over the year; (load seconds, rebuild seconds)."""
    import psycopg
    from tradeflow.time import datetime_to_ns
    from tradeflow_candle_builder.adapters.candle_store import CandleStore
    from tradeflow_db.engine import libpq_url

    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        async with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_CANDLES_1M) as copy:
            copy.set_types(_CANDLE_TYPES)
            for row in rows:
                await copy.write_row(row)
        await conn.execute("VACUUM ANALYZE candles_1m")
    loaded = time.perf_counter() - started
    store = CandleStore(url)
    await store.start()
    try:
        started = time.perf_counter()
        await store.refresh_higher_timeframes(
            CANDLE_EXCHANGE, CANDLE_SYMBOL, datetime_to_ns(YEAR_START), datetime_to_ns(YEAR_END))
        rebuilt = time.perf_counter() - started
    finally:
        await store.stop()
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        for relation in ("candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d", "candles_1w"):
            if (await (await conn.execute("SELECT relkind FROM pg_class WHERE relname = %s", (relation,))).fetchone()
                    == ("r",)):
                await conn.execute(f"VACUUM ANALYZE {relation}")
    return loaded, rebuilt


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
    from tradeflow_candle_builder.adapters.candle_store import CandleStore
    from tradeflow_db.engine import libpq_url

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

    from tradeflow_db.migrate import upgrade
    from tradeflow_ops.infra import LocalInfra

    ticks = make_ticks(args.ticks, "bench-ticks")
    path_ticks = make_ticks(args.ticks, "bench-path")
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
                loaded, rebuilt = asyncio.run(load_year(url, year))
                log(f"{mode}: loaded {len(year):,} 1m candles in {loaded:.1f} s; "
                    f"refresh_higher_timeframes over the year in {rebuilt:.1f} s")
                emit(f"candles_refresh_higher_1y_{mode_name}", rebuilt, "s")
                rate, path_rate, baseline = asyncio.run(bench_write(url, ticks, path_ticks))
                emit(f"candles_write_ticks_{mode_name}", rate, "ticks/s", baseline)
                emit(f"candles_write_path_{mode_name}", path_rate, "ticks/s", baseline)
                met = path_rate >= WRITE_TARGET_TICKS_PER_S
                log(f"{mode}: write_ticks {rate:,.0f} ticks/s; write path (ticks + 1m candles + higher timeframes) "
                    f"{path_rate:,.0f} ticks/s (plain COPY into unlogged table {baseline:,.0f}/s; "
                    f"target {WRITE_TARGET_TICKS_PER_S:,}/s: {'met' if met else 'MISSED'})")
                report_reads(mode_name, asyncio.run(bench_reads(url, mode, args.runs)))
        finally:
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
