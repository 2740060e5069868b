"""Candle-builder's storage: ticks and 1-minute candles in PostgreSQL/TimescaleDB.

The write path is the hot path (every trade of every symbol), so it talks psycopg 3 directly
instead of going through SQLAlchemy: each batch is COPYed (binary) into a per-connection
temporary staging table and moved into ``ticks`` with one ``INSERT ... SELECT ... ON
CONFLICT DO NOTHING``, in one transaction. A replayed batch therefore changes nothing.

Reads go to the relation of the timeframe (``candles_1m`` or the ``candles_5m`` ..
``candles_1w`` continuous aggregates or maintained tables, which the migrations define per
storage mode with identical results), so reads never branch on the mode. Writes of 1m
candles do: where candles_5m .. candles_1w are tables (no continuous aggregates), every
write of candles_1m re-aggregates the higher buckets it touched in the same transaction
(see adapters/higher_timeframes.py and docs/adr/0007); where they are continuous aggregates,
every write of candles_1m refreshes, after its commit and before it returns, the higher buckets
it changed that are already materialized (adapters/continuous_aggregates.py, docs/adr/0011).
So when upsert_candles_1m or recompute_candles_1m returns, every timeframe reads the new values,
in every mode (the backfill's merge_candles_1m is followed by refresh_higher_timeframes instead).

Timestamps: the wire carries nanoseconds, ``timestamptz`` stores microseconds. Conversion
happens in SQL with integer arithmetic (exact to the microsecond; the sub-microsecond part
is dropped). The staging table needs a session-level temporary table, so the pool must not
sit behind a transaction-mode pgbouncer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import psycopg
from psycopg import sql
from tradeflow.messages import Candle, Tick
from tradeflow.time import as_utc, datetime_to_ns, ns_to_datetime
from tradeflow_db import Database

from tradeflow_candle_builder.adapters.continuous_aggregates import ContinuousAggregateRefresher
from tradeflow_candle_builder.adapters.higher_timeframes import (
    LOCK_INSTRUMENTS_SQL,
    Statement,
    instrument_lock_keys,
    rebuild_statements,
    refresh_statements,
)
from tradeflow_candle_builder.domain.timeframes import TIMEFRAMES

ONE_MINUTE_NS = 60_000_000_000
# The newest of the candle-builder's migrations (0004: candle emissions): the service and the
# backfill refuse to start on a database without it.
REQUIRED_REVISION = "0004"

TIMEFRAME_RELATIONS: dict[str, str] = {
    "1m": "candles_1m",
    "5m": "candles_5m",
    "15m": "candles_15m",
    "1h": "candles_1h",
    "4h": "candles_4h",
    "1d": "candles_1d",
    "1w": "candles_1w",
}

# nanoseconds (bigint) -> timestamptz, exact to the microsecond (the candle-builder's stores share it).
NS_TO_TS = "(TIMESTAMPTZ 'epoch' + ({} / 1000) * INTERVAL '1 microsecond')"

_CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS ticks_staging (
    exchange text, symbol text, trade_id text, price float8, amount float8, side text,
    ts_ns int8, ts_recv_ns int8
) ON COMMIT DELETE ROWS
"""
_COPY_STAGING = (
    "COPY ticks_staging (exchange, symbol, trade_id, price, amount, side, ts_ns, ts_recv_ns) "
    "FROM STDIN (FORMAT BINARY)"
)
_STAGING_TYPES = ["text", "text", "text", "float8", "float8", "text", "int8", "int8"]
_MOVE_STAGED_TICKS = f"""
INSERT INTO ticks (exchange, symbol, ts, trade_id, price, amount, side, ts_recv)
SELECT exchange, symbol, {NS_TO_TS.format("ts_ns")}, trade_id, price, amount, side,
       {NS_TO_TS.format("ts_recv_ns")}
FROM ticks_staging
ON CONFLICT (exchange, symbol, ts, trade_id) DO NOTHING
"""

