"""The backfill's pure planning: --since/--until, trade and candle paging, complete minutes."""

from __future__ import annotations

import pytest
from tradeflow.time import parse_time_option
from tradeflow_candle_builder.backfill.plan import (
    OhlcvPageCursor,
    PagingStuck,
    RangeError,
    TradePageCursor,
    check_range,
    complete_minutes,
)

NOW = 1_710_000_000_000  # 2024-03-09T16:00:00Z
HOUR = 3_600_000


def trade(ts_ms: int, trade_id: int, symbol: str = "BTC/USDT") -> dict:
    return {"symbol": symbol, "id": str(trade_id), "timestamp": ts_ms, "price": 1.0, "amount": 1.0, "side": "buy"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1709251200000", 1_709_251_200_000),
        ("2024-03-01T00:00:00Z", 1_709_251_200_000),
        ("2024-03-01", 1_709_251_200_000),  # no offset: UTC
        ("2024-03-01T01:00:00+01:00", 1_709_251_200_000),
        ("2024-03-01T00:00:00.250Z", 1_709_251_200_250),
        (" now ", NOW),
    ],
)
def test_time_options_are_epoch_ms_iso_8601_or_now(text, expected):
    assert parse_time_option(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "-5", "1.5e12", ""])
def test_unreadable_times_are_refused(text):
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time_option(text, NOW)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (NOW - HOUR, NOW - 2 * HOUR, "--until .* must be after --since"),
        (NOW - HOUR, NOW - HOUR, "--until .* must be after --since"),
        (NOW - HOUR, NOW + 1, "--until .* in the future"),
        (NOW + HOUR, NOW + 2 * HOUR, "--since .* in the future"),
    ],
)
def test_a_range_must_run_forward_and_not_into_the_future(since, until, message):
    with pytest.raises(RangeError, match=message):
        check_range(since, until, NOW)
    check_range(NOW - HOUR, NOW, NOW)  # up to now is fine


def test_the_cursor_follows_full_pages_and_rereads_the_boundary_millisecond_without_duplicates():
    cursor = TradePageCursor(0, 10_000)
    assert cursor.request().since_ms == 0 and cursor.request().end_ms == 10_000
    # The page ends inside millisecond 500: trades 3 and 4 came, trade 5 of the same ms did not.
    first = cursor.accept([trade(100, 1), trade(200, 2), trade(500, 3), trade(500, 4)], limit=4)
    assert [t["id"] for t in first] == ["1", "2", "3", "4"]
    assert cursor.request().since_ms == 500
    second = cursor.accept([trade(500, 3), trade(500, 4), trade(500, 5), trade(900, 6)], limit=4)
    assert [t["id"] for t in second] == ["5", "6"]
    assert cursor.accept([trade(900, 6)], limit=4) == []  # nothing new: the range is exhausted
    assert cursor.done and cursor.covered_ms == 10_000


def test_windows_bound_each_request_and_an_empty_window_moves_to_the_next():
    cursor = TradePageCursor(0, 2 * HOUR + 10, window_ms=HOUR)
    assert (cursor.request().since_ms, cursor.request().end_ms) == (0, HOUR)
    assert cursor.accept([], limit=1000) == []  # a quiet hour
    assert (cursor.request().since_ms, cursor.request().end_ms) == (HOUR, 2 * HOUR)
    cursor.accept([trade(HOUR + 5, 1)], limit=1000)
    assert cursor.request().since_ms == HOUR + 5 and cursor.covered_ms == HOUR + 5
    cursor.accept([trade(HOUR + 5, 1)], limit=1000)
    assert (cursor.request().since_ms, cursor.request().end_ms) == (2 * HOUR, 2 * HOUR + 10)  # capped at until
    cursor.accept([], limit=1000)
    assert cursor.done


def test_trades_outside_the_window_or_unusable_are_not_taken():
    cursor = TradePageCursor(1_000, 5_000)
    page = [trade(999, 1), trade(1_000, 2), {"symbol": "BTC/USDT", "id": None, "timestamp": 1_100}, trade(5_000, 3)]
    assert [t["id"] for t in cursor.accept(page, limit=1000)] == ["2"]


def test_a_full_page_of_one_millisecond_already_seen_is_reported_instead_of_looping():
    cursor = TradePageCursor(0, 10_000)
    burst = [trade(700, i) for i in range(3)]
    cursor.accept(burst, limit=3)
    with pytest.raises(PagingStuck, match="more than 3 trades"):
        cursor.accept(burst, limit=3)


def test_an_exchange_answering_only_recent_trades_is_recognised_before_anything_is_taken():
    cursor = TradePageCursor(0, 10_000, window_ms=1_000)
    assert cursor.ignores_time_range([trade(50_000, 9), trade(50_001, 10)])
    assert not cursor.ignores_time_range([])  # a quiet range is not "no history"
    assert not cursor.ignores_time_range([trade(500, 1), trade(50_000, 9)])
    cursor.accept([trade(500, 1)], limit=1000)
    assert not cursor.ignores_time_range([trade(50_000, 9)])  # history was served before


def test_ohlcv_pages_move_past_the_newest_candle_and_keep_the_range():
    cursor = OhlcvPageCursor(60_000, 300_000)
    page = [[0, 1, 1, 1, 1, 1], [60_000, 1, 2, 1, 2, 3], [120_000, 2, 2, 2, 2, 1]]
    assert [row[0] for row in cursor.accept(page)] == [60_000, 120_000]
    assert cursor.position_ms == 180_000 and not cursor.done
    assert [row[0] for row in cursor.accept([[240_000, 1, 1, 1, 1, 1], [300_000, 1, 1, 1, 1, 1]])] == [240_000]
    assert cursor.accept([]) == [] and cursor.done


def test_only_minutes_behind_the_cursor_are_complete():
    assert complete_minutes({120_000, 0, 60_000}, 120_000) == [0, 60_000]
    assert complete_minutes({120_000}, 179_999) == []
    assert complete_minutes({120_000}, 180_000) == [120_000]
