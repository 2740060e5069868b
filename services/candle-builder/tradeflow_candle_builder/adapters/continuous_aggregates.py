"""Licensed mode: keeping the continuous aggregates candles_5m .. candles_1w right after writes.

With the Timescale license candles_5m .. candles_1w are hierarchical continuous aggregates
(5m <- 1m, 15m <- 5m, 1h <- 15m, 4h <- 1h, 1d <- 1h, 1w <- 1d; docs/adr/0003) with
real-time aggregation. What TimescaleDB does, and what that means for a writer of candles_1m
(docs/adr/0011; each point is shown by a test against a real licensed TimescaleDB):

* An aggregate serves its materialized rows below its *watermark* (the end of its last
  materialized bucket that holds data) and aggregates its parent in real time above it. A
  changed parent row above the watermark is therefore visible at once; one below it only after
  a refresh whose window covers its bucket (the change is logged as an invalidation, and a
  refresh policy only processes invalidations inside its own window: older corrections were
  never materialized).
* A refresh recomputes the invalidated buckets entirely inside its window, from the parent's
  *materialized* rows (for candles_5m: from candles_1m). A window ending above the watermark
  moves the watermark: buckets between the old watermark and the window's start that were
  never materialized are then neither materialized nor real-time: hidden. A materialized
  bucket that is still forming is frozen: later rows never reach it.
* Each level's watermark is its own: with data ending at 07:19, candles_5m's is 07:20 and
  candles_15m's 07:30, so 15m's bucket 07:15 is materialized while 5m's 07:20 and 07:25 are not.
* ``CALL refresh_continuous_aggregate`` cannot run inside a transaction block, so the 1m write
  commits first and the refreshes follow on an autocommit connection, before anything is read
  back or emitted.

Hence two rules, planned here (pure) and run by :class:`ContinuousAggregateRefresher`:

1. After 1m candles changed (:func:`correction_plan`): per level, the buckets holding a changed
   minute that lie *below the level's watermark* are refreshed; the rest is real-time and
   already right. Those windows never move the level's watermark, never materialize a forming
   bucket and hide nothing. The buckets of all instruments are merged into few windows (a
   refresh covers every instrument), so a burst of late trades costs a handful of refreshes
   per level, not one per trade.
2. A range rebuilt after writes behind the store's back (:func:`range_plan`, ``tradeflow
   backfill``): per level, the range widened to whole buckets but ending at the start of the
   bucket that holds the database's ``now()`` (only complete buckets; the forming one stays
   real-time), and starting no later than the watermark, so no unmaterialized bucket is left
   between the watermark and the window.

Both: levels are refreshed parents first (5m first, 1w last), and a parent whose watermark is
below the end of a child's window is first refreshed from its watermark to that end, so every
child bucket is computed from a complete parent (:func:`_parents_covered`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tradeflow_candle_builder.domain.timeframes import TIMEFRAMES, Timeframe, ns_to_datetime

if TYPE_CHECKING:
    import psycopg

# Refresh order: every level after its parent (5m first, 1w last).
LEVELS: tuple[tuple[Timeframe, str], ...] = (
    (TIMEFRAMES["5m"], "candles_5m"),
    (TIMEFRAMES["15m"], "candles_15m"),
    (TIMEFRAMES["1h"], "candles_1h"),
    (TIMEFRAMES["4h"], "candles_4h"),
    (TIMEFRAMES["1d"], "candles_1d"),
    (TIMEFRAMES["1w"], "candles_1w"),
)
RELATIONS = tuple(relation for _, relation in LEVELS)
# What each aggregate is computed from (candles_5m's parent, candles_1m, is a table).
PARENTS = {"candles_15m": "candles_5m", "candles_1h": "candles_15m", "candles_4h": "candles_1h",
           "candles_1d": "candles_1h", "candles_1w": "candles_1d"}

MAX_WINDOWS_PER_LEVEL = 8  # see merge_windows

# Each aggregate's watermark and the database's clock, in epoch microseconds. The watermark
# functions live in _timescaledb_functions since TimescaleDB 2.12.
WATERMARKS_SQL = """
SELECT ca.user_view_name,
       (extract(epoch FROM _timescaledb_functions.to_timestamp(
            _timescaledb_functions.cagg_watermark(ca.mat_hypertable_id))) * 1000000)::int8,
       (extract(epoch FROM now()) * 1000000)::int8
