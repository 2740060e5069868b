"""tradeflow.time: the one parser and formatter of times, with one rule for times without offset (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from tradeflow.time import (
    EPOCH,
    NS_PER_MS,
    NS_PER_S,
    NS_PER_US,
    TimeFormatError,
    as_utc,
    datetime_to_ms,
    datetime_to_ns,
    format_datetime,
    format_time_ms,
    format_time_ns,
    ms_to_datetime,
    ms_to_ns,
    ns_to_datetime,
    ns_to_ms,
    parse_datetime,
    parse_time_ms,
    parse_time_ns,
    parse_time_option,
)

T = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z


def test_constants_agree():
    assert (NS_PER_US, NS_PER_MS, NS_PER_S) == (1_000, 1_000_000, 1_000_000_000)
    assert EPOCH == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("1700000000123", 1_700_000_000_123_000_000),
    ("1700000000123.456789", T),
    ("1700000000123.5", 1_700_000_000_123_500_000),
    (" 0 ", 0),
    ("2023-11-14T22:13:20.123456789Z", T),
    ("2023-11-14T23:13:20.123456789+01:00", T),
    ("2023-11-14 22:13:20,123456789+00:00", T),
    ("2023-11-14T22:13:20.1234567891234Z", T),  # digits past the nanosecond are dropped
    ("2023-11-14T22:13:20Z", 1_700_000_000 * NS_PER_S),
    ("1969-12-31T23:59:59.5Z", -NS_PER_S // 2),  # before the epoch, exactly
])
def test_epoch_ms_and_iso_8601_are_read_to_the_nanosecond(text, expected):
    assert parse_time_ns(text) == expected


@pytest.mark.parametrize(("naive", "with_offset"), [
    ("2023-11-14T22:13:20.123456789", "2023-11-14T22:13:20.123456789Z"),
    ("2024-03-01", "2024-03-01T00:00:00Z"),
    ("2024-03-01T12:00", "2024-03-01T12:00:00+00:00"),
])
def test_the_one_rule_an_iso_time_without_offset_is_utc(naive, with_offset):
    assert parse_time_ns(naive) == parse_time_ns(with_offset)
    assert datetime_to_ns(datetime.fromisoformat(naive[:26])) == datetime_to_ns(datetime.fromisoformat(naive[:26])
                                                                                  .replace(tzinfo=UTC))


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01", "-5", "+5", "1.5e12", "1700000000123.1234567",
                                  "12:00"])
def test_anything_else_is_refused_quoting_the_text(text):
    with pytest.raises(TimeFormatError, match="ISO 8601") as refused:
        parse_time_ns(text)
    assert repr(text.strip()) in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_milliseconds_options_and_datetimes_come_from_the_same_parser():
    assert parse_time_ms("1700000000123.999") == 1_700_000_000_123
    assert parse_time_ms("2024-03-01T00:00:00.250Z") == 1_709_251_200_250
    assert parse_time_option(" now ", now_ms=42) == 42
    assert parse_time_option("2024-03-01", now_ms=42) == 1_709_251_200_000
    assert parse_datetime("2024-03-01T01:00:00+01:00") == datetime(2024, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time_option("soon", now_ms=42)


def test_conversions_are_exact_integers_and_floor_before_the_epoch():
    moment = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert datetime_to_ns(moment) == T - 789
    assert datetime_to_ns(moment.astimezone(timezone(timedelta(hours=-5)))) == T - 789
    assert datetime_to_ns(moment.replace(tzinfo=None)) == T - 789  # naive = UTC
    assert ns_to_datetime(T) == moment  # sub-microsecond part dropped
    assert ns_to_datetime(-1) == EPOCH - timedelta(microseconds=1)
    assert datetime_to_ms(moment) == 1_700_000_000_123 and ms_to_datetime(1_700_000_000_123) == moment.replace(
        microsecond=123000)
    assert ms_to_ns(5) == 5 * NS_PER_MS and ns_to_ms(-1) == -1 and ns_to_ms(T) == 1_700_000_000_123
    # Far from the epoch a float would lose nanoseconds; integers do not.
    far = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
    assert datetime_to_ns(far) == 9_223_372_036_854_775_000
    assert as_utc(datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == datetime(2024, 1, 1, tzinfo=UTC)


def test_formats_read_back_by_the_parser():
    assert format_time_ns(T) == "2023-11-14T22:13:20.123456789Z"
    assert format_time_ns(1_700_000_000 * NS_PER_S) == "2023-11-14T22:13:20Z"
    assert format_time_ms(T) == "2023-11-14T22:13:20.123Z"
    assert format_datetime(datetime(2024, 3, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == "2024-03-01T00:00:00Z"
    for ns in (T, 0, -1, 1_709_251_200_250_000_000):
        assert parse_time_ns(format_time_ns(ns)) == ns
        assert parse_time_ns(format_time_ms(ns)) == ns // NS_PER_MS * NS_PER_MS
