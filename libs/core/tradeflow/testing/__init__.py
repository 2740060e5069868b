"""Test seams: an in-memory bus with the interface of :mod:`tradeflow.bus`, and a test clock.

Unit tests of a service layer wire the service with these instead of Kafka and the wall clock
(docs/adr/0013-one-bus-api.md); backtests may use the bus the same way.
"""

from tradeflow.testing.clock import TestClock
from tradeflow.testing.memory_bus import (
    MemoryBroker,
    MemoryBus,
    MemoryConsumer,
    MemoryMembership,
    MemoryProducer,
    MemoryReader,
    StoredRecord,
)

__all__ = ["MemoryBroker", "MemoryBus", "MemoryConsumer", "MemoryMembership", "MemoryProducer", "MemoryReader",
           "StoredRecord", "TestClock"]
