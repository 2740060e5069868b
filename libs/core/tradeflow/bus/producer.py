"""Publishing messages: enqueue without waiting for the broker, acks arrive as futures.

``send`` is a plain (non-async) call that returns a future at once. The messages go through
one ordered backlog into aiokafka, so two sends with the same key reach the partition in the
order they were made, even while the broker is away at start (they wait in the backlog) or
aiokafka's buffer is full (the backlog pump waits: that is the backpressure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from functools import cache, partial

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from tradeflow.bus.connection import Backoff, kafka_client_options, sleep_unless
from tradeflow.bus.trace_context import TraceHeaders
from tradeflow.bus.types import Delivery
from tradeflow.codec import CONTENT_TYPE, HEADER_CONTENT_TYPE, HEADER_SCHEMA, encode
from tradeflow.messages import Message
from tradeflow.settings import CommonSettings, ServiceSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import TopicSpec

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
_CONTENT_TYPE_HEADER = (HEADER_CONTENT_TYPE, CONTENT_TYPE.encode())
# Defaults for tools that run with CommonSettings (CLI, replay); services take theirs from settings.
DEFAULT_LINGER_MS = 5
DEFAULT_MAX_BATCH_BYTES = 512 * 1024
MAX_REQUEST_BYTES = 1024 * 1024  # aiokafka's max_request_size, set explicitly below
MAX_MESSAGES_PER_HANDOVER = 10_000  # the pump lets the loop run between handovers


class _SendGroup:
    """The outcome of a :meth:`Producer.send_all`: one slot per message, one future for all."""

    __slots__ = ("future", "results", "_remaining")

    def __init__(self, future: asyncio.Future, size: int) -> None:
        self.future = future
        self.results: list = [_PENDING] * size
        self._remaining = size
        if size == 0:
            _set_result(future, [])

    def settle(self, index: int, outcome: object) -> None:
        if self.results[index] is not _PENDING:
            return
        self.results[index] = outcome
        self._remaining -= 1
        if self._remaining == 0:
            _set_result(self.future, self.results)


class _GroupMember:
    """One message of a :class:`_SendGroup`, with the part of a future's interface the pump uses."""

    __slots__ = ("group", "index")

    def __init__(self, group: _SendGroup, index: int) -> None:
        self.group = group
        self.index = index

    def done(self) -> bool:  # the caller cancelled the whole group, or this message is settled
        return self.group.future.done() or self.group.results[self.index] is not _PENDING

    def set_result(self, result: Delivery) -> None:
        self.group.settle(self.index, result)

    def set_exception(self, exc: BaseException) -> None:
        self.group.settle(self.index, exc)


_PENDING = object()


def _set_result(future: asyncio.Future, result: object) -> None:
    if not future.done():
        future.set_result(result)


class _PendingBatch:
    """A record batch being filled for one partition, and the futures of its messages."""

    __slots__ = ("builder", "messages")

    def __init__(self, builder) -> None:
        self.builder = builder
        self.messages: list[tuple[asyncio.Future, int]] = []  # (future, offset within the batch)


@cache
def _schema_header(message_type: type[Message]) -> tuple[str, bytes]:
    return (HEADER_SCHEMA, message_type.SCHEMA.encode())


class ProducerStoppedError(KafkaError):
    """The producer was stopped before this message could be handed to the broker."""


class CachedKeyPartitioner:
    """aiokafka's default partitioner (murmur2, the Java client's) remembered per key.

    murmur2 is pure Python in aiokafka and was the most expensive step of a send; market data
    repeats a few thousand keys, so the partition of a key is computed once per partition count.
    """

    MAX_KEYS = 200_000

    def __init__(self) -> None:
        self._default = DefaultPartitioner()
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)
        cache_key = (key, len(all_partitions))
        partition = self._cache.get(cache_key)
        if partition is None:
            if len(self._cache) >= self.MAX_KEYS:
                self._cache.clear()
            partition = self._cache[cache_key] = self._default(key, all_partitions, available)
        return partition