_UPSERT_CANDLES_1M = f"""
INSERT INTO candles_1m AS c (exchange, symbol, ts, open, high, low, close, volume, trades, revision, updated_at)
SELECT exchange, symbol, {NS_TO_TS.format("ts_ns")}, open, high, low, close, volume, trades, revision, now()
FROM unnest(%(exchange)s::text[], %(symbol)s::text[], %(ts_ns)s::int8[], %(open)s::float8[],
            %(high)s::float8[], %(low)s::float8[], %(close)s::float8[], %(volume)s::float8[],
            %(trades)s::int4[], %(revision)s::int4[])
     AS u(exchange, symbol, ts_ns, open, high, low, close, volume, trades, revision)
ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades, revision = excluded.revision,
    updated_at = excluded.updated_at
WHERE excluded.trades >= c.trades
"""

# open/close: first/last trade by event time; equal event times keep arrival order
# (ts_recv), then trade_id so the result is deterministic even for identical receive times.
_RECOMPUTE_CANDLES_1M = f"""
WITH keys AS (
    SELECT DISTINCT exchange, symbol, {NS_TO_TS.format("ts_ns")} AS ts
    FROM unnest(%(exchange)s::text[], %(symbol)s::text[], %(ts_ns)s::int8[]) AS k(exchange, symbol, ts_ns)
), rebuilt AS (
    SELECT k.exchange, k.symbol, k.ts,
           (array_agg(t.price ORDER BY t.ts, t.ts_recv, t.trade_id))[1] AS open,
           max(t.price) AS high,
           min(t.price) AS low,
           (array_agg(t.price ORDER BY t.ts DESC, t.ts_recv DESC, t.trade_id DESC))[1] AS close,
           sum(t.amount) AS volume,
           count(*)::int4 AS trades
    FROM keys k
    JOIN ticks t ON t.exchange = k.exchange AND t.symbol = k.symbol
                AND t.ts >= k.ts AND t.ts < k.ts + INTERVAL '1 minute'
    GROUP BY k.exchange, k.symbol, k.ts
)
INSERT INTO candles_1m AS c (exchange, symbol, ts, open, high, low, close, volume, trades, revision, updated_at)
SELECT exchange, symbol, ts, open, high, low, close, volume, trades, 0, now() FROM rebuilt
ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades,
    revision = CASE WHEN (c.open, c.high, c.low, c.close, c.volume, c.trades)
                         IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close,
                                           excluded.volume, excluded.trades)
                    THEN c.revision + 1 ELSE c.revision END,
    updated_at = excluded.updated_at
RETURNING exchange, symbol, ts, open, high, low, close, volume, trades, revision
"""

# The primary key (exchange, symbol, ts) answers this with one backward index probe.
_NEWEST_1M = """
SELECT ts, open, high, low, close, volume, trades FROM candles_1m
WHERE exchange = %s AND symbol = %s ORDER BY ts DESC LIMIT 1
"""

_FETCH_1M = f"""
SELECT exchange, symbol, ts, open, high, low, close, volume, trades, revision
FROM candles_1m
WHERE exchange = %s AND symbol = %s
  AND ts >= {NS_TO_TS.format("%s::int8")} AND ts < {NS_TO_TS.format("%s::int8")}
ORDER BY ts
"""


