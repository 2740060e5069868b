"""Higher timeframes stay equal to candles_1m after every kind of write, in every mode here.

Where candles_5m .. candles_1w are tables (``timescaledb-apache``, ``postgres``) CandleStore keeps
them current in the transaction that changes candles_1m; where they are continuous aggregates
(``timescaledb``) it refreshes what the write left stale before returning (docs/adr/0011; the
licensed-only cases are in test_db_continuous_aggregates.py). After every kind of change (live
upserts in batches, late corrections recomputed from ticks, a backfill written past the store
plus ``refresh_higher_timeframes``) each timeframe must equal an independent roll-up of what
candles_1m holds, computed here in plain Python. And the tables' refresh must read each affected
bucket by an index range, also with a year of 1m rows in the database (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from tradeflow.messages import Candle, Tick
from tradeflow_candle_builder.adapters.candle_store import TIMEFRAME_RELATIONS, CandleRow, CandleStore
from tradeflow_candle_builder.adapters.higher_timeframes import LEVELS, refresh_statements
from tradeflow_db.migrate import upgrade

from tests.integration.conftest import TABLE_MODES

NS = 1_000_000_000
MINUTE_NS = 60 * NS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEK_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday
WIDTHS = {
    "5m": timedelta(minutes=5), "15m": timedelta(minutes=15), "1h": timedelta(hours=1),
    "4h": timedelta(hours=4), "1d": timedelta(days=1), "1w": timedelta(days=7),
}
HIGHER = list(WIDTHS)


def ns(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1) * 1000


def stored_1m(url: str, exchange: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, ts, open, high, low, close, volume, trades FROM candles_1m WHERE exchange = %s "
            "ORDER BY symbol, ts", (exchange,)).fetchall()


def python_rollup(rows_1m: list[tuple], symbol: str, timeframe: str) -> list[CandleRow]:
    """Independent roll-up: bucket = origin + floor((ts - origin) / width) * width."""
    width = WIDTHS[timeframe]
    buckets = defaultdict(list)
    for sym, ts, *values in rows_1m:  # ordered by ts
        if sym == symbol:
            buckets[WEEK_ORIGIN + ((ts - WEEK_ORIGIN) // width) * width].append(values)
    return [CandleRow(start, vs[0][0], max(v[1] for v in vs), min(v[2] for v in vs), vs[-1][3],
                      sum(v[4] for v in vs), sum(v[5] for v in vs))
            for start, vs in sorted(buckets.items())]


async def timeframes_unlike_candles_1m(store: CandleStore, url: str, exchange: str, symbols) -> list[tuple]:
    """(symbol, timeframe, first differing bucket) of every higher timeframe whose served candles
    differ from the roll-up of candles_1m. A short answer on purpose: pytest's diff of two long
    candle lists (in full when CI is set) took longer than the test's timeout."""
    rows_1m = await asyncio.to_thread(stored_1m, url, exchange)  # a blocking read off the session's loop
    assert rows_1m
    unlike = []
    for symbol in symbols:
        for timeframe in HIGHER:
            served = await store.fetch_candles(exchange, symbol, timeframe, None, None, 100_000)
            expected = python_rollup(rows_1m, symbol, timeframe)
            if served != expected:
                first = next((e for s, e in zip(served, expected, strict=False) if s != e),
                             f"{len(served)} served, {len(expected)} expected")
                unlike.append((symbol, timeframe, first))
    return unlike


async def assert_every_timeframe_matches_candles_1m(store: CandleStore, url: str, exchange: str, symbols) -> None:
    assert await timeframes_unlike_candles_1m(store, url, exchange, symbols) == []


def quarter_candles(exchange: str, symbol: str, start: datetime, minutes: list[int], seed: int) -> list[Candle]:
    """1m candles at ``start + m`` for m in minutes; values are multiples of 1/4 (exact sums)."""
    rng = random.Random(seed)
    candles = []
    for m in minutes:
        low = rng.randint(400, 800) / 4
        high = low + rng.randint(0, 40) / 4
        ts = ns(start + timedelta(minutes=m))
        candles.append(Candle(
            exchange=exchange, symbol=symbol, timeframe="1m", ts_start=ts, ts_end=ts + MINUTE_NS,
            open=rng.randint(int(low * 4), int(high * 4)) / 4, high=high, low=low,
            close=rng.randint(int(low * 4), int(high * 4)) / 4, volume=rng.randint(1, 400) / 4,
            trades=rng.randint(1, 50)))
    return candles


# Sunday 2024-01-07 20:00 UTC: 5,000 minutes reach into Thursday and cross a week boundary
# (Monday 00:00) and several day boundaries.
START = datetime(2024, 1, 7, 20, 0, tzinfo=UTC)


