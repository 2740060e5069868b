"""CandleStore against the real database in every storage mode available here.

The modes come from tests/database_modes.py: the local cluster's TimescaleDB build (Apache here:
hypertables, 5m..1w as maintained tables), plain PostgreSQL (tables only) and the licensed
TimescaleDB (5m..1w as continuous aggregates; PGlite here). Each test writes under its own
exchange name, so tests never see each other's rows.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg_pool import PoolTimeout
from tradeflow.messages import Candle, Tick
from tradeflow_candle_builder.adapters.candle_store import TIMEFRAME_RELATIONS, CandleRow, CandleStore
from tradeflow_candle_builder.adapters.emission_marks import EmissionMarks, ResumePoint
from tradeflow_db.migrate import alembic_config

from tests.database_modes import APACHE, modes_where
from tests.integration.conftest import DATABASE_MODES

NS = 1_000_000_000
MINUTE_NS = 60 * NS
WEEK_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday
TIMEFRAME_WIDTHS = {
    "1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1), "1w": timedelta(days=7),
}


def ns(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def tick(exchange, trade_id, price, ts_event, ts_recv=None, *, symbol="BTC/USDT", amount=1.0, side="buy"):
    return Tick(exchange=exchange, symbol=symbol, trade_id=str(trade_id), price=price, amount=amount,
                side=side, ts_event=ts_event, ts_recv=ts_event if ts_recv is None else ts_recv)


def _tick_rows(url, exchange):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, trade_id, ts, price, amount, side, ts_recv FROM ticks WHERE exchange = %s "
            "ORDER BY symbol, ts, trade_id", (exchange,)).fetchall()


async def test_ping_reports_a_reachable_database(store):
    assert await store.ping() == (True, "database: ok")


async def test_an_unreachable_database_fails_start_and_an_unstarted_store_is_not_ready():
    unreachable = CandleStore("postgresql://nobody@127.0.0.1:9/none", connect_timeout_s=1.0)
    ok, detail = await unreachable.ping()
    assert not ok and "not started" in detail
    with pytest.raises(PoolTimeout):
        await unreachable.start()
    with pytest.raises(RuntimeError, match="not started"):
        await unreachable.write_ticks([tick("x", 1, 1.0, 1)])


async def test_writing_the_same_batch_twice_stores_each_trade_once(store, mode_url, unique_name):
    t0 = ns(datetime(2024, 3, 1, 12, 0, tzinfo=UTC)) + 123_456_789
    batch = [tick(unique_name, i, 100.0 + i, t0 + i * NS, t0 + i * NS + 5_000) for i in range(50)]
    batch.append(tick(unique_name, 0, 100.0, t0, t0 + 5_000))  # a duplicate inside the batch too

    assert await store.write_ticks(batch) == 50
    first = _tick_rows(mode_url, unique_name)
    assert await store.write_ticks(batch) == 0
    assert await store.write_ticks(list(reversed(batch[:10]))) == 0
    assert _tick_rows(mode_url, unique_name) == first
    assert len(first) == 50
    # Stored to the microsecond, in UTC, with every field.
    symbol, trade_id, ts, price, amount, side, ts_recv = first[0]
    assert (symbol, trade_id, price, amount, side) == ("BTC/USDT", "0", 100.0, 1.0, "buy")
    assert ts == datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert ts_recv == ts + timedelta(microseconds=5)
    assert await store.write_ticks([]) == 0


async def test_recompute_takes_open_and_close_by_event_time_then_arrival(store, unique_name):
    minute = ns(datetime(2024, 3, 4, 9, 30, tzinfo=UTC))
    # Written out of order. Two trades share the first event time (arrival decides: 10 then 11)
    # and two share the last one (arrival decides: 13 then 14).
    ticks = [
        tick(unique_name, "c", 12.0, minute + 30 * NS, minute + 31 * NS, amount=0.5),
        tick(unique_name, "e", 14.0, minute + 59 * NS, minute + 61 * NS, amount=0.25),
        tick(unique_name, "b", 11.0, minute + 1 * NS, minute + 3 * NS, amount=2.0),
        tick(unique_name, "a", 10.0, minute + 1 * NS, minute + 2 * NS, amount=1.0),
        tick(unique_name, "d", 13.0, minute + 59 * NS, minute + 60 * NS, amount=0.25),
        tick(unique_name, "next-minute", 99.0, minute + 60 * NS),
        tick(unique_name, "other-symbol", 1.0, minute + 10 * NS, symbol="ETH/USDT"),
    ]
    await store.write_ticks(ticks)

    [candle] = await store.recompute_candles_1m([(unique_name, "BTC/USDT", minute)])
    assert candle == Candle(
        exchange=unique_name, symbol="BTC/USDT", timeframe="1m", ts_start=minute, ts_end=minute + MINUTE_NS,
        open=10.0, high=14.0, low=10.0, close=14.0, volume=4.0, trades=5, revision=0,
    )
    assert await store.fetch_1m(unique_name, "BTC/USDT", minute, minute + MINUTE_NS) == [candle]

    # A late trade for the same minute: the rebuilt candle replaces the old one, revision 1.
    await store.write_ticks([tick(unique_name, "late", 9.0, minute + 5 * NS, minute + 600 * NS)])
    keys = [(unique_name, "BTC/USDT", minute), (unique_name, "BTC/USDT", minute)]  # duplicates collapse
    [corrected] = await store.recompute_candles_1m(keys)
    assert (corrected.low, corrected.trades, corrected.volume, corrected.revision) == (9.0, 6, 5.0, 1)
    assert (corrected.open, corrected.close) == (10.0, 14.0)
    assert await store.fetch_1m(unique_name, "BTC/USDT", minute, minute + MINUTE_NS) == [corrected]
    # Rebuilt again without a new trade (a retried write, a restart): same values, same revision.
    assert await store.recompute_candles_1m(keys) == [corrected]
    assert await store.fetch_1m(unique_name, "BTC/USDT", minute, minute + MINUTE_NS) == [corrected]

    # A minute without trades has no candle.
    assert await store.recompute_candles_1m([(unique_name, "BTC/USDT", minute + 5 * MINUTE_NS)]) == []
    assert await store.recompute_candles_1m([]) == []


async def test_upsert_replaces_the_whole_candle_and_keeps_its_revision(store, unique_name):
    start = ns(datetime(2024, 3, 5, 0, 0, tzinfo=UTC))

    def candle(close, revision, ts_start=start):
        return Candle(exchange=unique_name, symbol="BTC/USDT", timeframe="1m", ts_start=ts_start,
                      ts_end=ts_start + MINUTE_NS, open=1.0, high=5.0, low=0.5, close=close,
                      volume=3.0, trades=7, revision=revision)

    await store.upsert_candles_1m([candle(2.0, 0), candle(3.0, 0, start + MINUTE_NS)])
    await store.upsert_candles_1m([candle(4.0, 2)])
    await store.upsert_candles_1m([candle(4.0, 2)])  # a replay changes nothing
    assert await store.fetch_1m(unique_name, "BTC/USDT", start, start + 2 * MINUTE_NS) == [
        candle(4.0, 2), candle(3.0, 0, start + MINUTE_NS)]
    # Within one call the last state of a bucket wins.
    await store.upsert_candles_1m([candle(6.0, 3), candle(7.0, 4)])
    [latest] = await store.fetch_1m(unique_name, "BTC/USDT", start, start + MINUTE_NS)
    assert (latest.close, latest.revision) == (7.0, 4)

    with pytest.raises(ValueError, match="5m"):
        await store.upsert_candles_1m([Candle(**{**_fields(candle(1.0, 0)), "timeframe": "5m"})])


async def test_a_forming_state_never_makes_a_stored_candle_smaller(store, unique_name):
    start = ns(datetime(2024, 3, 5, 0, 0, tzinfo=UTC))

    def candle(trades, close):
        return Candle(exchange=unique_name, symbol="BTC/USDT", timeframe="1m", ts_start=start,
                      ts_end=start + MINUTE_NS, open=1.0, high=9.0, low=0.5, close=close,
                      volume=float(trades), trades=trades)

    await store.upsert_candles_1m([candle(130, 2.0)])
    # A process that re-reads the minute's trades holds only part of them for a while.
    await store.upsert_candles_1m([candle(49, 3.0)])
    assert await store.fetch_1m(unique_name, "BTC/USDT", start, start + MINUTE_NS) == [candle(130, 2.0)]
    week = await store.fetch_candles(unique_name, "BTC/USDT", "1w", None, None, 1)
    assert [c.trades for c in week] == [130]
    # More trades than stored: the live path, where the state only grows.
    await store.upsert_candles_1m([candle(131, 4.0)])
    assert await store.fetch_1m(unique_name, "BTC/USDT", start, start + MINUTE_NS) == [candle(131, 4.0)]


async def test_emission_marks_only_move_forward_and_come_back_with_the_newest_stored_minute(store, unique_name):
    marks = EmissionMarks(store)
    btc, eth, new = (unique_name, "BTC/USDT"), (unique_name, "ETH/USDT"), (unique_name, "NEW/USDT")
    minute = ns(datetime(2024, 3, 5, 0, 0, tzinfo=UTC))
    await store.upsert_candles_1m([Candle(exchange=unique_name, symbol="BTC/USDT", timeframe="1m", ts_start=m,
                                          ts_end=m + MINUTE_NS, open=1.0, high=1.0, low=1.0, close=1.0, volume=1.0,
                                          trades=1) for m in (minute, minute + 7 * MINUTE_NS)])
    await marks.record({btc: minute + 5 * MINUTE_NS, eth: minute})
    await marks.record({btc: minute + 2 * MINUTE_NS})  # an older mark (a correction) moves nothing
    await marks.record({})
    assert await marks.resume_points([btc, eth, new]) == {
        btc: ResumePoint(newest_1m_start=minute + 7 * MINUTE_NS, emitted_through=minute + 5 * MINUTE_NS),
        eth: ResumePoint(newest_1m_start=None, emitted_through=minute),
        new: ResumePoint(newest_1m_start=None, emitted_through=None)}
    await marks.record({btc: minute + 6 * MINUTE_NS})
    assert (await marks.resume_points([btc]))[btc].emitted_through == minute + 6 * MINUTE_NS
    assert await marks.resume_points([]) == {}


def _fields(candle):
    return {f: getattr(candle, f) for f in candle.__struct_fields__}


# --- higher timeframes: identical in every mode and equal to an independent computation ---------


def _one_minute_candles(exchange):
    """Irregular 1m candles over 2024-01-05 (Fri) .. 2024-01-16 (Tue): two week boundaries.

    Values are multiples of 1/4, so sums are exact and results can be compared with ==.
    """
    rng = random.Random(20240108)
    first = datetime(2024, 1, 5, 0, 0, tzinfo=UTC)
    minutes = sorted(set(rng.sample(range(11 * 24 * 60), 2500)) | {
        # Right at and around the week boundaries and a day boundary.
        int((datetime(2024, 1, 8, tzinfo=UTC) - first).total_seconds() // 60) + d for d in (-1, 0, 1)
    } | {int((datetime(2024, 1, 15, tzinfo=UTC) - first).total_seconds() // 60) - 1})
    candles = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        for m in minutes[:: 1 if symbol == "BTC/USDT" else 3]:
            low = rng.randint(400, 800) / 4
            high = low + rng.randint(0, 40) / 4
            candles.append(Candle(
                exchange=exchange, symbol=symbol, timeframe="1m",
                ts_start=ns(first + timedelta(minutes=m)), ts_end=ns(first + timedelta(minutes=m + 1)),
                open=rng.randint(int(low * 4), int(high * 4)) / 4, high=high, low=low,
                close=rng.randint(int(low * 4), int(high * 4)) / 4,
                volume=rng.randint(1, 400) / 4, trades=rng.randint(1, 50), revision=0,
            ))
    return candles


def _expected(candles, symbol, timeframe):
    """Roll 1m candles up in plain Python: bucket = origin + floor((ts - origin) / width) * width."""
    width = TIMEFRAME_WIDTHS[timeframe]
    buckets = defaultdict(list)
    for c in sorted((c for c in candles if c.symbol == symbol), key=lambda c: c.ts_start):
        ts = datetime.fromtimestamp(c.ts_start / NS, UTC)
        buckets[WEEK_ORIGIN + ((ts - WEEK_ORIGIN) // width) * width].append(c)
    return [
        CandleRow(start, cs[0].open, max(c.high for c in cs), min(c.low for c in cs), cs[-1].close,
                  sum(c.volume for c in cs), sum(c.trades for c in cs))
        for start, cs in sorted(buckets.items())
    ]


@pytest.fixture(scope="module")
def mode_urls(request) -> dict[str, str]:
    """Every available mode's database, by test id."""
    return {mode.id: request.getfixturevalue(mode.fixture) for mode in DATABASE_MODES}


