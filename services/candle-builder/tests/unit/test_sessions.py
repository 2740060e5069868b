"""Session-aligned bar grids on real market calendars (exchange_calendars): XNYS regular day, early
close, holiday, weekend and both US daylight-saving changes; extended hours; XTKS lunch break; XLON."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tradeflow_candle_builder.adapters.market_calendars import (
    UnknownCalendarError,
    canonical_calendar,
    session_table,
)
from tradeflow_candle_builder.domain.sessions import Segment, Session, SessionTable, session_timeframes
from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, datetime_to_ns, ns_to_datetime


def ns(text: str) -> int:
    return datetime_to_ns(datetime.fromisoformat(text).replace(tzinfo=UTC))


def utc(value: int) -> str:
    return ns_to_datetime(value).strftime("%Y-%m-%d %H:%M")


def bars(calendar: str, at: str, extended: bool = False) -> dict[str, tuple[str, str] | None]:
    """Every higher timeframe's (start, end) in UTC for a trade at ``at`` (UTC)."""
    table = session_table(calendar, extended)
    out = {}
    for tf in session_timeframes(table):
        b = tf.bucket(ns(at))
        out[tf.name] = None if b is None else (utc(b[0]), utc(b[1]))
    return out


def grid(calendar: str, day: str, timeframe: str, extended: bool = False) -> list[tuple[str, str]]:
    """All bars of one timeframe of the session that starts on UTC day ``day`` (walking minute by minute)."""
    table = session_table(calendar, extended)
    tf = {t.name: t for t in session_timeframes(table)}[timeframe]
    seen: list[tuple[str, str]] = []
    t = ns(f"{day} 00:00")
    for _ in range(24 * 60 + 8 * 60):  # into the next UTC day: US after-hours end after midnight UTC
        b = tf.bucket(t)
        session = table.session_bucket(t)
        if b is not None and utc(session[0])[:10] == day and (utc(b[0]), utc(b[1])) not in seen:
            seen.append((utc(b[0]), utc(b[1])))
        t += MINUTE_NS
    return seen


def test_xnys_regular_day_bars_start_at_the_open_and_the_last_is_cut_at_the_close():
    # Wed 2025-11-26, EST: 09:30-16:00 local = 14:30-21:00 UTC.
    assert grid("XNYS", "2025-11-26", "1h") == [
        ("2025-11-26 14:30", "2025-11-26 15:30"), ("2025-11-26 15:30", "2025-11-26 16:30"),
        ("2025-11-26 16:30", "2025-11-26 17:30"), ("2025-11-26 17:30", "2025-11-26 18:30"),
        ("2025-11-26 18:30", "2025-11-26 19:30"), ("2025-11-26 19:30", "2025-11-26 20:30"),
        ("2025-11-26 20:30", "2025-11-26 21:00")]
    assert grid("XNYS", "2025-11-26", "4h") == [
        ("2025-11-26 14:30", "2025-11-26 18:30"), ("2025-11-26 18:30", "2025-11-26 21:00")]
    assert grid("XNYS", "2025-11-26", "1d") == [("2025-11-26 14:30", "2025-11-26 21:00")]
    assert len(grid("XNYS", "2025-11-26", "5m")) == 78 and len(grid("XNYS", "2025-11-26", "15m")) == 26


def test_xnys_early_close_cuts_the_last_bars_and_the_day():
    # Fri 2025-11-28, the day after Thanksgiving: close 13:00 local = 18:00 UTC.
    assert bars("XNYS", "2025-11-28 17:45") == {
        "5m": ("2025-11-28 17:45", "2025-11-28 17:50"), "15m": ("2025-11-28 17:45", "2025-11-28 18:00"),
        "1h": ("2025-11-28 17:30", "2025-11-28 18:00"), "4h": ("2025-11-28 14:30", "2025-11-28 18:00"),
        "1d": ("2025-11-28 14:30", "2025-11-28 18:00"), "1w": ("2025-11-24 14:30", "2025-11-28 18:00")}
    assert bars("XNYS", "2025-11-28 18:00")["1h"] is None  # the close is outside


def test_xnys_holiday_weekend_and_nights_have_no_bars():
    for at in ("2025-11-27 15:00",  # Thanksgiving
               "2025-11-29 15:00", "2025-11-30 15:00",  # weekend
               "2025-11-26 14:29", "2025-11-26 21:00", "2025-11-26 23:00"):  # before the open, after the close
        assert set(bars("XNYS", at).values()) == {None}, at
        assert not session_table("XNYS", False).contains(ns(at))


@pytest.mark.parametrize(("before", "after"), [
    # March 2025: EST -> EDT on Sunday 03-09; the 09:30 open moves from 14:30 to 13:30 UTC.
    (("2025-03-07 14:30", "2025-03-07 15:30"), ("2025-03-10 13:30", "2025-03-10 14:30")),
    # November 2025: EDT -> EST on Sunday 11-02; the open moves from 13:30 to 14:30 UTC.
    (("2025-10-31 13:30", "2025-10-31 14:30"), ("2025-11-03 14:30", "2025-11-03 15:30")),
])
def test_daylight_saving_changes_shift_nothing_in_local_time(before, after):
    assert bars("XNYS", before[0])["1h"] == before
    assert bars("XNYS", after[0])["1h"] == after
    # The same local bar (09:30-10:30 New York) on both sides of the change.
    for start, _ in (before, after):
        local = ns_to_datetime(ns(start)).astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (9, 30)


