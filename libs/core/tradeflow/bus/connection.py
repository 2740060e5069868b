"""How to reach the broker: client options from settings, and the reconnect backoff."""

from __future__ import annotations

import asyncio
import random

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.helpers import create_ssl_context

from tradeflow.settings import ENV_PREFIX, CommonSettings, ConfigurationError


def kafka_client_options(settings: CommonSettings) -> dict[str, object]:
    """Keyword arguments shared by aiokafka producers, consumers and admin clients."""
    protocol = settings.kafka_security_protocol
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()  # system CA bundle
    if protocol.startswith("SASL_"):
        missing = [
            f"{ENV_PREFIX}{name.upper()}"
            for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
            if not getattr(settings, name)
        ]
        if missing:
            raise ConfigurationError(
                f"invalid configuration:\n  {', '.join(missing)}: required when "
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is {protocol}"
            )
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


class Backoff:
    """Capped exponential backoff with jitter, so a fleet of replicas does not retry in step."""

    def __init__(self, initial_s: float = 0.2, maximum_s: float = 30.0) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum_s, self.initial_s * (2**self.attempt))
        self.attempt += 1
        return ceiling * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


async def sleep_unless(event: asyncio.Event, delay_s: float) -> bool:
    """Sleep ``delay_s`` or until ``event`` is set; True when the event was set."""
    try:
        await asyncio.wait_for(event.wait(), delay_s)
        return True
    except TimeoutError:
        return event.is_set()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, in order; the metadata is refreshed once when the consumer
    does not know the topic yet (it may have just been created). LookupError when it has none."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic} has no partitions (yet)")
    return [TopicPartition(topic, p) for p in sorted(partitions)]
