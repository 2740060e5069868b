"""The ``session_candles`` table: higher-timeframe candles of instruments with trading sessions.

Their buckets follow the market calendar, so they cannot come from the UTC-aligned
``candles_5m`` .. ``candles_1w`` relations. The pipeline writes a bucket when it closes (values
folded in memory) or when it must be corrected or finished from the database (values folded
here, in SQL, from the bucket's ``candles_1m`` rows). Either way the row's revision is 0 when
new and goes up by one whenever its values change, and the stored candle is what is emitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tradeflow.messages import Candle
from tradeflow.time import datetime_to_ns

from tradeflow_candle_builder.adapters.candle_store import NS_TO_TS, CandleRow, CandleStore

_COLUMNS = "exchange, symbol, timeframe, ts, ts_end, open, high, low, close, volume, trades, revision"
_ON_CONFLICT = """
ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE SET
    ts_end = excluded.ts_end, open = excluded.open, high = excluded.high, low = excluded.low,
    close = excluded.close, volume = excluded.volume, trades = excluded.trades,
    revision = CASE WHEN (s.ts_end, s.open, s.high, s.low, s.close, s.volume, s.trades)
                         IS DISTINCT FROM (excluded.ts_end, excluded.open, excluded.high, excluded.low,
                                           excluded.close, excluded.volume, excluded.trades)
                    THEN s.revision + 1 ELSE s.revision END,
    updated_at = now()
RETURNING """ + _COLUMNS

_UPSERT = f"""
INSERT INTO session_candles AS s ({_COLUMNS})
SELECT exchange, symbol, timeframe, {NS_TO_TS.format("ts_ns")}, {NS_TO_TS.format("end_ns")},
       open, high, low, close, volume, trades, 0
FROM unnest(%(exchange)s::text[], %(symbol)s::text[], %(timeframe)s::text[], %(ts_ns)s::int8[],
            %(end_ns)s::int8[], %(open)s::float8[], %(high)s::float8[], %(low)s::float8[],
            %(close)s::float8[], %(volume)s::float8[], %(trades)s::int4[])
     AS u(exchange, symbol, timeframe, ts_ns, end_ns, open, high, low, close, volume, trades)
{_ON_CONFLICT}
"""

# A bucket from its 1m rows (the same rules as in memory: first open, last close, sums).
_FOLD_1M = f"""
SELECT k.exchange, k.symbol, k.timeframe, {NS_TO_TS.format("k.ts_ns")} AS ts, {NS_TO_TS.format("k.end_ns")} AS ts_end,
       (array_agg(m.open ORDER BY m.ts))[1] AS open, max(m.high) AS high, min(m.low) AS low,
       (array_agg(m.close ORDER BY m.ts DESC))[1] AS close, sum(m.volume) AS volume,
       sum(m.trades)::int4 AS trades
FROM unnest(%(exchange)s::text[], %(symbol)s::text[], %(timeframe)s::text[], %(ts_ns)s::int8[], %(end_ns)s::int8[])
     AS k(exchange, symbol, timeframe, ts_ns, end_ns)
JOIN candles_1m m ON m.exchange = k.exchange AND m.symbol = k.symbol
                 AND m.ts >= {NS_TO_TS.format("k.ts_ns")} AND m.ts < {NS_TO_TS.format("k.end_ns")}
