"""The message bus: Kafka producer, batch consumer, dead letters (see docs/adr/0002).

``from tradeflow.bus import Producer, Consumer, Record, DeadLetters`` is the public surface.
"""

from aiokafka import TopicPartition

from tradeflow.bus.consumer import Consumer, Handler
from tradeflow.bus.dead_letters import DeadLetters, reason_code
from tradeflow.bus.producer import Producer, ProducerStoppedError
from tradeflow.bus.record import Record

__all__ = [
    "Consumer",
    "DeadLetters",
    "Handler",
    "Producer",
    "ProducerStoppedError",
    "Record",
    "TopicPartition",
    "reason_code",
]
