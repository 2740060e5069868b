"""The one place that knows the bus: consumed records to the engine, signals and alerts to the producer.

One consumer group reads both ``md.candles.v1`` (keyed by market: each market's instances run
on the replica that owns its partition) and ``exec.fills.v1`` (stored, then applied on every
replica by the instance sync). The handler dispatches each batch by topic; the engine sees
records only through their ``key``, ``partition``, ``value`` and ``header()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from tradeflow.bus import Producer, Record, TopicPartition
from tradeflow.bus.alerts import AlertPublisher
from tradeflow.messages import Fill, Signal

from tradeflow_strategy.engine import FillHistory, StrategyEngine


class FillPort(FillHistory, Protocol):
    """The stored fills: the engine reads them (warm-ups), the handler stores the consumed ones
    (``adapters.fill_store.FillStore``)."""

    async def add(self, fills: Sequence[Fill]) -> None: ...


def record_handler(engine: StrategyEngine, fills: FillPort, on_fills: Callable[[], None], *, candles_topic: str,
                   fills_topic: str) -> Callable[[list[Record]], Awaitable[None]]:
    """The consumer's batch handler: fills stored first (positions; ``on_fills`` wakes the
    instance sync), then the candles decided."""

    async def handle(records: list[Record]) -> None:
        new_fills = [r.value for r in records if r.topic == fills_topic]
        if new_fills:
            await fills.add(new_fills)
            on_fills()
        candles = [r for r in records if r.topic == candles_topic] if new_fills else records
        if candles:
            await engine.handle_candles(candles)

    return handle


def revoked_handler(engine: StrategyEngine, candles_topic: str) -> Callable[[set[TopicPartition]], Awaitable[None]]:
    async def revoked(partitions: set[TopicPartition]) -> None:
        engine.on_partitions_revoked({tp.partition for tp in partitions if tp.topic == candles_topic})

    return revoked


class ProducerOutbound:
    """Signals to ``strategy.signals.v1`` (key: account id) and alerts to ``ops.alerts.v1``."""

    def __init__(self, producer: Producer, signals_topic: str, service_name: str) -> None:
        self._producer = producer
        self._topic = signals_topic
        self._alerts = AlertPublisher(producer, service_name)

    def publish(self, signal: Signal) -> Awaitable[object]:
        return self._producer.send(self._topic, signal.account_id, signal)

    def alert(self, kind: str, severity: str, message: str, labels: dict[str, str]) -> None:
        self._alerts.publish(kind, severity, message, labels)  # type: ignore[arg-type]
