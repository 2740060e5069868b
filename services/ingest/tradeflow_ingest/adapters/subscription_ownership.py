"""Which partitions of the subscriptions topic this replica serves: a consumer group's say.

The ingest replicas form one consumer group over ``ingest.subscriptions.v1``. Kafka's group
protocol gives each partition to exactly one live member and, when a member leaves or stops
heartbeating (``consumer_session_timeout_ms``), hands its partitions to the others. The member
reads nothing through the group (its partitions stay paused; the records come from the
group-less :class:`SubscriptionLog`): the group is used for membership only.

Rebalances are eager: every member gives up its partitions (``on_revoked``, which must stop
serving them before it returns) before any member gets the new assignment (``on_assigned``),
so a subscription is never served by two live replicas at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from tradeflow.bus.connection import Backoff, kafka_client_options, sleep_unless
from tradeflow.settings import ServiceSettings
from tradeflow.topics import INGEST_SUBSCRIPTIONS

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[frozenset[int]], Awaitable[None]]


class SubscriptionOwnership:
    """A service Component: membership of the ingest replicas' group over the subscriptions topic."""

    def __init__(self, settings: ServiceSettings, *, group_id: str, client_id: str,
                 on_assigned: PartitionsCallback, on_revoked: PartitionsCallback) -> None:
        self._settings = settings
        self.group_id = group_id
        self._client_id = client_id
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self.partitions: frozenset[int] = frozenset()
        self._assigned_once = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="subscription-ownership")

    async def stop(self) -> None:
        """Leave the group (its partitions go to the other replicas at once)."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def has_assignment(self) -> bool:
        return self._assigned_once.is_set()

    async def readiness(self) -> tuple[bool, str]:
        if self.has_assignment():
            return True, f"subscriptions group {self.group_id}: partitions {sorted(self.partitions)}"
        return False, f"subscriptions group {self.group_id}: not joined yet"

    async def _run(self) -> None:
        backoff = Backoff(initial_s=0.5, maximum_s=10.0)
        while not self._stopping.is_set():
            delay = 0.0
            consumer = AIOKafkaConsumer(
                **kafka_client_options(self._settings), group_id=self.group_id, client_id=self._client_id,
                enable_auto_commit=False, auto_offset_reset="latest",
                session_timeout_ms=self._settings.consumer_session_timeout_ms,
                heartbeat_interval_ms=self._settings.consumer_heartbeat_interval_ms)
            consumer.subscribe([INGEST_SUBSCRIPTIONS.name], listener=_Listener(self, consumer))
            try:
                await consumer.start()
                backoff.reset()
                while not self._stopping.is_set():
                    # Returns nothing (partitions are paused) but runs the group protocol.
                    await consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker away: rejoin later
                delay = backoff.next_delay()
                log.warning("subscriptions group %s failed (%s: %s); rejoining in %.1fs",
                            self.group_id, type(exc).__name__, exc, delay)
            finally:
                await consumer.stop()  # leaves the group, which revokes through the listener
                await self._revoke_all()
            await sleep_unless(self._stopping, delay)

    async def _revoke_all(self) -> None:
        if self.partitions:
            revoked, self.partitions = self.partitions, frozenset()
            await self._on_revoked(revoked)

    async def _assigned(self, consumer: AIOKafkaConsumer, partitions: frozenset[int]) -> None:
        consumer.pause(*consumer.assignment())
        self.partitions = partitions
        log.info("subscriptions group %s: serving partitions %s", self.group_id, sorted(partitions))
        await self._on_assigned(partitions)
        self._assigned_once.set()

    async def _revoked(self, partitions: frozenset[int]) -> None:
        self.partitions = self.partitions - partitions
        await self._on_revoked(partitions)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: SubscriptionOwnership, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        await self._owner._revoked(frozenset(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        await self._owner._assigned(self._consumer, frozenset(tp.partition for tp in assigned))
