"""Which trace a candle continues: its close trade's (docs/adr/0023)."""

from __future__ import annotations

from datetime import UTC, datetime

from tradeflow.messages import Tick
from tradeflow_candle_builder.adapters.candle_traces import TraceIndex
from tradeflow_candle_builder.domain.aggregator import CandleAggregator
from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, NS_PER_SECOND, datetime_to_ns

T0 = datetime_to_ns(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
S = NS_PER_SECOND


def tick(ts: int, price: float, n: int) -> Tick:
    return Tick(exchange="binance", symbol="BTC/USDT", trade_id=str(n), price=price, amount=1.0, side="buy",
                ts_event=ts, ts_recv=T0 + n)


def test_the_close_trade_is_the_last_by_event_time_not_the_last_to_arrive():
    aggregator = CandleAggregator(grace_ns=2 * S, idle_close_ns=3600 * S)
    aggregator.assign([0])
    # offset 1 is the latest trade of the minute (10:00:50) although offset 2 arrives after it
    batch = [(0, 0, tick(T0 + 10 * S, 100.0, 1)), (0, 1, tick(T0 + 50 * S, 103.0, 2)),
             (0, 2, tick(T0 + 30 * S, 101.0, 3))]
    aggregator.add_batch(batch, 0.0)
    aggregator.add_batch([(0, 3, tick(T0 + MINUTE_NS + 5 * S, 104.0, 4))], 0.0)
    closings = aggregator.advance(0.0)
    [candle] = [c for c in closings.candles if c.timeframe == "1m"]
    assert candle.close == 103.0
    assert closings.close_trades[("binance", "BTC/USDT", "1m", T0)] == (0, 1)


def test_a_higher_candle_continues_the_close_trade_of_its_last_minute():
    aggregator = CandleAggregator(grace_ns=0, idle_close_ns=3600 * S)
    aggregator.assign([0])
    offset = 0
    for minute in range(5):
        aggregator.add_batch([(0, offset, tick(T0 + minute * MINUTE_NS + 20 * S, 100.0 + minute, offset + 1))], 0.0)
        offset += 1
    aggregator.add_batch([(0, offset, tick(T0 + 5 * MINUTE_NS + 1, 200.0, offset + 1))], 0.0)
    closings = aggregator.advance(0.0)
    assert closings.close_trades[("binance", "BTC/USDT", "5m", T0)] == (0, 4)
    assert closings.close_trades[("binance", "BTC/USDT", "1m", T0 + 4 * MINUTE_NS)] == (0, 4)


def test_trace_index_answers_by_runs_and_forgets_what_no_open_bucket_needs():
    index = TraceIndex()
    a, b, c = b"00-" + b"a" * 32 + b"-" + b"1" * 16 + b"-01", b"tp-b", b"tp-c"
    for offset in range(0, 100):
        index.note(0, offset, a)
    for offset in range(100, 150):
        index.note(0, offset, None)
    for offset in range(150, 160):
        index.note(0, offset, b)
    index.note(1, 7, c)
    assert index.size(0) == 3  # three runs, not 160 entries
    assert index.lookup(0, 0) == a and index.lookup(0, 99) == a
    assert index.lookup(0, 120) is None
    assert index.lookup(0, 159) == b and index.lookup(0, 10_000) == b  # the newest run goes on
    assert index.lookup(1, 7) == c and index.lookup(1, 6) is None and index.lookup(2, 0) is None
    index.forget_below(0, 120)
    assert index.size(0) == 2 and index.lookup(0, 120) is None and index.lookup(0, 155) == b
    assert index.lookup(0, 50) is None  # forgotten
    index.forget_below(0, None)
    assert index.size(0) == 1 and index.lookup(0, 200) == b


def test_trace_index_after_a_redelivery_from_an_earlier_offset():
    index = TraceIndex()
    for offset in range(0, 10):
        index.note(0, offset, b"first")
    for offset in range(10, 20):
        index.note(0, offset, b"second")
    # the batch from offset 5 is read again: the same records, the same traceparents
    for offset in range(5, 10):
        index.note(0, offset, b"first")
    for offset in range(10, 20):
        index.note(0, offset, b"second")
    assert [index.lookup(0, o) for o in (0, 5, 9, 10, 19)] == [b"first"] * 3 + [b"second"] * 2
    index.forget_partitions({0})
    assert index.lookup(0, 5) is None
