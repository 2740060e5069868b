"""Maintained higher-timeframe tables: the SQL that keeps candles_5m .. candles_1w current.

In the storage modes without continuous aggregates (``timescaledb-apache``, ``postgres``)
candles_5m .. candles_1w are tables (migration 0002, docs/adr/0007). Whoever changes rows of
candles_1m re-aggregates, in the same transaction, exactly the higher buckets those rows fall
in. This module says which statements do that; :class:`CandleStore` runs them.

How a refresh stays cheap with years of data loaded:

* Level by level, along the continuous aggregates' hierarchy (5m <- 1m, 15m <- 5m,
  1h <- 15m, 4h <- 1h, 1d <- 1h, 1w <- 1d): a week is rebuilt from 7 daily rows, not from
  10,080 minutes. Parents come first, so each level reads an already current parent.
* The affected buckets are computed in Python (:func:`bucket_runs`) and sent as runs
  ``(exchange, symbol, lo, hi)`` of whole buckets. Each run reads its parent rows in a
  ``LATERAL`` subquery with a ``GROUP BY``: a subquery with an aggregate cannot be flattened
  into a join, so the planner cannot turn it into a hash join over the whole parent; each
  run is one index range scan ``exchange = .. AND symbol = .. AND ts >= lo AND ts < hi`` on
  the parent's primary key.
* Unchanged buckets (a replayed batch) are not rewritten (``ON CONFLICT ... WHERE ... IS
  DISTINCT FROM``).

Writers of the same instrument take turns (:func:`instrument_lock_keys`): without that, a
backfill and the live writer could each re-aggregate the same week from a snapshot that
lacks the other's new 1m rows, and the later commit would win with a stale week.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple

from tradeflow_candle_builder.domain.timeframes import (
    MINUTE_NS,
    TIMEFRAMES,
    BucketRun,
    Timeframe,
    bucket_runs,
    ns_to_datetime,
)

BUCKET_ORIGIN = "TIMESTAMPTZ '2000-01-03 00:00:00+00'"  # a Monday: the schema's bucket origin


class Level(NamedTuple):
    """One maintained table and the finer relation it is aggregated from."""

    timeframe: Timeframe
    relation: str
    parent: str


# Parents before children (the order the statements run in).
LEVELS: tuple[Level, ...] = (
    Level(TIMEFRAMES["5m"], "candles_5m", "candles_1m"),
    Level(TIMEFRAMES["15m"], "candles_15m", "candles_5m"),
    Level(TIMEFRAMES["1h"], "candles_1h", "candles_15m"),
    Level(TIMEFRAMES["4h"], "candles_4h", "candles_1h"),
    Level(TIMEFRAMES["1d"], "candles_1d", "candles_1h"),
    Level(TIMEFRAMES["1w"], "candles_1w", "candles_1d"),
)

Statement = tuple[str, dict[str, object]]


def refresh_sql(level: Level) -> str:
    """Upsert the buckets of ``level`` in the given runs from the parent's rows."""
    width = f"INTERVAL '{level.timeframe.length_ns // MINUTE_NS} minutes'"
    return f"""
INSERT INTO {level.relation} AS t (exchange, symbol, ts, open, high, low, close, volume, trades)
SELECT r.exchange, r.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades
FROM unnest(%(exchange)s::text[], %(symbol)s::text[], %(lo)s::timestamptz[], %(hi)s::timestamptz[])
     AS r(exchange, symbol, lo, hi)
CROSS JOIN LATERAL (
    SELECT date_bin({width}, p.ts, {BUCKET_ORIGIN}) AS ts,
           (array_agg(p.open ORDER BY p.ts))[1] AS open, max(p.high) AS high, min(p.low) AS low,
           (array_agg(p.close ORDER BY p.ts DESC))[1] AS close, sum(p.volume) AS volume,
           sum(p.trades)::int8 AS trades
    FROM {level.parent} p
    WHERE p.exchange = r.exchange AND p.symbol = r.symbol AND p.ts >= r.lo AND p.ts < r.hi
    GROUP BY 1
) b
ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades
WHERE (t.open, t.high, t.low, t.close, t.volume, t.trades)
      IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume, excluded.trades)
"""


def clear_sql(level: Level) -> str:
    """Remove one instrument's buckets of ``level`` in ``[lo, hi)`` (before a rebuild)."""
    return (f"DELETE FROM {level.relation} WHERE exchange = %(exchange)s AND symbol = %(symbol)s "
            "AND ts >= %(lo)s AND ts < %(hi)s")


_REFRESH_SQL = {level.relation: refresh_sql(level) for level in LEVELS}
_CLEAR_SQL = {level.relation: clear_sql(level) for level in LEVELS}

# Transaction-level advisory locks, taken in the order given (sorted: no deadlock between
# two writers that share instruments).
LOCK_INSTRUMENTS_SQL = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::int8[]) AS k"


def _runs_params(runs: list[BucketRun]) -> dict[str, object]:
    return {
        "exchange": [r[0] for r in runs],
        "symbol": [r[1] for r in runs],
        "lo": [ns_to_datetime(r[2]) for r in runs],
        "hi": [ns_to_datetime(r[3]) for r in runs],
    }


def refresh_statements(minutes: Iterable[tuple[str, str, int]]) -> list[Statement]:
    """Statements that re-aggregate every higher bucket holding one of the 1m ``minutes``
    ``(exchange, symbol, bucket_start_ns)``, parents first."""
    spans = [(exchange, symbol, start, start + MINUTE_NS) for exchange, symbol, start in minutes]
    statements: list[Statement] = []
    for level in LEVELS:
        runs = bucket_runs(spans, level.timeframe)
        if runs:
            statements.append((_REFRESH_SQL[level.relation], _runs_params(runs)))
    return statements


def rebuild_statements(exchange: str, symbol: str, start_ns: int, end_ns: int) -> list[Statement]:
    """Statements that rebuild one instrument's higher buckets overlapping ``[start_ns, end_ns)``
    from candles_1m: per level, the buckets are removed and aggregated again, so a bucket
    whose 1m rows are gone disappears too (as a continuous aggregate refresh does)."""
    statements: list[Statement] = []
    for level in LEVELS:
        runs = bucket_runs([(exchange, symbol, start_ns, end_ns)], level.timeframe)
        if not runs:
            continue
        [(_, _, lo, hi)] = runs
        statements.append((_CLEAR_SQL[level.relation], {
            "exchange": exchange, "symbol": symbol, "lo": ns_to_datetime(lo), "hi": ns_to_datetime(hi)}))
        statements.append((_REFRESH_SQL[level.relation], _runs_params(runs)))
    return statements


def instrument_lock_keys(instruments: Iterable[tuple[str, str]]) -> list[int]:
    """Advisory lock keys of instruments, sorted: a stable 64-bit hash of ``exchange:symbol``
    (the same in every process, unlike Python's ``hash``)."""
    keys = {
        int.from_bytes(hashlib.blake2b(f"{exchange}:{symbol}".encode(), digest_size=8).digest(), "big", signed=True)
        for exchange, symbol in instruments
    }
    return sorted(keys)
