"""The streaming aggregator with session-aligned timeframes (a hand-made two-day calendar, pure)."""

from __future__ import annotations

from tradeflow.messages import Tick
from tradeflow_candle_builder.domain.aggregator import CandleAggregator
from tradeflow_candle_builder.domain.sessions import Segment, Session, SessionTable, session_timeframes
from tradeflow_candle_builder.domain.timeframes import HOUR_NS, MINUTE_NS, NS_PER_SECOND

S = NS_PER_SECOND
DAY1 = 1_000 * 86_400 * S + 14 * HOUR_NS + 30 * MINUTE_NS  # a day's 14:30 UTC "open"
DAY2 = DAY1 + 86_400 * S
# Day 1: 14:30-16:15 (an early close off the 1h grid); day 2: 14:30-21:00. Same week.
TABLE = SessionTable("TEST", [
    Session((Segment(DAY1, DAY1 + HOUR_NS + 45 * MINUTE_NS, DAY1),), week=1),
    Session((Segment(DAY2, DAY2 + 6 * HOUR_NS + 30 * MINUTE_NS, DAY2),), week=1),
])
TFS = session_timeframes(TABLE)


def tick(ts: int, price: float, n: list[int] = [0]) -> tuple[int, int, Tick]:  # noqa: B006 - a counter
    n[0] += 1
    return (0, n[0], Tick(exchange="x", symbol="AAPL", trade_id=str(n[0]), price=price, amount=1.0, side="buy",
                          ts_event=ts, ts_recv=n[0]))


def new_aggregator() -> CandleAggregator:
    agg = CandleAggregator(grace_ns=2 * S, idle_close_ns=5 * S)
    agg.assign([0])
    agg.register_instrument("x", "AAPL", 0, None, TFS)
    return agg


def test_the_last_bars_of_a_session_are_cut_at_the_close_and_stored_as_session_candles():
    agg = new_aggregator()
    agg.add_batch([tick(DAY1 + 10 * S, 100), tick(DAY1 + HOUR_NS + 40 * MINUTE_NS, 103),
                   tick(DAY1 + HOUR_NS + 44 * MINUTE_NS + 59 * S, 101)], wall_now=0.0)
    # An after-close trade (dropped by the pipeline) only moves stream time past the close.
    agg.observe_time(0, DAY1 + 2 * HOUR_NS, wall_now=0.0)
    closed = agg.advance(wall_now=0.0)
    assert [c.timeframe for c in closed.candles] == ["1m", "1m", "1m"]  # 1m candles are emitted as they are
    by_tf = {c.timeframe: c for c in closed.session_candles}
    assert sorted(by_tf) == ["15m", "1d", "1h", "4h", "5m"]  # the week is still open
    assert (by_tf["1h"].ts_start, by_tf["1h"].ts_end) == (DAY1 + HOUR_NS, DAY1 + HOUR_NS + 45 * MINUTE_NS)
    assert (by_tf["1h"].open, by_tf["1h"].close, by_tf["1h"].trades) == (103, 101, 2)
    assert (by_tf["4h"].ts_start, by_tf["4h"].ts_end, by_tf["4h"].trades) == (DAY1, DAY1 + 105 * MINUTE_NS, 3)
    assert (by_tf["1d"].ts_start, by_tf["1d"].ts_end, by_tf["1d"].high) == (DAY1, DAY1 + 105 * MINUTE_NS, 103)

    # Day 2 closes the week, which spans both sessions.
    agg.add_batch([tick(DAY2 + 5 * S, 99)], wall_now=0.0)
    agg.observe_time(0, DAY2 + 7 * HOUR_NS, wall_now=0.0)
    week = [c for c in agg.advance(wall_now=0.0).session_candles if c.timeframe == "1w"]
    assert [(c.ts_start, c.ts_end, c.open, c.close, c.trades) for c in week] == [
        (DAY1, DAY2 + 6 * HOUR_NS + 30 * MINUTE_NS, 100, 99, 4)]


def test_a_late_trade_corrects_the_closed_session_bars_holding_it():
    agg = new_aggregator()
    agg.add_batch([tick(DAY1 + 10 * S, 100), tick(DAY1 + 50 * MINUTE_NS, 101)], wall_now=0.0)
    agg.observe_time(0, DAY1 + 2 * HOUR_NS, wall_now=0.0)
    agg.advance(wall_now=0.0)
    outcome = agg.add_batch([tick(DAY1 + 20 * S, 90)], wall_now=0.0)
    assert outcome.late_minutes == {("x", "AAPL", DAY1)}
    refresh = sorted((r.timeframe.name, r.start, r.end, r.revision, r.timeframe.session_aligned)
                     for r in outcome.refresh_higher.values())
    assert refresh == [
        ("15m", DAY1, DAY1 + 15 * MINUTE_NS, 1, True), ("1d", DAY1, DAY1 + 105 * MINUTE_NS, 1, True),
        ("1h", DAY1, DAY1 + HOUR_NS, 1, True), ("4h", DAY1, DAY1 + 105 * MINUTE_NS, 1, True),
        ("5m", DAY1, DAY1 + 5 * MINUTE_NS, 1, True)]  # the week is open: marked dirty instead


def test_a_changed_registration_switches_the_grid_of_a_tracked_instrument():
    agg = new_aggregator()
    agg.add_batch([tick(DAY1 + 10 * S, 100)], wall_now=0.0)
    agg.set_timeframes("x", "AAPL", None)  # back to 24/7: UTC-aligned
    agg.observe_time(0, DAY1 + 2 * HOUR_NS, wall_now=0.0)
    closed = agg.advance(wall_now=0.0)
    assert closed.session_candles == []
    assert sorted(c.timeframe for c in closed.candles) == ["15m", "1h", "1m", "4h", "5m"]  # 12:00-16:00 UTC too
    assert all(c.ts_start % (5 * MINUTE_NS) == 0 for c in closed.candles)
