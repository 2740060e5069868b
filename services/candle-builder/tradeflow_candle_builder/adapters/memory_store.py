"""TEST-ONLY: the candle pipeline's storage ports in memory (never wired by ``create_app``).

For unit tests of the pipeline on the in-memory bus (``tests/unit/``). It lives in the package,
not in ``tests/``, because the contract test ``tests/integration/test_candle_store_contract.py``
runs the same scenarios against it and the real :class:`CandleStore`, and test directories are
not importable (pytest's importlib mode).

It keeps what the pipeline relies on (docs/adr/0005, ``tradeflow_candle_builder.ports``), with the
real store's details that matter for equal results:

* trades are keyed by ``(exchange, symbol, ts, trade_id)``, ``ts`` truncated to the microsecond
  as ``timestamptz`` does (so is ``ts_recv``); a trade already stored is not new;
* ``upsert_candles_1m`` replaces a row with the given state (revision included) only when it
  counts at least as many trades as the stored one; within one call the last candle per key wins;
* ``recompute_candles_1m`` folds a minute's stored trades (open/close by ts, then ts_recv, then
  trade_id) and raises the revision only when a value changed;
* higher timeframes are folded from the stored 1m candles when read (what the continuous
  aggregates or maintained tables give), session candles likewise when rebuilt;
* emission marks only move forward.

Not modelled: tick retention, transactions and concurrent writers, PostgreSQL's collation for
``trade_id`` ties (Python compares code points) and the order of floating-point sums (the
contract test uses amounts that add up exactly). ``fail_next`` makes an operation raise once, for
tests of the pipeline's retries and redeliveries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tradeflow.messages import Candle, Tick

from tradeflow_candle_builder.adapters.candle_store import TIMEFRAME_RELATIONS, CandleRow
from tradeflow_candle_builder.adapters.emission_marks import Instrument, ResumePoint
from tradeflow_candle_builder.adapters.session_candle_store import BucketKey
from tradeflow_candle_builder.domain.aggregator import MinuteKey
from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, TIMEFRAMES, datetime_to_ns, ns_to_datetime

_VALUES = ("open", "high", "low", "close", "volume", "trades")


def _us(ns: int) -> int:
    """What a timestamptz keeps of a nanosecond time (microseconds, as ns)."""
    return ns // 1000 * 1000


@dataclass(frozen=True, slots=True)
class _StoredTick:
    ts: int  # ns, microsecond precision
    ts_recv: int
    trade_id: str
    price: float
    amount: float


def _values(candle: Candle) -> tuple:
    return tuple(getattr(candle, name) for name in _VALUES)


def _fold(exchange: str, symbol: str, timeframe: str, start: int, end: int, minutes: list[Candle]) -> Candle:
    """One bucket from its 1m candles (ordered by ts): first open, last close, sums."""
    return Candle(exchange=exchange, symbol=symbol, timeframe=timeframe, ts_start=start, ts_end=end,
                  open=minutes[0].open, high=max(c.high for c in minutes), low=min(c.low for c in minutes),
                  close=minutes[-1].close, volume=sum(c.volume for c in minutes),
                  trades=sum(c.trades for c in minutes))


def _row(candle: Candle) -> CandleRow:
    return CandleRow(ns_to_datetime(candle.ts_start), candle.open, candle.high, candle.low, candle.close,
                     candle.volume, candle.trades)


def _as_ns(value: datetime) -> int:
    return datetime_to_ns(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


class MemoryCandleStore:
    """:class:`~tradeflow_candle_builder.ports.CandleRepository` in memory; ``marks`` and
    ``sessions`` are the other two ports over the same data (what ``EmissionMarks(store)`` and
    ``SessionCandleStore(store)`` are for the real store)."""

    def __init__(self) -> None:
        self._ticks: dict[MinuteKey, dict[tuple[int, str], _StoredTick]] = {}
        self._candles_1m: dict[Instrument, dict[int, Candle]] = {}
        self._failures: dict[str, BaseException] = {}
        self.marks = MemoryEmissionMarks(self)
        self.sessions = MemorySessionCandles(self)

    # --- test controls ---------------------------------------------------------------------------

    def fail_next(self, operation: str, error: BaseException) -> None:
        """The next call of ``operation`` (a method name of any of the three ports) raises ``error``."""
        self._failures[operation] = error

    def _check(self, operation: str) -> None:
        error = self._failures.pop(operation, None)
        if error is not None:
            raise error

    def tick_count(self) -> int:
        return sum(len(trades) for trades in self._ticks.values())

    # --- CandleRepository ------------------------------------------------------------------------

    async def write_ticks(self, ticks: Sequence[Tick]) -> int:
        self._check("write_ticks")
        return self._insert(ticks)[0]

    async def write_ticks_new_minutes(self, ticks: Sequence[Tick]) -> tuple[int, set[MinuteKey]]:
        self._check("write_ticks_new_minutes")
        return self._insert(ticks)

    def _insert(self, ticks: Sequence[Tick]) -> tuple[int, set[MinuteKey]]:
        new = 0
        minutes: set[MinuteKey] = set()
        for t in ticks:
            ts = _us(t.ts_event)
            minute = (t.exchange, t.symbol, ts - ts % MINUTE_NS)
            stored = self._ticks.setdefault(minute, {})
            if (ts, t.trade_id) in stored:
                continue
            stored[(ts, t.trade_id)] = _StoredTick(ts, _us(t.ts_recv), t.trade_id, t.price, t.amount)
            new += 1
            minutes.add(minute)
        return new, minutes

    async def upsert_candles_1m(self, candles: Sequence[Candle]) -> None:
        self._check("upsert_candles_1m")
        latest: dict[MinuteKey, Candle] = {}
        for candle in candles:
            if candle.timeframe != "1m":
                raise ValueError(f"upsert_candles_1m got a {candle.timeframe!r} candle")
            latest[(candle.exchange, candle.symbol, candle.ts_start)] = candle
        for (exchange, symbol, start), candle in latest.items():
            rows = self._candles_1m.setdefault((exchange, symbol), {})
            stored = rows.get(start)
            if stored is None or candle.trades >= stored.trades:
                rows[start] = candle

    async def recompute_candles_1m(self, keys: Iterable[MinuteKey]) -> list[Candle]:
        self._check("recompute_candles_1m")
        result = []
        for exchange, symbol, start in sorted(set(keys)):
            trades = sorted(self._ticks.get((exchange, symbol, start), {}).values(),
                            key=lambda t: (t.ts, t.ts_recv, t.trade_id))
            if not trades:
                continue
            rebuilt = Candle(exchange=exchange, symbol=symbol, timeframe="1m", ts_start=start,
                             ts_end=start + MINUTE_NS, open=trades[0].price, high=max(t.price for t in trades),
                             low=min(t.price for t in trades), close=trades[-1].price,
                             volume=sum(t.amount for t in trades), trades=len(trades), revision=0)
            rows = self._candles_1m.setdefault((exchange, symbol), {})
            stored = rows.get(start)
            if stored is not None:
                changed = _values(stored) != _values(rebuilt)
                rebuilt = _with_revision(rebuilt, stored.revision + 1 if changed else stored.revision)
            rows[start] = rebuilt
            result.append(rebuilt)
        return result

    async def fetch_candles(self, exchange: str, symbol: str, timeframe: str, start: datetime | None,
                            end: datetime | None, limit: int) -> list[CandleRow]:
        self._check("fetch_candles")
        if timeframe not in TIMEFRAME_RELATIONS:
            raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAME_RELATIONS)}")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        candles = self._timeframe(exchange, symbol, timeframe)
        if start is not None:
            candles = [c for c in candles if c.ts_start >= _as_ns(start)]
        if end is not None:
            candles = [c for c in candles if c.ts_start < _as_ns(end)]
        candles = candles[:limit] if start is not None else candles[-limit:]
        return [_row(c) for c in candles]

    # --- reads for assertions (CandleStore has the same) -------------------------------------------

    async def fetch_1m(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> list[Candle]:
        rows = self._candles_1m.get((exchange, symbol), {})
        return [rows[s] for s in sorted(rows) if start_ns <= s < end_ns]

    def _timeframe(self, exchange: str, symbol: str, timeframe: str) -> list[Candle]:
        """Every candle of the instrument in ``timeframe``, ordered by start (higher ones folded)."""
        rows = self._candles_1m.get((exchange, symbol), {})
        minutes = [rows[s] for s in sorted(rows)]
        if timeframe == "1m":
            return minutes
        tf = TIMEFRAMES[timeframe]
        buckets: dict[int, list[Candle]] = {}
        for minute in minutes:
            buckets.setdefault(tf.bucket_start(minute.ts_start), []).append(minute)
        return [_fold(exchange, symbol, timeframe, start, tf.bucket_end(start), parts)
                for start, parts in buckets.items()]

    def _1m_between(self, exchange: str, symbol: str, start: int, end: int) -> list[Candle]:
        rows = self._candles_1m.get((exchange, symbol), {})
        return [rows[s] for s in sorted(rows) if start <= s < end]


def _with_revision(candle: Candle, revision: int) -> Candle:
    return Candle(exchange=candle.exchange, symbol=candle.symbol, timeframe=candle.timeframe,
                  ts_start=candle.ts_start, ts_end=candle.ts_end, open=candle.open, high=candle.high,
                  low=candle.low, close=candle.close, volume=candle.volume, trades=candle.trades, revision=revision)


class MemoryEmissionMarks:
    """:class:`~tradeflow_candle_builder.ports.EmissionMarkRepository` over a :class:`MemoryCandleStore`."""

    def __init__(self, store: MemoryCandleStore) -> None:
        self._store = store
        self.emitted_through: dict[Instrument, int] = {}

    async def record(self, marks: Mapping[Instrument, int]) -> None:
        self._store._check("record")
        for key, end in marks.items():
            end = _us(end)
            if end > self.emitted_through.get(key, end - 1):
                self.emitted_through[key] = end

    async def resume_points(self, instruments: Iterable[Instrument]) -> dict[Instrument, ResumePoint]:
        self._store._check("resume_points")
        points = {}
        for key in instruments:
            rows = self._store._candles_1m.get(key)
            points[key] = ResumePoint(max(rows) if rows else None, self.emitted_through.get(key))
        return points


class MemorySessionCandles:
    """:class:`~tradeflow_candle_builder.ports.SessionCandleRepository` over a :class:`MemoryCandleStore`."""

    def __init__(self, store: MemoryCandleStore) -> None:
        self._store = store
        self.candles: dict[tuple[str, str, str, int], Candle] = {}

    async def save(self, candles: Sequence[Candle]) -> list[Candle]:
        self._store._check("save")
        return sorted((self._upsert(c) for c in candles), key=_session_order)

    async def rebuild(self, keys: Sequence[BucketKey]) -> list[Candle]:
        self._store._check("rebuild")
        rebuilt = []
        for exchange, symbol, timeframe, start, end in keys:
            minutes = self._store._1m_between(exchange, symbol, start, end)
            if minutes:
                rebuilt.append(self._upsert(_fold(exchange, symbol, timeframe, start, end, minutes)))
        return sorted(rebuilt, key=_session_order)

    def _upsert(self, candle: Candle) -> Candle:
        key = (candle.exchange, candle.symbol, candle.timeframe, candle.ts_start)
        stored = self.candles.get(key)
        revision = 0
        if stored is not None:
            same = (stored.ts_end, *_values(stored)) == (candle.ts_end, *_values(candle))
            revision = stored.revision if same else stored.revision + 1
        self.candles[key] = _with_revision(candle, revision)
        return self.candles[key]


def _session_order(candle: Candle) -> tuple:
    return (candle.exchange, candle.symbol, candle.ts_start, candle.timeframe)
