"""Timeframes and their buckets: the only place that knows how time is cut into candles.

Shared by the candle-builder (which cuts trades into candles), the strategy SDK and the
backtest (which read higher timeframes and must agree on where a bucket ends).

A candle is labelled by the start of its bucket and covers [start, end). Every timeframe of the
design (1m, 5m, 15m, 1h, 4h, 1d, 1w) is a fixed-length grid aligned to UTC; the weekly grid is
shifted so that weeks start on Monday 00:00 UTC (the epoch, 1970-01-01, was a Thursday).

Instruments with trading sessions need buckets aligned to the session open in the market's
time zone, cut at the session close and following a calendar: that is the candle-builder's
``SessionTimeframe`` (same ``bucket_start``/``bucket_end`` interface, chosen per instrument,
docs/adr/0008).

The aggregator builds every higher timeframe from closed 1m candles. That is exact only because
each 1m bucket nests inside exactly one bucket of every higher timeframe (all lengths are whole
minutes and every grid origin is on a minute boundary); :data:`TIMEFRAMES` asserts this at
import so a new timeframe cannot silently break it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import AfterValidator

# The time conventions live in tradeflow.time; re-exported here for the timeframe users.
from tradeflow.time import EPOCH, NS_PER_SECOND, datetime_to_ns, ns_to_datetime

__all__ = [
    "DAY_NS", "EPOCH", "HIGHER_TIMEFRAMES", "HOUR_NS", "MINUTE_NS", "MONDAY_ORIGIN_NS", "NS_PER_SECOND",
    "ONE_MINUTE", "TIMEFRAMES", "WEEK_NS", "Timeframe", "TimeframeName", "check_timeframe_name", "datetime_to_ns",
    "ns_to_datetime", "timeframe",
]

MINUTE_NS = 60 * NS_PER_SECOND
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
WEEK_NS = 7 * DAY_NS
# 1970-01-05 00:00 UTC was the first Monday after the epoch: the origin of the weekly grid.
MONDAY_ORIGIN_NS = 4 * DAY_NS


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A grid of buckets ``[origin + k*length, origin + (k+1)*length)`` in UTC nanoseconds."""

    name: str
    length_ns: int
    origin_ns: int = 0

    session_aligned: ClassVar[bool] = False  # the candle-builder's SessionTimeframe sets it

    def bucket_start(self, ts_ns: int) -> int:
        """Start of the bucket holding ``ts_ns``; a time exactly on a boundary opens the next bucket."""
        # Python's % is never negative for a positive divisor, so pre-epoch times work too.
        return ts_ns - (ts_ns - self.origin_ns) % self.length_ns

    def bucket_end(self, bucket_start_ns: int) -> int:
        return bucket_start_ns + self.length_ns


ONE_MINUTE = Timeframe("1m", MINUTE_NS)
TIMEFRAMES: dict[str, Timeframe] = {
    tf.name: tf
    for tf in (
        ONE_MINUTE,
        Timeframe("5m", 5 * MINUTE_NS),
        Timeframe("15m", 15 * MINUTE_NS),
        Timeframe("1h", HOUR_NS),
        Timeframe("4h", 4 * HOUR_NS),
        Timeframe("1d", DAY_NS),
        Timeframe("1w", WEEK_NS, MONDAY_ORIGIN_NS),
    )
}
HIGHER_TIMEFRAMES: tuple[Timeframe, ...] = tuple(tf for tf in TIMEFRAMES.values() if tf is not ONE_MINUTE)

for _tf in HIGHER_TIMEFRAMES:  # the nesting that makes "higher timeframes from 1m" exact
    assert _tf.length_ns % MINUTE_NS == 0 and _tf.origin_ns % MINUTE_NS == 0, _tf


def timeframe(name: str) -> Timeframe:
    """The timeframe called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return TIMEFRAMES[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r}; known: {', '.join(TIMEFRAMES)}") from None


def check_timeframe_name(name: str) -> str:
    """``name`` when it is a timeframe of the design; ValueError naming the known ones otherwise."""
    timeframe(name)
    return name


# A model field naming a timeframe ("1m" .. "1w").
TimeframeName = Annotated[str, AfterValidator(check_timeframe_name)]
