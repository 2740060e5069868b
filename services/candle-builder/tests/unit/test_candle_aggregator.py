"""The streaming aggregator against a direct computation from the trades."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from tradeflow.messages import Candle, Tick
from tradeflow_candle_builder.domain.aggregator import CandleAggregator
from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, NS_PER_SECOND, TIMEFRAMES, datetime_to_ns

T0 = datetime_to_ns(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))  # a Monday, so the 1w bucket starts here
S = NS_PER_SECOND
GRACE = 2 * S
IDLE = 5 * S


class Feed:
    """Makes ticks with strictly increasing ts_recv (as ingest does) and offsets per partition."""

    def __init__(self) -> None:
        self.recv = T0
        self.offsets: dict[int, int] = {}
        self.n = 0

    def tick(self, ts, price, amount=1.0, exchange="binance", symbol="BTC/USDT", partition=0):
        self.recv += 1
        self.n += 1
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        t = Tick(exchange=exchange, symbol=symbol, trade_id=str(self.n), price=float(price), amount=float(amount),
                 side="buy", ts_event=ts, ts_recv=self.recv)
        return (partition, offset, t)


def direct_candles(ticks: list[Tick], timeframe: str) -> dict[tuple[str, str, int], tuple]:
    """Independent computation: sort by (event time, receive time), bucket, fold."""
    tf = TIMEFRAMES[timeframe]
    out: dict[tuple[str, str, int], list] = {}
    for t in sorted(ticks, key=lambda t: (t.ts_event, t.ts_recv)):
        key = (t.exchange, t.symbol, tf.bucket_start(t.ts_event))
        c = out.get(key)
        if c is None:
            out[key] = [t.price, t.price, t.price, t.price, t.amount, 1]
        else:
            c[1] = max(c[1], t.price)
            c[2] = min(c[2], t.price)
            c[3] = t.price
            c[4] += t.amount
            c[5] += 1
    return {k: (v[0], v[1], v[2], v[3], round(v[4], 9), v[5]) for k, v in out.items()}


def as_dict(candles: list[Candle], timeframe: str) -> dict[tuple[str, str, int], tuple]:
    picked = [c for c in candles if c.timeframe == timeframe]
    result = {(c.exchange, c.symbol, c.ts_start): (c.open, c.high, c.low, c.close, round(c.volume, 9), c.trades)
              for c in picked}
    assert len(result) == len(picked), "a candle was emitted twice"
    return result


def new_aggregator() -> CandleAggregator:
    agg = CandleAggregator(grace_ns=GRACE, idle_close_ns=IDLE)
    agg.assign([0, 1])
    return agg


def test_open_and_close_follow_event_time_not_arrival():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([
        feed.tick(T0 + 30 * S, 101),
        feed.tick(T0 + 10 * S, 100),  # earlier event, later arrival: the open
        feed.tick(T0 + 50 * S, 99),
        feed.tick(T0 + 40 * S, 105),  # not the close: an earlier event than the one before
    ], wall_now=0.0)
    [candle] = agg.open_minute_candles("binance", "BTC/USDT")
    assert (candle.open, candle.high, candle.low, candle.close, candle.volume, candle.trades) == (
        100, 105, 99, 99, 4.0, 4)


def test_equal_event_times_keep_arrival_order():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([feed.tick(T0 + 5 * S, 10), feed.tick(T0 + 5 * S, 11), feed.tick(T0 + 5 * S, 12)], wall_now=0.0)
    [candle] = agg.open_minute_candles("binance", "BTC/USDT")
    assert (candle.open, candle.close) == (10, 12)


def test_a_trade_on_the_minute_boundary_opens_the_next_candle():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([feed.tick(T0 + MINUTE_NS - 1, 1), feed.tick(T0 + MINUTE_NS, 2)], wall_now=0.0)
    candles = agg.open_minute_candles("binance", "BTC/USDT")
    assert [(c.ts_start, c.ts_end, c.close) for c in candles] == [
        (T0, T0 + MINUTE_NS, 1), (T0 + MINUTE_NS, T0 + 2 * MINUTE_NS, 2)]


def test_instruments_and_exchanges_are_kept_apart():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([
        feed.tick(T0 + S, 100, exchange="binance", symbol="BTC/USDT"),
        feed.tick(T0 + 2 * S, 200, exchange="kraken", symbol="BTC/USDT", partition=1),
        feed.tick(T0 + 3 * S, 300, exchange="binance", symbol="ETH/USDT"),
        feed.tick(T0 + 4 * S, 101, exchange="binance", symbol="BTC/USDT"),
    ], wall_now=0.0)
    assert [c.close for c in agg.open_minute_candles("binance", "BTC/USDT")] == [101]
    assert [c.trades for c in agg.open_minute_candles("binance", "BTC/USDT")] == [2]
    assert [c.close for c in agg.open_minute_candles("kraken", "BTC/USDT")] == [200]
    assert [c.close for c in agg.open_minute_candles("binance", "ETH/USDT")] == [300]


def test_a_minute_closes_when_stream_time_reaches_end_plus_grace():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([feed.tick(T0 + S, 100)], wall_now=0.0)
    agg.add_batch([feed.tick(T0 + MINUTE_NS + GRACE - 1, 101)], wall_now=0.0)
    assert not agg.advance(wall_now=0.0)
    agg.add_batch([feed.tick(T0 + MINUTE_NS + GRACE, 102)], wall_now=0.0)
    closed = agg.advance(wall_now=0.0)
    assert [(c.timeframe, c.ts_start, c.close, c.revision) for c in closed.candles] == [("1m", T0, 100.0, 0)]
    # Only one partition has records: the other's clock does not move.
    assert agg.stream_time(1) is None


def test_an_idle_partition_closes_by_wall_clock_idle_time():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([feed.tick(T0 + 59 * S, 100)], wall_now=1000.0)
    # Idle, but not for idle_close yet: nothing closes.
    assert not agg.advance(wall_now=1000.0 + 4.9)
    # Idle for 5.1 s: stream time + 5.1 s = T0 + 64.1 s >= end (60 s) + grace (2 s).
    closed = agg.advance(wall_now=1000.0 + 5.1)
    assert [c.ts_start for c in closed.candles if c.timeframe == "1m"] == [T0]


def test_a_replay_of_old_data_that_stops_does_not_close_by_idle_time_alone():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([feed.tick(T0 + 1 * S, 100)], wall_now=1000.0)
    # 6 s idle: stream time + 6 s = T0 + 7 s, far from the bucket's end + grace.
    assert not agg.advance(wall_now=1006.0)
    assert agg.advance(wall_now=1000.0 + 61.5)  # T0 + 62.5 s >= T0 + 62 s


def test_higher_timeframes_equal_a_direct_computation_from_the_trades():
    rng = random.Random(11)
    feed, agg = Feed(), new_aggregator()
    markets = [("binance", "BTC/USDT", 0), ("binance", "ETH/USDT", 1), ("kraken", "BTC/USDT", 0)]
    ticks, emitted = [], []
    ts = T0 - 3 * 24 * 3600 * S  # a Friday: the stream crosses a week boundary and several days
    end = T0 + 2 * 24 * 3600 * S
    batch = []
    while ts < end:
        ts += rng.randint(1, 600) * S
        exchange, symbol, partition = rng.choice(markets)
        jitter = -rng.randint(0, 1500) * 1_000_000  # out of order within the grace period
        t = feed.tick(ts + jitter, round(rng.uniform(90, 110), 2), round(rng.uniform(0.01, 3), 3),
                      exchange, symbol, partition)
        batch.append(t)
        ticks.append(t[2])
        if len(batch) >= rng.randint(1, 40):
            outcome = agg.add_batch(batch, wall_now=0.0)
            assert not outcome.late
            emitted.extend(agg.advance(wall_now=0.0).candles)
            batch = []
    agg.add_batch(batch, wall_now=0.0)
    # Both partitions go idle long enough for everything to close.
    final = agg.advance(wall_now=100 * 24 * 3600.0)
    assert not final.refresh_higher and not final.recompute_minutes
    emitted.extend(final.candles)
    for name in TIMEFRAMES:
        want = direct_candles(ticks, name)
        assert as_dict(emitted, name) == want, name
    assert {c.revision for c in emitted} == {0}
    assert agg.committable_offsets() == {0: None, 1: None}


def test_a_trade_for_a_closed_minute_is_late_and_its_candles_are_corrected():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([feed.tick(T0 + 10 * S, 100)], wall_now=0.0)
    agg.add_batch([feed.tick(T0 + MINUTE_NS + 5 * S, 101)], wall_now=0.0)
    closed = agg.advance(wall_now=0.0)
    assert [c.ts_start for c in closed.candles if c.timeframe == "1m"] == [T0]
    # Still inside the next, open minute: on time. For the closed one: late.
    late_tick = feed.tick(T0 + 20 * S, 90)
    outcome = agg.add_batch([feed.tick(T0 + MINUTE_NS + 1 * S, 102), late_tick], wall_now=0.0)
    assert outcome.late == [late_tick]
    assert outcome.late_minutes == {("binance", "BTC/USDT", T0)}
    assert [b.start for b in outcome.touched] == [T0 + MINUTE_NS]
    # Every higher bucket holding 10:00 is still open (10:00-10:05 ... the week): dirty, not refreshed now.
    assert outcome.refresh_higher == {}
    # When they close, their values must come from the database (they miss the late trade).
    closed = agg.advance(wall_now=10**7)
    assert [c.timeframe for c in closed.candles] == ["1m"]
    assert sorted(r.timeframe.name for r in closed.refresh_higher) == ["15m", "1d", "1h", "1w", "4h", "5m"]
    assert {r.revision for r in closed.refresh_higher} == {0}
    # Another late trade for 10:00, now that the 5m ... 1w buckets have closed: corrections.
    outcome = agg.add_batch([feed.tick(T0 + 30 * S, 91), feed.tick(T0 + 40 * S, 92)], wall_now=10**7)
    assert len(outcome.late) == 2
    assert sorted((r.timeframe.name, r.start, r.revision) for r in outcome.refresh_higher.values()) == sorted(
        (tf.name, tf.bucket_start(T0), 1) for name, tf in TIMEFRAMES.items() if name != "1m")
    outcome = agg.add_batch([feed.tick(T0 + 45 * S, 93)], wall_now=10**7)
    assert {r.revision for r in outcome.refresh_higher.values()} == {2}


def test_offsets_to_commit_hold_back_to_the_first_record_of_every_open_minute():
    feed, agg = Feed(), new_aggregator()
    agg.add_batch([
        feed.tick(T0 + 10 * S, 1),               # offset 0: minute 10:00
        feed.tick(T0 + MINUTE_NS + 1 * S, 2),    # offset 1: minute 10:01
        feed.tick(T0 + 59 * S, 3),               # offset 2: 10:00 again (out of order, within grace)
        feed.tick(T0 + 5 * S, 4, symbol="ETH/USDT", partition=1),  # partition 1, offset 0
    ], wall_now=0.0)
    assert agg.committable_offsets() == {0: 0, 1: 0}
    agg.add_batch([feed.tick(T0 + MINUTE_NS + GRACE, 5)], wall_now=0.0)  # offset 3 closes 10:00
    closed = agg.advance(wall_now=0.0)
    assert closed.first_offsets == {0: 0}
    assert agg.committable_offsets() == {0: 1, 1: 0}  # 10:01 opened at offset 1
    agg.revoke([1])
    assert agg.committable_offsets() == {0: 1}


def test_after_a_restart_buckets_already_in_the_database_are_finalised_from_it():
    feed, agg = Feed(), new_aggregator()
    # The database already holds 1m candles up to 10:01 (a previous run): 10:01 may have had
    # trades before the commit point, so it and every higher bucket reaching back there are
    # taken from the database; 10:02 is new and built from memory.
    agg.register_instrument("binance", "BTC/USDT", 0, recovered_through=T0 + MINUTE_NS)
    outcome = agg.add_batch([feed.tick(T0 + MINUTE_NS + 30 * S, 1), feed.tick(T0 + 2 * MINUTE_NS + 1 * S, 2)],
                            wall_now=0.0)
    assert [(b.start, b.recovered) for b in outcome.touched] == [(T0 + MINUTE_NS, True), (T0 + 2 * MINUTE_NS, False)]
    assert [c.ts_start for c in outcome.candles_to_store()] == [T0 + 2 * MINUTE_NS]
    closed = agg.advance(wall_now=10**7)
    assert closed.recompute_minutes == [("binance", "BTC/USDT", T0 + MINUTE_NS)]
    assert [c.ts_start for c in closed.candles] == [T0 + 2 * MINUTE_NS]
    assert sorted(r.timeframe.name for r in closed.refresh_higher) == ["15m", "1d", "1h", "1w", "4h", "5m"]


def test_after_a_restart_trades_of_buckets_emitted_before_are_late_and_change_nothing_themselves():
    feed, agg = Feed(), new_aggregator()
    # Emitted before the restart: everything ending by 10:05 (the 1m candles and 10:00-10:05).
    # Stored: 1m candles up to 10:06 (10:05 was forming when the process stopped).
    agg.register_instrument("binance", "BTC/USDT", 0, recovered_through=T0 + 6 * MINUTE_NS,
                            emitted_through=T0 + 5 * MINUTE_NS)
    replayed = [feed.tick(T0 + 10 * S, 1), feed.tick(T0 + 4 * MINUTE_NS + 59 * S, 2)]
    outcome = agg.add_batch(replayed + [feed.tick(T0 + 6 * MINUTE_NS + 1 * S, 3),
                                        feed.tick(T0 + 7 * MINUTE_NS + 1 * S, 4)], wall_now=0.0)
    # The trades of emitted minutes are late: nothing of them is stored from memory. Whether they
    # rebuild anything is the writer's call (only a trade new to the database does).
    assert outcome.late == replayed
    assert outcome.late_minutes == {("binance", "BTC/USDT", T0), ("binance", "BTC/USDT", T0 + 4 * MINUTE_NS)}
    # 10:00-10:05 was emitted: a correction (if a trade is new), with a higher revision.
    assert [(r.timeframe.name, r.start, r.revision) for r in outcome.refresh_higher.values()] == [("5m", T0, 1)]
    # 10:06 may hold trades consumed before (recovered: never stored from memory); 10:07 is new.
    assert [(b.start, b.recovered) for b in outcome.touched] == [(T0 + 6 * MINUTE_NS, True),
                                                                  (T0 + 7 * MINUTE_NS, False)]
    assert [c.ts_start for c in outcome.candles_to_store()] == [T0 + 7 * MINUTE_NS]
    # When everything closes: 10:06 from the database, 10:07 from memory; the higher buckets that
    # hold minutes of before the restart (and were not emitted: they end after 10:05) from the database.
    closed = agg.advance(wall_now=10**7)
    assert closed.recompute_minutes == [("binance", "BTC/USDT", T0 + 6 * MINUTE_NS)]
    assert [(c.timeframe, c.ts_start) for c in closed.candles] == [("1m", T0 + 7 * MINUTE_NS)]
    assert sorted((r.timeframe.name, r.start, r.revision) for r in closed.refresh_higher) == sorted(
        [("5m", T0 + 5 * MINUTE_NS, 0)] + [(name, tf.bucket_start(T0), 0) for name, tf in TIMEFRAMES.items()
                                           if name not in ("1m", "5m")])


def test_without_emissions_before_only_the_stored_minutes_are_recovered():
    feed, agg = Feed(), new_aggregator()
    agg.register_instrument("binance", "BTC/USDT", 0, recovered_through=T0, emitted_through=None)
    outcome = agg.add_batch([feed.tick(T0 + 1 * S, 1), feed.tick(T0 + MINUTE_NS + 1 * S, 2)], wall_now=0.0)
    assert not outcome.late
    assert [(b.start, b.recovered) for b in outcome.touched] == [(T0, True), (T0 + MINUTE_NS, False)]


@pytest.mark.parametrize("grace", [-1])
def test_invalid_settings_are_refused(grace):
    with pytest.raises(ValueError):
        CandleAggregator(grace_ns=grace, idle_close_ns=IDLE)
