"""An in-memory bus with the interface of :mod:`tradeflow.bus`, for unit tests and backtests.

What it keeps of Kafka: topics with partitions (a key's partition is the producers' murmur2
choice, so per-key order holds and ``partition_for_key`` finds it), offsets, timestamps,
headers (content type, schema, the sender's traceparent), tombstones; consumer groups (each
partition to one member, eager rebalances that call ``on_revoked`` before ``on_assigned``,
committed offsets a new member resumes from, ``committable_offsets`` holding commits back);
decoding with the DLQ (reason headers) for undecodable or mismatched values; redelivery of a
whole batch after a handler error; group-less readers (:meth:`read`, :meth:`follow`) and group
membership without reading.

What it does not model: the network (sends are stored at once; :meth:`MemoryBroker.fail_sends`
makes them fail), retention, compaction, and time (it stamps records with the bus's clock).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradeflow.bus.consumer import Handler, decode_records
from tradeflow.bus.dead_letters import DeadLetters
from tradeflow.bus.handlers import Handlers
from tradeflow.bus.membership import PartitionsCallback
from tradeflow.bus.producer import ProducerStoppedError
from tradeflow.bus.reader import FROM_BEGINNING, ReaderBatch, Start, Topics
from tradeflow.bus.record import Record
from tradeflow.bus.trace_context import TraceHeaders
from tradeflow.bus.types import Delivery, Offsets, TopicPartition, partition_for_key
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.codec import CONTENT_TYPE, HEADER_CONTENT_TYPE, HEADER_SCHEMA, decoder_for, encode
from tradeflow.messages import Message
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import DLQ_SUFFIX, TopicSpec

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 3


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as the broker holds it (the attributes of a fetched Kafka record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class _Group:
    members: list[Any] = field(default_factory=list)  # join order
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MemoryBroker:
    """Topics, partitions and consumer groups in memory."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, default_partitions: int = DEFAULT_PARTITIONS) -> None:
        self.clock = clock
        self.default_partitions = default_partitions
        self._logs: dict[str, list[list[StoredRecord]]] = {}
        self._groups: dict[str, _Group] = {}
        self._arrived = asyncio.Event()
        self._failing: dict[str, BaseException] = {}

    # --- topics ---------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        if name not in self._logs:
            self._logs[name] = [[] for _ in range(partitions or self.default_partitions)]

    def ensure(self, spec: TopicSpec) -> None:
        self.create_topic(spec.name, spec.partitions)
        if not spec.name.endswith(DLQ_SUFFIX):
            self.create_topic(spec.dlq, spec.partitions)

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._logs:
            raise LookupError(f"topic {topic} has no partitions (yet)")
        return list(range(len(self._logs[topic])))

    def end_offset(self, tp: TopicPartition) -> int:
        return len(self._logs[tp.topic][tp.partition])

    def fetch(self, tp: TopicPartition, offset: int, limit: int) -> list[StoredRecord]:
        return self._logs[tp.topic][tp.partition][offset:offset + limit]

    def records(self, topic: str) -> list[StoredRecord]:
        """Every record of ``topic`` (partition by partition, in offset order)."""
        return [r for partition in self._logs.get(topic, []) for r in partition]

    def values(self, spec: TopicSpec) -> list[Any]:
        """The decoded values of ``spec``'s topic (tombstones left out)."""
        return [decoder_for(spec.value_type_of(r.headers)).decode(r.value) for r in self.records(spec.name)
                if r.value is not None]

    def fail_sends(self, topic: str, error: BaseException | None) -> None:
        """Sends to ``topic`` fail with ``error`` from now on (None: they succeed again)."""
        if error is None:
            self._failing.pop(topic, None)
        else:
            self._failing[topic] = error

    def append(self, topic: str, key: bytes | None, value: bytes | None,
               headers: Sequence[tuple[str, bytes]]) -> Delivery:
        failure = self._failing.get(topic)
        if failure is not None:
            raise failure
        self.create_topic(topic)
        partitions = self._logs[topic]
        if key is not None:
            partition = partition_for_key(key, range(len(partitions)))
        else:
            partition = min(range(len(partitions)), key=lambda p: len(partitions[p]))
        log_ = partitions[partition]
        record = StoredRecord(topic, partition, len(log_), key, value, tuple(headers), self.clock.now_ms())
        log_.append(record)
        self._arrived.set()
        return Delivery(topic, partition, record.offset, record.timestamp)

    async def wait_for_records(self, timeout_s: float) -> None:
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout_s)
        except TimeoutError:
            pass

    def offset_for_time(self, tp: TopicPartition, time_ms: int) -> int | None:
        for record in self._logs[tp.topic][tp.partition]:
            if record.timestamp >= time_ms:
                return record.offset
        return None

    # --- groups ---------------------------------------------------------------------------------

    def group(self, group_id: str) -> _Group:
        return self._groups.setdefault(group_id, _Group())

    def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        return self.group(group_id).committed.get(tp)

    async def join(self, group_id: str, member: Any) -> None:
        group = self.group(group_id)
        async with group.lock:
            await self._revoke_all(group)
            group.members.append(member)
            await self._assign(group)

    async def leave(self, group_id: str, member: Any) -> None:
        group = self.group(group_id)
        async with group.lock:
            await self._revoke_all(group)
            if member in group.members:
                group.members.remove(member)
            await self._assign(group)

    async def _revoke_all(self, group: _Group) -> None:
        for member in group.members:
            await member._revoke()

    async def _assign(self, group: _Group) -> None:
        if not group.members:
            return
        topics = sorted({t for m in group.members for t in m.subscribed_topics})
        for topic in topics:
            self.create_topic(topic)
        all_tps = [TopicPartition(t, p) for t in topics for p in self.partitions(t)]
        shares: list[set[TopicPartition]] = [set() for _ in group.members]
        for index, tp in enumerate(all_tps):
            shares[index % len(group.members)].add(tp)
        for member, share in zip(group.members, shares, strict=True):
            await member._assign(share)


