"""Where an instrument's candles resume after a restart: the ``candle_emissions`` table and the
newest stored 1m candle (docs/adr/0005).

``emitted_through`` is the end of the newest candle (any timeframe) emitted for an instrument on
md.candles.v1. The store writer records it after the broker acknowledged the candles, never
before, so it never claims an emission that did not happen (a crash in between means a repeated
emission, which at-least-once allows). It only moves forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from tradeflow.messages import Candle
from tradeflow.time import datetime_to_ns

from tradeflow_candle_builder.adapters.candle_store import NS_TO_TS, CandleStore

Instrument = tuple[str, str]  # (exchange, symbol)


_RECORD = f"""
INSERT INTO candle_emissions AS e (exchange, symbol, emitted_through)
SELECT exchange, symbol, {NS_TO_TS.format("end_ns")}
FROM unnest(%(exchange)s::text[], %(symbol)s::text[], %(end_ns)s::int8[]) AS m(exchange, symbol, end_ns)
ON CONFLICT (exchange, symbol) DO UPDATE SET emitted_through = excluded.emitted_through, updated_at = now()
WHERE excluded.emitted_through > e.emitted_through
"""

# The newest 1m candle per instrument: one backward probe of candles_1m's primary key each.
_RESUME_POINTS = """
SELECT k.exchange, k.symbol,
       (SELECT c.ts FROM candles_1m c WHERE c.exchange = k.exchange AND c.symbol = k.symbol
        ORDER BY c.ts DESC LIMIT 1),
       e.emitted_through
FROM unnest(%(exchange)s::text[], %(symbol)s::text[]) AS k(exchange, symbol)
LEFT JOIN candle_emissions e ON e.exchange = k.exchange AND e.symbol = k.symbol
"""


class ResumePoint(NamedTuple):
    """What the database says about an instrument when its partition is (re)assigned (ns, or None)."""

    newest_1m_start: int | None  # start of its newest stored 1m candle
    emitted_through: int | None  # end of the newest candle emitted for it


class EmissionMarks:
    """``candle_emissions`` through the candle store's connection pool."""

    def __init__(self, store: CandleStore) -> None:
        self._store = store

    async def record(self, marks: Mapping[Instrument, int]) -> None:
        """Note that every candle of each instrument ending at or before its mark (ns) was emitted."""
        if not marks:
            return
        items = sorted(marks.items())  # a stable lock order between writers
        params = {"exchange": [k[0] for k, _ in items], "symbol": [k[1] for k, _ in items],
                  "end_ns": [end for _, end in items]}
        async with self._store.connection() as conn:
            await conn.execute(_RECORD, params)

    async def resume_points(self, instruments: Iterable[Instrument]) -> dict[Instrument, ResumePoint]:
        """The resume point of each instrument, in one round trip."""
        keys = list(instruments)
        if not keys:
            return {}
        async with self._store.connection() as conn:
            cursor = await conn.execute(_RESUME_POINTS, {"exchange": [k[0] for k in keys],
                                                         "symbol": [k[1] for k in keys]})
            rows = await cursor.fetchall()
        return {(exchange, symbol): ResumePoint(None if newest is None else datetime_to_ns(newest),
                                                None if through is None else datetime_to_ns(through))
                for exchange, symbol, newest, through in rows}


def raise_marks(marks: dict[Instrument, int], emitted: Iterable[Candle]) -> None:
    """Move each instrument's mark (in place) to the latest end among its emitted candles."""
    for candle in emitted:
        key = (candle.exchange, candle.symbol)
        mark = marks.get(key)
        if mark is None or candle.ts_end > mark:
            marks[key] = candle.ts_end
