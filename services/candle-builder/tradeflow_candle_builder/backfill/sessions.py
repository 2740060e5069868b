"""A backfill of an instrument with trading sessions (docs/adr/0008).

The live pipeline stores such an instrument's trades outside its sessions but makes no candle of
them, and keeps its higher timeframes session-aligned in ``session_candles``. A backfill does
the same: :meth:`SessionBackfill.counts` says which minutes may get a 1m candle (session bounds
are whole minutes, so a minute is wholly in or out, exactly as the pipeline's per-trade check),
and every ``session_candles`` bucket holding a minute whose 1m candle changed is folded again
from its 1m rows at the end, once (so a bucket gets one new revision per backfill, not one per
page, and an unchanged bucket keeps its revision).

24/7 instruments (unregistered or registered as "24/7") get None from :func:`load_session_backfill`
and exchange_calendars/pandas are never imported for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from tradeflow.time import NS_PER_MS

from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.adapters.instrument_store import InstrumentStore
from tradeflow_candle_builder.adapters.market_calendars import session_table
from tradeflow_candle_builder.adapters.session_candle_store import BucketKey, SessionCandleStore
from tradeflow_candle_builder.domain.instruments import SessionRules

REBUILD_CHUNK = 1_000  # buckets per rebuild statement


class SessionBackfill:
    """Which minutes of a session instrument make candles, and the session buckets to rebuild."""

    def __init__(self, rules: SessionRules, sessions: SessionCandleStore) -> None:
        self.rules = rules
        self._sessions = sessions
        self._dirty: set[BucketKey] = set()

    def counts(self, minute_ms: int) -> bool:
        """Whether the minute starting at ``minute_ms`` is inside a session (and so has a candle)."""
        return self.rules.counts(minute_ms * NS_PER_MS)

    def changed(self, minutes_ms: Iterable[int]) -> None:
        """Note minutes whose 1m candle was written: their buckets of every timeframe need a rebuild."""
        exchange, symbol = self.rules.spec.key
        for minute_ms in minutes_ms:
            minute_ns = minute_ms * NS_PER_MS
            for tf in self.rules.timeframes:
                bucket = tf.bucket(minute_ns)
                if bucket is not None:
                    self._dirty.add((exchange, symbol, tf.name, *bucket))

    async def rebuild(self) -> int:
        """Fold every noted bucket from its 1m candles into ``session_candles``; returns how many."""
        keys = sorted(self._dirty, key=lambda k: (k[3], k[2]))
        rebuilt = 0
        for i in range(0, len(keys), REBUILD_CHUNK):
            chunk = keys[i : i + REBUILD_CHUNK]
            rebuilt += len(await self._sessions.rebuild(chunk))
            self._dirty.difference_update(chunk)
        return rebuilt


async def load_session_backfill(store: CandleStore, exchange: str, symbol: str) -> SessionBackfill | None:
    """The instrument's session rules from the registry, or None when it trades 24/7."""
    spec = await InstrumentStore(store).get(exchange, symbol)
    if spec is None or not spec.has_sessions:
        return None
    table = await asyncio.to_thread(session_table, spec.calendar, spec.extended_hours)
    return SessionBackfill(SessionRules(spec, table), SessionCandleStore(store))