class MemoryProducer:
    """:class:`tradeflow.bus.Producer`'s interface; a send is stored at once (its future is done)."""

    def __init__(self, broker: MemoryBroker, telemetry: Telemetry | None = None, *, client_id: str | None = None) -> None:
        self._broker = broker
        self.client_id = client_id
        self._state = "new"
        self._trace_headers = TraceHeaders()
        self.sent = 0

    async def start(self) -> None:
        if self._state == "new":
            self._state = "running"

    async def stop(self) -> None:
        self._state = "stopped"

    def is_connected(self) -> bool:
        return self._state == "running"

    async def ping(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        return self.is_connected(), "in-memory broker"

    def _headers(self, message: Message, extra: Sequence[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
        headers = [(HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()), (HEADER_SCHEMA, type(message).SCHEMA.encode())]
        headers.extend(self._trace_headers.current())
        if extra:
            headers.extend(extra)
        return headers

    def send(self, topic: TopicSpec | str, key: str | None, message: Message,
             headers: Sequence[tuple[str, bytes]] | None = None) -> asyncio.Future[Delivery]:
        name = topic.name if isinstance(topic, TopicSpec) else topic
        if isinstance(topic, TopicSpec):
            self._broker.ensure(topic)
        return self.send_raw(name, key.encode() if key is not None else None, encode(message),
                             self._headers(message, headers))

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes]] | None = None) -> asyncio.Future[Delivery]:
        if self._state != "running":
            raise ProducerStoppedError(f"producer is {self._state}; cannot send to {topic}")
        future = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self._broker.append(topic, key, value, list(headers or ())))
            self.sent += 1
        except Exception as exc:  # noqa: BLE001 - the caller sees it through the future, as with Kafka
            future.set_exception(exc)
        return future

    def send_all(self, topic: TopicSpec | str, items: Iterable[tuple[str | None, Message]]
                 ) -> asyncio.Future[list[Delivery | BaseException]]:
        results: list[Delivery | BaseException] = []
        for key, message in items:
            ack = self.send(topic, key, message)
            results.append(ack.exception() or ack.result())
        future = asyncio.get_running_loop().create_future()
        future.set_result(results)
        return future

    async def send_many(self, topic: TopicSpec | str, items: Iterable[tuple[str | None, Message]]) -> list[Delivery]:
        return list(await asyncio.gather(*(self.send(topic, key, message) for key, message in items)))

    async def flush(self) -> None:
        return None


