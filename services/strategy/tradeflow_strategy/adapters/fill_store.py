"""The ``strategy_fills`` table: the fills of exec.fills.v1 that name a strategy instance, once each.

Whichever replica consumes a fill stores it; every replica reads the new ones in ``seq`` order
and moves the positions of the markets it runs (the fills topic is keyed by account, the
candles by market, so a fill is rarely consumed where its market runs). Writers take a table
lock for the insert, so ``seq`` order is commit order and a reader that has seen ``seq`` N has
seen every fill below it. Fills are few (one per order at most, per partial fill), so the lock
costs nothing that matters.
"""

from __future__ import annotations

from collections.abc import Sequence

from tradeflow.codec import decode, encode
from tradeflow.messages import Fill
from tradeflow_db import Database

from tradeflow_strategy.engine import MarketOfInstance, StoredFill

_LOCK = "LOCK TABLE strategy_fills IN SHARE ROW EXCLUSIVE MODE"
_INSERT = """
INSERT INTO strategy_fills (fill_id, strategy_id, exchange, symbol, payload) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (fill_id) DO NOTHING
"""
_AFTER = "SELECT seq, payload FROM strategy_fills WHERE seq > %s ORDER BY seq LIMIT %s"
_OF_MARKETS = """
SELECT f.seq, f.payload, f.strategy_id, f.exchange, f.symbol FROM strategy_fills f
JOIN unnest(%s::text[], %s::text[], %s::text[]) AS m (strategy_id, exchange, symbol)
  ON (f.strategy_id, f.exchange, f.symbol) = (m.strategy_id, m.exchange, m.symbol)
ORDER BY f.seq
"""
_NEWEST = "SELECT coalesce(max(seq), 0) FROM strategy_fills"
PAGE = 5_000


class FillStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, fills: Sequence[Fill]) -> None:
        """Store the fills that name an instance (a fill seen before changes nothing)."""
        rows = [(f.fill_id, f.strategy_id, f.exchange, f.symbol, encode(f)) for f in fills if f.strategy_id]
        if not rows:
            return
        async with self._database.transaction() as conn:
            await conn.execute(_LOCK)
            async with conn.cursor() as cursor:
                await cursor.executemany(_INSERT, rows)

    async def after(self, seq: int) -> list[StoredFill]:
        """The fills stored after ``seq``, in order (a page at a time)."""
        async with self._database.connection() as conn:
            rows = await (await conn.execute(_AFTER, (seq, PAGE))).fetchall()
        return [StoredFill(s, decode(Fill, bytes(payload))) for s, payload in rows]

    async def newest(self) -> int:
        async with self._database.connection() as conn:
            return (await (await conn.execute(_NEWEST)).fetchone())[0]

    async def fills_of(self, markets: Sequence[MarketOfInstance]) -> dict[MarketOfInstance, list[StoredFill]]:
        """The stored fills of each (instance, exchange, symbol), in store order, in one query."""
        found: dict[MarketOfInstance, list[StoredFill]] = {market: [] for market in markets}
        if not markets:
            return found
        columns = [list(column) for column in zip(*markets, strict=True)]
        async with self._database.connection() as conn:
            rows = await (await conn.execute(_OF_MARKETS, columns)).fetchall()
        for seq, payload, instance_id, exchange, symbol in rows:
            found[(instance_id, exchange, symbol)].append(StoredFill(seq, decode(Fill, bytes(payload))))
        return found
