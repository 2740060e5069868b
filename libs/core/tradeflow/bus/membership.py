"""Membership of a consumer group without reading through it: which partitions are "mine".

Kafka's group protocol gives each partition of a topic to exactly one live member and, when a
member leaves or stops heartbeating (``consumer_session_timeout_ms``), hands its partitions to
the others. :class:`GroupMembership` joins a group for that alone (ADR 0009: the ingest replicas
share the subscriptions this way): its partitions stay paused, so nothing is fetched or
committed; the records themselves come from a :class:`~tradeflow.bus.reader.TopicReader`.

Rebalances are eager: every member gives up its partitions (``on_revoked``, which must stop
using them before it returns) before any member gets the new assignment (``on_assigned``), so
a partition is never "mine" in two live members at once. A lost broker connection revokes
everything; the member rejoins when the broker is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from tradeflow.bus.connection import Backoff, kafka_client_options, sleep_unless
from tradeflow.settings import CommonSettings, ServiceSettings

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[frozenset[int]], Awaitable[None]]


class GroupMembership:
    """A service Component: membership of ``group_id`` over ``topic``; partitions as numbers."""

    def __init__(self, settings: CommonSettings, *, topic: str, group_id: str, client_id: str,
                 on_assigned: PartitionsCallback, on_revoked: PartitionsCallback) -> None:
        self._settings = settings
        self.topic = topic
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
            self._task = asyncio.create_task(self._run(), name=f"membership-{self.group_id}")

    async def stop(self) -> None:
        """Leave the group (its partitions go to the other members at once)."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def has_assignment(self) -> bool:
        """Joined at least once (zero partitions is an assignment: members may outnumber them)."""
        return self._assigned_once.is_set()

    async def _run(self) -> None:
        if isinstance(self._settings, ServiceSettings):
            session_timeout_ms = self._settings.consumer_session_timeout_ms
            heartbeat_interval_ms = self._settings.consumer_heartbeat_interval_ms
        else:
            session_timeout_ms, heartbeat_interval_ms = 10_000, 1_000
        backoff = Backoff(initial_s=0.5, maximum_s=10.0)
        while not self._stopping.is_set():
            delay = 0.0
            consumer = AIOKafkaConsumer(
                **kafka_client_options(self._settings), group_id=self.group_id, client_id=self._client_id,
                enable_auto_commit=False, auto_offset_reset="latest",
                session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms)
            consumer.subscribe([self.topic], listener=_Listener(self, consumer))
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
                log.warning("group %s failed (%s: %s); rejoining in %.1fs",
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
        log.info("group %s: partitions %s of %s are mine", self.group_id, sorted(partitions), self.topic)
        await self._on_assigned(partitions)
        self._assigned_once.set()

    async def _revoked(self, partitions: frozenset[int]) -> None:
        self.partitions = self.partitions - partitions
        await self._on_revoked(partitions)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: GroupMembership, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        await self._owner._revoked(frozenset(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        await self._owner._assigned(self._consumer, frozenset(tp.partition for tp in assigned))
