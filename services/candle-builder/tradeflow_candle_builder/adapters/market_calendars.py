"""Market calendars from exchange_calendars, turned into :class:`SessionTable` s (cached per calendar).

exchange_calendars knows every session's open, close (early closes included) and lunch break,
in UTC. It does not know extended (pre-market / after-hours) sessions; the ones we define are in
:data:`EXTENDED_HOURS`, in the market's local time, only for calendars whose extended hours we
know. Loading one calendar takes about 0.1 s, so tables are cached per (calendar, extended hours)
and callers on the event loop load them in a worker thread.

The loaded range is :data:`FIRST_SESSION` to two years after today (clamped to the calendar's own
bounds): a trade outside it is outside every session. The cache is rebuilt when the day changes,
so a long-running process keeps two years ahead.

exchange_calendars and pandas are imported on first use: a deployment with only 24/7 instruments
never loads them (about 60 MB of memory).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tradeflow.time import NS_PER_SECOND, datetime_to_ns

from tradeflow_candle_builder.domain.instruments import TWENTY_FOUR_SEVEN
from tradeflow_candle_builder.domain.sessions import Segment, Session, SessionTable

if TYPE_CHECKING:
    import pandas as pd

FIRST_SESSION = date(2000, 1, 1)
YEARS_AHEAD = 2


@dataclass(frozen=True, slots=True)
class ExtendedHours:
    """Pre-market from ``pre_open`` to the regular open; after-hours from the close for
    ``after_hours`` but not past ``post_close`` (all local time). After an early close at 13:00
    the after-hours session therefore runs 13:00-17:00, as on NYSE Arca and Nasdaq."""

    pre_open: time
    post_close: time
    after_hours: timedelta


US_EQUITIES = ExtendedHours(time(4, 0), time(20, 0), timedelta(hours=4))
EXTENDED_HOURS: dict[str, ExtendedHours] = {"XNYS": US_EQUITIES, "XNAS": US_EQUITIES}
EXAMPLE_CALENDARS = ("24/7", "XNYS", "XNAS", "XLON", "XTKS", "XETR", "XHKG")


class UnknownCalendarError(ValueError):
    pass


def _xcals():
    import exchange_calendars

    return exchange_calendars


def calendar_codes() -> list[str]:
    """Every calendar code exchange_calendars knows (aliases included), sorted."""
    return sorted(_xcals().get_calendar_names(include_aliases=True))


def canonical_calendar(code: str) -> str:
    """``code`` as stored: "24/7" (ours: UTC-aligned bars, not exchange_calendars' 24/7
    calendar), or exchange_calendars' canonical name (aliases resolved).

    UnknownCalendarError (naming examples) when exchange_calendars does not know it.
    """
    if code == TWENTY_FOUR_SEVEN:
        return code
    xcals = _xcals()
    if code not in xcals.get_calendar_names(include_aliases=True):
        raise UnknownCalendarError(
            f"unknown calendar {code!r}; use '24/7' (the default) or an exchange_calendars code, "
            f"e.g. {', '.join(EXAMPLE_CALENDARS[1:])} ({len(calendar_codes())} known)")
    return xcals.resolve_alias(code)


_lock = threading.Lock()


def session_table(code: str, extended_hours: bool) -> SessionTable:
    """The sessions of calendar ``code`` (canonical), regular or extended; cached for the day."""
    with _lock, warnings.catch_warnings():  # one builder at a time (exchange_calendars' caches)
        # exchange_calendars 4.13 reads Series.values of tz-aware columns, which pandas 3.1 deprecates.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return _session_table(code, extended_hours, date.today())


@lru_cache(maxsize=64)
def _session_table(code: str, extended_hours: bool, today: date) -> SessionTable:
    import pandas as pd

    xcals = _xcals()
    cls = type(xcals.get_calendar(code))
    start = pd.Timestamp(FIRST_SESSION)
    end = pd.Timestamp(today.replace(year=today.year + YEARS_AHEAD) if not (today.month == 2 and today.day == 29)
                       else today + timedelta(days=365 * YEARS_AHEAD))
    bound_min, bound_max = cls.bound_min(), cls.bound_max()
    if bound_min is not None:
        start = max(start, pd.Timestamp(bound_min).tz_localize(None).normalize())
    if bound_max is not None:
        end = min(end, pd.Timestamp(bound_max).tz_localize(None).normalize())
    calendar = xcals.get_calendar(code, start=start, end=end)
    extended = EXTENDED_HOURS.get(code) if extended_hours else None
    if extended_hours and extended is None:
        raise ValueError(f"{code} has no known extended session")
    return SessionTable(f"{code}{' extended' if extended else ''}",
                        build_sessions(calendar.schedule, ZoneInfo(str(calendar.tz)), extended))


def _ns(column: pd.Series) -> list[int | None]:
    """UTC nanoseconds of a datetime column (None for NaT), whatever pandas' time unit."""
    values = column.dt.as_unit("ns")
    return [None if v is None or v != v else int(v.value) for v in values]  # NaT != NaT


def _local_ns(day: date, at: time, tz: ZoneInfo) -> int:
    return datetime_to_ns(datetime.combine(day, at, tzinfo=tz))


def build_sessions(schedule: pd.DataFrame, tz: ZoneInfo, extended: ExtendedHours | None) -> list[Session]:
    """Sessions from an exchange_calendars schedule (columns open, break_start, break_end, close)."""
    opens, closes = _ns(schedule["open"]), _ns(schedule["close"])
    break_starts, break_ends = _ns(schedule["break_start"]), _ns(schedule["break_end"])
    sessions = []
    for label, open_, close, b_start, b_end in zip(schedule.index, opens, closes, break_starts, break_ends,
                                                   strict=True):
        day = label.date()
        week = day.toordinal() - day.weekday()
        if extended is not None:
            # One continuous extended session; the grid stays anchored at the regular open.
            pre = min(_local_ns(day, extended.pre_open, tz), open_)
            post = max(close, min(_local_ns(day, extended.post_close, tz),
                                  close + int(extended.after_hours.total_seconds()) * NS_PER_SECOND))
            segments = (Segment(pre, post, open_),)
        elif b_start is not None and b_end is not None and open_ < b_start < b_end < close:
            segments = (Segment(open_, b_start, open_), Segment(b_end, close, b_end))
        else:
            segments = (Segment(open_, close, open_),)
        sessions.append(Session(segments, week))
    return sessions