class Producer:
    """Tradeflow's Kafka producer: msgspec messages, tracing headers, metrics, reconnects."""

    def __init__(
        self,
        settings: CommonSettings,
        telemetry: Telemetry,
        *,
        client_id: str | None = None,
        request_timeout_ms: int = 30_000,
        linger_ms: int | None = None,
    ) -> None:
        """``linger_ms`` overrides the settings' ``producer_linger_ms``: 0 for a producer whose
        senders hand over whole batches already (an outbox relay), where lingering only adds latency."""
        self._settings = settings
        self._linger_ms = linger_ms
        self._client_id = client_id or settings.kafka_client_id
        self._request_timeout_ms = request_timeout_ms
        self._kafka: AIOKafkaProducer | None = None
        self._backlog: deque[tuple[str, bytes | None, bytes, list, asyncio.Future]] = deque()
        self._in_flight = 0  # enqueued and not yet acknowledged or failed
        self._drained: asyncio.Event | None = None
        self._wakeup: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._connected: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._state = "new"  # new -> running -> stopped
        self._reachable = False
        self._produced = telemetry.counter(
            "tradeflow_messages_produced_total", "Messages acknowledged by the broker", ("topic",)
        )
        self._errors = telemetry.counter(
            "tradeflow_produce_errors_total", "Messages the broker did not acknowledge", ("topic",)
        )
        self._produced_by_topic: dict[str, object] = {}
        self._trace_headers = TraceHeaders()
        self._partitioner = CachedKeyPartitioner()  # the pump partitions (it hands over whole batches)
        self._last_error_log: dict[str, tuple[float, int]] = {}  # topic -> (logged at, suppressed)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect. If the broker is away, keep retrying in the background (sends wait)."""
        if self._state != "new":
            return
        self._state = "running"
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._connected = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        if not await self._connect(attempt=1):
            log.warning("broker %s unreachable; retrying in the background", self._settings.kafka_bootstrap)
        self._task = asyncio.create_task(self._run(), name=f"producer-{self._client_id}")

    async def stop(self) -> None:
        """Hand over everything enqueued, wait for the acks, disconnect. Safe to call twice."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"  # send() refuses from here on
        if self._connected.is_set():
            await self.flush()
        self._stop_requested.set()
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        while self._backlog:  # broker never came: these were not sent
            *_, future = self._backlog.popleft()
            self._settled()
            if not future.done():
                future.set_exception(ProducerStoppedError("producer stopped before the broker was reachable"))
        if self._kafka is not None:
            try:
                await self._kafka.stop()  # flushes aiokafka's own buffer
            except Exception:  # noqa: BLE001 - stopping must not fail the shutdown
                log.exception("error while stopping the Kafka producer")
            self._kafka = None
        self._reachable = False

    def is_connected(self) -> bool:
        """Connected to the broker as far as the last start, ack or ping tells."""
        return self._kafka is not None and self._reachable

    async def ping(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Ask the broker for cluster metadata: (reachable, detail)."""
        if self._kafka is None:
            return False, f"not connected to {self._settings.kafka_bootstrap} (retrying)"
        try:
            cluster = await asyncio.wait_for(self._kafka.client.fetch_all_metadata(), timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            self._reachable = False
            return False, f"unreachable: {type(exc).__name__}: {exc}"
        self._reachable = True
        return True, f"{len(cluster.brokers())} broker(s) reachable"

    # --- sending ------------------------------------------------------------------------------

    def send(
        self, topic: TopicSpec | str, key: str | None, message: Message, headers: Headers | None = None
    ) -> asyncio.Future[Delivery]:
        """Enqueue ``message``; the returned future resolves with the broker's ack."""
        name = topic.name if isinstance(topic, TopicSpec) else topic
        all_headers = [_CONTENT_TYPE_HEADER, _schema_header(type(message))]
        all_headers.extend(self._trace_headers.current())
        if headers:
            all_headers.extend(headers)
        return self.send_raw(name, key.encode() if key is not None else None, encode(message), all_headers)

    def send_all(
        self, topic: TopicSpec | str, items: Iterable[tuple[str | None, Message]]
    ) -> asyncio.Future[list[Delivery | BaseException]]:
        """:meth:`send` of every (key, message) as one future: it resolves once each message is
        acknowledged or failed, with each one's ack or error in order. Cheaper than one future
        per message for large batches; the headers are computed once (one span for the batch)."""
        name = topic.name if isinstance(topic, TopicSpec) else topic
        if self._state != "running":
            raise ProducerStoppedError(f"producer is {self._state}; cannot send to {name}")
        items = list(items)
        group = _SendGroup(asyncio.get_running_loop().create_future(), len(items))
        if not items:
            return group.future
        headers_by_type: dict[type, list] = {}
        backlog = self._backlog
        for index, (key, message) in enumerate(items):
            headers = headers_by_type.get(type(message))
            if headers is None:
                headers = headers_by_type[type(message)] = [
                    _CONTENT_TYPE_HEADER, _schema_header(type(message)), *self._trace_headers.current()]
            backlog.append((name, key.encode() if key is not None else None, encode(message), headers,
                            _GroupMember(group, index)))
        self._in_flight += len(items)
        self._drained.clear()
        self._wakeup.set()
        return group.future

    def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> asyncio.Future[Delivery]:
        """Enqueue bytes as they are (DLQ, replays of raw records; None is a tombstone)."""
        if self._state != "running":
            raise ProducerStoppedError(f"producer is {self._state}; cannot send to {topic}")
        future = asyncio.get_running_loop().create_future()
        self._backlog.append((topic, key, value, list(headers) if headers else [], future))
        self._in_flight += 1
        self._drained.clear()
        self._wakeup.set()
        return future

    async def send_many(
        self, topic: TopicSpec | str, items: Iterable[tuple[str | None, Message]]
    ) -> list[Delivery]:
        """Enqueue all, then wait for all acks (raises the first failure)."""
        futures = [self.send(topic, key, message) for key, message in items]
        return list(await asyncio.gather(*futures))

    async def flush(self) -> None:
        """Wait until everything enqueued so far is acknowledged (or failed)."""
        if self._drained is not None:
            await self._drained.wait()

    def _settled(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._drained.set()

    # --- internals ----------------------------------------------------------------------------

    def _new_kafka_producer(self) -> AIOKafkaProducer:
        if isinstance(self._settings, ServiceSettings):
            linger_ms = self._settings.producer_linger_ms
            max_batch_size = self._settings.producer_max_batch_bytes
        else:
            linger_ms, max_batch_size = DEFAULT_LINGER_MS, DEFAULT_MAX_BATCH_BYTES
        if self._linger_ms is not None:
            linger_ms = self._linger_ms
        return AIOKafkaProducer(
            **kafka_client_options(self._settings),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=self._settings.kafka_idempotent_producer,
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=self._request_timeout_ms,
        )

    async def _connect(self, attempt: int) -> bool:
        kafka = self._new_kafka_producer()
        try:
            await kafka.start()
        except (KafkaError, OSError) as exc:
            log.warning(
                "producer connect attempt %d to %s failed: %s",
                attempt, self._settings.kafka_bootstrap, exc,
                extra={"attempt": attempt, "bootstrap": self._settings.kafka_bootstrap},
            )
            await kafka.stop()
            return False
        self._kafka = kafka
        self._reachable = True
        self._connected.set()
        if attempt > 1:
            log.info("producer connected to %s after %d attempts", self._settings.kafka_bootstrap, attempt)
        return True

    async def _run(self) -> None:
        backoff = Backoff()
        attempt = 1
        while not self._connected.is_set():
            if await sleep_unless(self._stop_requested, backoff.next_delay()):
                return
            attempt += 1
            await self._connect(attempt)
        await self._pump()

    async def _pump(self) -> None:
        """Move the backlog into aiokafka in order; stop when asked and the backlog is empty."""
        while True:
            if not self._backlog:
                if self._stop_requested.is_set():
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._hand_over_backlog()

    async def _hand_over_backlog(self) -> None:
        """Everything in the backlog, as one record batch per partition (more when one fills up).

        Batches instead of one aiokafka ``send`` per message: that call (partitioning, a future
        and an accumulator append per message) was most of a tick's publishing cost. Batches of
        a partition are handed over in backlog order, so per-key order holds.
        """
        kafka = self._kafka
        partitions_of: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], _PendingBatch] = {}
        taken = 0
        while self._backlog and taken < MAX_MESSAGES_PER_HANDOVER:
            topic, key, value, headers, future = self._backlog.popleft()
            taken += 1
            if future.done():  # cancelled by the caller before it was handed over
                self._settled()
                continue
            try:
                size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
                if size > MAX_REQUEST_BYTES:  # what aiokafka's send refuses, refused alone here too
                    raise MessageSizeTooLargeError(
                        f"The message is {size} bytes when serialized which is larger than the maximum "
                        f"request size of {MAX_REQUEST_BYTES} bytes")
                partitions = partitions_of.get(topic)
                if partitions is None:
                    partitions = partitions_of[topic] = sorted(await kafka.partitions_for(topic))
                partition = self._partitioner(key, partitions, partitions)
            except Exception as exc:  # noqa: BLE001 - fail this message, keep the pump alive for the rest
                self._settled()
                self._fail(topic, future, exc)
                continue
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = _PendingBatch(kafka.create_batch())
            record = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
            if record is None:  # full: hand it over and start the next one
                await self._submit(topic, partition, batches.pop((topic, partition)))
                batch = batches[(topic, partition)] = _PendingBatch(kafka.create_batch())
                record = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
                if record is None:
                    self._settled()
                    self._fail(topic, future, MessageSizeTooLargeError(f"{len(value or b'')} bytes do not fit a batch"))
                    continue
            batch.messages.append((future, record.offset))
        for (topic, partition), batch in batches.items():
            await self._submit(topic, partition, batch)

    async def _submit(self, topic: str, partition: int, batch: _PendingBatch) -> None:
        if not batch.messages:
            return
        try:
            ack = await self._kafka.send_batch(batch.builder, topic, partition=partition)
        except Exception as exc:  # noqa: BLE001 - fail these messages, keep the pump alive for the rest
            for future, _ in batch.messages:
                self._settled()
                self._fail(topic, future, exc)
            return
        ack.add_done_callback(partial(self._on_batch_ack, topic, batch.messages))

    def _on_batch_ack(self, topic: str, messages: list[tuple[asyncio.Future, int]], ack: asyncio.Future) -> None:
        error: BaseException | None = None
        if ack.cancelled():
            error = ProducerStoppedError("send cancelled while stopping")
        else:
            error = ack.exception()
        if error is not None:
            for future, _ in messages:
                self._settled()
                self._fail(topic, future, error)
            return
        self._reachable = True
        batch_meta = ack.result()
        partition, base_offset, timestamp = batch_meta.partition, batch_meta.offset, batch_meta.timestamp
        delivered = 0
        for future, relative_offset in messages:
            self._settled()
            if future.done():
                continue
            delivered += 1
            future.set_result(Delivery(topic, partition, base_offset + relative_offset, timestamp))
        counter = self._produced_by_topic.get(topic)
        if counter is None:
            counter = self._produced_by_topic[topic] = self._produced.labels(topic)
        counter.inc(delivered)

    def _fail(self, topic: str, future: asyncio.Future, exc: BaseException) -> None:
        self._errors.labels(topic).inc()
        if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | TimeoutError):
            self._reachable = False
        self._log_failure(topic, exc)
        if not future.done():
            future.set_exception(exc)

    def _log_failure(self, topic: str, exc: BaseException) -> None:
        # A broker outage fails thousands of sends at once: one line per topic every 5 s.
        now = time.monotonic()
        logged_at, suppressed = self._last_error_log.get(topic, (0.0, 0))
        if now - logged_at < 5.0:
            self._last_error_log[topic] = (logged_at, suppressed + 1)
            return
        self._last_error_log[topic] = (now, 0)
        log.error(
            "produce to %s failed: %s: %s (%d similar failures not logged)",
            topic, type(exc).__name__, exc, suppressed, extra={"topic": topic},
        )
