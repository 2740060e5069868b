"""The dead-letter convention: a message that cannot be processed goes to ``<topic>.dlq``.

The DLQ record carries the ORIGINAL key and value bytes (so it can be inspected or replayed
as is), the original headers, and headers saying why and where it came from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from tradeflow.bus.producer import Producer
from tradeflow.bus.record import Record
from tradeflow.bus.types import Delivery
from tradeflow.codec import (
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from tradeflow.telemetry import Telemetry
from tradeflow.topics import DLQ_SUFFIX

_DLQ_HEADERS = frozenset({HEADER_ERROR_REASON, HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET})
MAX_REASON_BYTES = 2048


class RawRecord(Protocol):
    """A record as fetched, before decoding (a Kafka client's, or the in-memory broker's)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int


def reason_code(reason: str) -> str:
    """The stable code before the first ':' of a reason (a metric label, so kept short)."""
    return reason.split(":", 1)[0].strip()[:64] or "unspecified"


class DeadLetters:
    """Publishes unprocessable messages to their topic's DLQ and counts them by reason code."""

    def __init__(self, producer: Producer, telemetry: Telemetry) -> None:
        self._producer = producer
        self._count = telemetry.counter(
            "tradeflow_dead_letters_total", "Messages sent to a dead-letter topic", ("topic", "reason")
        )

    def send(self, record_or_raw: Record | RawRecord, reason: str) -> asyncio.Future[Delivery]:
        """DLQ a consumed message (decoded Record or a raw fetched record).

        ``reason`` is ``code: details``, e.g. ``undecodable: Expected `object`, got `int```.
        Returns the ack future (the consumer awaits it before committing past the record).
        """
        if isinstance(record_or_raw, Record):
            key, value = record_or_raw.raw_key, record_or_raw.raw_value
        else:
            key, value = record_or_raw.key, record_or_raw.value
        return self.publish(
            record_or_raw.topic,
            key,
            value if value is not None else b"",
            reason,
            headers=record_or_raw.headers,
            partition=record_or_raw.partition,
            offset=record_or_raw.offset,
        )

    def publish(
        self,
        source_topic: str,
        key: bytes | None,
        value: bytes,
        reason: str,
        *,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
        offset: int | None = None,
    ) -> asyncio.Future[Delivery]:
        """DLQ bytes that did not come from a consumed record (e.g. a bad tick from a feed)."""
        dlq_headers = [(k, v) for k, v in headers if k not in _DLQ_HEADERS]
        dlq_headers.append((HEADER_ERROR_REASON, reason.encode("utf-8", "replace")[:MAX_REASON_BYTES]))
        dlq_headers.append((HEADER_SOURCE_TOPIC, source_topic.encode()))
        if partition is not None:
            dlq_headers.append((HEADER_SOURCE_PARTITION, str(partition).encode()))
        if offset is not None:
            dlq_headers.append((HEADER_SOURCE_OFFSET, str(offset).encode()))
        self._count.labels(source_topic, reason_code(reason)).inc()
        return self._producer.send_raw(source_topic + DLQ_SUFFIX, key, value, dlq_headers)
