"""Trading hours from the candle-builder's instrument registry and exchange_calendars.

The candle-builder owns the registry of instruments and their market calendars (ADR 0008) and
serves it at ``GET /v1/instruments``; risk reads it over HTTP (no service imports another)
from ``TRADEFLOW_RISK_INSTRUMENTS_URL`` every ``TRADEFLOW_RISK_INSTRUMENTS_REFRESH_S``, keeping
the last good copy when a refresh fails. An instrument that is not registered, or registered
as "24/7", trades around the clock. For the others the calendar's regular sessions (open to
close, lunch breaks excluded) come from exchange_calendars, loaded once per calendar in a worker
thread from 2000 to two years ahead; outside that range a market counts as closed. Extended
hours are not counted: a registration with extended hours is treated as its regular sessions
(the candle-builder's extended-session table is its own), which refuses orders in pre-market
and after-hours.

Without a URL nothing is registered: every instrument is 24/7 (said at start in the log).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from datetime import date, timedelta

import httpx
from tradeflow.bus.trace_context import propagate_to_request
from tradeflow.periodic import PeriodicTask

from tradeflow_risk.domain.hours import SessionCalendar

log = logging.getLogger(__name__)

FIRST_SESSION = date(2000, 1, 1)
YEARS_AHEAD = 2
TWENTY_FOUR_SEVEN = "24/7"


def load_calendar(code: str) -> SessionCalendar:
    """The regular sessions of exchange_calendars' ``code`` as UTC-nanosecond intervals (blocking)."""
    import exchange_calendars
    import pandas as pd

    with warnings.catch_warnings():
        # exchange_calendars 4.13 uses pandas APIs that pandas 3 deprecates (Series.values of tz-aware
        # columns, DatetimeIndex.weekday): noise for operators, nothing to act on here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        cls = type(exchange_calendars.get_calendar(code))
        start = pd.Timestamp(FIRST_SESSION)
        end = pd.Timestamp(date.today() + timedelta(days=365 * YEARS_AHEAD))
        if cls.bound_min() is not None:
            start = max(start, pd.Timestamp(cls.bound_min()).tz_localize(None).normalize())
        if cls.bound_max() is not None:
            end = min(end, pd.Timestamp(cls.bound_max()).tz_localize(None).normalize())
        schedule = exchange_calendars.get_calendar(code, start=start, end=end).schedule
    intervals: list[tuple[int, int]] = []
    for open_, break_start, break_end, close in zip(schedule["open"], schedule["break_start"], schedule["break_end"],
                                                    schedule["close"], strict=True):
        if pd.notna(break_start) and pd.notna(break_end) and open_ < break_start < break_end < close:
            intervals += [(open_.value, break_start.value), (break_end.value, close.value)]
        else:
            intervals.append((open_.value, close.value))
    return SessionCalendar(code, intervals)


class InstrumentCalendars:
    """A service Component: which calendar each instrument follows, and whether it is open."""

    name = "instrument-calendars"

    def __init__(self, url: str | None, refresh_s: float, timeout_s: float = 5.0) -> None:
        self._url = url.rstrip("/") + "/v1/instruments" if url else None
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._calendar_of: dict[tuple[str, str], str] = {}
        self._calendars: dict[str, SessionCalendar] = {}
        self._loaded = self._url is None
        self._last_error = ""
        # At once, then every refresh_s; every 2 s at most until the first load succeeded.
        self._refresher = PeriodicTask(self.name, self._refresh_once, interval_s=refresh_s, first_delay_s=0,
                                       next_delay_s=lambda: self._refresh_s if self._loaded else min(self._refresh_s, 2.0))

    async def start(self) -> None:
        if self._url is None:
            log.info("no TRADEFLOW_RISK_INSTRUMENTS_URL: every instrument trades 24/7 for risk")
            return
        await self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def ready(self) -> tuple[bool, str]:
        if self._url is None:
            return True, "no instrument registry configured: every instrument is 24/7"
        if self._loaded:
            return True, f"{len(self._calendar_of)} instruments with a market calendar"
        return False, f"instrument registry not loaded yet from {self._url}: {self._last_error or 'loading'}"

    def market_open(self, exchange: str, symbol: str, ts_ns: int) -> tuple[bool | None, str]:
        """(open?, calendar) at ``ts_ns``; (None, "24/7") for an instrument without sessions."""
        code = self._calendar_of.get((exchange, symbol))
        if code is None:
            return None, TWENTY_FOUR_SEVEN
        calendar = self._calendars[code]
        return calendar.is_open(ts_ns), code

    async def reload(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout_s,
                                     event_hooks={"request": [propagate_to_request]}) as client:
            response = await client.get(self._url)
            response.raise_for_status()
            entries = response.json()
        calendar_of = {(e["exchange"], e["symbol"]): e["calendar"] for e in entries
                       if e.get("calendar", TWENTY_FOUR_SEVEN) != TWENTY_FOUR_SEVEN}
        for code in set(calendar_of.values()) - set(self._calendars):
            self._calendars[code] = await asyncio.to_thread(load_calendar, code)
        self._calendar_of = calendar_of
        if not self._loaded:
            log.info("instrument registry loaded: %d instruments with a market calendar", len(calendar_of))
        self._loaded = True

    async def _refresh_once(self) -> None:
        try:
            await self.reload()
            self._last_error = ""
        except Exception as exc:  # noqa: BLE001 - keep the last good registry; retry on the next round
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning("instrument registry refresh from %s failed: %s", self._url, self._last_error)