@pytest.fixture(scope="module")
async def rollup_data(mode_urls):
    """The same 1m candles written into every mode's database."""
    exchange = f"rollup-{time.time_ns()}"
    candles = _one_minute_candles(exchange)
    for url in mode_urls.values():
        store = CandleStore(url)
        await store.start()
        try:
            await store.upsert_candles_1m(candles)
        finally:
            await store.stop()
    return exchange, candles


@pytest.mark.parametrize("timeframe", list(TIMEFRAME_RELATIONS))
async def test_every_timeframe_is_identical_in_every_mode_and_matches_python(rollup_data, mode_urls, timeframe):
    exchange, candles = rollup_data
    results = {}
    for mode, url in mode_urls.items():
        store = CandleStore(url)
        await store.start()
        try:
            results[mode] = {s: await store.fetch_candles(exchange, s, timeframe, None, None, 100_000)
                             for s in ("BTC/USDT", "ETH/USDT")}
        finally:
            await store.stop()
    for mode, result in results.items():
        for symbol in ("BTC/USDT", "ETH/USDT"):
            assert result[symbol] == _expected(candles, symbol, timeframe), (mode, symbol)
    if timeframe == "1w":
        for result in results.values():
            starts = [row.ts for row in result["BTC/USDT"]]
            assert starts == [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC),
                              datetime(2024, 1, 15, tzinfo=UTC)]
            assert all(ts.weekday() == 0 for ts in starts)


