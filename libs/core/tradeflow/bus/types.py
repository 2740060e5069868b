"""The bus's own value types: what service code sees instead of any Kafka client's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from aiokafka.partitioner import DefaultPartitioner


class TopicPartition(NamedTuple):
    """One partition of one topic (a plain tuple: hashable, comparable, cheap)."""

    topic: str
    partition: int


Offsets = dict[TopicPartition, int]


class Delivery(NamedTuple):
    """Where the broker stored a sent message (what a send's future resolves with)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int = -1


_DEFAULT_PARTITIONER = DefaultPartitioner()


def partition_for_key(key: str | bytes, partitions: Sequence[int]) -> int:
    """The partition the producers choose for ``key`` (murmur2, the Java client's rule), so a
    reader can find a key's records without reading every partition."""
    raw = key.encode() if isinstance(key, str) else key
    ordered = sorted(partitions)
    return _DEFAULT_PARTITIONER(raw, ordered, ordered)
