"""A consumed message as handlers see it: decoded value plus where it came from."""

from __future__ import annotations

from typing import Any

import msgspec

from tradeflow.bus.types import TopicPartition


class Record(msgspec.Struct, frozen=True):
    """One decoded message. ``raw_key``/``raw_value`` are the bytes as read (for the DLQ);
    ``traceparent`` the producer's trace context (the consumer finds it while reading headers).

    A msgspec Struct rather than a dataclass: the consumer builds one per message on the hot
    path (positionally, in field order) and a Struct is several times cheaper to construct.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    value: Any  # the decoded tradeflow.messages.Message of the topic's value type
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0
    raw_key: bytes | None = None
    raw_value: bytes | None = b""  # None: a tombstone (compacted topics delete a key with it)
    traceparent: bytes | None = None  # the W3C traceparent header it came with, if any

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace") if value is not None else None
        return None