def test_the_relations_themselves_return_identical_rows_in_every_mode(rollup_data, mode_urls):
    exchange, _ = rollup_data
    for relation in TIMEFRAME_RELATIONS.values():
        query = (f"SELECT exchange, symbol, ts, open, high, low, close, volume, trades FROM {relation} "
                 "WHERE exchange = %s ORDER BY symbol, ts")
        rows = {}
        for mode, url in mode_urls.items():
            with psycopg.connect(url) as conn:
                cursor = conn.execute(query, (exchange,))
                rows[mode] = ([(d.name, d.type_code) for d in cursor.description], cursor.fetchall())
        first = next(iter(rows.values()))
        assert first[1], relation
        assert all(other == first for other in rows.values()), (relation, list(rows))


@pytest.mark.parametrize("source", modes_where(lambda mode: mode == APACHE), ids=lambda m: m.id)
def test_the_continuous_aggregate_definitions_compute_the_same_candles(rollup_data, request, source):
    """The cagg SELECTs, stacked as ordinary views on the Apache build (which refuses caggs),
    must give the same candles as the flat views. (Where the licensed mode runs, the tests above
    also run them as real continuous aggregates.)"""
    exchange, candles = rollup_data
    database_url = request.getfixturevalue(source.fixture)
    migration = ScriptDirectory.from_config(alembic_config(database_url)).get_revision("0001").module
    with psycopg.connect(database_url) as conn:  # one transaction, rolled back at the end
        conn.execute("CREATE SCHEMA cagg_check")
        conn.execute("SET LOCAL search_path TO cagg_check, public")
        for rollup in migration.ROLLUPS:
            select = migration.rollup_select_sql("timescaledb", rollup.width, rollup.parent)
            conn.execute(f"CREATE VIEW cagg_check.{rollup.relation} AS {select}")
        for rollup in migration.ROLLUPS:
            timeframe = next(tf for tf, rel in TIMEFRAME_RELATIONS.items() if rel == rollup.relation)
            for symbol in ("BTC/USDT", "ETH/USDT"):
                rows = conn.execute(
                    f"SELECT ts, open, high, low, close, volume, trades FROM cagg_check.{rollup.relation} "
                    "WHERE exchange = %s AND symbol = %s ORDER BY ts", (exchange, symbol)).fetchall()
                assert [CandleRow(*r) for r in rows] == _expected(candles, symbol, timeframe), rollup.relation
        conn.rollback()


