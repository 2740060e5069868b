"""When daily reports are due: a wall-clock time of day in a time zone (daylight saving included)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def _at(day, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def last_period_end(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The latest report time at or before ``now`` (UTC)."""
    local_day = now.astimezone(zone).date()
    end = _at(local_day, at, zone)
    return end if end <= now else _at(local_day - timedelta(days=1), at, zone)


def next_period_end(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first report time after ``now`` (UTC)."""
    local_day = now.astimezone(zone).date()
    end = _at(local_day, at, zone)
    return end if end > now else _at(local_day + timedelta(days=1), at, zone)


def period_start(end: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The report time one local day before ``end`` (23 or 25 hours across a DST change)."""
    return _at(end.astimezone(zone).date() - timedelta(days=1), at, zone)
