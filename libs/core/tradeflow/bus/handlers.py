"""Handlers by message type or by topic, for a consumer that reads several topics in one group.

A :class:`Consumer` calls one batch handler; :class:`Handlers` is such a handler built from
registrations, so a service that reads five topics writes one function per topic (or per
message type) instead of a dispatch loop::

    handlers = (Handlers()
                .on(Signal, risk.on_signal)                 # one record at a time
                .on_batch(MD_TICKS, risk.on_ticks))         # the batch's records of a topic
    Consumer(..., topics=[SIGNALS, MD_TICKS], handler=handlers)

A record goes to its topic's handler when there is one, else to its value type's. Per-record
handlers see the records in consumption order (so per-key order holds); a batch handler gets
the records of its topic or type in that order, once per consumed batch. If any handler
raises, the whole batch is redelivered (the handlers must tolerate seeing a record twice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from tradeflow.bus.record import Record
from tradeflow.messages import Message
from tradeflow.topics import TopicSpec

RecordHandler = Callable[[Record], Awaitable[None]]
BatchHandler = Callable[[list[Record]], Awaitable[None]]
Target = TopicSpec | str | type[Message]


class Handlers:
    """A batch handler compiled from per-topic and per-type registrations."""

    def __init__(self) -> None:
        self._by_topic: dict[str, tuple[bool, Callable]] = {}
        self._by_type: dict[type, tuple[bool, Callable]] = {}

    def on(self, target: Target, handler: RecordHandler) -> Handlers:
        """``handler(record)`` for each record of ``target`` (a topic, or a message type)."""
        return self._register(target, handler, batch=False)

    def on_batch(self, target: Target, handler: BatchHandler) -> Handlers:
        """``handler(records)`` once per consumed batch with the records of ``target``."""
        return self._register(target, handler, batch=True)

    def _register(self, target: Target, handler: Callable, *, batch: bool) -> Handlers:
        if isinstance(target, type):
            table, key = self._by_type, target
        else:
            table, key = self._by_topic, target.name if isinstance(target, TopicSpec) else target
        if key in table:
            raise ValueError(f"a handler for {getattr(key, '__name__', key)} is registered already")
        table[key] = (batch, handler)
        return self

    def check_covers(self, specs: Iterable[TopicSpec]) -> None:
        """ValueError naming the topics that no registration handles (at construction, not at
        the first record)."""
        missing = [s.name for s in specs if s.name not in self._by_topic and s.value_type not in self._by_type]
        if missing:
            raise ValueError(f"no handler for the records of {', '.join(missing)}")

    def _handler_of(self, record: Record) -> tuple[bool, Callable]:
        entry = self._by_topic.get(record.topic)
        if entry is None:
            entry = self._by_type.get(type(record.value))
        if entry is None:
            raise LookupError(f"no handler for {record.topic} ({type(record.value).__name__})")
        return entry

    async def __call__(self, records: list[Record]) -> None:
        # Group the batch handlers' records first, then run everything in first-seen order.
        plan: list[tuple[bool, Callable, list[Record] | Record]] = []
        batches: dict[int, list[Record]] = {}
        for record in records:
            batch, handler = self._handler_of(record)
            if batch:
                group = batches.get(id(handler))
                if group is None:
                    group = batches[id(handler)] = []
                    plan.append((True, handler, group))
                group.append(record)
            else:
                plan.append((False, handler, record))
        for _, handler, argument in plan:
            await handler(argument)
