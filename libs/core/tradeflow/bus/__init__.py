"""The message bus (see docs/adr/0002 and 0013): the one place that talks to the broker.

``from tradeflow.bus import ...`` is the public surface; no module outside this package imports
a Kafka client (a unit test checks it). Service code sees only these types:

- :class:`Producer` (sends, acks as futures of :class:`Delivery`), :class:`DeadLetters`;
- :class:`Consumer`: one consumer-group member over several topics, with one batch handler
  (the fast path) or :class:`Handlers` registered per topic or message type;
- :class:`TopicReader`: group-less reads from the beginning, the end, a time or offsets,
  until caught up (:meth:`~TopicReader.read`) or for ever, resuming after a broker restart
  (:meth:`~TopicReader.follow`);
- :class:`GroupMembership`: which partitions of a topic are "mine" in a group, without reading;
- :class:`Bus` / :class:`KafkaBus`: all of the above from one object, so a service is wired
  with a bus (``tradeflow.testing.MemoryBus`` in unit tests);
- topic admin in :mod:`tradeflow.bus.admin`; :class:`Record`, :class:`TopicPartition`,
  :func:`partition_for_key`.
"""

from tradeflow.bus.bus import Bus, KafkaBus
from tradeflow.bus.consumer import Consumer, Handler
from tradeflow.bus.dead_letters import DeadLetters, reason_code
from tradeflow.bus.handlers import Handlers
from tradeflow.bus.membership import GroupMembership
from tradeflow.bus.producer import Producer, ProducerStoppedError
from tradeflow.bus.reader import (
    FROM_BEGINNING,
    FROM_END,
    ReaderBatch,
    Start,
    TopicReader,
    from_offsets,
    from_time,
)
from tradeflow.bus.record import Record
from tradeflow.bus.types import Delivery, Offsets, TopicPartition, partition_for_key

__all__ = [
    "FROM_BEGINNING",
    "FROM_END",
    "Bus",
    "Consumer",
    "DeadLetters",
    "Delivery",
    "GroupMembership",
    "Handler",
    "Handlers",
    "KafkaBus",
    "Offsets",
    "Producer",
    "ProducerStoppedError",
    "ReaderBatch",
    "Record",
    "Start",
    "TopicPartition",
    "TopicReader",
    "from_offsets",
    "from_time",
    "partition_for_key",
    "reason_code",
]
