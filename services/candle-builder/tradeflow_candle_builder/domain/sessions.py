"""Trading sessions and the bar grids aligned to them (pure: plain integers, bisect lookups).

An instrument with trading sessions (a stock on XNYS, XLON, XTKS...) is cut into candles by its
market's calendar instead of the UTC grid of :mod:`timeframes`:

* Intraday bars (5m, 15m, 1h, 4h) lie on a grid anchored at the session open (so 09:30, 10:30,
  ... New York time for 1h on XNYS, whatever the UTC offset that day: daylight-saving changes
  shift nothing in local time). The bar that would run past the close is cut at the close
  (early closes included): its ``ts_end`` is the close.
* A market with a lunch break (XTKS) trades in two *segments*; the afternoon segment's bars are
  anchored at the break end and the morning's last bar is cut at the break start. Trades inside
  the break are outside the session.
* 1d is the session itself (label = its first instant, ``ts_end`` = its last); 1w is the
  sessions of one local calendar week (Monday to Sunday by session date).
* With extended hours the session runs from the pre-market open to the after-hours close; the
  intraday grid stays anchored at the regular open and is extended both ways, so the first and
  last bars are cut at the extended bounds.
* 1m bars are the UTC minute grid, unchanged: every bound must be on a whole minute (checked
  when a table is built), so each 1m bucket is wholly inside or wholly outside a session and
  higher bars can be folded exactly from closed 1m candles.

Times outside every session (nights, weekends, holidays, breaks, and pre/after-market without
extended hours) belong to no bar: ``bucket_start`` returns None.

Loading a market calendar (exchange_calendars) is the job of ``adapters/market_calendars.py``;
this module only sees the resulting :class:`Session` list.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from tradeflow_candle_builder.domain.timeframes import HIGHER_TIMEFRAMES, MINUTE_NS


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of continuous trading ``[start, end)`` whose intraday grid is anchored at ``anchor``."""

    start: int
    end: int
    anchor: int


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day: its segments (one, or two around a lunch break) and its local calendar week.

    ``week`` is any integer shared by the sessions of one local calendar week (e.g. the
    ordinal of that week's Monday).
    """

    segments: tuple[Segment, ...]
    week: int

    @property
    def start(self) -> int:
        return self.segments[0].start

    @property
    def end(self) -> int:
        return self.segments[-1].end


class SessionTable:
    """The sessions of one calendar in one mode (regular or extended), sorted, with O(log n) lookups."""

    def __init__(self, name: str, sessions: Sequence[Session]) -> None:
        self.name = name
        seg_starts: list[int] = []
        seg_ends: list[int] = []
        seg_anchors: list[int] = []
        seg_session: list[int] = []
        previous_end = None
        for index, session in enumerate(sessions):
            for seg in session.segments:
                for bound in (seg.start, seg.end, seg.anchor):
                    if bound % MINUTE_NS:
                        raise ValueError(f"{name}: session bound {bound} ns is not on a whole minute")
                if seg.end <= seg.start or (previous_end is not None and seg.start < previous_end):
                    raise ValueError(f"{name}: segments must be non-empty and in time order ({seg})")
                previous_end = seg.end
                seg_starts.append(seg.start)
                seg_ends.append(seg.end)
                seg_anchors.append(seg.anchor)
                seg_session.append(index)
        self._seg_starts = seg_starts
        self._seg_ends = seg_ends
        self._seg_anchors = seg_anchors
        self._seg_session = seg_session
        self.session_starts = [s.start for s in sessions]
        self.session_ends = [s.end for s in sessions]
        # Weeks: consecutive sessions with the same week key form one weekly bar.
        self._session_week: list[int] = []
        self.week_starts: list[int] = []
        self.week_ends: list[int] = []
        last_key = None
        for session in sessions:
            if session.week != last_key:
                self.week_starts.append(session.start)
                self.week_ends.append(session.end)
                last_key = session.week
            else:
                self.week_ends[-1] = session.end
            self._session_week.append(len(self.week_starts) - 1)
        self.first = seg_starts[0] if seg_starts else None
        self.last = seg_ends[-1] if seg_ends else None

    def __len__(self) -> int:
        return len(self.session_starts)

    def segment_index(self, ts_ns: int) -> int:
        """Index of the segment holding ``ts_ns``, -1 when it is outside every session."""
        i = bisect_right(self._seg_starts, ts_ns) - 1
        if i >= 0 and ts_ns < self._seg_ends[i]:
            return i
        return -1

    def contains(self, ts_ns: int) -> bool:
        """Whether a trade at ``ts_ns`` is inside a session (and so counts in candles)."""
        i = bisect_right(self._seg_starts, ts_ns) - 1
        return i >= 0 and ts_ns < self._seg_ends[i]

    def intraday_bucket(self, ts_ns: int, length_ns: int) -> tuple[int, int] | None:
        """``(start, end)`` of the ``length_ns`` bar holding ``ts_ns``, cut at its segment's bounds."""
        i = self.segment_index(ts_ns)
        if i < 0:
            return None
        anchor = self._seg_anchors[i]
        grid_start = ts_ns - (ts_ns - anchor) % length_ns
        return max(grid_start, self._seg_starts[i]), min(grid_start + length_ns, self._seg_ends[i])

    def session_bucket(self, ts_ns: int) -> tuple[int, int] | None:
        i = self.segment_index(ts_ns)
        if i < 0:
            return None
        s = self._seg_session[i]
        return self.session_starts[s], self.session_ends[s]

    def week_bucket(self, ts_ns: int) -> tuple[int, int] | None:
        i = self.segment_index(ts_ns)
        if i < 0:
            return None
        w = self._session_week[self._seg_session[i]]
        return self.week_starts[w], self.week_ends[w]


@dataclass(frozen=True, slots=True)
class SessionTimeframe:
    """A session-aligned timeframe with :class:`~timeframes.Timeframe`'s interface.

    ``bucket_start`` returns None for a time outside every session; ``bucket_end`` takes a
    bucket start this timeframe returned (the end is the cut one).
    """

    name: str
    table: SessionTable
    length_ns: int  # the grid step for intraday bars; 0 for "the session" (1d) and -1 for the week

    session_aligned: ClassVar[bool] = True

    def bucket(self, ts_ns: int) -> tuple[int, int] | None:
        if self.length_ns > 0:
            return self.table.intraday_bucket(ts_ns, self.length_ns)
        if self.length_ns == 0:
            return self.table.session_bucket(ts_ns)
        return self.table.week_bucket(ts_ns)

    def bucket_start(self, ts_ns: int) -> int | None:
        b = self.bucket(ts_ns)
        return None if b is None else b[0]

    def bucket_end(self, bucket_start_ns: int) -> int:
        b = self.bucket(bucket_start_ns)
        if b is None:
            raise ValueError(f"{self.name}: {bucket_start_ns} is not inside a session of {self.table.name}")
        return b[1]


SESSION_DAY = 0
SESSION_WEEK = -1


def session_timeframes(table: SessionTable) -> tuple[SessionTimeframe, ...]:
    """The higher timeframes (5m ... 1w, same names as the UTC ones) aligned to ``table``'s sessions."""
    out = []
    for tf in HIGHER_TIMEFRAMES:
        if tf.name == "1d":
            length = SESSION_DAY
        elif tf.name == "1w":
            length = SESSION_WEEK
        else:
            length = tf.length_ns
        out.append(SessionTimeframe(tf.name, table, length))
    return tuple(out)
