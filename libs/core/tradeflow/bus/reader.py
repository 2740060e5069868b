"""Reading topics without a consumer group: every partition (or the ones asked for), nothing
committed, nobody's partitions taken.

Two ways to read:

- :meth:`TopicReader.read` reads from a start (the beginning, the end, a time, or offsets) until
  caught up, and returns the records: "what does the topic hold for these keys since T". The end
  of a partition is where it stood when the read began. A broker's end offset is only a lower
  bound of it (Tansu reports the last batch's base offset + 1), so a partition counts as read
  once the position is past that end AND a fetch for it came back empty (or, with ``until_ms``,
  once it reaches a record past the end that was written after ``until_ms``). With explicit
  ``until_offsets`` the read stops exactly there.
- :meth:`TopicReader.follow` yields batches for ever from a start; after a lost connection
  (a broker restart) it reconnects and resumes at the next offset of each partition, so the
  caller misses nothing. :attr:`caught_up` turns true once everything the topic held when the
  reader first connected has been yielded (same rule as above).

Values are decoded with the topic's message type when a :class:`TopicSpec` is given (a record
that does not decode is skipped and passed to ``on_undecodable``); with a plain topic name the
record's ``value`` is the raw bytes. A tombstone (null value) comes as a record whose ``value``
and ``raw_value`` are None.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTopicPartition

from tradeflow.bus.connection import Backoff, kafka_client_options, topic_partitions
from tradeflow.bus.record import Record
from tradeflow.bus.types import TopicPartition
from tradeflow.codec import decoder_for
from tradeflow.settings import CommonSettings
from tradeflow.topics import TopicSpec

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS = 250
MAX_RECORDS = 5000


@dataclass(frozen=True, slots=True)
class Start:
    """Where a reader begins in a partition it has no position in yet."""

    kind: Literal["beginning", "end", "time", "offsets"]
    time_ms: int = 0
    offsets: Mapping[int, int] = field(default_factory=dict)  # partition -> offset ("offsets")


FROM_BEGINNING = Start("beginning")
FROM_END = Start("end")


def from_time(time_ms: int) -> Start:
    """The first record written at or after ``time_ms`` (the end when there is none)."""
    return Start("time", time_ms=time_ms)


def from_offsets(offsets: Mapping[int, int]) -> Start:
    """Given offsets per partition; partitions not listed start at the beginning."""
    return Start("offsets", offsets=dict(offsets))


@dataclass(slots=True)
class ReaderBatch:
    """What one fetch of :meth:`TopicReader.follow` brought."""

    records: list[Record]
    caught_up: bool  # this batch completed the catch-up (True once, on the first such batch)
    positions: dict[TopicPartition, int]  # next offset per partition after this batch


UndecodableCallback = Callable[[Record, Exception], None]
Topics = Sequence[TopicSpec | str] | TopicSpec | str


class TopicReader:
    """A group-less reader of one or more topics (a service Component: start/stop hold one
    connection for :meth:`read`, :meth:`partitions` and :meth:`committed`; :meth:`follow` keeps
    its own, reconnecting)."""

    def __init__(
        self,
        settings: CommonSettings,
        topics: Topics,
        *,
        client_id: str,
        start: Start | Mapping[str, Start] = FROM_BEGINNING,
        fetch_max_wait_ms: int = 500,
        max_records: int = MAX_RECORDS,
        group_id: str | None = None,
        on_undecodable: UndecodableCallback | None = None,
    ) -> None:
        if isinstance(topics, TopicSpec | str):
            topics = [topics]
        if not topics:
            raise ValueError("a reader needs at least one topic")
        self._settings = settings
        self._specs = {(t.name if isinstance(t, TopicSpec) else t): (t if isinstance(t, TopicSpec) else None)
                       for t in topics}
        self.topics = list(self._specs)
        self._start = start
        self._client_id = client_id
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._max_records = max_records
        # Only to look up a group's committed offsets (:meth:`committed`): the reader assigns its
        # partitions itself, so it never joins that group and never commits.
        self._group_id = group_id
        self._on_undecodable = on_undecodable
        self._consumer: AIOKafkaConsumer | None = None
        self.positions: dict[TopicPartition, int] = {}  # of follow(): next offset per partition
        self.caught_up = False
        self.positioned = False  # follow() is connected and knows where it reads every partition

    # --- component ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._consumer is None:
            consumer = self._new_consumer()
            await _start(consumer)
            self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    # --- one-shot reads -----------------------------------------------------------------------

    async def partitions(self, topic: str | None = None) -> list[int]:
        """The partitions of ``topic`` (the reader's first topic by default), in order."""
        async with self._connection() as consumer:
            return [tp.partition for tp in await _topic_partitions(consumer, topic or self.topics[0])]

    async def committed(self, tp: TopicPartition) -> int | None:
        """The offset the reader's ``group_id`` committed for ``tp`` (None: nothing yet)."""
        if self._group_id is None:
            raise ValueError("committed() needs the reader's group_id")
        async with self._connection() as consumer:
            return await consumer.committed(KafkaTopicPartition(*tp))

    async def read(
        self,
        *,
        start: Start | Mapping[str, Start] | None = None,
        partitions: Mapping[str, Collection[int]] | None = None,
        keys: Collection[str] | None = None,
        until_offsets: Mapping[TopicPartition, int] | None = None,
        until_ms: int | None = None,
        timeout_s: float | None = None,
    ) -> list[Record]:
        """Records from ``start`` (the reader's by default) until caught up, in log order per
        partition. ``partitions``: per topic, the partitions to read (all by default); ``keys``:
        only records with these keys (others are not decoded); ``until_offsets``: stop before
        these offsets instead of at the end; ``until_ms``: a partition also ends at its first
        record past the end written after this time."""
        wanted_keys = {k.encode() for k in keys} if keys is not None else None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        async with self._connection() as consumer:
            tps: list[KafkaTopicPartition] = []
            for topic in self.topics:
                available = await _topic_partitions(consumer, topic)
                if partitions is not None:
                    chosen = set(partitions.get(topic, ()))
                    available = [tp for tp in available if tp.partition in chosen]
                tps.extend(available)
            if not tps:
                return []
            consumer.assign(tps)
            await self._seek(consumer, tps, start if start is not None else self._start, {})
            if until_offsets is not None:
                ends = {tp: until_offsets.get(TopicPartition(*tp), 0) for tp in tps}
            else:
                ends = await consumer.end_offsets(tps)
            exact = until_offsets is not None
            pending = {tp for tp in tps if not (exact and await consumer.position(tp) >= ends[tp])}
            records: list[Record] = []
            while pending:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"reading {', '.join(self.topics)} back took over {timeout_s:.0f}s")
                batches = await consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS,
                                                 max_records=self._max_records)
                for tp in list(pending):
                    raws = batches.get(tp, [])
                    end = ends[tp]
                    done = not raws and not exact and await consumer.position(tp) >= end
                    taken = []
                    for raw in raws:
                        if exact and raw.offset >= end:
                            done = True
                            break
                        if not exact and until_ms is not None and raw.offset >= end and raw.timestamp > until_ms:
                            done = True
                            break
                        taken.append(raw)
                    if exact and taken and taken[-1].offset >= end - 1:
                        done = True
                    if wanted_keys is not None:
                        taken = [raw for raw in taken if raw.key in wanted_keys]
                    self._decode_into(tp.topic, taken, records)
                    if done:
                        pending.discard(tp)
            return records

    # --- following ----------------------------------------------------------------------------

    async def follow(self) -> AsyncIterator[ReaderBatch]:
        """Batches for ever (until the caller stops iterating), reconnecting after failures and
        resuming at :attr:`positions`."""
        backoff = Backoff(initial_s=0.5, maximum_s=10.0)
        while True:
            delay = 0.0
            consumer = self._new_consumer()
            try:
                await _start(consumer)
                tps: list[KafkaTopicPartition] = []
                for topic in self.topics:
                    tps.extend(await _topic_partitions(consumer, topic))
                consumer.assign(tps)
                await self._seek(consumer, tps, self._start, self.positions)
                for tp in tps:  # resolve "the end" and times now: what is written from here on is read
                    self.positions[TopicPartition(*tp)] = await consumer.position(tp)
                ends = {} if self.caught_up else await consumer.end_offsets(tps)
                self.positioned = True
                backoff.reset()
                log.info("reading %s from %d partition(s)", ", ".join(self.topics), len(tps))
                while True:
                    batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=self._max_records)
                    records: list[Record] = []
                    for tp, raws in batches.items():
                        self._decode_into(tp.topic, raws, records)
                    moved = bool(batches)
                    for tp in tps:  # the position also moves past compacted gaps
                        position = await consumer.position(tp)
                        key = TopicPartition(*tp)
                        if self.positions.get(key) != position:
                            self.positions[key] = position
                            moved = True
                    now_caught_up = (not self.caught_up and not batches
                                     and all(self.positions[TopicPartition(*tp)] >= ends[tp] for tp in tps))
                    if now_caught_up:
                        self.caught_up = True
                    if records or moved or now_caught_up:
                        yield ReaderBatch(records, now_caught_up, dict(self.positions))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker away or topic missing: resume later
                self.positioned = False
                delay = backoff.next_delay()
                log.warning("reading %s failed (%s: %s); resuming in %.1fs", ", ".join(self.topics),
                            type(exc).__name__, exc, delay)
            finally:
                await consumer.stop()
            await asyncio.sleep(delay)

    # --- internals ----------------------------------------------------------------------------

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **kafka_client_options(self._settings), group_id=self._group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=self._fetch_max_wait_ms, client_id=self._client_id)

    def _connection(self) -> _Connection:
        return _Connection(self)

    async def _seek(self, consumer: AIOKafkaConsumer, tps: list[KafkaTopicPartition],
                    start: Start | Mapping[str, Start], known: Mapping[TopicPartition, int]) -> None:
        by_time: dict[KafkaTopicPartition, int] = {}
        to_end: list[KafkaTopicPartition] = []
        to_beginning: list[KafkaTopicPartition] = []
        for tp in tps:
            position = known.get(TopicPartition(*tp))
            if position is not None:
                consumer.seek(tp, position)
                continue
            rule = start if isinstance(start, Start) else start.get(tp.topic, FROM_BEGINNING)
            if rule.kind == "beginning":
                to_beginning.append(tp)
            elif rule.kind == "end":
                to_end.append(tp)
            elif rule.kind == "time":
                by_time[tp] = rule.time_ms
            elif tp.partition in rule.offsets:
                consumer.seek(tp, rule.offsets[tp.partition])
            else:
                to_beginning.append(tp)
        if by_time:
            found = await consumer.offsets_for_times(by_time)
            for tp in by_time:
                # Nothing written since then: Kafka answers None, Tansu offset 0 with timestamp -1.
                hit = found.get(tp)
                if hit is not None and hit.timestamp >= 0:
                    consumer.seek(tp, hit.offset)
                else:
                    to_end.append(tp)
        if to_beginning:
            await consumer.seek_to_beginning(*to_beginning)
        if to_end:
            await consumer.seek_to_end(*to_end)

    def _decode_into(self, topic: str, raws, records: list[Record]) -> None:
        spec = self._specs[topic]
        decode = decoder_for(spec.value_type).decode if spec is not None else None
        for raw in raws:
            raw_key, raw_value = raw.key, raw.value
            record = Record(topic, raw.partition, raw.offset,
                            raw_key.decode("utf-8", "replace") if raw_key is not None else None,
                            raw_value, tuple(raw.headers), raw.timestamp, raw_key, raw_value)
            if decode is not None and raw_value is not None:
                try:
                    this = decode if not spec.other_types else decoder_for(spec.value_type_of(raw.headers)).decode
                    record = msgspec.structs.replace(record, value=this(raw_value))
                except msgspec.DecodeError as exc:
                    if self._on_undecodable is not None:
                        self._on_undecodable(record, exc)
                    else:
                        log.warning("skipping an undecodable record of %s at %d@%d: %s",
                                    topic, raw.partition, raw.offset, exc)
                    continue
            records.append(record)


class _Connection:
    """The reader's started consumer, or a temporary one for a reader that was not started."""

    def __init__(self, reader: TopicReader) -> None:
        self._reader = reader
        self._own: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> AIOKafkaConsumer:
        if self._reader._consumer is not None:
            return self._reader._consumer
        self._own = self._reader._new_consumer()
        await _start(self._own)
        return self._own

    async def __aexit__(self, *exc_info) -> None:
        if self._own is not None:
            await self._own.stop()


async def _start(consumer: AIOKafkaConsumer) -> None:
    await consumer.start()
    # Let the consumer's background tasks take their first step: aiokafka's stop() raises
    # CancelledError for a group-less consumer stopped before they ran once.
    await asyncio.sleep(0)


async def _topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[KafkaTopicPartition]:
    """:func:`~tradeflow.bus.connection.topic_partitions` as aiokafka's partitions (what the
    consumer's assign and seek calls take)."""
    return [KafkaTopicPartition(tp.topic, tp.partition) for tp in await topic_partitions(consumer, topic)]