def test_xnys_week_is_the_sessions_of_one_local_week_across_the_dst_change():
    # Mon 2025-11-03 (EST) .. Fri 2025-11-07; the week before ends Fri 10-31 (EDT).
    assert bars("XNYS", "2025-11-05 16:00")["1w"] == ("2025-11-03 14:30", "2025-11-07 21:00")
    assert bars("XNYS", "2025-10-29 16:00")["1w"] == ("2025-10-27 13:30", "2025-10-31 20:00")


def test_xnys_extended_hours_extend_the_grid_both_ways_and_cut_at_the_extended_bounds():
    # Wed 2025-11-26: 04:00-20:00 local = 09:00-01:00(+1) UTC, grid anchored at 09:30 local.
    one_hour = grid("XNYS", "2025-11-26", "1h", extended=True)
    assert one_hour[0] == ("2025-11-26 09:00", "2025-11-26 09:30")
    assert one_hour[1] == ("2025-11-26 09:30", "2025-11-26 10:30")
    assert ("2025-11-26 14:30", "2025-11-26 15:30") in one_hour  # the regular open is still a bar start
    assert one_hour[-1] == ("2025-11-27 00:30", "2025-11-27 01:00")
    assert grid("XNYS", "2025-11-26", "1d", extended=True) == [("2025-11-26 09:00", "2025-11-27 01:00")]
    # After the early close the after-hours session lasts four hours: 13:00-17:00 local.
    assert bars("XNYS", "2025-11-28 21:59", extended=True)["1d"] == ("2025-11-28 09:00", "2025-11-28 22:00")
    assert bars("XNYS", "2025-11-28 22:00", extended=True)["1d"] is None
    assert bars("XNYS", "2025-11-27 12:00", extended=True)["1d"] is None  # the holiday has no extended session


def test_xtks_lunch_break_splits_the_grid_into_two_segments():
    # 2025-11-19 JST 09:00-11:30 and 12:30-15:30 = 00:00-02:30 and 03:30-06:30 UTC.
    assert grid("XTKS", "2025-11-19", "1h") == [
        ("2025-11-19 00:00", "2025-11-19 01:00"), ("2025-11-19 01:00", "2025-11-19 02:00"),
        ("2025-11-19 02:00", "2025-11-19 02:30"),
        ("2025-11-19 03:30", "2025-11-19 04:30"), ("2025-11-19 04:30", "2025-11-19 05:30"),
        ("2025-11-19 05:30", "2025-11-19 06:30")]
    assert bars("XTKS", "2025-11-19 03:00")["5m"] is None  # inside the break
    assert bars("XTKS", "2025-11-19 03:00")["1d"] is None
    assert bars("XTKS", "2025-11-19 05:00")["1d"] == ("2025-11-19 00:00", "2025-11-19 06:30")


def test_xlon_early_close_and_british_summer_time():
    # Christmas Eve 2025: 08:00-12:30 GMT; 1h bars 08:00 .. 12:00-12:30.
    assert grid("XLON", "2025-12-24", "1h")[-1] == ("2025-12-24 12:00", "2025-12-24 12:30")
    assert grid("XLON", "2025-12-24", "1d") == [("2025-12-24 08:00", "2025-12-24 12:30")]
    assert grid("XLON", "2025-12-25", "1d") == []  # Christmas
    # BST from Sunday 2025-03-30: the 08:00 local open is 07:00 UTC.
    assert grid("XLON", "2025-03-28", "1d") == [("2025-03-28 08:00", "2025-03-28 16:30")]
    assert grid("XLON", "2025-03-31", "1d") == [("2025-03-31 07:00", "2025-03-31 15:30")]


def test_calendar_codes_are_checked_and_aliases_resolved():
    assert canonical_calendar("XNYS") == "XNYS"
    assert canonical_calendar("NYSE") == "XNYS"
    assert canonical_calendar("24/7") == "24/7"
    with pytest.raises(UnknownCalendarError, match="XNYS"):
        canonical_calendar("NOPE")


def test_a_session_table_refuses_bounds_off_the_minute_grid_and_overlaps():
    with pytest.raises(ValueError, match="whole minute"):
        SessionTable("bad", [Session((Segment(0, MINUTE_NS + 1, 0),), 0)])
    with pytest.raises(ValueError, match="time order"):
        SessionTable("bad", [Session((Segment(0, 10 * MINUTE_NS, 0),), 0),
                             Session((Segment(5 * MINUTE_NS, 20 * MINUTE_NS, 5 * MINUTE_NS),), 0)])


def test_every_loaded_bound_is_on_a_minute_so_1m_buckets_nest():
    for code in ("XNYS", "XLON", "XTKS"):
        table = session_table(code, False)
        assert len(table) > 5000
        assert all(b % MINUTE_NS == 0 for b in table.session_starts + table.session_ends)