# --- reading ------------------------------------------------------------------------------------


async def test_fetch_bounds_are_inclusive_start_exclusive_end_with_limit(store, unique_name):
    start = datetime(2024, 2, 1, 10, 0, tzinfo=UTC)
    candles = [
        Candle(exchange=unique_name, symbol="BTC/USDT", timeframe="1m", ts_start=ns(start + timedelta(minutes=m)),
               ts_end=ns(start + timedelta(minutes=m + 1)), open=m, high=m + 1, low=m - 1, close=m,
               volume=1.0, trades=1)
        for m in range(1, 21)  # 10:01 .. 10:20
    ]
    await store.upsert_candles_1m(candles)

    def minutes(rows):
        return [int((row.ts - start).total_seconds() // 60) for row in rows]

    at = start.__add__
    assert minutes(await store.fetch_candles(unique_name, "BTC/USDT", "1m", at(timedelta(minutes=5)),
                                             at(timedelta(minutes=8)), 100)) == [5, 6, 7]
    assert minutes(await store.fetch_candles(unique_name, "BTC/USDT", "1m", at(timedelta(minutes=5)),
                                             None, 2)) == [5, 6]
    # Without a start: the latest candles before end, still in time order.
    assert minutes(await store.fetch_candles(unique_name, "BTC/USDT", "1m", None, None, 3)) == [18, 19, 20]
    assert minutes(await store.fetch_candles(unique_name, "BTC/USDT", "1m", None,
                                             at(timedelta(minutes=10)), 2)) == [8, 9]
    # 5m buckets: 10:00 (minutes 1-4), 10:05, 10:10, 10:15, 10:20 (minute 20 alone).
    five = await store.fetch_candles(unique_name, "BTC/USDT", "5m", at(timedelta(minutes=5)),
                                     at(timedelta(minutes=20)), 100)
    assert minutes(five) == [5, 10, 15]
    assert five[0] == CandleRow(at(timedelta(minutes=5)), 5.0, 10.0, 4.0, 9.0, 5.0, 5)
    assert five[0].ts.tzinfo is not None and five[0].ts.utcoffset() == timedelta(0)
    # A naive datetime is taken as UTC.
    naive = await store.fetch_candles(unique_name, "BTC/USDT", "5m", at(timedelta(minutes=5)).replace(tzinfo=None),
                                      at(timedelta(minutes=20)).replace(tzinfo=None), 100)
    assert naive == five

    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        await store.fetch_candles(unique_name, "BTC/USDT", "2m", None, None, 10)
    with pytest.raises(ValueError, match="limit"):
        await store.fetch_candles(unique_name, "BTC/USDT", "1m", None, None, 0)


# --- throughput (measured and printed, not asserted: the box is shared) --------------------------


async def test_write_rate_of_200k_ticks_in_batches_of_5000(database_url, unique_name, capsys):
    store = CandleStore(database_url)
    await store.start()
    try:
        t0 = ns(datetime(2024, 4, 1, tzinfo=UTC))
        ticks = [tick(unique_name, i, 100.0 + i % 17, t0 + i * 3_000_000, symbol=f"S{i % 20}/USDT", amount=0.5)
                 for i in range(200_000)]
        started = time.perf_counter()
        written = 0
        for i in range(0, len(ticks), 5_000):
            written += await store.write_ticks(ticks[i:i + 5_000])
        elapsed = time.perf_counter() - started
    finally:
        await store.stop()
    assert written == 200_000
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ticks WHERE exchange = %s", (unique_name,)).fetchone() == (200_000,)
    with capsys.disabled():
        print(f"\n[candle_store] wrote 200,000 ticks in batches of 5,000 in {elapsed:.2f}s: "
              f"{200_000 / elapsed:,.0f} ticks/s")
