"""The topic registry: every topic of shared/design.md with its key, value type and config.

Partitions bound how far a consumer group scales out; the counts are defaults that an
operator can raise (never lower) for production through ``TRADEFLOW_TOPIC_PARTITIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tradeflow.messages import (
    AccountStatus,
    Alert,
    Candle,
    Fill,
    Message,
    Order,
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

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


WEEK_MS = str(7 * 24 * 3600 * 1000)

MD_TICKS = TopicSpec("md.ticks.v1", "exchange:symbol", Tick, 12, {"retention.ms": WEEK_MS})
MD_CANDLES = TopicSpec("md.candles.v1", "exchange:symbol", Candle, 12, {"retention.ms": WEEK_MS})
STRATEGY_SIGNALS = TopicSpec("strategy.signals.v1", "account id", Signal, 6)
RISK_ORDERS = TopicSpec("risk.orders.v1", "account id", Order, 6)
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


def market_key(exchange: str, symbol: str) -> str:
    return f"{exchange}:{symbol}"


def split_market_key(key: str) -> tuple[str, str]:
    exchange, _, symbol = key.partition(":")
    if not exchange or not symbol:
        raise ValueError(f"market key must be 'exchange:symbol', got {key!r}")
    return exchange, symbol
