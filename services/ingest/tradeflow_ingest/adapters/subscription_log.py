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
from collections.abc import Callable

from tradeflow.bus import Bus, Producer, Record
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.messages import Subscription
from tradeflow.topics import INGEST_SUBSCRIPTIONS, market_key

from tradeflow_ingest.domain.subscriptions import SubscriptionBook, parse_key

log = logging.getLogger(__name__)

READ_BACK_TIMEOUT_S = 10.0


class SubscriptionLogUnavailable(RuntimeError):
    """The subscriptions topic cannot be read or written right now (broker away)."""


class SubscriptionLog:
    """A service Component: the book of all subscriptions, and writes to it."""

    def __init__(self, bus: Bus, producer: Producer, *, client_id: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self._producer = producer
        self._clock = clock
        self._reader = bus.reader(INGEST_SUBSCRIPTIONS, client_id=client_id, on_undecodable=self._undecodable_record)
        self._on_change: Callable[[], None] = lambda: None
        self.book = SubscriptionBook()
        self._next_offsets: dict[int, int] = {}  # partition -> next offset read
        self._caught_up = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task | None = None
        telemetry = bus.telemetry
        self._undecodable = telemetry.counter(
            "tradeflow_ingest_subscription_records_undecodable_total",
            "Records of ingest.subscriptions.v1 that could not be decoded (skipped)")
        telemetry.gauge("tradeflow_ingest_subscriptions", "Subscriptions of all ingest replicas"
                        ).set_function(lambda: len(self.book))

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="subscription-log")

    async def stop(self) -> None:
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
            delivery = await asyncio.wait_for(ack, READ_BACK_TIMEOUT_S)
        except Exception as exc:
            raise SubscriptionLogUnavailable(f"the broker did not take the change: {exc}") from exc
        deadline = self._clock.monotonic() + READ_BACK_TIMEOUT_S
        async with self._progress:
            while self._next_offsets.get(delivery.partition, 0) <= delivery.offset:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    raise SubscriptionLogUnavailable("the change was stored but not read back in time")
                try:
                    await asyncio.wait_for(self._progress.wait(), remaining)
                except TimeoutError:
                    continue

    # --- reading ------------------------------------------------------------------------------

    async def _run(self) -> None:
        # The bus's reader follows every partition from the beginning and resumes where it was
        # after a lost connection; "caught up" is its rule (past the end offsets seen at start,
        # and a fetch found nothing more).
        async for batch in self._reader.follow():
            changed = self._apply(batch.records)
            for tp, position in batch.positions.items():  # positions move past compacted gaps too
                self._next_offsets[tp.partition] = position
            if batch.caught_up:
                log.info("subscriptions read: %d", len(self.book))
                self._caught_up.set()
                changed = True
            async with self._progress:
                self._progress.notify_all()
            if changed and self._caught_up.is_set():
                self._on_change()

    def _undecodable_record(self, record: Record, error: Exception) -> None:
        self._undecodable.inc()
        log.warning("skipping undecodable subscription at %d@%d: %s", record.partition, record.offset, error)

    def _apply(self, records: list[Record]) -> bool:
        changed = False
        for record in records:
            key = parse_key(record.raw_key)
            if key is None:
                self._undecodable.inc()
                log.warning("skipping subscription record without exchange:symbol key at %d@%d",
                            record.partition, record.offset)
                continue
            changed |= self.book.apply(record.partition, record.value, key)
        return changed
