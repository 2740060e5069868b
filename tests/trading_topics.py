"""Reading the trading topics back in tests: every message of a topic from the beginning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.codec import decode


async def read_topic(bootstrap: str, topic: str, value_type: type, until: Callable[[list], bool],
                     timeout_s: float = 30.0) -> list:
    """Decoded messages of ``topic`` (all partitions, each in order) once ``until(messages)`` holds.

    Fails the test with what was read when the condition does not hold within ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        partitions: list[TopicPartition] = []
        while not partitions:
            await consumer.topics()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not partitions:
                assert time.monotonic() < deadline, f"topic {topic} does not exist"
                await asyncio.sleep(0.2)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        messages: list = []
        while not until(messages):
            assert time.monotonic() < deadline, f"timed out reading {topic}: {len(messages)} messages: {messages[-5:]}"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                messages.extend(decode(value_type, r.value) if value_type is not bytes else r for r in records)
        return messages
    finally:
        await consumer.stop()


def checked_by_key(messages: list, key) -> dict:
    """One message per key; a message published again (after a crash) must be identical."""
    unique: dict = {}
    for message in messages:
        k = key(message)
        assert unique.setdefault(k, message) == message, f"two different messages for {k}"
    return unique