async def test_live_batches_keep_every_timeframe_equal_to_a_roll_up_of_candles_1m(store, mode_url, unique_name):
    symbols = ("BTC/USDT", "ETH/USDT")
    rng = random.Random(5)
    minutes = sorted(rng.sample(range(5_000), 2_000))
    candles = [c for i, s in enumerate(symbols) for c in quarter_candles(unique_name, s, START, minutes, seed=i)]
    candles.sort(key=lambda c: c.ts_start)
    # Like the pipeline: batches in time order, each also rewriting the still-forming last
    # minute of the previous batch with a new state.
    previous_last = []
    for i in range(0, len(candles), 300):
        batch = candles[i:i + 300]
        reshaped = [Candle(**{**{f: getattr(c, f) for f in c.__struct_fields__}, "close": c.close + 0.25,
                              "high": c.high + 0.25}) for c in previous_last]
        await store.upsert_candles_1m(reshaped + batch)
        previous_last = batch[-2:]
    await assert_every_timeframe_matches_candles_1m(store, mode_url, unique_name, symbols)

    # A replayed batch changes nothing.
    await store.upsert_candles_1m(candles[:300])
    await assert_every_timeframe_matches_candles_1m(store, mode_url, unique_name, symbols)
    # A corrected old minute (the first of the week before) reaches every level up to 1w.
    first = candles[0]
    fixed = Candle(**{**{f: getattr(first, f) for f in first.__struct_fields__},
                      "open": 1.0, "low": 0.5, "volume": 1000.0, "revision": 3})
    await store.upsert_candles_1m([fixed])
    week = await store.fetch_candles(unique_name, first.symbol, "1w", None, None, 10)
    assert (week[0].open, week[0].low) == (1.0, 0.5)
    await assert_every_timeframe_matches_candles_1m(store, mode_url, unique_name, symbols)


def tick(exchange: str, trade_id: str, price: float, ts_event: int, amount: float = 0.5) -> Tick:
    return Tick(exchange=exchange, symbol="BTC/USDT", trade_id=trade_id, price=price, amount=amount,
                side="buy", ts_event=ts_event, ts_recv=ts_event)


async def test_late_corrections_recomputed_from_ticks_reach_every_timeframe(store, mode_url, unique_name):
    monday = ns(datetime(2024, 1, 8, tzinfo=UTC))
    ticks = [tick(unique_name, f"t{i}", 100.0 + (i % 7) / 4, monday + i * 7 * NS) for i in range(3_000)]
    await store.write_ticks(ticks)
    minutes = sorted({t.ts_event - t.ts_event % MINUTE_NS for t in ticks})
    await store.recompute_candles_1m([(unique_name, "BTC/USDT", m) for m in minutes])
    await assert_every_timeframe_matches_candles_1m(store, mode_url, unique_name, ["BTC/USDT"])
    before = await store.fetch_candles(unique_name, "BTC/USDT", "1d", None, None, 10)

    # Late trades for a minute of the first hour and one of the last: new low and high.
    late = [tick(unique_name, "late-low", 1.0, monday + 90 * NS, amount=2.0),
            tick(unique_name, "late-high", 999.0, ticks[-1].ts_event - 1, amount=2.0)]
    await store.write_ticks(late)
    corrected = await store.recompute_candles_1m(
        [(t.exchange, t.symbol, t.ts_event - t.ts_event % MINUTE_NS) for t in late])
    assert [c.revision for c in corrected] == [1, 1]
    await assert_every_timeframe_matches_candles_1m(store, mode_url, unique_name, ["BTC/USDT"])
    [day] = await store.fetch_candles(unique_name, "BTC/USDT", "1d", None, None, 10)
    assert (day.low, day.high, day.trades, day.volume) == (1.0, 999.0, before[0].trades + 2, before[0].volume + 4.0)


