"""Replay file parsing: what an operator sees when replaying a CSV file."""

from __future__ import annotations

import itertools

import pytest
from tradeflow.messages import Tick
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow.trades.replay_csv import RejectedLine, ReplayFileError, parse_replay_lines

HEADER = "ts,exchange,symbol,price,amount,side,trade_id\n"
NOW_NS = 1_800_000_000_000_000_000  # 2027: every event time below is in the past


def fixed_clock() -> ReceiveClock:
    return ReceiveClock(now_ns=lambda: NOW_NS)


def parse(text: str) -> list[Tick | RejectedLine]:
    return list(parse_replay_lines(text.splitlines(keepends=True), fixed_clock()))


def test_epoch_milliseconds_become_nanosecond_event_times():
    items = parse(HEADER + "1700000000123,binance,BTC/USDT,37000.5,0.25,buy,t1\n"
                           "1700000000123.456789,binance,BTC/USDT,37001,1,sell,t2\n")
    assert [(t.ts_event, t.price, t.amount, t.side, t.trade_id) for t in items] == [
        (1_700_000_000_123_000_000, 37000.5, 0.25, "buy", "t1"),
        (1_700_000_000_123_456_789, 37001.0, 1.0, "sell", "t2"),
    ]
    assert all(t.exchange == "binance" and t.symbol == "BTC/USDT" for t in items)


def test_iso_times_with_offset_keep_nanoseconds_and_convert_to_utc():
    items = parse(HEADER + "2023-11-14T22:13:20.123456789Z,kraken,ETH/USD,2000,1,buy,a\n"
                           "2023-11-14T23:13:20+01:00,kraken,ETH/USD,2000,1,SELL,b\n")
    assert [t.ts_event for t in items] == [1_700_000_000_123_456_789, 1_700_000_000_000_000_000]
    assert items[1].side == "sell"


def test_an_iso_time_without_offset_is_utc_the_platforms_one_rule():
    (item,) = parse(HEADER + "2023-11-14T22:13:20.5,kraken,ETH/USD,2000,1,buy,a\n")
    assert item.ts_event == 1_700_000_000_500_000_000


def test_a_time_that_is_neither_epoch_ms_nor_iso_is_rejected():
    (item,) = parse(HEADER + "1.7e12,kraken,ETH/USD,2000,1,buy,a\n")
    assert item == RejectedLine(2, item.reason)
    assert item.reason.startswith("invalid_time:") and "epoch milliseconds" in item.reason


def test_malformed_lines_are_reported_with_line_numbers_and_the_rest_is_kept():
    text = HEADER + "\n".join([
        "1700000000000,x,A/B,10,1,buy,1",          # 2 ok
        "1700000000000,x,A/B,10,1,buy",            # 3 six columns
        "1700000000000,x,A/B,ten,1,buy,3",         # 4 bad price
        "yesterday,x,A/B,10,1,buy,4",              # 5 bad time
        "1700000000000,x,A/B,10,1,buy,",           # 6 empty trade id
        "1700000000000,x,A/B,-10,1,buy,6",         # 7 negative price (tick_rejection_reason)
        "1700000000000,x,A/B,10,nan,buy,7",        # 8 nan amount
        "1700000000000,x,A/B,10,1,hold,8",         # 9 bad side
        "9999999999999,x,A/B,10,1,buy,9",          # 10 far future
        "1700000000000,x:y,A/B,10,1,buy,10",       # 11 ':' would break the exchange:symbol key
        "1700000000000,x,A/B,10,1,buy,11",         # 12 ok
    ]) + "\n"
    items = parse(text)
    assert [t.trade_id for t in items if isinstance(t, Tick)] == ["1", "11"]
    rejected = [(r.line_no, r.reason.split(":")[0]) for r in items if isinstance(r, RejectedLine)]
    assert rejected == [
        (3, "malformed_line"),
        (4, "invalid_price"),
        (5, "invalid_time"),
        (6, "invalid_trade_id"),
        (7, "invalid_price"),
        (8, "invalid_amount"),
        (9, "invalid_side"),
        (10, "future_event_time"),
        (11, "invalid_instrument"),
    ]


def test_blank_lines_are_ignored_but_still_counted_in_line_numbers():
    items = parse(HEADER + "\n1700000000000,x,A/B,10,1,buy,1\n\nbad\n")
    assert isinstance(items[0], Tick)
    assert items[1].line_no == 5


def test_out_of_order_event_times_stay_in_file_order():
    items = parse(HEADER + "1700000000300,x,A/B,10,1,buy,late\n"
                           "1700000000100,x,A/B,10,1,buy,early\n"
                           "1700000000200,x,A/B,10,1,buy,middle\n")
    assert [t.trade_id for t in items] == ["late", "early", "middle"]


def test_receive_times_strictly_increase_in_file_order_even_with_a_frozen_clock():
    items = parse(HEADER + "".join(f"1700000000000,x,A/B,10,1,buy,{i}\n" for i in range(5)))
    recv = [t.ts_recv for t in items]
    assert recv == sorted(set(recv)) and recv[0] == NOW_NS


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("ts,exchange,symbol,price,amount,side\n1,x,A/B,1,1,buy\n", "expected the header"),
    ("1700000000000,x,A/B,10,1,buy,1\n", "expected the header"),
])
def test_missing_or_wrong_header_fails_the_whole_file(text, message):
    with pytest.raises(ReplayFileError, match=message):
        parse(text)


def test_header_with_byte_order_mark_and_spaces_is_accepted():
    items = parse("\ufeffts, exchange ,symbol,price,amount,side,trade_id\r\n1700000000000,x,A/B,10,1,buy,1\r\n")
    assert [t.trade_id for t in items] == ["1"]


def test_parsing_streams_without_reading_the_whole_input():
    def endless_file():
        yield HEADER
        for i in itertools.count():
            yield f"1700000000000,x,A/B,10,1,buy,{i}\n"

    first = list(itertools.islice(parse_replay_lines(endless_file(), fixed_clock()), 3))
    assert [t.trade_id for t in first] == ["0", "1", "2"]
