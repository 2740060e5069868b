"""The background database writer: stores consumed batches and emits candles, in order.

Why a separate task: a database round trip per consumed batch would cap consumption at the
database's latency. The consumer hands each batch's work to this writer through a bounded
queue and goes on consuming; when the database falls behind, the queue fills and the consumer
waits (backpressure). Queued batches are merged (up to ``batch_rows`` ticks, waiting at most
``batch_ms`` for more) so the database sees few large COPYs instead of many small ones.

There is exactly one writer task, and jobs are done in queue order, so two writes of the same
rows never run concurrently and a later state of a candle always lands after an earlier one.

Candles are emitted here, after the job's writes: a consumer of md.candles.v1 that asks
``/v1/candles`` then sees at least what it was told. Once the broker has acknowledged them, the
end of the newest emitted candle per instrument is recorded in ``candle_emissions`` (see
adapters/emission_marks.py): at once when no job waits (so a graceful stop or a revoke, which
drain the writer, leave nothing unrecorded), otherwise alongside a later job's writes at most
every ``MARKS_EVERY_S``; the live path pays no extra round trip. Offsets: ``written_offsets`` (next offset
after the last record whose job completed) and ``held_offsets`` (first offsets of buckets that
closed in a job not done yet) feed the consumer's commit, so a crash never skips a write or
an emission (it may repeat them: writes are idempotent, emission is at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tradeflow.messages import Candle, Tick

from tradeflow_candle_builder.adapters.emission_marks import Instrument, raise_marks
from tradeflow_candle_builder.domain.aggregator import HigherRefresh, MinuteKey
from tradeflow_candle_builder.domain.timeframes import ns_to_datetime
from tradeflow_candle_builder.ports import CandleRepository, EmissionMarkRepository, SessionCandleRepository

log = logging.getLogger(__name__)

# While jobs wait, emission marks are recorded at most this often: a crash loses at most this
# much of them, which only means candles emitted again after the restart (at-least-once).
MARKS_EVERY_S = 1.0

# candles, and the traceparent each continues (None: none known)
Emit = Callable[[Sequence[Candle], Sequence[bytes | None]], Awaitable[None]]
CandleKey = tuple[str, str, str, int]  # (exchange, symbol, timeframe, ts_start)


@dataclass(slots=True)
class WriteJob:
    """One consumed batch's (or one idle-close pass's) database work and candles to emit."""

    ticks: list[Tick] = field(default_factory=list)
    candles_1m: dict[MinuteKey, Candle] = field(default_factory=dict)  # state to upsert; later wins
    recompute: set[MinuteKey] = field(default_factory=set)  # 1m candles to rebuild from ticks, then emit
    # Minutes of late trades, and the closed higher buckets holding them: rebuilt and emitted only
    # when the late trade is new to the database (a replayed one changes nothing, not even revisions).
    late_minutes: set[MinuteKey] = field(default_factory=set)
    late_refresh: dict[tuple[str, str, str, int], HigherRefresh] = field(default_factory=dict)
    emit: list[Candle] = field(default_factory=list)  # final candles from memory
    session_candles: list[Candle] = field(default_factory=list)  # session-aligned, final: store then emit
    refresh_higher: dict[tuple[str, str, str, int], HigherRefresh] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> after the batch's last record
    holds: dict[int, int] = field(default_factory=dict)  # partition -> first offset of a closed bucket
    traces: dict[CandleKey, bytes] = field(default_factory=dict)  # the close trade's traceparent per candle

    def merge(self, later: WriteJob) -> None:
        self.ticks.extend(later.ticks)
        self.candles_1m.update(later.candles_1m)
        self.recompute |= later.recompute
        self.late_minutes |= later.late_minutes
        for key, refresh in later.late_refresh.items():
            mine = self.late_refresh.get(key)
            if mine is None or refresh.revision > mine.revision:
                self.late_refresh[key] = refresh
        self.emit.extend(later.emit)
        self.session_candles.extend(later.session_candles)
        for key, refresh in later.refresh_higher.items():
            mine = self.refresh_higher.get(key)
            if mine is None or refresh.revision > mine.revision:
                self.refresh_higher[key] = refresh
        for p, offset in later.next_offsets.items():
            self.next_offsets[p] = max(self.next_offsets.get(p, offset), offset)
        for p, offset in later.holds.items():
            self.holds[p] = min(self.holds.get(p, offset), offset)
        self.traces.update(later.traces)


@dataclass(slots=True)
class WriterMetrics:
    """Callbacks the writer reports to (the pipeline binds them to Prometheus metrics)."""

    write_seconds: Callable[[float], None]
    queue_depth: Callable[[int], None]
    failures: Callable[[], None]


class StoreWriter:
    """Single background task draining a bounded queue of :class:`WriteJob` into the store."""

    def __init__(self, store: CandleRepository, sessions: SessionCandleRepository, marks: EmissionMarkRepository,
                 emit: Emit,
                 metrics: WriterMetrics, *, queue_batches: int, batch_rows: int, batch_ms: int) -> None:
        self._store = store
        self._sessions = sessions
        self._marks = marks
        self._unsaved_marks: dict[Instrument, int] = {}  # emitted (acknowledged), not yet recorded
        self._marks_due = 0.0  # monotonic time after which a job's writes also record the marks
        self._emit = emit
        self._metrics = metrics
        self._queue: asyncio.Queue[WriteJob] = asyncio.Queue(maxsize=queue_batches)
        self._batch_rows = batch_rows
        self._batch_s = batch_ms / 1000
        self._task: asyncio.Task | None = None
        self._pending_holds: list[dict[int, int]] = []  # holds of queued/in-progress jobs, in order
        self.written_offsets: dict[int, int] = {}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="candle-store-writer")

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Finish every queued job (for at most ``timeout_s``: a database that stays away must
        not block the shutdown; the uncommitted records are consumed again), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except TimeoutError:
            log.error("database writer stopped with %d batches not written (they will be consumed again)",
                      self._queue.qsize() + 1)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def submit(self, job: WriteJob) -> None:
        """Queue a job; waits while the queue is full (backpressure on the consumer)."""
        if self._task is None or self._task.done():
            raise RuntimeError("the database writer is not running")
        self._pending_holds.append(job.holds)
        await self._queue.put(job)
        self._metrics.queue_depth(self._queue.qsize())

    async def drain(self) -> None:
        """Wait until every job queued so far is done."""
        await self._queue.join()

    def forget_partitions(self, partitions: set[int]) -> None:
        """A revoked partition's offsets are its next owner's business."""
        for p in partitions:
            self.written_offsets.pop(p, None)

    def held_offsets(self) -> dict[int, int]:
        held: dict[int, int] = {}
        for holds in self._pending_holds:
            for p, offset in holds.items():
                if p not in held or offset < held[p]:
                    held[p] = offset
        return held

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            taken = 1
            deadline = time.monotonic() + self._batch_s
            while len(job.ticks) < self._batch_rows:
                if self._queue.empty():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        later = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    later = self._queue.get_nowait()
                job.merge(later)
                taken += 1
            self._metrics.queue_depth(self._queue.qsize())
            await self._complete(job)
            if self._unsaved_marks and self._queue.empty():
                await self._save_marks_now()
            # Done in order: this job's holds are the oldest `taken` ones.
            del self._pending_holds[:taken]
            for p, offset in job.next_offsets.items():
                self.written_offsets[p] = max(self.written_offsets.get(p, offset), offset)
            for _ in range(taken):
                self._queue.task_done()

    async def _complete(self, job: WriteJob) -> None:
        """Do the job, retrying with backoff while the database (or broker) is away.

        A retry may redo part of it: writes are idempotent; a repeated recompute bumps a
        revision once more and a repeated emission is allowed (at-least-once).
        """
        delay = 0.2
        first_attempt = True
        while True:
            try:
                await self._write(job, first_attempt)
                await self._emit_results(job)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: keep the data, retry
                self._metrics.failures()
                log.warning("database write of %d ticks failed (%s: %s); retrying in %.1fs",
                            len(job.ticks), type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                first_attempt = False

    async def _write(self, job: WriteJob, first_attempt: bool = True) -> None:
        started = time.perf_counter()
        # Different tables, so the two writes may overlap (on two pooled connections): about
        # a third off the write time. Recomputes read ticks, so they come after both.
        writes = []
        if job.ticks and job.late_minutes:
            writes.append(self._write_ticks_confirming_late(job, first_attempt))
        elif job.ticks:
            writes.append(self._store.write_ticks(job.ticks))
        if job.candles_1m:
            writes.append(self._store.upsert_candles_1m(list(job.candles_1m.values())))
        if self._unsaved_marks and time.monotonic() >= self._marks_due:
            writes.append(self._save_marks())
        await asyncio.gather(*writes)
        self._metrics.write_seconds(time.perf_counter() - started)

    async def _write_ticks_confirming_late(self, job: WriteJob, first_attempt: bool) -> None:
        """Write the ticks, then keep the late work only for minutes that got a new trade.

        A late trade already stored (a replay, a redelivery) changes no candle, so nothing is
        rebuilt or emitted for it. On a retry the first attempt may have stored the ticks already,
        so every late minute is rebuilt then (at worst a revision more for equal values).
        """
        _, new_minutes = await self._store.write_ticks_new_minutes(job.ticks)
        confirmed = job.late_minutes if not first_attempt else job.late_minutes & new_minutes
        job.recompute |= confirmed
        for key, refresh in job.late_refresh.items():
            if any(e == refresh.exchange and s == refresh.symbol and refresh.start <= m < refresh.end
                   for e, s, m in confirmed):
                job.refresh_higher.setdefault(key, refresh)
        job.late_minutes, job.late_refresh = set(), {}

    async def _emit_results(self, job: WriteJob) -> None:
        recomputed = await self._store.recompute_candles_1m(sorted(job.recompute)) if job.recompute else []
        refreshed = [c for c in [await self._refreshed(r) for r in job.refresh_higher.values()
                                 if not r.timeframe.session_aligned] if c is not None]
        # Session-aligned candles live in session_candles: store what closed in memory, then
        # fold the corrected/dirty ones from their 1m rows (after the 1m recompute above).
        saved = await self._sessions.save(job.session_candles) if job.session_candles else []
        session_refresh = [(r.exchange, r.symbol, r.timeframe.name, r.start, r.end)
                           for r in job.refresh_higher.values() if r.timeframe.session_aligned]
        rebuilt = await self._sessions.rebuild(session_refresh) if session_refresh else []
        candles = job.emit + recomputed + refreshed + saved + rebuilt
        if candles:
            traces = job.traces
            await self._emit(candles, [traces.get((c.exchange, c.symbol, c.timeframe, c.ts_start)) for c in candles]
                             if traces else [None] * len(candles))
            raise_marks(self._unsaved_marks, candles)

    async def _save_marks(self) -> None:
        """Record the emission marks noted so far (kept for the next try if this fails)."""
        marks, self._unsaved_marks = self._unsaved_marks, {}
        self._marks_due = time.monotonic() + MARKS_EVERY_S
        try:
            await self._marks.record(marks)
        except BaseException:
            for key, end in marks.items():
                self._unsaved_marks[key] = max(end, self._unsaved_marks.get(key, end))
            raise

    async def _save_marks_now(self) -> None:
        """No job waits: record the marks now (on failure they go with the next job's writes)."""
        try:
            await self._save_marks()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - kept and retried with the next write
            self._metrics.failures()
            log.warning("recording emitted candles failed (%s: %s); retrying with the next write",
                        type(exc).__name__, exc)

    async def _refreshed(self, refresh: HigherRefresh) -> Candle | None:
        """A higher-timeframe candle as the database has it (None: no trades in the bucket)."""
        start = ns_to_datetime(refresh.start)
        rows = await self._store.fetch_candles(
            refresh.exchange, refresh.symbol, refresh.timeframe.name, start, ns_to_datetime(refresh.start + 1000), 1)
        if not rows:
            return None
        row = rows[0]
        return Candle(exchange=refresh.exchange, symbol=refresh.symbol, timeframe=refresh.timeframe.name,
                      ts_start=refresh.start, ts_end=refresh.end, open=row.open, high=row.high, low=row.low,
                      close=row.close, volume=row.volume, trades=row.trades, revision=refresh.revision)
