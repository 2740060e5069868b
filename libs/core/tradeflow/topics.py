"""The topic registry: every topic of shared/design.md with its key, value type and config.

Partitions bound how far a consumer group scales out; the counts are defaults that an
operator can raise (never lower) for production through ``TRADEFLOW_TOPIC_PARTITIONS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator

from tradeflow.codec import HEADER_SCHEMA

# Market keys (exchange:symbol) and their validation live in tradeflow.markets; re-exported here.
from tradeflow.markets import market_key, split_market_key  # noqa: F401
from tradeflow.messages import (
    AccountStatus,
    Alert,
    Candle,
    Fill,
    Message,
    Order,
    OrderAmendment,
    OrderEvent,
    RiskEvent,
    Signal,
    Subscription,
    Tick,
)

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str  # what the key is, for humans and `tradeflow topics describe`
    value_type: type[Message]
    partitions: int = 12
    config: dict[str, str] = field(default_factory=dict)
    # Further value types the topic carries, told apart by the ``schema`` header (risk.orders.v1
    # carries OrderAmendment next to Order); a consumer decodes each record as its header says.
    other_types: tuple[type[Message], ...] = ()

    def type_for(self, schema: bytes | None) -> type[Message] | None:
        """The value type a record with this ``schema`` header decodes as (no header: the main
        one); None when the topic does not carry that schema."""
        if schema is None or schema == self.value_type.SCHEMA.encode():
            return self.value_type
        return next((t for t in self.other_types if t.SCHEMA.encode() == schema), None)

    def value_type_of(self, headers) -> type[Message]:
        """The value type of a record with ``headers`` (``(name, bytes)`` pairs): as its schema
        header says where the topic carries several types, else the topic's type."""
        if not self.other_types:
            return self.value_type
        schema = next((value for name, value in headers or () if name == HEADER_SCHEMA), None)
        return self.type_for(schema) or self.value_type

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


WEEK_MS = str(7 * 24 * 3600 * 1000)

MD_TICKS = TopicSpec("md.ticks.v1", "exchange:symbol", Tick, 12, {"retention.ms": WEEK_MS})
MD_CANDLES = TopicSpec("md.candles.v1", "exchange:symbol", Candle, 12, {"retention.ms": WEEK_MS})
STRATEGY_SIGNALS = TopicSpec("strategy.signals.v1", "account id", Signal, 6)
RISK_ORDERS = TopicSpec("risk.orders.v1", "account id", Order, 6, other_types=(OrderAmendment,))
RISK_EVENTS = TopicSpec("risk.events.v1", "account id", RiskEvent, 6)
EXEC_ORDERS = TopicSpec("exec.orders.v1", "account id", OrderEvent, 6)
EXEC_FILLS = TopicSpec("exec.fills.v1", "account id", Fill, 6)
# Live accounts' reconciliation status (ADR 0022): execution to risk.
EXEC_ACCOUNTS = TopicSpec("exec.accounts.v1", "account id", AccountStatus, 6)
OPS_ALERTS = TopicSpec("ops.alerts.v1", "service name", Alert, 3)
# Ingest's subscriptions (ADR 0009): compacted, read whole by every ingest replica; its
# partitions are what the replicas' consumer group divides, so 12 bounds ingest's scale-out.
INGEST_SUBSCRIPTIONS = TopicSpec(
    "ingest.subscriptions.v1", "exchange:symbol", Subscription, 12, {"cleanup.policy": "compact"}
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    MD_TICKS,
    MD_CANDLES,
    STRATEGY_SIGNALS,
    RISK_ORDERS,
    RISK_EVENTS,
    EXEC_ORDERS,
    EXEC_FILLS,
    EXEC_ACCOUNTS,
    OPS_ALERTS,
    INGEST_SUBSCRIPTIONS,
)

_BY_NAME = {t.name: t for t in ALL_TOPICS}


def topic_by_name(name: str) -> TopicSpec:
    """The spec of a topic or of its DLQ (a DLQ carries the original's value type)."""
    base = name.removesuffix(DLQ_SUFFIX)
    try:
        return _BY_NAME[base]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(sorted(_BY_NAME))}") from None


TOPIC_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"
_TOPIC_NAME = re.compile(TOPIC_NAME_PATTERN)


def check_topic_name(value: str) -> str:
    """``value`` when it is a Kafka topic name; ValueError saying what one is otherwise."""
    if not _TOPIC_NAME.fullmatch(value):
        raise ValueError("must be a Kafka topic name: 1-249 of letters, digits, '.', '_' and '-'")
    return value


# A settings field naming a topic (every service's topics can be renamed, e.g. by tests).
TopicName = Annotated[str, AfterValidator(check_topic_name)]