async def test_refresh_higher_timeframes_rebuilds_a_range_written_past_the_store(store, mode_url, unique_name):
    await store.upsert_candles_1m(quarter_candles(unique_name, "BTC/USDT", START, list(range(0, 5_000, 3)), seed=1))
    # Materialized (continuous aggregates) or rebuilt (tables): either way what is stored now.
    await store.refresh_higher_timeframes(unique_name, "BTC/USDT", ns(START), ns(START + timedelta(days=4)))
    await assert_every_timeframe_matches_candles_1m(store, mode_url, unique_name, ["BTC/USDT"])
    # A backfill writes 1m rows of two days straight into candles_1m (and replaces some):
    # the tables (and the materialized buckets) cannot know until refresh_higher_timeframes is
    # called for the range.
    backfill = quarter_candles(unique_name, "BTC/USDT", START + timedelta(days=1), list(range(0, 2 * 1440)), seed=2)

    def write_past_the_store() -> None:  # in a thread: blocking calls must not stop the session's loop
        with psycopg.connect(mode_url) as conn:
            conn.execute("DELETE FROM candles_1m WHERE exchange = %s AND ts >= %s AND ts < %s",
                         (unique_name, START + timedelta(days=1), START + timedelta(days=3)))
            with conn.cursor().copy("COPY candles_1m (exchange, symbol, ts, open, high, low, close, volume, "
                                    "trades) FROM STDIN") as copy:
                for c in backfill:
                    copy.write_row((c.exchange, c.symbol, EPOCH + timedelta(microseconds=c.ts_start // 1000),
                                    c.open, c.high, c.low, c.close, c.volume, c.trades))
            # And removes an hour of bad data entirely: its buckets must disappear.
            conn.execute("DELETE FROM candles_1m WHERE exchange = %s AND ts >= %s AND ts < %s",
                         (unique_name, START + timedelta(days=2, hours=5), START + timedelta(days=2, hours=6)))

    await asyncio.to_thread(write_past_the_store)
    assert await timeframes_unlike_candles_1m(store, mode_url, unique_name, ["BTC/USDT"])  # stale until refreshed

    await store.refresh_higher_timeframes(
        unique_name, "BTC/USDT", ns(START + timedelta(days=1)), ns(START + timedelta(days=3)))
    await assert_every_timeframe_matches_candles_1m(store, mode_url, unique_name, ["BTC/USDT"])
    gone = START + timedelta(days=2, hours=5)
    assert await store.fetch_candles(unique_name, "BTC/USDT", "1h", gone, gone + timedelta(hours=1), 5) == []
    # An empty range is nothing to do.
    await store.refresh_higher_timeframes(unique_name, "BTC/USDT", ns(START), ns(START))


async def test_the_tables_serve_exactly_what_the_views_computed(store, mode_url, unique_name):
    """Same results as revision 0001's views: compare with the view definition run ad hoc."""
    candles = quarter_candles(unique_name, "BTC/USDT", START, list(range(0, 5_000, 2)), seed=9)
    await store.upsert_candles_1m(candles)
    with psycopg.connect(mode_url) as conn:
        mode = conn.execute("SELECT storage_mode FROM tradeflow_schema_info").fetchone()[0]
    bucket_fn = "date_bin" if mode == "postgres" else "time_bucket"
    open_, close = (("(array_agg(open ORDER BY ts))[1]", "(array_agg(close ORDER BY ts DESC))[1]")
                    if mode == "postgres" else ("first(open, ts)", "last(close, ts)"))
    for timeframe, width in WIDTHS.items():
        bucket = f"{bucket_fn}(INTERVAL '{width.total_seconds():.0f} seconds', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00')"
        with psycopg.connect(mode_url) as conn:
            view_rows = conn.execute(
                f"SELECT {bucket} AS b, {open_}, max(high), min(low), {close}, sum(volume), sum(trades::integer) "
                "FROM candles_1m WHERE exchange = %s GROUP BY b ORDER BY b", (unique_name,)).fetchall()
        served = await store.fetch_candles(unique_name, "BTC/USDT", timeframe, None, None, 100_000)
        assert served == [CandleRow(*row) for row in view_rows], timeframe


# --- the plan: index ranges, also with a year of 1m rows ------------------------------------------


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


# The local cluster's modes with maintained tables: migrated with TimescaleDB (when its build is
# the Apache one) and without.
YEAR_MODES = [m for m in TABLE_MODES if m.fixture in ("database_url", "plain_postgres_url")]


@pytest.fixture(params=[m.fixture == "database_url" for m in YEAR_MODES], ids=[m.id for m in YEAR_MODES],
                scope="module")
def year_database_url(request, database_url: str) -> Iterator[str]:
    """A fresh migrated database holding one year of 1m candles of one symbol (525,600 rows)
    plus the higher tables rebuilt over it."""
    name = f"year_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(database_url, name)
    try:
        upgrade(url, use_timescaledb=request.param)
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO candles_1m (exchange, symbol, ts, open, high, low, close, volume, trades) "
                "SELECT 'year', 'BTC/USDT', ts, 100, 101, 99, 100.5, 1, 1 "
                "FROM generate_series(TIMESTAMPTZ '2025-01-01', TIMESTAMPTZ '2025-12-31 23:59', INTERVAL '1 minute') ts")
            for level in LEVELS:
                conn.execute(refresh_statements_sql_for_year(level))
        with psycopg.connect(url, autocommit=True) as conn:
            for relation in TIMEFRAME_RELATIONS.values():
                conn.execute(f"VACUUM ANALYZE {relation}")
        yield url
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def refresh_statements_sql_for_year(level) -> str:
    """Fill one level for the whole year in one GROUP BY (fixture set-up, not under test)."""
    width = f"INTERVAL '{level.timeframe.length_ns // MINUTE_NS} minutes'"
    bucket = f"date_bin({width}, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00')"
    return (f"INSERT INTO {level.relation} SELECT exchange, symbol, {bucket}, (array_agg(open ORDER BY ts))[1], "
            f"max(high), min(low), (array_agg(close ORDER BY ts DESC))[1], sum(volume), sum(trades)::int8 "
            f"FROM {level.parent} GROUP BY exchange, symbol, {bucket}")


