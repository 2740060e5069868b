"""The ``instruments`` table: registered instruments and their market calendars (psycopg)."""

from __future__ import annotations

from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.domain.instruments import InstrumentSpec

_LIST = "SELECT exchange, symbol, calendar, extended_hours FROM instruments ORDER BY exchange, symbol"
_GET = "SELECT exchange, symbol, calendar, extended_hours FROM instruments WHERE exchange = %s AND symbol = %s"
_UPSERT = """
INSERT INTO instruments (exchange, symbol, calendar, extended_hours) VALUES (%s, %s, %s, %s)
ON CONFLICT (exchange, symbol) DO UPDATE SET
    calendar = excluded.calendar, extended_hours = excluded.extended_hours, updated_at = now()
"""
# Any stored 1m candle: the instrument's bars are already cut one way (PK probe, one row).
_HAS_CANDLES = "SELECT EXISTS (SELECT 1 FROM candles_1m WHERE exchange = %s AND symbol = %s)"


class InstrumentStore:
    """Reads and writes the instrument registry through the candle store's connection pool."""

    def __init__(self, store: CandleStore) -> None:
        self._store = store

    async def list(self) -> list[InstrumentSpec]:
        async with self._store.connection() as conn:
            cursor = await conn.execute(_LIST)
            return [InstrumentSpec(*row) for row in await cursor.fetchall()]

    async def get(self, exchange: str, symbol: str) -> InstrumentSpec | None:
        async with self._store.connection() as conn:
            cursor = await conn.execute(_GET, (exchange, symbol))
            row = await cursor.fetchone()
        return None if row is None else InstrumentSpec(*row)

    async def has_candles(self, exchange: str, symbol: str) -> bool:
        async with self._store.connection() as conn:
            cursor = await conn.execute(_HAS_CANDLES, (exchange, symbol))
            (exists,) = await cursor.fetchone()
        return bool(exists)

    async def save(self, spec: InstrumentSpec) -> None:
        async with self._store.connection() as conn:
            await conn.execute(_UPSERT, (spec.exchange, spec.symbol, spec.calendar, spec.extended_hours))
