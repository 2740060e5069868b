"""Consuming in batches with at-least-once delivery.

Loop: fetch a batch → decode each value with its topic's message type (bytes that are not a
valid message go to the DLQ, the handler never sees them) → call the handler once with the
whole batch inside one tracing span → remember the next offset per partition → commit every
``commit_interval_s``, on revoke and on stop.

A handler exception commits nothing past the previous batch: the partitions of the failed
batch are re-seeked to its first records and it is redelivered after a backoff. So nothing is
lost and nothing is skipped; handlers must tolerate seeing a record twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from tradeflow.bus.connection import Backoff, kafka_client_options, sleep_unless
from tradeflow.bus.dead_letters import DeadLetters, RawRecord
from tradeflow.bus.handlers import Handlers
from tradeflow.bus.record import Record
from tradeflow.bus.trace_context import batch_trace_context
from tradeflow.bus.types import Offsets, TopicPartition
from tradeflow.codec import HEADER_SCHEMA, HEADER_TRACEPARENT, decoder_for
from tradeflow.settings import CommonSettings, ServiceSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import TopicSpec

log = logging.getLogger(__name__)

Handler = Callable[[list[Record]], Awaitable[None]]
PartitionsCallback = Callable[[set[TopicPartition]], Awaitable[None]]

FETCH_TIMEOUT_MS = 250  # also bounds how long stop() waits for an idle fetch
MAX_PARTITION_FETCH_BYTES = 8 * 1024 * 1024  # a full max_batch of ticks fits in one fetch


DEFAULT_FETCH_MAX_WAIT_MS = 500  # aiokafka's; for settings without consumer_fetch_max_wait_ms


class Consumer:
    """A consumer-group member that hands decoded batches to ``handler``: one batch function
    (the fast path: one call per fetched batch) or :class:`Handlers` registered per topic or
    message type."""

    def __init__(
        self,
        settings: CommonSettings,
        telemetry: Telemetry,
        *,
        topics: Sequence[TopicSpec],
        group_id: str,
        handler: Handler | Handlers,
        dead_letters: DeadLetters,
        max_batch: int = 5000,
        commit_interval_s: float = 1.0,
        committable_offsets: Callable[[], Offsets] | None = None,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
        auto_offset_reset: str = "earliest",
        client_id: str | None = None,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        if isinstance(handler, Handlers):
            handler.check_covers(topics)
        self._settings = settings
        self._telemetry = telemetry
        self._specs = {spec.name: spec for spec in topics}
        self._expected_schema = {spec.name: spec.value_type.SCHEMA.encode() for spec in topics}
        self.group_id = group_id
        self._handler = handler
        self._dead_letters = dead_letters
        self._max_batch = max_batch
        self._commit_interval_s = commit_interval_s
        self._committable_offsets = committable_offsets
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._auto_offset_reset = auto_offset_reset
        self._client_id = client_id or settings.kafka_client_id
        # How long the broker may hold a fetch that has no data yet: a latency floor on Tansu,
        # which answers a waiting fetch only at this deadline (every hop of the trading path).
        # Default: the service's TRADEFLOW_CONSUMER_FETCH_MAX_WAIT_MS (ServiceSettings), else 500.
        if fetch_max_wait_ms is None:
            fetch_max_wait_ms = getattr(settings, "consumer_fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS)
        self._fetch_max_wait_ms = fetch_max_wait_ms

        self._kafka: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._stop_requested = asyncio.Event()
        self._state = "new"  # new -> running -> stopped
        self._joined = False
        # Held while a batch is dispatched, so a revoke commits only after the handler returns.
        self._dispatch_lock = asyncio.Lock()
        self._processed: Offsets = {}  # next offset after the last handled record
        self._committed: Offsets = {}
        self._lag_series: set[TopicPartition] = set()

        self._consumed = telemetry.counter(
            "tradeflow_messages_consumed_total", "Messages fetched from the broker", ("topic",)
        )
        self._lag = telemetry.gauge(
            "tradeflow_consumer_lag", "High watermark minus the next offset to handle, per consumer group",
            ("group", "topic", "partition")
        )
        self._handler_errors = telemetry.counter(
            "tradeflow_handler_errors_total", "Batches whose handler raised (redelivered)", ("topic",)
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin consuming in the background (connects, retrying while the broker is away)."""
        if self._state != "new":
            return
        self._state = "running"
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")

    async def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group. Safe to call twice."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        self._stop_requested.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._kafka is not None:
            await self._commit()
            try:
                await self._kafka.stop()  # leaves the group: partitions move over at once
            except Exception:  # noqa: BLE001 - stopping must not fail the shutdown
                log.exception("error while stopping the Kafka consumer of group %s", self.group_id)
            self._kafka = None
        self._joined = False

    def assignment(self) -> set[TopicPartition]:
        if self._kafka is None:
            return set()
        return {TopicPartition(tp.topic, tp.partition) for tp in self._kafka.assignment()}

    def is_ready(self) -> bool:
        """Joined the group. Zero partitions while joined is ready: replicas may outnumber them."""
        return self._joined and self._task is not None and not self._task.done()

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if not await self._connect():
                return
            await self._consume()
        except Exception:
            log.exception("consumer of group %s stopped on an unexpected error", self.group_id)
            raise

    async def _connect(self) -> bool:
        backoff = Backoff()
        attempt = 0
        while not self._stop_requested.is_set():
            attempt += 1
            kafka = self._new_kafka_consumer()
            try:
                await kafka.start()
            except (KafkaError, OSError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "consumer connect attempt %d to %s failed: %s; retrying in %.1fs",
                    attempt, self._settings.kafka_bootstrap, exc, delay,
                    extra={"attempt": attempt, "group_id": self.group_id},
                )
                await kafka.stop()
                await sleep_unless(self._stop_requested, delay)
                continue
            self._kafka = kafka
            log.info("consumer of group %s connected to %s", self.group_id, self._settings.kafka_bootstrap)
            return True
        return False

    def _new_kafka_consumer(self) -> AIOKafkaConsumer:
        if isinstance(self._settings, ServiceSettings):
            session_timeout_ms = self._settings.consumer_session_timeout_ms
            heartbeat_interval_ms = self._settings.consumer_heartbeat_interval_ms
        else:
            session_timeout_ms, heartbeat_interval_ms = 10_000, 1_000
        kafka = AIOKafkaConsumer(
            **kafka_client_options(self._settings),
            client_id=self._client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self._auto_offset_reset,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        kafka.subscribe(topics=list(self._specs), listener=_RebalanceListener(self))
        return kafka

    async def _consume(self) -> None:
        backoff = Backoff(initial_s=0.5, maximum_s=30.0)
        next_commit = time.monotonic() + self._commit_interval_s
        while not self._stop_requested.is_set():
            try:
                batch = await self._kafka.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=self._max_batch)
            except KafkaError as exc:
                delay = backoff.next_delay()
                log.warning("fetch for group %s failed: %s; retrying in %.1fs", self.group_id, exc, delay)
                await sleep_unless(self._stop_requested, delay)
                continue
            if batch and not await self._dispatch(batch):
                delay = backoff.next_delay()
                log.info("redelivering the failed batch of group %s in %.1fs", self.group_id, delay)
                await sleep_unless(self._stop_requested, delay)
                continue
            backoff.reset()
            if time.monotonic() >= next_commit:
                await self._commit()
                next_commit = time.monotonic() + self._commit_interval_s

    async def _dispatch(self, batch: dict[KafkaTopicPartition, list[ConsumerRecord]]) -> bool:
        """Decode and hand over one batch; False when the handler failed (batch re-seeked)."""
        async with self._dispatch_lock:
            assignment = self._kafka.assignment()
            records: list[Record] = []
            dead_letter_acks: list[asyncio.Future] = []
            traceparents: set[bytes] = set()
            next_offsets: Offsets = {}
            for kafka_tp, raws in batch.items():
                if kafka_tp not in assignment:
                    continue  # revoked while this batch waited; the new owner reads it
                tp = TopicPartition(kafka_tp.topic, kafka_tp.partition)
                self._decode_into(tp.topic, raws, records, dead_letter_acks, traceparents)
                next_offsets[tp] = raws[-1].offset + 1
                self._consumed.labels(tp.topic).inc(len(raws))
                highwater = self._kafka.highwater(kafka_tp)
                if highwater is not None:
                    lag = max(0, highwater - next_offsets[tp])
                    self._lag.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
                    self._lag_series.add(tp)
            try:
                if records:
                    await self._call_handler(records, traceparents)
                if dead_letter_acks:
                    # Committing past a dead-lettered record is safe only once the DLQ has it.
                    await asyncio.gather(*dead_letter_acks)
            except Exception:
                for topic in {tp.topic for tp in next_offsets}:
                    self._handler_errors.labels(topic).inc()
                log.exception(
                    "handler of group %s failed on a batch of %d records; it will be redelivered",
                    self.group_id, len(records), extra={"group_id": self.group_id},
                )
                for tp in next_offsets:
                    kafka_tp = KafkaTopicPartition(*tp)
                    self._kafka.seek(kafka_tp, batch[kafka_tp][0].offset)
                return False
            self._processed.update(next_offsets)
            return True

    def _decode_into(
        self,
        topic: str,
        raws: list[ConsumerRecord],
        records: list[Record],
        dead_letter_acks: list[asyncio.Future],
        traceparents: set[bytes],
    ) -> None:
        decode_records(self._specs[topic], self._expected_schema[topic], raws, self._dead_letters,
                       records, dead_letter_acks, traceparents)

    async def _call_handler(self, records: list[Record], traceparents: set[bytes]) -> None:
        # One span per batch (not per record: this is the hot path), linked to the producers.
        parent, links = batch_trace_context(traceparents)
        with self._telemetry.tracer.start_as_current_span(
            f"{self.group_id} process",
            context=parent if parent is not None else Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": self.group_id,
                "messaging.destination.name": ",".join(sorted({r.topic for r in records})),
                "messaging.batch.message_count": len(records),
            },
        ):
            await self._handler(records)

    # --- offsets ------------------------------------------------------------------------------

    def _offsets_to_commit(self, partitions: set[TopicPartition]) -> Offsets:
        if self._committable_offsets is not None:
            # The service may hold commits back (open windows), never push them past what it saw.
            wanted = self._committable_offsets()
            offsets = {
                tp: min(offset, self._processed[tp])
                for tp, offset in wanted.items()
                if tp in self._processed
            }
        else:
            offsets = dict(self._processed)
        return {
            tp: offset
            for tp, offset in offsets.items()
            if tp in partitions and self._committed.get(tp) != offset
        }

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        if self._kafka is None:
            return
        offsets = self._offsets_to_commit(partitions if partitions is not None else self.assignment())
        if not offsets:
            return
        try:
            await self._kafka.commit({KafkaTopicPartition(*tp): offset for tp, offset in offsets.items()})
        except KafkaError as exc:
            # The next commit carries these offsets again; a rebalance redelivers at worst.
            log.warning("commit for group %s failed: %s", self.group_id, exc, extra={"group_id": self.group_id})
            return
        self._committed.update(offsets)

    async def _partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._dispatch_lock:  # the batch in the handler finishes first
            self._joined = False
            await self._commit(revoked)
            if self._on_revoked is not None and revoked:  # aiokafka also "revokes" set() at first join
                await self._on_revoked(revoked)
            for tp in revoked:
                self._processed.pop(tp, None)
                self._committed.pop(tp, None)
                if tp in self._lag_series:  # another member reports this partition's lag now
                    self._lag.remove(self.group_id, tp.topic, str(tp.partition))
                    self._lag_series.discard(tp)

    async def _partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._on_assigned is not None:
            await self._on_assigned(assigned)
        self._joined = True
        log.info(
            "group %s assigned %d partition(s)", self.group_id, len(assigned),
            extra={"group_id": self.group_id, "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)},
        )


def decode_records(
    spec: TopicSpec,
    expected_schema: bytes,
    raws: Sequence[RawRecord],
    dead_letters: DeadLetters,
    records: list[Record],
    dead_letter_acks: list[asyncio.Future],
    traceparents: set[bytes],
) -> None:
    """Decode fetched records of one topic into ``records``; a record whose schema header names
    another type, or whose value does not decode, goes to the DLQ with the reason instead (its
    ack future is added to ``dead_letter_acks``). Shared by the Kafka and the in-memory consumer."""
    topic = spec.name
    # The codec's cached decoder, bound once per batch: this loop runs for every message.
    decode_value = decoder_for(spec.value_type).decode
    append = records.append
    for raw in raws:
        schema = traceparent = None
        for name, header in raw.headers:
            if name == HEADER_SCHEMA:
                schema = header
            elif name == HEADER_TRACEPARENT and header:
                traceparent = header
                traceparents.add(header)
        decode_this = decode_value
        if schema is not None and schema != expected_schema:
            other = spec.type_for(schema) if spec.other_types else None
            if other is None:
                reason = (
                    f"schema_mismatch: {topic} carries {expected_schema.decode()}, "
                    f"the message says {schema.decode('utf-8', 'replace')}"
                )
                dead_letter_acks.append(dead_letters.send(raw, reason))
                continue
            decode_this = decoder_for(other).decode
        raw_value = raw.value
        try:
            value = decode_this(raw_value if raw_value is not None else b"")
        except msgspec.DecodeError as exc:  # ValidationError included
            dead_letter_acks.append(dead_letters.send(raw, f"undecodable: {exc}"))
            continue
        raw_key = raw.key
        append(
            Record(
                topic,
                raw.partition,
                raw.offset,
                raw_key.decode("utf-8", "replace") if raw_key is not None else None,
                value,
                raw.headers,
                raw.timestamp,
                raw_key,
                raw_value,
                traceparent,
            )
        )


class _RebalanceListener(ConsumerRebalanceListener):
    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        await self._consumer._partitions_revoked({TopicPartition(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned) -> None:
        await self._consumer._partitions_assigned({TopicPartition(tp.topic, tp.partition) for tp in assigned})