GROUP BY k.exchange, k.symbol, k.timeframe, k.ts_ns, k.end_ns
"""

_REBUILD = f"""
WITH rebuilt AS ({_FOLD_1M})
INSERT INTO session_candles AS s ({_COLUMNS})
SELECT exchange, symbol, timeframe, ts, ts_end, open, high, low, close, volume, trades, 0 FROM rebuilt
{_ON_CONFLICT}
"""

_SELECT = "SELECT ts, open, high, low, close, volume, trades FROM session_candles"

BucketKey = tuple[str, str, str, int, int]  # (exchange, symbol, timeframe, start ns, end ns)


def _key_params(keys: Sequence[BucketKey]) -> dict[str, list]:
    return {"exchange": [k[0] for k in keys], "symbol": [k[1] for k in keys], "timeframe": [k[2] for k in keys],
            "ts_ns": [k[3] for k in keys], "end_ns": [k[4] for k in keys]}


class SessionCandleStore:
    """Session-aligned higher-timeframe candles, through the candle store's connection pool."""

    def __init__(self, store: CandleStore) -> None:
        self._store = store

    async def save(self, candles: Sequence[Candle]) -> list[Candle]:
        """Store candles folded in memory; returns them with their stored revisions."""
        if not candles:
            return []
        params = {
            "exchange": [c.exchange for c in candles], "symbol": [c.symbol for c in candles],
            "timeframe": [c.timeframe for c in candles], "ts_ns": [c.ts_start for c in candles],
            "end_ns": [c.ts_end for c in candles], "open": [c.open for c in candles],
            "high": [c.high for c in candles], "low": [c.low for c in candles], "close": [c.close for c in candles],
            "volume": [c.volume for c in candles], "trades": [c.trades for c in candles],
        }
        async with self._store.connection() as conn:
            cursor = await conn.execute(_UPSERT, params)
            return _ordered([_candle(*row) for row in await cursor.fetchall()])

    async def rebuild(self, keys: Sequence[BucketKey]) -> list[Candle]:
        """Fold each bucket from its stored 1m candles and store it; returns the stored candles
        (a bucket without 1m candles gives nothing)."""
        if not keys:
            return []
        async with self._store.connection() as conn:
            cursor = await conn.execute(_REBUILD, _key_params(keys))
            return _ordered([_candle(*row) for row in await cursor.fetchall()])

    async def fold_1m(self, exchange: str, symbol: str, timeframe: str, start_ns: int, end_ns: int) -> CandleRow | None:
        """A bucket folded from its 1m candles without storing it (the forming bucket, for reads)."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(_FOLD_1M, _key_params([(exchange, symbol, timeframe, start_ns, end_ns)]))
            row = await cursor.fetchone()
        if row is None:
            return None
        return CandleRow(row[3], *row[5:10], int(row[10]))

    async def fetch(self, exchange: str, symbol: str, timeframe: str, start: datetime | None, end: datetime | None,
                    limit: int) -> list[CandleRow]:
        """Stored candles overlapping [start, end) ordered by ts: the first ``limit`` from
        ``start``, or without ``start`` the latest ``limit`` before ``end``."""
        conditions = ["exchange = %s", "symbol = %s", "timeframe = %s"]
        params: list[object] = [exchange, symbol, timeframe]
        if start is not None:
            conditions.append("ts_end > %s")
            params.append(start)
        if end is not None:
            conditions.append("ts < %s")
            params.append(end)
        newest_first = start is None
        query = (f"{_SELECT} WHERE {' AND '.join(conditions)} "
                 f"ORDER BY ts {'DESC' if newest_first else 'ASC'} LIMIT %s")
        params.append(limit)
        async with self._store.connection() as conn:
            cursor = await conn.execute(query, params)
            rows = await cursor.fetchall()
        if newest_first:
            rows.reverse()
        return [CandleRow(ts, o, h, lo, c, v, int(n)) for ts, o, h, lo, c, v, n in rows]

    async def newest_1m_start(self, exchange: str, symbol: str) -> int | None:
        rows = await self._store.fetch_candles(exchange, symbol, "1m", None, None, 1)
        return datetime_to_ns(rows[-1].ts) if rows else None


def _ordered(candles: list[Candle]) -> list[Candle]:
    candles.sort(key=lambda c: (c.exchange, c.symbol, c.ts_start, c.timeframe))
    return candles


def _candle(exchange, symbol, timeframe, ts, ts_end, open_, high, low, close, volume, trades, revision) -> Candle:
    return Candle(exchange=exchange, symbol=symbol, timeframe=timeframe, ts_start=datetime_to_ns(ts),
                  ts_end=datetime_to_ns(ts_end), open=open_, high=high, low=low, close=close, volume=volume,
                  trades=int(trades), revision=revision)