class MemoryConsumer:
    """:class:`tradeflow.bus.Consumer`'s interface and delivery rules, in memory."""

    def __init__(self, broker: MemoryBroker, telemetry: Telemetry | None = None, *, topics: Sequence[TopicSpec],
                 group_id: str, handler: Handler | Handlers, dead_letters: DeadLetters, max_batch: int = 5000,
                 committable_offsets=None, on_assigned=None, on_revoked=None, auto_offset_reset: str = "earliest",
                 redelivery_delay_s: float = 0.0, fetch_max_wait_ms: int | None = None, **_ignored: Any) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        # Kept for wiring tests (the fetch wait each consumer was given); nothing waits in memory.
        self.fetch_max_wait_ms = fetch_max_wait_ms
        if isinstance(handler, Handlers):
            handler.check_covers(topics)
        self._broker = broker
        self._specs = {spec.name: spec for spec in topics}
        for spec in topics:
            broker.ensure(spec)
        self.subscribed_topics = list(self._specs)
        self.group_id = group_id
        self._handler = handler
        self._dead_letters = dead_letters
        self._max_batch = max_batch
        self._committable_offsets = committable_offsets
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._auto_offset_reset = auto_offset_reset
        self._redelivery_delay_s = redelivery_delay_s
        self._assignment: set[TopicPartition] = set()
        self._positions: Offsets = {}
        self._processed: Offsets = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._state = "new"
        self._joined = False
        self.busy = False
        self.redeliveries = 0
        self.handler_errors: list[BaseException] = []

    async def start(self) -> None:
        if self._state != "new":
            return
        self._state = "running"
        await self._broker.join(self.group_id, self)
        self._task = asyncio.create_task(self._run(), name=f"memory-consumer-{self.group_id}")

    async def stop(self) -> None:
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        async with self._lock:
            self._commit(self._assignment)
        await self._broker.leave(self.group_id, self)

    async def crash(self) -> None:
        """Stop without committing what was handled since the last commit (a SIGKILL): the
        group's next member starts from the last committed offsets."""
        self._state = "stopped"
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._processed.clear()
        await self._broker.leave(self.group_id, self)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def is_ready(self) -> bool:
        return self._joined and self._state == "running"

    def pending(self) -> int:
        """Records in the assigned partitions not handled yet."""
        return sum(self._broker.end_offset(tp) - self._positions.get(tp, 0) for tp in self._assignment)

    # --- group callbacks (from the broker) ------------------------------------------------------

    async def _revoke(self) -> None:
        async with self._lock:
            revoked, self._assignment = self._assignment, set()
            self._joined = False
            self._commit(revoked)
            if self._on_revoked is not None and revoked:
                await self._on_revoked(revoked)
            for tp in revoked:
                self._positions.pop(tp, None)
                self._processed.pop(tp, None)

    async def _assign(self, partitions: set[TopicPartition]) -> None:
        self._assignment = set(partitions)
        for tp in partitions:
            committed = self._broker.committed(self.group_id, tp)
            if committed is None:
                committed = 0 if self._auto_offset_reset == "earliest" else self._broker.end_offset(tp)
            self._positions[tp] = committed
        if self._on_assigned is not None:
            await self._on_assigned(set(partitions))
        self._joined = True

    # --- delivery -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while self._state == "running":
            if not await self.poll():
                await self._broker.wait_for_records(0.05)

    async def poll(self) -> bool:
        """Deliver one batch from the assigned partitions; False when there was nothing to deliver."""
        async with self._lock:
            fetched: dict[TopicPartition, list[StoredRecord]] = {}
            room = self._max_batch
            for tp in sorted(self._assignment):
                if room <= 0:
                    break
                raws = self._broker.fetch(tp, self._positions[tp], room)
                if raws:
                    fetched[tp] = raws
                    room -= len(raws)
            if not fetched:
                return False
            self.busy = True
            try:
                records: list[Record] = []
                acks: list[asyncio.Future] = []
                traceparents: set[bytes] = set()
                for tp, raws in fetched.items():
                    spec = self._specs[tp.topic]
                    decode_records(spec, spec.value_type.SCHEMA.encode(), raws, self._dead_letters, records, acks,
                                   traceparents)
                try:
                    if records:
                        await self._handler(records)
                    if acks:
                        await asyncio.gather(*acks)
                except Exception as exc:  # noqa: BLE001 - redelivered, as the Kafka consumer does
                    self.redeliveries += 1
                    self.handler_errors.append(exc)
                    log.info("memory consumer %s: handler failed (%s); redelivering", self.group_id, exc)
                    await asyncio.sleep(self._redelivery_delay_s)
                    return True
                for tp, raws in fetched.items():
                    self._positions[tp] = raws[-1].offset + 1
                    self._processed[tp] = raws[-1].offset + 1
                self._commit(self._assignment)
                return True
            finally:
                self.busy = False

    def _commit(self, partitions: set[TopicPartition]) -> None:
        if self._committable_offsets is not None:
            wanted = self._committable_offsets()
            offsets = {tp: min(o, self._processed[tp]) for tp, o in wanted.items() if tp in self._processed}
        else:
            offsets = dict(self._processed)
        committed = self._broker.group(self.group_id).committed
        for tp, offset in offsets.items():
            if tp in partitions:
                committed[tp] = offset