def _plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_the_per_batch_refresh_reads_each_bucket_by_an_index_range(year_database_url):
    # The pipeline's typical batch: two adjacent minutes at the end of the year, and a late
    # correction in a minute of March.
    minutes = [ns(datetime(2025, 12, 31, 23, 58, tzinfo=UTC)), ns(datetime(2025, 12, 31, 23, 59, tzinfo=UTC)),
               ns(datetime(2025, 3, 3, 10, 7, tzinfo=UTC))]
    statements = refresh_statements([("year", "BTC/USDT", m) for m in minutes])
    assert len(statements) == len(LEVELS)
    # Rows each level must read from its parent: the 5m level 2 x 5 minutes, 15m 2 x 3 5m
    # rows, 1h 2 x 4, 4h 2 x 4 hours, 1d 2 x 24 hours, 1w 7 days of each of the 2 weeks
    # (the year's last week ends with Wednesday 31 December: 3 days).
    expected_parent_rows = {"candles_5m": 10, "candles_15m": 6, "candles_1h": 8, "candles_4h": 8,
                            "candles_1d": 48, "candles_1w": 7 + 3}
    with psycopg.connect(year_database_url) as conn:  # one transaction, rolled back
        for level, (query, params) in zip(LEVELS, statements, strict=True):
            [[explained]] = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchall()
            nodes = list(_plan_nodes(explained[0]["Plan"]))
            # Table scans: the parent (or, for a hypertable, its chunks under TimescaleDB's
            # ChunkAppend, which excludes the chunks outside each run at run time).
            scans = [n for n in nodes if n["Node Type"].endswith("Scan")
                     and n["Node Type"] not in ("Function Scan", "Custom Scan")]
            shape = [(n["Node Type"], n.get("Relation Name"), n.get("Index Cond")) for n in scans]
            assert scans and not any(n["Node Type"] == "Seq Scan" for n in scans), shape
            probes = [n for n in scans if "Index Cond" in n]  # index scans, bitmap index scans
            assert probes and all(">= r.lo" in n["Index Cond"] and "< r.hi" in n["Index Cond"] for n in probes), shape
            read = sum(n["Actual Rows"] * n["Actual Loops"] for n in scans
                       if n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"))
            assert read == expected_parent_rows[level.relation], (level.relation, read)
        conn.rollback()


async def test_a_year_rebuilt_by_refresh_higher_timeframes_matches_the_roll_up(year_database_url):
    store = CandleStore(year_database_url)
    await store.start()
    try:
        with psycopg.connect(year_database_url) as conn:
            conn.execute("UPDATE candles_1m SET high = 150 WHERE ts = '2025-06-30 23:59+00'")  # past the store
        await store.refresh_higher_timeframes(
            "year", "BTC/USDT", ns(datetime(2025, 1, 1, tzinfo=UTC)), ns(datetime(2026, 1, 1, tzinfo=UTC)))
        days = await store.fetch_candles("year", "BTC/USDT", "1d", None, None, 1_000)
        hours = await store.fetch_candles("year", "BTC/USDT", "1h", None, None, 10_000)
        weeks = await store.fetch_candles("year", "BTC/USDT", "1w", None, None, 100)
    finally:
        await store.stop()
    assert len(days) == 365 and len(hours) == 8_760 and len(weeks) == 53
    assert [d.high for d in days if d.high != 101] == [150]
    assert days[0] == CandleRow(datetime(2025, 1, 1, tzinfo=UTC), 100, 101, 99, 100.5, 1440, 1440)
    # 2024-12-30 (Monday) starts the first week; the year holds its last 5 days.
    assert weeks[0] == CandleRow(datetime(2024, 12, 30, tzinfo=UTC), 100, 101, 99, 100.5, 5 * 1440, 5 * 1440)
