"""Licensed mode: the continuous aggregates candles_5m .. candles_1w stay right after every write.

Runs against a licensed TimescaleDB of its own (``fresh_licensed_url``: PGlite + TimescaleDB
here, docs/adr/0011), whose aggregates nothing has materialized when the module starts. Each test
puts the watermarks where its case needs them (through the store, or with the refresh calls a
policy would make) and checks them, so the case it claims is the case that ran. Policies never
run by themselves here (PGlite has no background worker).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from tradeflow.messages import Candle
from tradeflow_candle_builder.adapters.continuous_aggregates import (
    RELATIONS,
    WATERMARKS_SQL,
    ContinuousAggregateRefresher,
    watermark_ns,
)
from tradeflow_candle_builder.aggregate_catch_up import AggregateCatchUp
from tradeflow_candle_builder.domain.timeframes import TIMEFRAMES, datetime_to_ns

from tests.integration.conftest import started_store
from tests.integration.test_db_higher_timeframes import (
    MINUTE_NS,
    NS,
    assert_every_timeframe_matches_candles_1m,
    quarter_candles,
    tick,
)

LEVEL_TIMEFRAMES = {"candles_5m": "5m", "candles_15m": "15m", "candles_1h": "1h", "candles_4h": "4h",
                    "candles_1d": "1d", "candles_1w": "1w"}


def ns(moment: datetime) -> int:
    return datetime_to_ns(moment)


def watermarks(url: str) -> dict[str, int | None]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(WATERMARKS_SQL, (list(RELATIONS),)).fetchall()
    return {relation: watermark_ns(us) for relation, us, _ in rows}


def database_now_ns(url: str) -> int:
    with psycopg.connect(url) as conn:
        return ns(conn.execute("SELECT now()").fetchone()[0])


@pytest.fixture
async def store(fresh_licensed_url):
    async with started_store(fresh_licensed_url) as candle_store:
        yield candle_store


async def test_a_refresh_of_part_of_the_history_hides_no_unmaterialised_bucket(store, fresh_licensed_url,
                                                                                unique_name):
    # Two days a day apart, written through the store while nothing is materialized: real-time.
    day1, day3 = datetime(2025, 6, 2, tzinfo=UTC), datetime(2025, 6, 4, tzinfo=UTC)
    for day, seed in ((day1, 1), (day3, 2)):
        await store.upsert_candles_1m(quarter_candles(unique_name, "BTC/USDT", day, list(range(0, 1440, 7)), seed))
    assert all(w is None or w <= ns(day1) for w in watermarks(fresh_licensed_url).values())
    await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])

    # A backfill of day 3 only. Refreshing just that range would move every watermark past day 1
    # with day 1 never materialized: day 1 would vanish from every higher timeframe.
    await store.refresh_higher_timeframes(unique_name, "BTC/USDT", ns(day3), ns(day3 + timedelta(days=1)))
    marks = watermarks(fresh_licensed_url)
    assert all(marks[r] is not None and marks[r] >= ns(day3 + timedelta(days=1)) for r in RELATIONS
               if r != "candles_1w"), marks  # (the week of day 3 ends in 2025-06-09, after it)
    await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])


async def test_a_late_trade_below_every_watermark_reaches_every_level_when_the_write_returns(
        store, fresh_licensed_url, unique_name):
    """Issue 10's case: a trade days late, older than every refresh policy's window, is the
    first trade of its week. When recompute_candles_1m returns, every level includes it."""
    monday = datetime(2026, 3, 9, tzinfo=UTC)
    ticks = [tick(unique_name, f"t{i}", 39_969.75 + i % 9, ns(monday + timedelta(hours=10)) + i * 97 * NS)
             for i in range(2_501)]
    await store.write_ticks(ticks)
    minutes = sorted({t.ts_event - t.ts_event % MINUTE_NS for t in ticks})
    await store.recompute_candles_1m([(unique_name, "BTC/USDT", m) for m in minutes])
    # Materialized as the policies (or a backfill) leave it: the whole week lies below every watermark.
    await store.refresh_higher_timeframes(unique_name, "BTC/USDT", ns(monday), ns(monday + timedelta(days=7)))
    late_minute = ns(monday + timedelta(minutes=3))
    assert all(w is not None and w > late_minute for w in watermarks(fresh_licensed_url).values())
    week_before = (await store.fetch_candles(unique_name, "BTC/USDT", "1w", monday, None, 1))[0]
    assert (week_before.open, week_before.trades) == (39_969.75, 2_501)

    late = tick(unique_name, "late", 123.0, late_minute + 5 * NS, amount=2.0)
    await store.write_ticks([late])
    [corrected] = await store.recompute_candles_1m([(unique_name, "BTC/USDT", late_minute)])
    assert corrected.revision == 0  # a minute of its own, new
    for timeframe in ("5m", "15m", "1h", "4h", "1d", "1w"):
        [first] = await store.fetch_candles(unique_name, "BTC/USDT", timeframe, monday, None, 1)
        assert first.ts == monday and first.open == 123.0 and first.low == 123.0, timeframe
    week = (await store.fetch_candles(unique_name, "BTC/USDT", "1w", monday, None, 1))[0]
    assert (week.open, week.trades, week.volume) == (123.0, 2_502, week_before.volume + 2.0)
    await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])


async def test_a_burst_of_late_trades_is_refreshed_with_one_window_per_level(store, fresh_licensed_url, unique_name):
    start = datetime(2026, 2, 2, 8, tzinfo=UTC)  # a Monday
    candles = quarter_candles(unique_name, "BTC/USDT", start, list(range(0, 600)), seed=3)
    await store.upsert_candles_1m(candles)
    await store.refresh_higher_timeframes(unique_name, "BTC/USDT", ns(start), ns(start + timedelta(days=1)))
    assert all(w is not None and w >= ns(start + timedelta(days=1)) for w in watermarks(fresh_licensed_url).values())

    # 120 late trades over 40 consecutive minutes, written and recomputed as one writer job.
    late = [tick(unique_name, f"late{i}", 1.0 + i, ns(start + timedelta(minutes=100)) + i * 20 * NS)
            for i in range(120)]
    await store.write_ticks(late)
    late_minutes = sorted({t.ts_event - t.ts_event % MINUTE_NS for t in late})
    assert len(late_minutes) == 40
    rebuilt = await store.recompute_candles_1m([(unique_name, "BTC/USDT", m) for m in late_minutes])
    assert [c.revision for c in rebuilt] == [1] * 40
    await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])
    # What the store ran for them: one refresh per level, 5m first and 1w last.
    async with store.connection() as conn:
        plan = await ContinuousAggregateRefresher().after_minutes_changed(conn, late_minutes)
    assert [w.relation for w in plan] == list(RELATIONS)
    five = TIMEFRAMES["5m"]
    assert (plan[0].start_ns, plan[0].end_ns) == (five.bucket_start(late_minutes[0]),
                                                  five.bucket_end(five.bucket_start(late_minutes[-1])))


async def test_a_child_is_refreshed_from_a_complete_parent_when_their_watermarks_differ(
        store, fresh_licensed_url, unique_name):
    """The 15m refresh reads candles_5m's materialized rows: with candles_5m materialized to 07:20
    and candles_15m to 07:30 (a 5m policy that lags or fails while the 15m one runs), new minutes
    07:20-07:29 are real-time in 5m but belong to a materialized 15m bucket."""
    # A day above every watermark (other tests of the module materialized theirs), and complete.
    highest = max((w for w in watermarks(fresh_licensed_url).values() if w is not None), default=0)
    day = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=highest // (86_400 * NS) + 1)
    if ns(day + timedelta(days=1)) > database_now_ns(fresh_licensed_url):
        pytest.skip("every watermark is already at the present day (test order changed)")
    minutes = list(range(7 * 60, 7 * 60 + 20))  # 07:00-07:19
    await store.upsert_candles_1m(quarter_candles(unique_name, "BTC/USDT", day, minutes, seed=4))
    async with store.connection() as conn:  # the refreshes two policies would have made
        await conn.execute("CALL refresh_continuous_aggregate('candles_5m', NULL, %s::timestamptz)",
                           (day + timedelta(hours=7, minutes=20),))
        await conn.execute("CALL refresh_continuous_aggregate('candles_15m', NULL, %s::timestamptz)",
                           (day + timedelta(hours=7, minutes=30),))
    marks = watermarks(fresh_licensed_url)
    assert marks["candles_5m"] <= ns(day + timedelta(hours=7, minutes=20)) < marks["candles_15m"]

    later = quarter_candles(unique_name, "BTC/USDT", day, list(range(7 * 60 + 20, 7 * 60 + 30)), seed=5)
    await store.upsert_candles_1m(later)
    [bucket] = await store.fetch_candles(unique_name, "BTC/USDT", "15m", day + timedelta(hours=7, minutes=15),
                                         day + timedelta(hours=7, minutes=30), 5)
    assert bucket.trades == sum(c.trades for c in later) + sum(
        c.trades for c in await store.fetch_1m(unique_name, "BTC/USDT", ns(day + timedelta(hours=7, minutes=15)),
                                               ns(day + timedelta(hours=7, minutes=20))))
    await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])


async def test_a_refresh_up_to_now_leaves_the_forming_buckets_to_real_time(store, fresh_licensed_url, unique_name):
    """Issue 10's backfill of a recent hour: the 1d and 1w watermarks must stay at the start of
    the forming day and week, so later live writes still reach the current day and week."""
    now = database_now_ns(fresh_licensed_url)
    this_minute = TIMEFRAMES["1m"].bucket_start(now)
    first = this_minute - 90 * MINUTE_NS
    start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first // 1000)
    await store.upsert_candles_1m(quarter_candles(unique_name, "BTC/USDT", start, list(range(0, 91)), seed=6))
    await store.refresh_higher_timeframes(unique_name, "BTC/USDT", first, this_minute + MINUTE_NS)

    marks = watermarks(fresh_licensed_url)
    for relation, name in LEVEL_TIMEFRAMES.items():
        tf = TIMEFRAMES[name]
        assert marks[relation] is not None and marks[relation] <= tf.bucket_start(this_minute), relation
    # Live writes after the backfill: the forming minute again and the next one.
    newer = [Candle(**{**{f: getattr(c, f) for f in c.__struct_fields__}, "volume": 1000.0, "revision": 0})
             for c in quarter_candles(unique_name, "BTC/USDT", start, [90, 91], seed=7)]
    await store.upsert_candles_1m(newer)
    await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])
    for name in ("1d", "1w"):
        [current] = await store.fetch_candles(unique_name, "BTC/USDT", name, None, None, 1)
        assert current.volume >= 2000.0, name  # both live minutes reached the forming day and week


async def test_a_write_whose_refresh_never_ran_is_caught_up_at_the_next_start(store, fresh_licensed_url, unique_name):
    """The process died between a write's commit and its refreshes: the next start's catch-up
    (over the tick retention) materializes the change."""
    now = database_now_ns(fresh_licensed_url)
    first = TIMEFRAMES["1d"].bucket_start(now) - 3 * 86_400 * NS + 9 * 3600 * NS  # 09:00 three days ago
    start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first // 1000)
    await store.upsert_candles_1m(quarter_candles(unique_name, "BTC/USDT", start, list(range(60)), seed=8))
    await store.refresh_higher_timeframes(unique_name, "BTC/USDT", first, first + 3600 * NS)
    marks = watermarks(fresh_licensed_url)
    assert all(marks[r] is not None and marks[r] >= first + 3600 * NS for r in ("candles_5m", "candles_1h"))
    with psycopg.connect(fresh_licensed_url) as conn:  # committed, refresh never ran
        conn.execute("UPDATE candles_1m SET high = 9999, volume = volume + 1 WHERE exchange = %s AND ts = %s",
                     (unique_name, start + timedelta(minutes=7)))
    with pytest.raises(AssertionError):
        await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])

    catch_up = AggregateCatchUp(store, days=30)
    await catch_up.start()
    assert await catch_up.wait() >= 1
    await catch_up.stop()
    await assert_every_timeframe_matches_candles_1m(store, fresh_licensed_url, unique_name, ["BTC/USDT"])
    [hour] = await store.fetch_candles(unique_name, "BTC/USDT", "1h", start, start + timedelta(hours=1), 1)
    assert hour.high == 9999


async def test_with_tables_there_is_nothing_to_catch_up(table_mode_url):
    async with started_store(table_mode_url) as store:
        assert await AggregateCatchUp(store, days=30).run_once() == 0