FROM _timescaledb_catalog.continuous_agg ca
WHERE ca.user_view_schema = current_schema() AND ca.user_view_name = ANY(%s)
"""
REFRESH_SQL = "CALL refresh_continuous_aggregate(%s, %s::timestamptz, %s::timestamptz)"


@dataclass(frozen=True, slots=True)
class RefreshWindow:
    """One ``refresh_continuous_aggregate`` call: ``[start_ns, end_ns)``; start None = from the beginning."""

    relation: str
    start_ns: int | None
    end_ns: int


Window = tuple[int | None, int]  # [start, end); start None = from the beginning
Watermarks = dict[str, int | None]  # relation -> watermark (None: nothing materialized)


def watermark_ns(watermark_us: int) -> int | None:
    """Epoch nanoseconds of a watermark; None when nothing is materialized (TimescaleDB then
    reports the type's minimum, long before any market data: anything before 1970 counts)."""
    return None if watermark_us < 0 else watermark_us * 1000


def correction_plan(minutes: Iterable[int], watermarks: Watermarks, now_ns: int) -> list[RefreshWindow]:
    """Rule 1: the refreshes after the 1m candles starting at ``minutes`` (epoch ns, any
    instrument) changed. Per level, the buckets holding a changed minute that lie entirely
    below the level's watermark (adjacent ones form one window), plus what their parents need."""
    minutes = sorted(set(minutes))
    demanded: dict[str, list[Window]] = {}
    for tf, relation in LEVELS:
        watermark = watermarks[relation]
        windows: list[Window] = []
        for start in sorted({tf.bucket_start(m) for m in minutes}):
            end = tf.bucket_end(start)
            if watermark is None or end > watermark:
                break  # sorted: every later bucket is above the watermark too (real-time)
            if windows and windows[-1][1] == start:
                windows[-1] = (windows[-1][0], end)
            else:
                windows.append((start, end))
        demanded[relation] = windows
    return _parents_covered(demanded, watermarks, now_ns)


def range_plan(start_ns: int, end_ns: int | None, watermarks: Watermarks, now_ns: int) -> list[RefreshWindow]:
    """Rule 2: the refreshes that bring every level up to date with candles_1m over
    ``[start_ns, end_ns)`` (``end_ns`` None: up to now). Per level, whole buckets overlapping the range up to the start of
    the bucket holding ``now_ns`` (the forming bucket stays real-time); a window ending above the
    watermark starts at the watermark at the latest (from the beginning when nothing is
    materialized), so the watermark only ever moves over materialized buckets."""
    demanded: dict[str, list[Window]] = {relation: [] for relation in RELATIONS}
    end_ns = now_ns + 1 if end_ns is None else end_ns
    if end_ns > start_ns:
        for tf, relation in LEVELS:
            lo: int | None = tf.bucket_start(start_ns)
            hi = min(tf.bucket_end(tf.bucket_start(end_ns - 1)), tf.bucket_start(now_ns))
            if hi <= lo:
                continue
            watermark = watermarks[relation]
            if watermark is None:
                lo = None
            elif hi > watermark:
                lo = min(lo, watermark)
            demanded[relation] = [(lo, hi)]
    return _parents_covered(demanded, watermarks, now_ns)


def _parents_covered(demanded: dict[str, list[Window]], watermarks: Watermarks, now_ns: int) -> list[RefreshWindow]:
    """The demanded windows in refresh order, each parent extended over what its children read.

    An aggregate is refreshed from its parent's *materialized* rows: a child bucket whose parent
    buckets lie above the parent's watermark would be materialized from a part of its data. So a
    parent whose watermark is below the end of a child's window is also refreshed from its
    watermark (materialization stays contiguous: nothing hidden) to that end (whole parent
    buckets, as every child bucket boundary is one; never past the parent's forming bucket).
    """
    needed_end: dict[str, int] = {}
    for _, relation in reversed(LEVELS):  # children before parents: needs reach the bottom
        ends = [end for _, end in demanded[relation]]
        if relation in needed_end:
            ends.append(needed_end[relation])
        parent = PARENTS.get(relation)
        if ends and parent is not None:
            needed_end[parent] = max(needed_end.get(parent, 0), *ends)
    plan: list[RefreshWindow] = []
    for tf, relation in LEVELS:
        windows = list(demanded[relation])
        watermark = watermarks[relation]
        end = min(needed_end.get(relation, 0), tf.bucket_start(now_ns))
        if end and (watermark is None or watermark < end):
            windows.append((watermark, end))
        plan += [RefreshWindow(relation, lo, hi) for lo, hi in merge_windows(windows, MAX_WINDOWS_PER_LEVEL)]
    return plan


def merge_windows(windows: list[Window], at_most: int) -> list[Window]:
    """Overlapping or adjacent windows joined, then at most ``at_most`` of them by joining
    across the smallest gaps (a refresh recomputes only invalidated buckets, so a wider window
    costs little, while each call is a round trip and a transaction)."""
    ordered = sorted(windows, key=lambda w: (w[0] is not None, w[0] or 0))
    merged: list[Window] = []
    for lo, hi in ordered:
        if merged and (lo is None or lo <= merged[-1][1]):
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    while len(merged) > at_most:
        i = min(range(len(merged) - 1), key=lambda k: merged[k + 1][0] - merged[k][1])
        merged[i:i + 2] = [(merged[i][0], merged[i + 1][1])]
    return merged


class ContinuousAggregateRefresher:
    """Runs the refreshes of the two rules on an autocommit psycopg connection, parents first."""

    async def after_minutes_changed(self, conn: psycopg.AsyncConnection, minutes: Iterable[int]) -> list[RefreshWindow]:
        """Refresh what a committed change of the 1m candles at ``minutes`` left stale (rule 1)."""
        minutes = set(minutes)
        if not minutes:
            return []
        watermarks, now_ns = await self._watermarks(conn)
        return await self._run(conn, correction_plan(minutes, watermarks, now_ns))

    async def range_refreshed(self, conn: psycopg.AsyncConnection, start_ns: int,
                              end_ns: int | None) -> list[RefreshWindow]:
        """Bring every level up to date with candles_1m over ``[start_ns, end_ns)`` (rule 2;
        ``end_ns`` None: up to now)."""
        watermarks, now_ns = await self._watermarks(conn)
        return await self._run(conn, range_plan(start_ns, end_ns, watermarks, now_ns))

    @staticmethod
    async def _watermarks(conn: psycopg.AsyncConnection) -> tuple[Watermarks, int]:
        cursor = await conn.execute(WATERMARKS_SQL, (list(RELATIONS),))
        rows = await cursor.fetchall()
        found = {relation: watermark_ns(us) for relation, us, _ in rows}
        missing = set(RELATIONS) - found.keys()
        if missing:
            raise RuntimeError(f"not continuous aggregates in this schema: {', '.join(sorted(missing))}")
        return found, rows[0][2] * 1000

    @staticmethod
    async def _run(conn: psycopg.AsyncConnection, plan: list[RefreshWindow]) -> list[RefreshWindow]:
        for window in plan:
            start = None if window.start_ns is None else ns_to_datetime(window.start_ns)
            await conn.execute(REFRESH_SQL, (window.relation, start, ns_to_datetime(window.end_ns)))
        return plan
