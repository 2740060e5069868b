"""The tests' independent computation of session-aligned candles (exchange_calendars + plain Python).

Written apart from the service (it never imports tradeflow_candle_builder): it enumerates every
bar of every session explicitly, in the market's local time, then drops each trade into its bar
by bisection, where the service computes a trade's bar arithmetically from the session open.

The rules (shared/design.md, docs/adr/0008): a session instrument's trades count only inside a
session (regular, or extended 04:00 to min(20:00, close + 4 h) New York time when extended
hours are on); intraday bars step from the regular open in local time, both ways, and are cut at
the session's bounds; 1d is the session; 1w the sessions of one local calendar week (by session
date). 24/7 instruments use the UTC grid (weeks from Monday 00:00 UTC).
"""

from __future__ import annotations

import warnings
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

MS = 1_000_000  # ns per ms
INTRADAY = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240}
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d", "1w")


@dataclass(frozen=True)
class Trade:
    ts_ms: int  # event time, epoch ms
    exchange: str
    symbol: str
    price: float
    amount: float
    trade_id: str


@dataclass(frozen=True)
class Bar:
    start_ms: int
    end_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int

    def values(self) -> tuple:
        return (self.open, self.high, self.low, self.close, round(self.volume, 6), self.trades)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class CalendarBars:
    """Every bar of every session of one calendar in [first_day, last_day], per timeframe."""

    def __init__(self, code: str, first_day: date, last_day: date, extended_hours: bool) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calendar = xcals.get_calendar(code, start=pd.Timestamp(first_day), end=pd.Timestamp(last_day))
        tz = ZoneInfo(str(calendar.tz))
        self.sessions: list[tuple[int, int, date]] = []  # (start ms, end ms, session date)
        self.bars: dict[str, list[tuple[int, int]]] = {tf: [] for tf in TIMEFRAMES if tf != "1w"}
        for label, row in calendar.schedule.iterrows():
            day = label.date()
            regular_open = row["open"].tz_convert(tz).to_pydatetime()
            regular_close = row["close"].tz_convert(tz).to_pydatetime()
            if extended_hours:
                first = min(datetime.combine(day, time(4, 0), tz), regular_open)
                last = max(regular_close, min(datetime.combine(day, time(20, 0), tz),
                                              regular_close + timedelta(hours=4)))
            else:
                first, last = regular_open, regular_close
            self.sessions.append((_ms(first), _ms(last), day))
            self.bars["1d"].append((_ms(first), _ms(last)))
            for tf, minutes in INTRADAY.items():
                step = timedelta(minutes=minutes)
                edges = [regular_open]
                while edges[0] > first:
                    edges.insert(0, edges[0] - step)
                while edges[-1] < last:
                    edges.append(edges[-1] + step)
                for a, b in zip(edges, edges[1:], strict=False):
                    lo, hi = max(a, first), min(b, last)
                    if lo < hi:
                        self.bars[tf].append((_ms(lo), _ms(hi)))
        weeks: dict[tuple[int, int], list[int]] = {}
        for start, end, day in self.sessions:
            weeks.setdefault(day.isocalendar()[:2], []).extend([start, end])
        self.bars["1w"] = sorted((min(v), max(v)) for v in weeks.values())
        self._starts = {tf: [b[0] for b in bars] for tf, bars in self.bars.items()}

    def bar_of(self, timeframe: str, ts_ms: int) -> tuple[int, int] | None:
        if timeframe == "1w" and self.bar_of("1d", ts_ms) is None:
            return None  # a week spans nights and weekends, which are outside its sessions
        starts = self._starts[timeframe]
        i = bisect_right(starts, ts_ms) - 1
        if i < 0:
            return None
        start, end = self.bars[timeframe][i]
        return (start, end) if ts_ms < end else None


def utc_bar(timeframe: str, ts_ms: int) -> tuple[int, int]:
    """The UTC grid of 24/7 instruments: minutes from the epoch; weeks from Monday 1970-01-05."""
    if timeframe == "1w":
        length = 7 * 86_400_000
        origin = 4 * 86_400_000
    else:
        length = {"1d": 86_400_000}.get(timeframe) or INTRADAY[timeframe] * 60_000
        origin = 0
    start = origin + (ts_ms - origin) // length * length
    return start, start + length


def expected_bars(trades: list[Trade], timeframe: str, calendar: CalendarBars | None) -> list[Bar]:
    """Candles of one instrument: trades in arrival order, stable-sorted by event time, folded per bar."""
    folded: dict[tuple[int, int], list] = {}
    for t in sorted(trades, key=lambda t: t.ts_ms):
        bar = utc_bar(timeframe, t.ts_ms) if calendar is None else calendar.bar_of(timeframe, t.ts_ms)
        if bar is None:
            continue  # outside every session: stored, but in no candle
        c = folded.get(bar)
        if c is None:
            folded[bar] = [t.price, t.price, t.price, t.price, t.amount, 1]
        else:
            c[1], c[2], c[3] = max(c[1], t.price), min(c[2], t.price), t.price
            c[4] += t.amount
            c[5] += 1
    return [Bar(s, e, *folded[(s, e)]) for s, e in sorted(folded)]


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
