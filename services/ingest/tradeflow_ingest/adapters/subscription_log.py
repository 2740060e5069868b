"""The subscriptions topic, read whole and written through: what every ingest replica knows.

A group-less reader follows every partition of ``ingest.subscriptions.v1`` from the beginning,
so each replica holds the full :class:`SubscriptionBook` (for ``GET /v1/subscriptions`` and to
know what it must serve). Writes wait until this reader has read them back, so a client that
POSTs and then GETs on the same replica sees its subscription (read-your-writes).

The topic is compacted: its newest record per key is the state, a tombstone removes the key.
On Apache Kafka that is durable. Tansu (local) keeps topics in memory: subscriptions survive an
ingest restart, not a broker restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.bus import Producer
from tradeflow.bus.connection import Backoff, kafka_client_options, sleep_unless, topic_partitions
from tradeflow.codec import DecodeError, decode
from tradeflow.messages import Subscription
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import INGEST_SUBSCRIPTIONS, market_key

from tradeflow_ingest.domain.subscriptions import SubscriptionBook, parse_key

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS = 200
READ_BACK_TIMEOUT_S = 10.0


class SubscriptionLogUnavailable(RuntimeError):
    """The subscriptions topic cannot be read or written right now (broker away)."""


class SubscriptionLog:
    """A service Component: the book of all subscriptions, and writes to it."""

    def __init__(self, settings: CommonSettings, producer: Producer, telemetry: Telemetry, *,
                 client_id: str) -> None:
        self._settings = settings
        self._producer = producer
        self._client_id = client_id
        self._on_change: Callable[[], None] = lambda: None
        self.book = SubscriptionBook()
        self._next_offsets: dict[int, int] = {}  # partition -> next offset to read
        self._caught_up = asyncio.Event()
        self._progress = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._undecodable = telemetry.counter(
            "tradeflow_ingest_subscription_records_undecodable_total",
            "Records of ingest.subscriptions.v1 that could not be decoded (skipped)")
        telemetry.gauge("tradeflow_ingest_subscriptions", "Subscriptions of all ingest replicas"
                        ).set_function(lambda: len(self.book))

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="subscription-log")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously, quickly) whenever the book changes after catch-up."""
        self._on_change = callback

    def is_caught_up(self) -> bool:
        """Everything the topic held when this replica started has been read."""
        return self._caught_up.is_set()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._caught_up.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def readiness(self) -> tuple[bool, str]:
        if self.is_caught_up():
            return True, f"subscriptions: {len(self.book)} read"
        return False, "subscriptions: still reading ingest.subscriptions.v1"

    # --- writes -------------------------------------------------------------------------------

    async def put(self, subscription: Subscription) -> None:
        """Store ``subscription``; returns once this replica's book holds it."""
        key = market_key(subscription.exchange, subscription.symbol)
        await self._write_and_read_back(self._producer.send(INGEST_SUBSCRIPTIONS, key, subscription))

    async def remove(self, exchange: str, symbol: str) -> None:
        """Tombstone the subscription; returns once this replica's book no longer holds it."""
        key = market_key(exchange, symbol).encode()
        await self._write_and_read_back(self._producer.send_raw(INGEST_SUBSCRIPTIONS.name, key, None))

    async def _write_and_read_back(self, ack: asyncio.Future) -> None:
        try:
            metadata = await asyncio.wait_for(ack, READ_BACK_TIMEOUT_S)
        except Exception as exc:
            raise SubscriptionLogUnavailable(f"the broker did not take the change: {exc}") from exc
        deadline = time.monotonic() + READ_BACK_TIMEOUT_S
        async with self._progress:
            while self._next_offsets.get(metadata.partition, 0) <= metadata.offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SubscriptionLogUnavailable("the change was stored but not read back in time")
                try:
                    await asyncio.wait_for(self._progress.wait(), remaining)
                except TimeoutError:
                    continue

    # --- reading ------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(initial_s=0.5, maximum_s=10.0)
        topic = INGEST_SUBSCRIPTIONS.name
        while not self._stopping.is_set():
            delay = 0.0
            consumer = AIOKafkaConsumer(
                **kafka_client_options(self._settings), group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", client_id=self._client_id)
            try:
                await consumer.start()
                partitions = await self._position(consumer, topic)
                ends = await consumer.end_offsets(partitions)
                backoff.reset()
                while True:
                    batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)
                    changed = False
                    for tp, records in batches.items():
                        changed |= self._apply(tp.partition, records)
                    for tp in partitions:  # the position moves past compacted gaps too
                        self._next_offsets[tp.partition] = await consumer.position(tp)
                    # Caught up: past the end offsets seen at start, and a fetch found nothing more
                    # (end_offsets alone is a lower bound on Tansu: the last batch's base offset + 1).
                    if not self._caught_up.is_set() and not batches and all(
                            self._next_offsets[tp.partition] >= ends[tp] for tp in partitions):
                        log.info("subscriptions read: %d", len(self.book))
                        self._caught_up.set()
                        changed = True
                    async with self._progress:
                        self._progress.notify_all()
                    if changed and self._caught_up.is_set():
                        self._on_change()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker away or topic missing: retry
                delay = backoff.next_delay()
                log.warning("reading %s failed (%s: %s); retrying in %.1fs", topic, type(exc).__name__, exc, delay)
            finally:
                await consumer.stop()
            await sleep_unless(self._stopping, delay)

    async def _position(self, consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        for tp in tps:  # resume after a reconnect; from the beginning the first time
            if tp.partition in self._next_offsets:
                consumer.seek(tp, self._next_offsets[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        return tps

    def _apply(self, partition: int, records) -> bool:
        changed = False
        for record in records:
            key = parse_key(record.key)
            if key is None:
                self._undecodable.inc()
                log.warning("skipping subscription record without exchange:symbol key at %d@%d",
                            partition, record.offset)
                continue
            subscription = None
            if record.value is not None:
                try:
                    subscription = decode(Subscription, record.value)
                except DecodeError as exc:
                    self._undecodable.inc()
                    log.warning("skipping undecodable subscription at %d@%d: %s", partition, record.offset, exc)
                    continue
            changed |= self.book.apply(partition, subscription, key)
        return changed
