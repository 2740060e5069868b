"""The bus as one object a service is wired with: Kafka in production, memory in unit tests.

A service's wiring function takes a :class:`Bus` and asks it for what it needs; it never
constructs a Kafka client itself. :class:`KafkaBus` builds the real ones from the settings;
``tradeflow.testing.MemoryBus`` builds in-memory ones with the same interface.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tradeflow.bus.admin import TopicsExist
from tradeflow.bus.consumer import Consumer, Handler
from tradeflow.bus.dead_letters import DeadLetters
from tradeflow.bus.handlers import Handlers
from tradeflow.bus.membership import GroupMembership, PartitionsCallback
from tradeflow.bus.producer import Producer
from tradeflow.bus.reader import FROM_BEGINNING, Start, TopicReader, Topics
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import TopicSpec


class Bus(Protocol):
    """What a service asks the bus for. Options of :meth:`consumer` and :meth:`reader` are the
    keyword arguments of :class:`Consumer` and :class:`TopicReader`."""

    telemetry: Telemetry

    def producer(self, *, client_id: str | None = None, linger_ms: int | None = None) -> Producer: ...

    def dead_letters(self, producer: Producer) -> DeadLetters: ...

    def consumer(self, *, topics: Sequence[TopicSpec], group_id: str, handler: Handler | Handlers,
                 dead_letters: DeadLetters, **options: Any) -> Consumer: ...

    def reader(self, topics: Topics, *, client_id: str, start: Start | Mapping[str, Start] = FROM_BEGINNING,
               **options: Any) -> TopicReader: ...

    def membership(self, *, topic: str, group_id: str, client_id: str, on_assigned: PartitionsCallback,
                   on_revoked: PartitionsCallback) -> GroupMembership: ...

    def topics_exist(self, specs: Sequence[TopicSpec], *, wait_s: float = 0.0) -> Any: ...


class KafkaBus:
    """The bus on a Kafka-protocol broker (Kafka, Tansu), from the service's settings."""

    def __init__(self, settings: CommonSettings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry

    def producer(self, *, client_id: str | None = None, linger_ms: int | None = None) -> Producer:
        """``linger_ms`` overrides the settings' producer linger (None: the setting)."""
        return Producer(self.settings, self.telemetry, client_id=client_id, linger_ms=linger_ms)

    def dead_letters(self, producer: Producer) -> DeadLetters:
        return DeadLetters(producer, self.telemetry)

    def consumer(self, *, topics: Sequence[TopicSpec], group_id: str, handler: Handler | Handlers,
                 dead_letters: DeadLetters, **options: Any) -> Consumer:
        return Consumer(self.settings, self.telemetry, topics=topics, group_id=group_id, handler=handler,
                        dead_letters=dead_letters, **options)

    def reader(self, topics: Topics, *, client_id: str, start: Start | Mapping[str, Start] = FROM_BEGINNING,
               **options: Any) -> TopicReader:
        return TopicReader(self.settings, topics, client_id=client_id, start=start, **options)

    def membership(self, *, topic: str, group_id: str, client_id: str, on_assigned: PartitionsCallback,
                   on_revoked: PartitionsCallback) -> GroupMembership:
        return GroupMembership(self.settings, topic=topic, group_id=group_id, client_id=client_id,
                               on_assigned=on_assigned, on_revoked=on_revoked)

    def topics_exist(self, specs: Sequence[TopicSpec], *, wait_s: float = 0.0) -> TopicsExist:
        return TopicsExist(self.settings, specs, wait_s=wait_s)
