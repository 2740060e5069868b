"""Bucket boundaries of every timeframe (UTC, weeks from Monday)."""

from datetime import UTC, datetime, timedelta

import pytest
from tradeflow_candle_builder.domain.timeframes import TIMEFRAMES, datetime_to_ns, ns_to_datetime, timeframe


def ns(*args) -> int:
    return datetime_to_ns(datetime(*args, tzinfo=UTC))


# A Thursday afternoon, with seconds and nanoseconds.
MOMENT = ns(2026, 3, 5, 14, 37, 42) + 123_456_789


@pytest.mark.parametrize(("name", "expected_start", "length"), [
    ("1m", datetime(2026, 3, 5, 14, 37), timedelta(minutes=1)),
    ("5m", datetime(2026, 3, 5, 14, 35), timedelta(minutes=5)),
    ("15m", datetime(2026, 3, 5, 14, 30), timedelta(minutes=15)),
    ("1h", datetime(2026, 3, 5, 14, 0), timedelta(hours=1)),
    ("4h", datetime(2026, 3, 5, 12, 0), timedelta(hours=4)),
    ("1d", datetime(2026, 3, 5, 0, 0), timedelta(days=1)),
    ("1w", datetime(2026, 3, 2, 0, 0), timedelta(weeks=1)),  # Monday 2 March 2026
])
def test_bucket_of_a_moment_in_every_timeframe(name, expected_start, length):
    tf = timeframe(name)
    start = tf.bucket_start(MOMENT)
    assert ns_to_datetime(start) == expected_start.replace(tzinfo=UTC)
    assert tf.bucket_end(start) - start == length // timedelta(microseconds=1) * 1000


@pytest.mark.parametrize("name", list(TIMEFRAMES))
def test_a_trade_exactly_on_a_boundary_opens_the_next_bucket(name):
    tf = timeframe(name)
    boundary = tf.bucket_end(tf.bucket_start(MOMENT))
    assert tf.bucket_start(boundary) == boundary
    assert tf.bucket_start(boundary - 1) == tf.bucket_start(MOMENT)


def test_weeks_start_on_monday_midnight_utc():
    week = timeframe("1w")
    sunday_late = ns(2026, 3, 8, 23, 59, 59)
    monday = ns(2026, 3, 9)
    assert ns_to_datetime(week.bucket_start(sunday_late)) == datetime(2026, 3, 2, tzinfo=UTC)
    assert week.bucket_start(monday) == monday
    assert ns_to_datetime(week.bucket_start(monday)).weekday() == 0
    # Also before the epoch (a Thursday): the week of 1970-01-01 started on Monday 1969-12-29.
    assert ns_to_datetime(week.bucket_start(0)) == datetime(1969, 12, 29, tzinfo=UTC)


def test_unknown_timeframe_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown timeframe '2m'; known: 1m, 5m, 15m, 1h, 4h, 1d, 1w"):
        timeframe("2m")


def test_datetime_conversion_is_exact_at_nanosecond_scale():
    moment = datetime(2026, 3, 5, 14, 37, 42, 123456, tzinfo=UTC)
    assert datetime_to_ns(moment) == ns(2026, 3, 5, 14, 37, 42) + 123_456_000
    assert ns_to_datetime(datetime_to_ns(moment)) == moment
    # The platform's one rule (tradeflow.time): a naive datetime is UTC.
    assert datetime_to_ns(datetime(2026, 3, 5)) == ns(2026, 3, 5, 0, 0, 0)
