"""The storage the candle pipeline depends on, as ports (the repository pattern).

:class:`CandlePipeline` and its :class:`StoreWriter` call only the methods below. Production
wires the PostgreSQL adapters (:class:`~tradeflow_candle_builder.adapters.candle_store.CandleStore`,
:class:`~tradeflow_candle_builder.adapters.emission_marks.EmissionMarks`,
:class:`~tradeflow_candle_builder.adapters.session_candle_store.SessionCandleStore`); unit tests
wire the in-memory ones in ``tests/unit/memory_candle_store.py``, which
``tests/integration/test_candle_store_contract.py`` runs through the same scenarios as the real
store so the two cannot drift apart.

The semantics every implementation keeps (docs/adr/0005):

* trades are stored idempotently, keyed by ``(exchange, symbol, ts, trade_id)`` with ``ts`` the
  event time to the microsecond; a replayed trade is not new;
* an upsert of a 1m candle replaces the stored row with the given state (revision included)
  unless the stored row counts more trades (a forming state never makes a candle smaller);
* a recompute rebuilds a 1m candle from its stored trades (open/close by event time, then
  ``ts_recv``, then ``trade_id``): revision 0 when new, + 1 when its values changed, unchanged
  otherwise; a minute without trades gives nothing;
* higher timeframes read back are folded from the stored 1m candles;
* an instrument's emission mark only moves forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from tradeflow.messages import Candle, Tick

from tradeflow_candle_builder.adapters.candle_store import CandleRow
from tradeflow_candle_builder.adapters.emission_marks import Instrument, ResumePoint
from tradeflow_candle_builder.adapters.session_candle_store import BucketKey
from tradeflow_candle_builder.domain.aggregator import MinuteKey


class CandleRepository(Protocol):
    """Trades and candles as the pipeline writes and reads them back."""

    async def write_ticks(self, ticks: Sequence[Tick]) -> int:
        """Store trades; returns how many were new (a replayed batch returns 0)."""
        ...

    async def write_ticks_new_minutes(self, ticks: Sequence[Tick]) -> tuple[int, set[MinuteKey]]:
        """Store trades; returns (how many were new, the minutes that got a new trade)."""
        ...

    async def upsert_candles_1m(self, candles: Sequence[Candle]) -> None:
        """Store each 1m candle's full state unless the stored row counts more trades."""
        ...

    async def recompute_candles_1m(self, keys: Iterable[MinuteKey]) -> list[Candle]:
        """Rebuild the 1m candles of the minutes from their stored trades; returns them in
        (exchange, symbol, ts_start) order with their revisions."""
        ...

    async def fetch_candles(self, exchange: str, symbol: str, timeframe: str, start: datetime | None,
                            end: datetime | None, limit: int) -> list[CandleRow]:
        """Candles of one instrument and timeframe ordered by ts (see CandleStore.fetch_candles)."""
        ...


class EmissionMarkRepository(Protocol):
    """Where each instrument's candles resume after a restart (``candle_emissions``)."""

    async def record(self, marks: Mapping[Instrument, int]) -> None:
        """Every candle of each instrument ending at or before its mark (ns) was emitted."""
        ...

    async def resume_points(self, instruments: Iterable[Instrument]) -> dict[Instrument, ResumePoint]:
        """The resume point of each instrument."""
        ...


class SessionCandleRepository(Protocol):
    """Session-aligned higher-timeframe candles (``session_candles``)."""

    async def save(self, candles: Sequence[Candle]) -> list[Candle]:
        """Store candles folded in memory; returns them with their stored revisions."""
        ...

    async def rebuild(self, keys: Sequence[BucketKey]) -> list[Candle]:
        """Fold each bucket from its stored 1m candles and store it; returns the stored candles."""
        ...