class MemoryReader:
    """:class:`tradeflow.bus.TopicReader`'s interface, in memory."""

    def __init__(self, broker: MemoryBroker, topics: Topics, *, client_id: str = "reader",
                 start: Start | Mapping[str, Start] = FROM_BEGINNING, group_id: str | None = None,
                 on_undecodable=None, **_ignored: Any) -> None:
        if isinstance(topics, TopicSpec | str):
            topics = [topics]
        self._broker = broker
        self._specs = {(t.name if isinstance(t, TopicSpec) else t): (t if isinstance(t, TopicSpec) else None)
                       for t in topics}
        for t in topics:
            if isinstance(t, TopicSpec):
                broker.ensure(t)
        self.topics = list(self._specs)
        self._start = start
        self._group_id = group_id
        self._on_undecodable = on_undecodable
        self.positions: dict[TopicPartition, int] = {}
        self.caught_up = False
        self.positioned = False
        self.following = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def __aenter__(self) -> MemoryReader:
        return self

    async def __aexit__(self, *exc_info) -> None:
        return None

    async def partitions(self, topic: str | None = None) -> list[int]:
        return self._broker.partitions(topic or self.topics[0])

    async def committed(self, tp: TopicPartition) -> int | None:
        if self._group_id is None:
            raise ValueError("committed() needs the reader's group_id")
        return self._broker.committed(self._group_id, tp)

    def _first(self, tp: TopicPartition, start: Start | Mapping[str, Start]) -> int:
        rule = start if isinstance(start, Start) else start.get(tp.topic, FROM_BEGINNING)
        end = self._broker.end_offset(tp)
        if rule.kind == "beginning":
            return 0
        if rule.kind == "end":
            return end
        if rule.kind == "time":
            found = self._broker.offset_for_time(tp, rule.time_ms)
            return end if found is None else found
        return rule.offsets.get(tp.partition, 0)

    def _decode(self, raws: Iterable[StoredRecord], out: list[Record]) -> None:
        for raw in raws:
            key = raw.key.decode("utf-8", "replace") if raw.key is not None else None
            value: Any = raw.value
            spec = self._specs[raw.topic]
            if spec is not None and raw.value is not None:
                try:
                    value = decoder_for(spec.value_type_of(raw.headers)).decode(raw.value)
                except Exception as exc:  # noqa: BLE001 - skipped, like the Kafka reader
                    if self._on_undecodable is not None:
                        self._on_undecodable(Record(raw.topic, raw.partition, raw.offset, key, raw.value, raw.headers,
                                                    raw.timestamp, raw.key, raw.value), exc)
                    continue
            out.append(Record(raw.topic, raw.partition, raw.offset, key, value, raw.headers, raw.timestamp,
                              raw.key, raw.value))

    async def read(self, *, start: Start | Mapping[str, Start] | None = None,
                   partitions: Mapping[str, Collection[int]] | None = None, keys: Collection[str] | None = None,
                   until_offsets: Mapping[TopicPartition, int] | None = None, until_ms: int | None = None,
                   timeout_s: float | None = None) -> list[Record]:
        wanted = {k.encode() for k in keys} if keys is not None else None
        out: list[Record] = []
        for topic in self.topics:
            chosen = self._broker.partitions(topic)
            if partitions is not None:
                chosen = [p for p in chosen if p in set(partitions.get(topic, ()))]
            for p in chosen:
                tp = TopicPartition(topic, p)
                first = self._first(tp, start if start is not None else self._start)
                end = until_offsets.get(tp, 0) if until_offsets is not None else self._broker.end_offset(tp)
                raws = self._broker.fetch(tp, first, max(0, end - first))
                if wanted is not None:
                    raws = [r for r in raws if r.key in wanted]
                self._decode(raws, out)
        return out

    async def follow(self) -> AsyncIterator[ReaderBatch]:
        tps = [TopicPartition(t, p) for t in self.topics for p in self._broker.partitions(t)]
        for tp in tps:
            if tp not in self.positions:
                self.positions[tp] = self._first(tp, self._start)
        ends = {tp: self._broker.end_offset(tp) for tp in tps}
        self.positioned = True
        self.following = True
        try:
            while True:
                records: list[Record] = []
                for tp in tps:
                    raws = self._broker.fetch(tp, self.positions[tp], 5000)
                    if raws:
                        self._decode(raws, records)
                        self.positions[tp] = raws[-1].offset + 1
                now_caught_up = not self.caught_up and all(self.positions[tp] >= ends[tp] for tp in tps)
                if now_caught_up:
                    self.caught_up = True
                if records or now_caught_up:
                    yield ReaderBatch(records, now_caught_up, dict(self.positions))
                else:
                    await self._broker.wait_for_records(0.05)
        finally:
            self.following = False
            self.positioned = False

    def behind(self) -> int:
        return sum(self._broker.end_offset(tp) - offset for tp, offset in self.positions.items())


