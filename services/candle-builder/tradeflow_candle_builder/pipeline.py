"""The candle pipeline: consumed tick batches -> aggregator -> database writer -> md.candles.v1.

One instance per process. The Kafka consumer (tradeflow.bus.Consumer, batches of thousands,
msgspec-decoded) calls :meth:`CandlePipeline.handle` with each batch; a timer task closes the
buckets of idle partitions. Both change the aggregator under one lock and queue the resulting
work for the single background :class:`StoreWriter` in the same order, so the database and
the stream see every change in the order it was made.

Per batch: invalid trades go to the DLQ with the reason and are never counted; the valid ones
are folded into open 1m buckets; the writer stores them plus the current state of every 1m
bucket the batch touched (open ones too, so ``/v1/candles`` shows the forming candle), then
emits whatever closed. Late trades (for a bucket closed here, or emitted before a restart) are
stored and, when new to the database, their 1m candle is recomputed from it and emitted with a
higher revision (see domain/aggregator.py).

Commits (``committable_offsets``): per partition the minimum of the first offset of every open
1m bucket, the next offset after the last record whose database work is done, and the first
offset of buckets whose close is still queued. A restart re-reads from there and rebuilds
exactly; candles emitted before a crash may be emitted again (at-least-once; exactly-once
emission would need Kafka transactions, which the local broker refuses: a later issue).

Instruments with trading sessions (docs/adr/0008, the :class:`InstrumentRegistry`): their
trades outside a session are stored in ``ticks`` but dropped before the aggregator (they only
move stream time); their higher timeframes are session-aligned and stored in
``session_candles`` before they are emitted.

Traces (docs/adr/0023): every consumed record's traceparent goes into a :class:`TraceIndex`; a
candle is emitted continuing the trace of its close trade (looked up when its bucket closes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from tradeflow.bus import DeadLetters, Producer, Record, TopicPartition, reason_code
from tradeflow.bus.trace_context import context_of
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.codec import HEADER_TRACEPARENT
from tradeflow.messages import Candle, Tick
from tradeflow.periodic import PeriodicTask
from tradeflow.telemetry import Telemetry
from tradeflow.time import NS_PER_MS
from tradeflow.topics import market_key

from tradeflow_candle_builder.adapters.candle_traces import TraceIndex
from tradeflow_candle_builder.adapters.store_writer import StoreWriter, WriteJob, WriterMetrics
from tradeflow_candle_builder.domain.aggregator import CandleAggregator, Closings
from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, NS_PER_SECOND
from tradeflow_candle_builder.domain.validation import consumed_tick_rejection_reason
from tradeflow_candle_builder.instrument_registry import InstrumentRegistry
from tradeflow_candle_builder.ports import CandleRepository, EmissionMarkRepository, SessionCandleRepository
from tradeflow_candle_builder.settings import CandleBuilderSettings

log = logging.getLogger(__name__)

DB_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CandlePipeline:
    """Aggregation, storage and emission of candles; a service Component (start/stop).

    Storage comes through the ports of :mod:`tradeflow_candle_builder.ports` (``bootstrap.build``
    wires the PostgreSQL adapters, unit tests in-memory ones).
    """

    def __init__(self, settings: CandleBuilderSettings, telemetry: Telemetry, store: CandleRepository,
                 producer: Producer, dead_letters: DeadLetters, registry: InstrumentRegistry, *,
                 marks: EmissionMarkRepository, sessions: SessionCandleRepository,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._settings = settings
        self._clock = clock
        self._marks = marks
        self._registry = registry
        self._applied_registry_version = registry.version
        self._producer = producer
        self._dead_letters = dead_letters
        self._ticks_topic = settings.ticks_topic
        self._candles_topic = settings.candles_topic
        self.aggregator = CandleAggregator(
            grace_ns=settings.candle_grace_ms * NS_PER_MS, idle_close_ns=settings.idle_close_ms * NS_PER_MS)
        self._lock = asyncio.Lock()  # aggregator changes + queueing their job happen as one step
        self._traces = TraceIndex()  # which trace each consumed trade came with (docs/adr/0023)
        self._tracer = telemetry.tracer if telemetry.tracing else None
        self._timer = PeriodicTask("candle-close-timer", self._close_idle_partitions,
                                   interval_s=settings.close_check_interval_ms / 1000,
                                   failure_message="closing idle buckets failed; the next pass retries",
                                   sleep=self._clock.sleep)

        self._ticks_processed = telemetry.counter(
            "tradeflow_candles_ticks_processed_total", "Valid trades folded into candles")
        self._ticks_rejected = telemetry.counter(
            "tradeflow_candles_ticks_rejected_total", "Trades never counted (sent to the DLQ)", ("reason",))
        self._outside_session = telemetry.counter(
            "tradeflow_candles_ticks_outside_session_total",
            "Valid trades of session instruments outside their sessions (stored, in no candle)")
        self._late_ticks = telemetry.counter(
            "tradeflow_candles_late_ticks_total",
            "Trades for a 1m bucket already closed or emitted (its candle is recomputed when the trade is new)")
        self._emitted = telemetry.counter(
            "tradeflow_candles_emitted_total", "Candles sent to the candles topic", ("timeframe",))
        write_latency = telemetry.histogram(
            "tradeflow_candles_db_write_seconds", "Duration of one merged database write (ticks + 1m candles)",
            buckets=DB_LATENCY_BUCKETS)
        queue_depth = telemetry.gauge(
            "tradeflow_candles_writer_queue_depth", "Consumed batches waiting for the database writer")
        write_failures = telemetry.counter(
            "tradeflow_candles_db_write_failures_total", "Failed database writes (retried)")
        self._emitted_by_tf: dict[str, object] = {}
        self.writer = StoreWriter(
            store, sessions, marks, self._emit,
            WriterMetrics(write_latency.observe, queue_depth.set, write_failures.inc),
            queue_batches=settings.db_queue_batches, batch_rows=settings.db_batch_rows,
            batch_ms=settings.db_batch_ms)

    # --- component ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.writer.start()
        await self._timer.start()

    async def stop(self) -> None:
        await self._timer.stop()
        await self.writer.stop(timeout_s=self._settings.shutdown_timeout_s / 2)

    # --- consumer hooks -------------------------------------------------------------------------

    async def handle(self, records: list[Record]) -> None:
        """Handle one consumed batch (the Consumer's handler)."""
        now_ns = self._clock.now_ns()
        valid = []
        next_offsets: dict[int, int] = {}
        dead_letter_acks = []
        note_trace = self._traces.note
        for record in records:
            partition = record.partition
            next_offsets[partition] = record.offset + 1
            note_trace(partition, record.offset, record.traceparent)
            tick = record.value
            reason = consumed_tick_rejection_reason(record.key, tick, now_ns)
            if reason is not None:
                dead_letter_acks.append(self._dead_letters.send(record, reason))
                self._ticks_rejected.labels(reason_code(reason)).inc()
                continue
            valid.append((partition, record.offset, tick))
        # Session instruments: trades outside their sessions are stored but make no candle.
        # The check costs one dict lookup per trade only while some instrument has sessions.
        rules = self._registry.rules
        counted = valid
        outside: list = []
        if rules:
            counted = []
            for item in valid:
                tick = item[2]
                rule = rules.get((tick.exchange, tick.symbol))
                if rule is None or rule.counts(tick.ts_event):
                    counted.append(item)
                else:
                    outside.append(item)
        if dead_letter_acks:
            # Before any state changes: if a DLQ send fails, the Consumer redelivers the batch,
            # and trades already folded into an open minute would be counted again.
            await asyncio.gather(*dead_letter_acks)
            dead_letter_acks = []
        unknown = self.aggregator.unknown_instruments(counted)
        if unknown:
            # Before any state changes: if this fails, the Consumer redelivers the batch intact.
            await self._register(unknown)
        async with self._lock:
            if self._registry.version != self._applied_registry_version:
                self._apply_registry()
            wall = self._clock.monotonic()
            outcome = self.aggregator.add_batch(counted, wall)
            for partition, _offset, tick in outside:
                self.aggregator.observe_time(partition, tick.ts_event, wall)
            closings = self.aggregator.advance(wall)
            job = self._job(closings)
            beyond = self._late_beyond_retention(outcome.late, now_ns)
            job.ticks = [tick for _, _, tick in valid] if not beyond else [
                tick for p, o, tick in valid if (p, o) not in beyond]
            job.candles_1m = {(c.exchange, c.symbol, c.ts_start): c for c in outcome.candles_to_store()}
            job.late_minutes = outcome.late_minutes - {
                (t.exchange, t.symbol, t.ts_event - t.ts_event % MINUTE_NS) for t in beyond.values()}
            job.late_refresh = dict(outcome.refresh_higher)
            job.next_offsets = next_offsets
            await self.writer.submit(job)
        if beyond:
            # Rare: look the records up only when there is something to dead-letter.
            reason = ("beyond_tick_retention: a late trade for a minute whose trades are no longer stored "
                      f"(tick retention {self._settings.tick_retention_days} days); its candle cannot be corrected")
            for record in records:
                if (record.partition, record.offset) in beyond:
                    dead_letter_acks.append(self._dead_letters.send(record, reason))
                    self._ticks_rejected.labels(reason_code(reason)).inc()
        self._ticks_processed.inc(len(counted) - len(outcome.late))
        if outside:
            self._outside_session.inc(len(outside))
        if outcome.late:
            self._late_ticks.inc(len(outcome.late))
        if dead_letter_acks:
            # The Consumer commits past these records after we return: the DLQ must have them.
            await asyncio.gather(*dead_letter_acks)

    def _late_beyond_retention(self, late: list, now_ns: int) -> dict[tuple[int, int], Tick]:
        """Late trades for minutes older than the tick retention, by (partition, offset).

        Their minute's other trades may already be dropped from ``ticks``: recomputing the
        candle from what is left would overwrite a correct candle with a wrong one. They go to
        the DLQ instead and the stored candle stays as it is.
        """
        if not late:
            return {}
        cutoff = now_ns - self._settings.tick_retention_days * 86_400 * NS_PER_SECOND
        return {(partition, offset): tick for partition, offset, tick in late if tick.ts_event < cutoff}

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        async with self._lock:
            self.aggregator.assign(tp.partition for tp in partitions if tp.topic == self._ticks_topic)

    async def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Finish our writes before the next owner starts (never two writers for the same rows)."""
        mine = {tp.partition for tp in partitions if tp.topic == self._ticks_topic}
        async with self._lock:
            await self.writer.drain()
            self.aggregator.revoke(mine)
            self.writer.forget_partitions(mine)
            self._traces.forget_partitions(mine)

    def committable_offsets(self) -> dict[TopicPartition, int]:
        open_first = self.aggregator.committable_offsets()
        for p, first in open_first.items():
            # Close trades of open buckets are at or after their first offsets; closed buckets'
            # traces were looked up when they closed (_job).
            self._traces.forget_below(p, first)
        held = self.writer.held_offsets()
        result: dict[TopicPartition, int] = {}
        for p, written in self.writer.written_offsets.items():
            if p not in open_first:
                continue  # revoked meanwhile
            candidates = [written]
            for limit in (open_first[p], held.get(p)):
                if limit is not None:
                    candidates.append(limit)
            result[TopicPartition(self._ticks_topic, p)] = min(candidates)
        return result

    # --- internals ------------------------------------------------------------------------------

    def _apply_registry(self) -> None:
        """Registrations changed: tracked instruments switch to their (new) higher timeframes."""
        rules = self._registry.rules
        for exchange, symbol in self.aggregator.instruments():
            rule = rules.get((exchange, symbol))
            self.aggregator.set_timeframes(exchange, symbol, None if rule is None else rule.timeframes)
        self._applied_registry_version = self._registry.version

    def _job(self, closings: Closings) -> WriteJob:
        lookup = self._traces.lookup
        traces = {}
        for key, (partition, offset) in closings.close_trades.items():
            traceparent = lookup(partition, offset)
            if traceparent is not None:
                traces[key] = traceparent
        return WriteJob(emit=closings.candles, session_candles=closings.session_candles,
                        recompute=set(closings.recompute_minutes),
                        refresh_higher={(r.exchange, r.symbol, r.timeframe.name, r.start): r
                                        for r in closings.refresh_higher},
                        holds=dict(closings.first_offsets), traces=traces)

    async def _close_idle_partitions(self) -> None:
        async with self._lock:
            closings = self.aggregator.advance(self._clock.monotonic())
            if closings:
                await self.writer.submit(self._job(closings))

    async def _register(self, unknown: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Track instruments first seen since their partition was assigned, from where the
        database says they stand (one round trip for all of them; see domain/aggregator.py)."""
        points = await self._marks.resume_points(unknown)
        rules = self._registry.rules
        for (exchange, symbol), (partition, _) in unknown.items():
            point = points[(exchange, symbol)]
            rule = rules.get((exchange, symbol))
            self.aggregator.register_instrument(exchange, symbol, partition, point.newest_1m_start,
                                                None if rule is None else rule.timeframes,
                                                emitted_through=point.emitted_through)

    async def _emit(self, candles: Sequence[Candle], traces: Sequence[bytes | None]) -> None:
        """Send candles (all enqueued, then the acks awaited together); resend what failed.

        Each candle continues the trace of its close trade (``traces``): under a span of that
        trace when tracing is on, else with the trade's traceparent passed on as it came.
        """
        pending = list(zip(candles, traces, strict=True))
        delay = 0.2
        while pending:
            acks = self._send_traced(pending)
            results = await asyncio.gather(*acks, return_exceptions=True)
            failed = [item for item, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
            for (c, _), r in zip(pending, results, strict=True):
                if not isinstance(r, BaseException):
                    counter = self._emitted_by_tf.get(c.timeframe)
                    if counter is None:
                        counter = self._emitted_by_tf[c.timeframe] = self._emitted.labels(c.timeframe)
                    counter.inc()
            if failed:
                log.warning("%d of %d candles not acknowledged; resending in %.1fs", len(failed), len(pending), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            pending = failed

    def _send_traced(self, items: Sequence[tuple[Candle, bytes | None]]) -> list[asyncio.Future]:
        """Enqueue the candles, grouped by the trace they continue; the acks in ``items`` order."""
        groups: dict[bytes | None, list[int]] = {}
        for index, (_, traceparent) in enumerate(items):
            groups.setdefault(traceparent, []).append(index)
        acks: list[asyncio.Future | None] = [None] * len(items)
        send = self._producer.send
        topic = self._candles_topic
        for traceparent, indexes in groups.items():
            if self._tracer is None:
                headers = [(HEADER_TRACEPARENT, traceparent)] if traceparent else None
                for i in indexes:
                    c = items[i][0]
                    acks[i] = send(topic, market_key(c.exchange, c.symbol), c, headers)
                continue
            first = items[indexes[0]][0]
            with self._tracer.start_as_current_span(
                    "candle-builder candle", context=context_of(traceparent) or Context(), kind=SpanKind.PRODUCER,
                    attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                                "messaging.batch.message_count": len(indexes),
                                "tradeflow.market": market_key(first.exchange, first.symbol),
                                "tradeflow.candle.timeframes": sorted({items[i][0].timeframe for i in indexes}),
                                "tradeflow.candle.ts_start_ms": first.ts_start // 1_000_000,
                                "tradeflow.candle.close": first.close,
                                "tradeflow.candle.close_trade_traced": traceparent is not None}):
                for i in indexes:
                    c = items[i][0]
                    acks[i] = send(topic, market_key(c.exchange, c.symbol), c)
        return acks  # type: ignore[return-value]
