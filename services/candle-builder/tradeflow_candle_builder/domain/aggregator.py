"""The streaming candle aggregator: trades in, candles of every timeframe out (pure, no I/O).

Why it looks like this (the speed target is >= 50,000 trades/s on one process, next to the
broker and the database on a 2-core box, so per-trade work must be a few microseconds):

* State is keyed by ``(exchange, symbol)``. Only OPEN 1m buckets are kept, a few per instrument
  (out-of-order trades within the grace period still land in theirs). ``add_batch`` is one
  tight loop with the common case (the trade belongs to the instrument's last-used bucket)
  first and no allocation besides the dict key.
* Time is the stream's, per Kafka partition: the largest event time seen on it. A 1m bucket
  closes when its partition's stream time reaches ``end + grace``. An idle partition (no record
  for ``idle_close`` of wall-clock time) also advances by that idle wall-clock time, so a live
  sparse instrument still closes while a replay of old data closes only by its own time.
  Closing is evaluated after each batch (``advance``), not per trade: a trade in the same batch
  as the one that passes its bucket's close point still counts on time; results never depend
  on it because a late trade is folded in from the database anyway.
* Higher timeframes (5m ... 1w) are folded in memory from closed 1m buckets (exact: buckets
  nest) and close when their partition's closed horizon passes their end.
* A trade whose 1m bucket already closed is LATE: the caller stores it and, when the database
  did not hold it yet, recomputes that 1m candle from the database (emitted with a higher
  revision); open higher buckets that contain it become dirty (values from the database at
  close) and closed ones are refreshed from the database and emitted with revision + 1.

Restarts and rebalances. When an instrument is first seen after an assignment, the caller tells
``register_instrument`` two things the database knows (docs/adr/0005):

* ``emitted_through``: the end of the newest candle (any timeframe) emitted for it before.
  Buckets close in time order, so every bucket ending at or before it was closed and emitted:
  a trade for such a 1m bucket is LATE, exactly as if this process had closed the bucket, and
  higher buckets ending there are closed ones. So a trade the database already holds (a
  replay of stored trades after a restart, say) stores, rebuilds, emits and re-revisions
  nothing, while a new one corrects its candles.
* ``recovered_through``: the start of its newest 1m candle in the database. The consumer
  commits, per partition, at most the first offset of every open 1m bucket
  (``committable_offsets``), so a restart re-reads every trade of the buckets that were open;
  the database may hold more of them (trades consumed before, or from elsewhere), so every
  1m bucket after ``emitted_through`` and starting at or before ``recovered_through`` is
  *recovered*: never stored from memory (a part of it must not replace what is stored), its
  final state recomputed from the ticks table when it closes, and every higher bucket
  starting at or before it is dirty. Buckets after it are built from memory alone.

This replaces seeding higher buckets with up to 10,080 1m rows per instrument: same result,
one small query per batch of new instruments.

Emission is at-least-once: a candle emitted before a crash whose ``emitted_through`` was not
stored yet is emitted again after it (a recovered bucket with the same values keeps its
revision).

Instruments with trading sessions (docs/adr/0008) get their own higher timeframes
(``register_instrument(timeframes=...)``: session-aligned grids with the same interface). Their
trades outside a session never reach ``add_batch`` (the pipeline drops them, and moves stream
time with ``observe_time``), so their 1m buckets are the usual ones; their closed higher
candles go to ``Closings.session_candles`` because they are stored before being emitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tradeflow.messages import Candle, Tick

from tradeflow_candle_builder.domain.buckets import HigherBucket, MinuteBucket
from tradeflow_candle_builder.domain.timeframes import HIGHER_TIMEFRAMES, MINUTE_NS, NS_PER_SECOND, Timeframe

NEVER = -(2**63)  # "nothing closed yet" / "no record yet"
MAX_REMEMBERED_REVISIONS = 4096  # per instrument, corrected higher buckets whose revision we know

MinuteKey = tuple[str, str, int]  # (exchange, symbol, bucket start ns)
ConsumedTick = tuple[int, int, Tick]  # (partition, offset, tick)


@dataclass(frozen=True, slots=True)
class HigherRefresh:
    """A higher-timeframe candle whose values must be read from the database, then emitted."""

    exchange: str
    symbol: str
    timeframe: Timeframe
    start: int
    end: int
    revision: int


@dataclass(slots=True)
class BatchOutcome:
    """What one batch of trades changed."""

    touched: list[MinuteBucket] = field(default_factory=list)  # 1m buckets with new trades (open)
    late: list[ConsumedTick] = field(default_factory=list)  # trades whose 1m bucket had closed
    late_minutes: set[MinuteKey] = field(default_factory=set)  # 1m candles to recompute and re-emit
    # closed higher candles to correct, one per (exchange, symbol, timeframe, start)
    refresh_higher: dict[tuple[str, str, str, int], HigherRefresh] = field(default_factory=dict)

    def candles_to_store(self) -> list[Candle]:
        """Current state of every touched 1m bucket built from memory (recovered ones are
        recomputed from the database instead, since memory holds only part of them)."""
        return [b.to_candle() for b in self.touched if not b.recovered]


@dataclass(slots=True)
class Closings:
    """What passing time closed."""

    candles: list[Candle] = field(default_factory=list)  # final, from memory: emit as they are
    session_candles: list[Candle] = field(default_factory=list)  # session-aligned, final: store, then emit
    recompute_minutes: list[MinuteKey] = field(default_factory=list)  # recovered 1m: final state from DB
    refresh_higher: list[HigherRefresh] = field(default_factory=list)  # dirty higher: values from DB
    first_offsets: dict[int, int] = field(default_factory=dict)  # per partition, of the closed 1m buckets
    # (partition, offset) of each closed candle's close trade, by (exchange, symbol, timeframe,
    # ts_start): the trade whose trace the candle continues (adapters/candle_traces.py)
    close_trades: dict[tuple[str, str, str, int], tuple[int, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.candles or self.session_candles or self.recompute_minutes or self.refresh_higher)


class PartitionClock:
    """Stream time of one Kafka partition and its open buckets, indexed by bucket end."""

    __slots__ = ("partition", "stream_time", "last_record_wall", "closed_before",
                 "open_minutes", "open_higher")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.stream_time = NEVER  # max ts_event seen
        self.last_record_wall = 0.0  # monotonic seconds of the last record
        self.closed_before = NEVER  # every 1m bucket ending at or before this is closed
        self.open_minutes: dict[int, list[MinuteBucket]] = {}
        self.open_higher: dict[int, list[HigherBucket]] = {}


class InstrumentState:
    __slots__ = ("exchange", "symbol", "clock", "minutes", "current", "current_start", "higher",
                 "recovered_through", "emitted_through", "higher_revisions", "timeframes")

    def __init__(self, exchange: str, symbol: str, clock: PartitionClock, recovered_through: int | None,
                 timeframes: tuple[Timeframe, ...], emitted_through: int | None = None) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.clock = clock
        self.minutes: dict[int, MinuteBucket] = {}
        self.current: MinuteBucket | None = None  # last-used bucket: the hot path's shortcut
        self.current_start = NEVER
        self.higher: dict[str, HigherBucket] = {}  # the open bucket per higher timeframe
        self.recovered_through = NEVER if recovered_through is None else recovered_through
        # Buckets ending at or before this were emitted by an earlier process: as good as closed.
        self.emitted_through = NEVER if emitted_through is None else emitted_through
        self.higher_revisions: dict[tuple[str, int], int] = {}
        self.timeframes = timeframes  # the higher timeframes (UTC, or aligned to its sessions)


class CandleAggregator:
    """Builds candles of every timeframe from trades, per instrument and Kafka partition."""

    def __init__(self, grace_ns: int, idle_close_ns: int, higher_timeframes: Sequence[Timeframe] = HIGHER_TIMEFRAMES):
        if grace_ns < 0 or idle_close_ns <= 0:
            raise ValueError("grace must be >= 0 and idle_close > 0")
        self.grace_ns = grace_ns
        self.idle_close_ns = idle_close_ns
        self._higher_timeframes = tuple(higher_timeframes)
        self._clocks: dict[int, PartitionClock] = {}
        self._instruments: dict[tuple[str, str], InstrumentState] = {}
        self._batch_no = 0

    # --- partitions and instruments -------------------------------------------------------------

    def assign(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._clocks.setdefault(p, PartitionClock(p))

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget everything of these partitions; their next owner rebuilds it from the commit point."""
        gone = set(partitions)
        for p in gone:
            self._clocks.pop(p, None)
        for key in [k for k, st in self._instruments.items() if st.clock.partition in gone]:
            del self._instruments[key]

    def partitions(self) -> set[int]:
        return set(self._clocks)

    def instruments(self) -> list[tuple[str, str]]:
        """The instruments tracked now (exchange, symbol)."""
        return list(self._instruments)

    def unknown_instruments(self, ticks: Iterable[ConsumedTick]) -> dict[tuple[str, str], tuple[int, int]]:
        """Instruments not seen since their partition was assigned: ``{key: (partition, first ts_event)}``."""
        known = self._instruments
        unknown: dict[tuple[str, str], tuple[int, int]] = {}
        for partition, _offset, tick in ticks:
            key = (tick.exchange, tick.symbol)
            if key not in known and key not in unknown:
                unknown[key] = (partition, tick.ts_event)
        return unknown

    def register_instrument(self, exchange: str, symbol: str, partition: int, recovered_through: int | None,
                            timeframes: Sequence[Timeframe] | None = None, emitted_through: int | None = None) -> None:
        """Start tracking an instrument. ``recovered_through``: start of its newest 1m candle
        already in the database; ``emitted_through``: end of the newest candle emitted for it
        (None when there is none); see the module docstring.
        ``timeframes``: its higher timeframes when not the UTC ones (session-aligned)."""
        clock = self._clocks.get(partition)
        if clock is None:
            clock = self._clocks[partition] = PartitionClock(partition)
        tfs = self._higher_timeframes if timeframes is None else tuple(timeframes)
        self._instruments[(exchange, symbol)] = InstrumentState(exchange, symbol, clock, recovered_through, tfs,
                                                                emitted_through)

    def set_timeframes(self, exchange: str, symbol: str, timeframes: Sequence[Timeframe] | None) -> None:
        """The instrument's registration changed: use these higher timeframes from now on.

        Its open higher buckets (of the old grid) are dropped; the registry refuses such a
        change once the instrument has candles, so they hold nothing that was emitted.
        """
        st = self._instruments.get((exchange, symbol))
        if st is None:
            return
        tfs = self._higher_timeframes if timeframes is None else tuple(timeframes)
        if tfs == st.timeframes:
            return
        for h in st.higher.values():
            bucket_list = st.clock.open_higher.get(h.end)
            if bucket_list is not None and h in bucket_list:
                bucket_list.remove(h)
                if not bucket_list:
                    del st.clock.open_higher[h.end]
        st.higher.clear()
        st.higher_revisions.clear()
        st.timeframes = tfs

    def observe_time(self, partition: int, ts_event: int, wall_now: float) -> None:
        """A record that makes no candle (a trade outside its instrument's sessions) still
        moves its partition's stream time."""
        clock = self._clocks.get(partition)
        if clock is None:
            clock = self._clocks[partition] = PartitionClock(partition)
        clock.last_record_wall = wall_now
        if ts_event > clock.stream_time:
            clock.stream_time = ts_event

    # --- trades ---------------------------------------------------------------------------------

    def add_batch(self, ticks: Iterable[ConsumedTick], wall_now: float) -> BatchOutcome:
        """Fold valid trades (in offset order per partition) into their open 1m buckets.

        ``wall_now`` is monotonic seconds, for the idle-partition rule.
        """
        self._batch_no += 1
        mark = self._batch_no
        instruments = self._instruments
        outcome = BatchOutcome()
        touched = outcome.touched
        for partition, offset, tick in ticks:
            ts = tick.ts_event
            start = ts - ts % MINUTE_NS
            st = instruments.get((tick.exchange, tick.symbol))
            if st is None:
                self.register_instrument(tick.exchange, tick.symbol, partition, None)
                st = instruments[(tick.exchange, tick.symbol)]
            clock = st.clock
            clock.last_record_wall = wall_now
            if ts > clock.stream_time:
                clock.stream_time = ts
            if st.current_start == start:
                b = st.current
            else:
                b = st.minutes.get(start)
                if b is None:
                    end = start + MINUTE_NS
                    if end <= clock.closed_before or end <= st.emitted_through:
                        self._late(st, partition, offset, tick, start, outcome)
                        continue
                    b = MinuteBucket(tick, partition, offset, start, start <= st.recovered_through)
                    b.batch_mark = mark
                    touched.append(b)
                    st.minutes[start] = b
                    clock.open_minutes.setdefault(b.end, []).append(b)
                    st.current = b
                    st.current_start = start
                    continue
                st.current = b
                st.current_start = start
            if b.batch_mark != mark:
                b.batch_mark = mark
                touched.append(b)
            # Fold the trade into its minute. Inlined rather than a MinuteBucket method: this
            # loop is the service's hot path. Equal event times: the later arrival (ts_recv)
            # closes, the earlier one opens.
            price = tick.price
            recv = tick.ts_recv
            b.trades += 1
            b.volume += tick.amount
            if price > b.high:
                b.high = price
            elif price < b.low:
                b.low = price
            if ts < b.open_ts or (ts == b.open_ts and recv < b.open_recv):
                b.open = price
                b.open_ts = ts
                b.open_recv = recv
            if ts > b.close_ts or (ts == b.close_ts and recv >= b.close_recv):
                b.close = price
                b.close_ts = ts
                b.close_recv = recv
                b.close_offset = offset
        return outcome

    def _late(self, st: InstrumentState, partition: int, offset: int, tick: Tick, start: int,
              outcome: BatchOutcome) -> None:
        outcome.late.append((partition, offset, tick))
        key = (st.exchange, st.symbol, start)
        if key in outcome.late_minutes:
            return
        outcome.late_minutes.add(key)
        closed_through = max(st.clock.closed_before, st.emitted_through)
        for tf in st.timeframes:
            h_start = tf.bucket_start(start)
            if h_start is None:
                continue  # outside every session (registration changed meanwhile): no higher candle
            h = st.higher.get(tf.name)
            if h is not None and h.start == h_start:
                h.dirty = True  # still open: read it from the database when it closes
            elif tf.bucket_end(h_start) <= closed_through:
                refresh_key = (st.exchange, st.symbol, tf.name, h_start)
                if refresh_key in outcome.refresh_higher:
                    continue
                revisions = st.higher_revisions
                revision = revisions.get((tf.name, h_start), 0) + 1
                if len(revisions) >= MAX_REMEMBERED_REVISIONS:
                    for old in sorted(revisions, key=lambda k: k[1])[: MAX_REMEMBERED_REVISIONS // 2]:
                        del revisions[old]
                revisions[(tf.name, h_start)] = revision
                outcome.refresh_higher[refresh_key] = HigherRefresh(
                    st.exchange, st.symbol, tf, h_start, tf.bucket_end(h_start), revision)
            else:
                # Open but without any closed minute yet: it exists only in the database.
                self._open_higher(st, tf, h_start, dirty=True)

    def _open_higher(self, st: InstrumentState, tf: Timeframe, start: int, dirty: bool) -> HigherBucket:
        clock = st.clock
        h = HigherBucket(st.exchange, st.symbol, clock.partition, tf, start, dirty)
        st.higher[tf.name] = h
        clock.open_higher.setdefault(h.end, []).append(h)
        return h

    # --- time -----------------------------------------------------------------------------------

    def advance(self, wall_now: float) -> Closings:
        """Close every bucket whose partition's time has passed its end + grace."""
        out = Closings()
        for clock in self._clocks.values():
            if clock.stream_time == NEVER:
                continue
            effective = clock.stream_time
            idle_ns = int((wall_now - clock.last_record_wall) * NS_PER_SECOND)
            if idle_ns > self.idle_close_ns:
                effective += idle_ns
            horizon = effective - self.grace_ns
            if horizon <= clock.closed_before:
                continue
            self._close_through(clock, horizon, out)
            clock.closed_before = horizon
        return out

    def _close_through(self, clock: PartitionClock, horizon: int, out: Closings) -> None:
        while True:
            ends = [e for e in clock.open_minutes if e <= horizon]
            ends.extend(e for e in clock.open_higher if e <= horizon)
            if not ends:
                return
            end = min(ends)
            # Minutes first: closing one may open (or fill) a higher bucket ending at `end`.
            for minute in clock.open_minutes.pop(end, ()):
                self._close_minute(minute, out)
            for higher in clock.open_higher.pop(end, ()):
                self._close_higher(higher, out)

    def _close_minute(self, minute: MinuteBucket, out: Closings) -> None:
        st = self._instruments[(minute.exchange, minute.symbol)]
        del st.minutes[minute.start]
        if st.current is minute:
            st.current = None
            st.current_start = NEVER
        p = minute.partition
        if p not in out.first_offsets or minute.first_offset < out.first_offsets[p]:
            out.first_offsets[p] = minute.first_offset
        out.close_trades[(minute.exchange, minute.symbol, "1m", minute.start)] = (p, minute.close_offset)
        if minute.recovered:
            out.recompute_minutes.append((minute.exchange, minute.symbol, minute.start))
        else:
            out.candles.append(minute.to_candle())
        for tf in st.timeframes:
            h_start = tf.bucket_start(minute.start)
            if h_start is None:
                continue  # outside every session (registration changed meanwhile): no higher candle
            h = st.higher.get(tf.name)
            if h is None or h.start != h_start:
                h = self._open_higher(st, tf, h_start, dirty=h_start <= st.recovered_through)
            if minute.recovered:
                h.dirty = True
            elif not h.dirty:
                h.add(minute)

    def _close_higher(self, higher: HigherBucket, out: Closings) -> None:
        st = self._instruments[(higher.exchange, higher.symbol)]
        if st.higher.get(higher.timeframe.name) is higher:
            del st.higher[higher.timeframe.name]
        if higher.dirty:
            out.refresh_higher.append(
                HigherRefresh(higher.exchange, higher.symbol, higher.timeframe, higher.start, higher.end, 0))
        elif higher.trades:
            out.close_trades[(higher.exchange, higher.symbol, higher.timeframe.name, higher.start)] = (
                higher.partition, higher.close_offset)
            if higher.timeframe.session_aligned:
                out.session_candles.append(higher.to_candle())
            else:
                out.candles.append(higher.to_candle())

    # --- offsets --------------------------------------------------------------------------------

    def committable_offsets(self) -> dict[int, int | None]:
        """Per partition, the first offset of its oldest open 1m bucket (None: nothing open).

        Committing at most this means a restart re-reads every trade of every open bucket.
        """
        result: dict[int, int | None] = {}
        for p, clock in self._clocks.items():
            first = None
            for minutes in clock.open_minutes.values():
                for m in minutes:
                    if first is None or m.first_offset < first:
                        first = m.first_offset
            result[p] = first
        return result

    # --- introspection (API, tests) -------------------------------------------------------------

    def open_minute_candles(self, exchange: str, symbol: str) -> list[Candle]:
        st = self._instruments.get((exchange, symbol))
        if st is None:
            return []
        return [st.minutes[s].to_candle() for s in sorted(st.minutes)]

    def stream_time(self, partition: int) -> int | None:
        clock = self._clocks.get(partition)
        return None if clock is None or clock.stream_time == NEVER else clock.stream_time