class MemoryMembership:
    """:class:`tradeflow.bus.GroupMembership`'s interface, in memory."""

    def __init__(self, broker: MemoryBroker, *, topic: str, group_id: str, client_id: str = "member",
                 on_assigned: PartitionsCallback, on_revoked: PartitionsCallback) -> None:
        self._broker = broker
        self.topic = topic
        self.subscribed_topics = [topic]
        self.group_id = group_id
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self.partitions: frozenset[int] = frozenset()
        self._assigned_once = False
        self._running = False

    async def start(self) -> None:
        if not self._running:
            self._running = True
            await self._broker.join(self.group_id, self)

    async def stop(self) -> None:
        if self._running:
            self._running = False
            await self._broker.leave(self.group_id, self)

    def has_assignment(self) -> bool:
        return self._assigned_once

    async def _revoke(self) -> None:
        if self.partitions:
            revoked, self.partitions = self.partitions, frozenset()
            await self._on_revoked(revoked)

    async def _assign(self, partitions: set[TopicPartition]) -> None:
        self.partitions = frozenset(tp.partition for tp in partitions)
        await self._on_assigned(self.partitions)
        self._assigned_once = True


class _TopicsExist:
    def __init__(self, broker: MemoryBroker, specs: Sequence[TopicSpec]) -> None:
        self._broker = broker
        self._specs = list(specs)

    async def start(self) -> None:
        for spec in self._specs:
            self._broker.ensure(spec)

    async def stop(self) -> None:
        return None


class MemoryBus:
    """:class:`tradeflow.bus.Bus` in memory; ``bus.broker`` holds the topics for assertions.

    Several replicas of a service in one test: one bus each (own telemetry) on one ``broker``.
    """

    def __init__(self, telemetry: Telemetry | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 default_partitions: int = DEFAULT_PARTITIONS, broker: MemoryBroker | None = None) -> None:
        self.telemetry = telemetry if telemetry is not None else Telemetry("memory-bus", CommonSettings())
        self.broker = broker if broker is not None else MemoryBroker(clock, default_partitions)
        self.consumers: list[MemoryConsumer] = []
        self.readers: list[MemoryReader] = []

    def producer(self, *, client_id: str | None = None, linger_ms: int | None = None) -> MemoryProducer:
        # Sends are immediate here: there is no linger to set.
        return MemoryProducer(self.broker, self.telemetry, client_id=client_id)

    def dead_letters(self, producer) -> DeadLetters:
        return DeadLetters(producer, self.telemetry)

    def consumer(self, *, topics: Sequence[TopicSpec], group_id: str, handler: Handler | Handlers,
                 dead_letters: DeadLetters, **options: Any) -> MemoryConsumer:
        consumer = MemoryConsumer(self.broker, self.telemetry, topics=topics, group_id=group_id, handler=handler,
                                  dead_letters=dead_letters, **options)
        self.consumers.append(consumer)
        return consumer

    def reader(self, topics: Topics, *, client_id: str = "reader", start: Start | Mapping[str, Start] = FROM_BEGINNING,
               **options: Any) -> MemoryReader:
        reader = MemoryReader(self.broker, topics, client_id=client_id, start=start, **options)
        self.readers.append(reader)
        return reader

    def membership(self, *, topic: str, group_id: str, client_id: str = "member", on_assigned: PartitionsCallback,
                   on_revoked: PartitionsCallback) -> MemoryMembership:
        return MemoryMembership(self.broker, topic=topic, group_id=group_id, client_id=client_id,
                                on_assigned=on_assigned, on_revoked=on_revoked)

    def topics_exist(self, specs: Sequence[TopicSpec], *, wait_s: float = 0.0) -> _TopicsExist:
        return _TopicsExist(self.broker, specs)

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait until every running consumer has handled everything in its partitions and every
        following reader has read to the end (TimeoutError names who is behind, e.g. a handler
        that keeps failing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            await asyncio.sleep(0)
            behind = [f"consumer {c.group_id}: {c.pending()} pending, {c.redeliveries} redeliveries"
                      for c in self.consumers if c.is_ready() and (c.pending() or c.busy)]
            behind += [f"reader of {', '.join(r.topics)}: {r.behind()} behind"
                       for r in self.readers if r.following and r.behind()]
            if not behind:
                return
            if loop.time() > deadline:
                raise TimeoutError("the memory bus did not settle: " + "; ".join(behind))
            await asyncio.sleep(0.001)