class CandleRow(NamedTuple):
    """One candle as the REST API returns it (``ts`` is the bucket start, UTC)."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int


class CandleStore:
    """Ticks and candles in the Tradeflow schema (see the candle-builder's migrations).

    It runs on a :class:`tradeflow_db.Database` (the pool, the ping, the schema check): the
    service's bootstrap builds one with :data:`REQUIRED_REVISION`, so a database that is not
    migrated stops the start with a message naming the revision and ``tradeflow db upgrade``.
    ``CandleStore(url)`` builds its own (tools and tests; no revision check unless given).
    """

    def __init__(
        self,
        database: Database | str,
        *,
        min_connections: int = 1,
        max_connections: int = 4,
        connect_timeout_s: float = 10.0,
        required_revision: str | None = None,
    ) -> None:
        if isinstance(database, str):
            database = CandleStore.database(database, min_connections=min_connections,
                                            max_connections=max_connections, connect_timeout_s=connect_timeout_s,
                                            required_revision=required_revision)
        self._database = database
        self._mode: str | None = None  # storage mode recorded by the migrations, read once
        self._aggregates = ContinuousAggregateRefresher()  # used in mode timescaledb only

    def register_metrics(self, registry) -> None:
        """The pool's figures (tradeflow_db_pool_*, labelled with the database's name) on ``registry``."""
        self._database.register_metrics(registry)

    @staticmethod
    def database(database_url: str, *, name: str = "candle-store", min_connections: int = 1,
                 max_connections: int = 4, connect_timeout_s: float = 10.0,
                 required_revision: str | None = None) -> Database:
        """The :class:`Database` this store needs: its connections carry the tick staging table."""
        return Database(database_url, name=name, required_revision=required_revision,
                        min_connections=min_connections, max_connections=max_connections,
                        connect_timeout_s=connect_timeout_s, configure=CandleStore.configure_connection)

    @staticmethod
    async def configure_connection(conn: psycopg.AsyncConnection) -> None:
        """The store's per-connection setup (its tick staging table), for the Database it runs on."""
        await conn.execute(_CREATE_STAGING)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool; fails (psycopg_pool.PoolTimeout) when the database is unreachable and
        (tradeflow_db.SchemaNotReadyError) when it lacks the required revision."""
        await self._database.start()

    async def stop(self) -> None:
        await self._database.stop()

    def connection(self):
        """A pooled connection (async context manager, autocommit, UTC): for the stores that share
        this pool (instrument registry, session candles)."""
        return self._database.connection()

    async def ping(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Readiness check: (reachable, detail). Usable directly as a ReadinessCheck."""
        ok, detail = await self._database.ping(timeout_s)
        return ok, "database: ok" if ok else f"database: {detail}"

    # --- writes -------------------------------------------------------------------------------

    async def write_ticks(self, ticks: Sequence[Tick]) -> int:
        """Store a batch of trades; returns how many were new (a replayed batch returns 0)."""
        if not ticks:
            return 0
        async with self._database.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await _stage_ticks(cur, ticks)
                await cur.execute(_MOVE_STAGED_TICKS)
                return cur.rowcount

    async def upsert_candles_1m(self, candles: Sequence[Candle]) -> None:
        """Replace each candle's row with the given full state (revision included), unless the
        stored row counts more trades: a forming state never makes a stored candle smaller.

        Within one call the last candle per (exchange, symbol, ts_start) wins.
        """
        latest: dict[tuple[str, str, int], Candle] = {}
        for candle in candles:
            if candle.timeframe != "1m":
                raise ValueError(f"upsert_candles_1m got a {candle.timeframe!r} candle")
            latest[(candle.exchange, candle.symbol, candle.ts_start)] = candle
        if not latest:
            return
        rows = list(latest.values())
        params = _candle_columns(rows)
        if not await self._maintains_higher_timeframes():
            async with self._database.connection() as conn:  # autocommit: committed here
                await conn.execute(_UPSERT_CANDLES_1M, params)
                await self._aggregates.after_minutes_changed(conn, [c.ts_start for c in rows])
            return
        async with self._database.connection() as conn, conn.transaction(), conn.pipeline():
            await self._lock_instruments(conn, {(c.exchange, c.symbol) for c in rows})
            await conn.execute(_UPSERT_CANDLES_1M, params)
            await _execute_all(conn, refresh_statements(latest))

    async def recompute_candles_1m(self, keys: Iterable[tuple[str, str, int]]) -> list[Candle]:
        """Rebuild the 1m candles of ``(exchange, symbol, bucket_start_ns)`` from ``ticks``.

        Each rebuilt row is returned, ordered by (exchange, symbol, ts_start), with its revision:
        0 when new, previous + 1 when its values changed, the previous one when they did not.
        Buckets without ticks produce nothing.
        """
        keys = list(keys)
        if not keys:
            return []
        params = {
            "exchange": [k[0] for k in keys],
            "symbol": [k[1] for k in keys],
            "ts_ns": [k[2] for k in keys],
        }
        if not await self._maintains_higher_timeframes():
            async with self._database.connection() as conn:  # autocommit: committed here
                cursor = await conn.execute(_RECOMPUTE_CANDLES_1M, params)
                rows = await cursor.fetchall()
                await self._aggregates.after_minutes_changed(conn, (datetime_to_ns(row[2]) for row in rows))
        else:
            async with self._database.connection() as conn, conn.transaction(), conn.pipeline():
                await self._lock_instruments(conn, {(k[0], k[1]) for k in keys})
                cursor = await conn.execute(_RECOMPUTE_CANDLES_1M, params)
                # Keys without trades change nothing; refreshing their buckets is harmless.
                await _execute_all(conn, refresh_statements(keys))
                rows = await cursor.fetchall()
        candles = [_candle_1m(*row) for row in rows]
        candles.sort(key=lambda c: (c.exchange, c.symbol, c.ts_start))
        return candles

    async def refresh_higher_timeframes(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> None:
        """Bring candles_5m .. candles_1w up to date with candles_1m over [start_ns, end_ns).

        Called after candles_1m of a past range changed outside this store (a backfill).
        Every level is brought up to date in hierarchy order over the range widened to its own
        bucket boundaries. With maintained tables, the level's buckets in the range are deleted
        and aggregated again from the parent level, in one transaction. With continuous
        aggregates, refresh_continuous_aggregate over the complete buckets only (the forming
        one stays real-time), from the aggregate's watermark at the latest when the range lies
        above it, so no unmaterialized bucket is hidden (see continuous_aggregates.range_plan).
        """
        if end_ns <= start_ns:
            return
        if await self._maintains_higher_timeframes():
            async with self._database.connection() as conn, conn.transaction(), conn.pipeline():
                await self._lock_instruments(conn, {(exchange, symbol)})
                await _execute_all(conn, rebuild_statements(exchange, symbol, start_ns, end_ns))
            return
        async with self._database.connection() as conn:  # autocommit: CALL needs it
            await self._aggregates.range_refreshed(conn, start_ns, end_ns)

    async def refresh_continuous_aggregates_since(self, start_ns: int) -> int:
        """Licensed mode: bring every continuous aggregate up to date with candles_1m from
        ``start_ns`` to the last complete bucket; returns how many refreshes it ran.

        A write's refreshes follow its commit, so a process that dies in between leaves
        materialized buckets without the change; a refresh policy only repairs that inside its
        own window. Run at start over the span late trades can reach (a refresh recomputes only
        invalidated buckets, so an up-to-date span costs little). Where the higher timeframes
        are tables there is nothing to do: they change in the write's own transaction.
        """
        if await self._maintains_higher_timeframes():
            return 0
        async with self._database.connection() as conn:  # autocommit: CALL needs it
            return len(await self._aggregates.range_refreshed(conn, start_ns, None))

    async def _maintains_higher_timeframes(self) -> bool:
        """Whether candles_5m .. candles_1w are tables this store keeps current (no caggs)."""
        return await self._storage_mode() != "timescaledb"

    @staticmethod
    async def _lock_instruments(conn: psycopg.AsyncConnection, instruments: set[tuple[str, str]]) -> None:
        """Writers of the same instrument take turns until commit (see higher_timeframes)."""
        await conn.execute(LOCK_INSTRUMENTS_SQL, (instrument_lock_keys(instruments),))

    async def _storage_mode(self) -> str:
        if self._mode is None:
            async with self._database.connection() as conn:
                cursor = await conn.execute("SELECT storage_mode FROM tradeflow_schema_info")
                (self._mode,) = await cursor.fetchone()
        return self._mode

    # --- reads --------------------------------------------------------------------------------

    async def fetch_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[CandleRow]:
        """Candles of one instrument and timeframe, ordered by ts.

        ``start`` (inclusive) and ``end`` (exclusive) bound the bucket start. With a
        ``start``, the first ``limit`` candles from it; without, the latest ``limit``
        candles before ``end`` (what a chart wants).
        """
        relation = TIMEFRAME_RELATIONS.get(timeframe)
        if relation is None:
            raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAME_RELATIONS)}")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        conditions = [sql.SQL("exchange = %s"), sql.SQL("symbol = %s")]
        params: list[object] = [exchange, symbol]
        if start is not None:
            conditions.append(sql.SQL("ts >= %s"))
            params.append(as_utc(start))
        if end is not None:
            conditions.append(sql.SQL("ts < %s"))
            params.append(as_utc(end))
        newest_first = start is None
        query = sql.SQL(
            "SELECT ts, open, high, low, close, volume, trades FROM {relation} WHERE {where} "
            "ORDER BY ts {direction} LIMIT %s"
        ).format(
            relation=sql.Identifier(relation),
            where=sql.SQL(" AND ").join(conditions),
            direction=sql.SQL("DESC" if newest_first else "ASC"),
        )
        params.append(limit)
        async with self._database.connection() as conn:
            cursor = await conn.execute(query, params)
            rows = await cursor.fetchall()
        if newest_first:
            rows.reverse()
        return [CandleRow(ts, o, h, lo, c, v, int(n)) for ts, o, h, lo, c, v, n in rows]

    async def fetch_latest(self, exchange: str, symbol: str, timeframe: str) -> CandleRow | None:
        """The newest candle of one instrument and timeframe (the forming one included), or None.

        Every higher-timeframe relation is built from candles_1m, so its newest bucket is the
        one holding the newest 1m candle: the relation is read only from that bucket's start,
        which keeps the read to a few rows instead of the instrument's whole history.
        """
        relation = TIMEFRAME_RELATIONS.get(timeframe)
        if relation is None:
            raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAME_RELATIONS)}")
        async with self._database.connection() as conn:
            cursor = await conn.execute(_NEWEST_1M, (exchange, symbol))
            newest = await cursor.fetchone()
            if newest is None or timeframe == "1m":
                return None if newest is None else _candle_row(newest)
            window_start = ns_to_datetime(TIMEFRAMES[timeframe].bucket_start(datetime_to_ns(newest[0])))
            query = sql.SQL(
                "SELECT ts, open, high, low, close, volume, trades FROM {relation} "
                "WHERE exchange = %s AND symbol = %s AND ts >= %s ORDER BY ts DESC LIMIT 1"
            ).format(relation=sql.Identifier(relation))
            cursor = await conn.execute(query, (exchange, symbol, window_start))
            row = await cursor.fetchone()
        return None if row is None else _candle_row(row)

    async def fetch_1m(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> list[Candle]:
        """Stored 1m candles with bucket start in [start_ns, end_ns), with their revisions."""
        async with self._database.connection() as conn:
            cursor = await conn.execute(_FETCH_1M, (exchange, symbol, start_ns, end_ns))
            rows = await cursor.fetchall()
        return [_candle_1m(*row) for row in rows]

    # --- backfill (past ranges; kept apart from the live write path) --------------------------

    async def write_ticks_new_minutes(self, ticks: Sequence[Tick]) -> tuple[int, set[tuple[str, str, int]]]:
        """Store trades like :meth:`write_ticks`; returns (how many were new, the
        ``(exchange, symbol, minute_start_ns)`` of the minutes that got a new trade).

        Only those minutes need their candle rebuilt: a batch already stored returns (0, set()).
        A separate method so the live hot path does not pay for the RETURNING.
        """
        if not ticks:
            return 0, set()
        async with self._database.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await _stage_ticks(cur, ticks)
                await cur.execute(_MOVE_STAGED_TICKS_NEW_MINUTES)
                rows = await cur.fetchall()
        new = sum(int(count) for *_key, count in rows)
        return new, {(exchange, symbol, int(minute_s) * 1_000_000_000) for exchange, symbol, minute_s, _ in rows}

    async def merge_candles_1m(self, candles: Sequence[Candle]) -> list[tuple[str, str, int]]:
        """Store 1m candles taken from an exchange (no trades of ours behind them).

        A new candle gets revision 0; a stored one whose open/high/low/close/volume differ is
        replaced with revision + 1; an equal one is left alone (so merging twice changes
        nothing). Returns the ``(exchange, symbol, minute_start_ns)`` of the rows inserted or replaced.
        """
        rows = list({(c.exchange, c.symbol, c.ts_start): c for c in candles}.values())
        if not rows:
            return []
        params = _candle_columns(rows)
        async with self._database.connection() as conn:
            cursor = await conn.execute(_MERGE_CANDLES_1M, params)
            return [(exchange, symbol, datetime_to_ns(ts)) for exchange, symbol, ts in await cursor.fetchall()]


async def _execute_all(conn: psycopg.AsyncConnection, statements: list[Statement]) -> None:
    for query, params in statements:
        await conn.execute(query, params)


def _candle_columns(rows: Sequence[Candle]) -> dict[str, list]:
    """1m candles as one array per column, for the ``unnest(...)`` statements."""
    return {
        "exchange": [c.exchange for c in rows],
        "symbol": [c.symbol for c in rows],
        "ts_ns": [c.ts_start for c in rows],
        "open": [c.open for c in rows],
        "high": [c.high for c in rows],
        "low": [c.low for c in rows],
        "close": [c.close for c in rows],
        "volume": [c.volume for c in rows],
        "trades": [c.trades for c in rows],
        "revision": [c.revision for c in rows],
    }


async def _stage_ticks(cur: psycopg.AsyncCursor, ticks: Sequence[Tick]) -> None:
    """COPY (binary) the ticks into this connection's staging table, inside the caller's transaction."""
    async with cur.copy(_COPY_STAGING) as copy:
        copy.set_types(_STAGING_TYPES)
        write_row = copy.write_row
        for t in ticks:
            await write_row((t.exchange, t.symbol, t.trade_id, t.price, t.amount, t.side, t.ts_event, t.ts_recv))


def _candle_row(row) -> CandleRow:
    ts, open_, high, low, close, volume, trades = row
    return CandleRow(ts, open_, high, low, close, volume, int(trades))


def _candle_1m(exchange, symbol, ts, open_, high, low, close, volume, trades, revision) -> Candle:
    start_ns = datetime_to_ns(ts)
    return Candle(
        exchange=exchange,
        symbol=symbol,
        timeframe="1m",
        ts_start=start_ns,
        ts_end=start_ns + ONE_MINUTE_NS,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        trades=trades,
        revision=revision,
    )


# The minutes (UTC epoch seconds) that received new ticks, with how many; extract(epoch) is exact.
_MOVE_STAGED_TICKS_NEW_MINUTES = f"""
WITH inserted AS ({_MOVE_STAGED_TICKS} RETURNING exchange, symbol, ts)
SELECT exchange, symbol, (floor(extract(epoch FROM ts) / 60) * 60)::int8 AS minute_s, count(*)
FROM inserted GROUP BY 1, 2, 3
"""

_MERGE_CANDLES_1M = f"""
INSERT INTO candles_1m AS c (exchange, symbol, ts, open, high, low, close, volume, trades, revision, updated_at)
SELECT exchange, symbol, {NS_TO_TS.format("ts_ns")}, open, high, low, close, volume, trades, 0, now()
FROM unnest(%(exchange)s::text[], %(symbol)s::text[], %(ts_ns)s::int8[], %(open)s::float8[],
            %(high)s::float8[], %(low)s::float8[], %(close)s::float8[], %(volume)s::float8[],
            %(trades)s::int4[])
     AS u(exchange, symbol, ts_ns, open, high, low, close, volume, trades)
ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades, revision = c.revision + 1,
    updated_at = excluded.updated_at
WHERE (c.open, c.high, c.low, c.close, c.volume) IS DISTINCT FROM
      (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)
RETURNING exchange, symbol, ts
"""
