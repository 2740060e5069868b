"""The notifier on the bus: the one module that knows ``tradeflow.bus`` (ADR 0016).

The bus's consumer (``Bus.consumer``: Kafka, or the in-memory bus in unit tests) takes one batch handler for all four topics; the
handler dispatches on ``record.topic`` to the message type that topic carries, hands the
decoded messages with their ``traceparent`` to :meth:`Intake.accept`, and sends what the
intake rejected to ``<topic>.dlq`` with the reason (awaiting the DLQ's ack before the batch
counts as handled, so the offset is committed only past dead letters that are stored).
Moving to the redesigned bus (handlers per topic or message type) changes only this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from tradeflow.bus import Bus, DeadLetters, Record
from tradeflow.codec import HEADER_TRACEPARENT
from tradeflow.messages import Message
from tradeflow.topics import EXEC_FILLS, EXEC_ORDERS, OPS_ALERTS, RISK_EVENTS, TopicSpec

from tradeflow_notifier.intake import Incoming, Intake
from tradeflow_notifier.settings import NotifierSettings

MAX_BATCH = 500  # one database transaction per batch


def consumed_topics(settings: NotifierSettings) -> list[TopicSpec]:
    """The design's four topics under the configured names (tests use their own)."""
    return [dataclasses.replace(EXEC_ORDERS, name=settings.orders_topic),
            dataclasses.replace(EXEC_FILLS, name=settings.fills_topic),
            dataclasses.replace(RISK_EVENTS, name=settings.risk_topic),
            dataclasses.replace(OPS_ALERTS, name=settings.alerts_topic)]


class EventHandler:
    """Records of the consumed topics -> the intake; rejected ones -> their DLQ."""

    def __init__(self, topics: list[TopicSpec], intake: Intake, dead_letters: DeadLetters) -> None:
        self._message_type: dict[str, type[Message]] = {spec.name: spec.value_type for spec in topics}
        self._intake = intake
        self._dead_letters = dead_letters

    async def __call__(self, records: list[Record]) -> None:
        accepted: list[Record] = []
        batch: list[Incoming] = []
        dead: list[asyncio.Future] = []
        for record in records:
            expected = self._message_type.get(record.topic)
            if expected is None or not isinstance(record.value, expected):
                dead.append(self._dead_letters.send(record, f"unexpected: {type(record.value).__name__} on {record.topic}"))
                continue
            accepted.append(record)
            batch.append(Incoming(record.value, record.header(HEADER_TRACEPARENT)))
        result = await self._intake.accept(batch)
        dead.extend(self._dead_letters.send(accepted[index], reason) for index, reason in result.rejected)
        if dead:
            await asyncio.gather(*dead)


def create_event_consumer(settings: NotifierSettings, bus: Bus, intake: Intake, dead_letters: DeadLetters,
                          client_id: str) -> Any:
    topics = consumed_topics(settings)
    return bus.consumer(topics=topics, group_id=settings.consumer_group,
                        handler=EventHandler(topics, intake, dead_letters), dead_letters=dead_letters,
                        max_batch=MAX_BATCH, client_id=client_id)
