"""The one place that knows risk's topics: consumed records by topic to the service layer, and the
offsets the two consumers may commit.

- Trading topics (strategy.signals.v1, exec.orders.v1, exec.fills.v1, exec.accounts.v1; one
  consumer group, partitioned by account): a batch becomes :meth:`RiskService.on_trading` (a live
  account's reconciliation status from exec.accounts.v1 is applied before the batch's signals). A partition's commit
  stops at its first signal still waiting for an order of its account to settle, so a restart
  reads it again (its decision is then made, or replayed from the database).
- Market data (md.candles.v1, md.ticks.v1; a group per replica, since every replica needs every
  symbol): a batch becomes :meth:`RiskService.on_market`. Its offsets are committed only up to
  where the marks and trailing-stop watermarks were last stored (:class:`MarketStateSaver`), so
  a restart rebuilds them exactly.

Undecodable bytes never get here: the consumer sends them to the topic's DLQ. A trade or candle
with impossible numbers (no positive finite price) is ignored and counted: the candle-builder
already dead-letters it on its own topic.
"""

from __future__ import annotations

import asyncio
import logging
import math

from tradeflow.bus import Record, TopicPartition
from tradeflow.codec import HEADER_TRACEPARENT
from tradeflow.marketdata import reason_code, tick_rejection_reason
from tradeflow.messages import Candle, Tick
from tradeflow.telemetry import Telemetry

from tradeflow_risk.service import PendingSignal, RiskService

log = logging.getLogger(__name__)


def _candle_problem(candle: Candle) -> str | None:
    values = (candle.open, candle.high, candle.low, candle.close)
    if not all(isinstance(v, float | int) and math.isfinite(v) and v > 0 for v in values):
        return "invalid_price"
    return None


class _Offsets:
    """Next offset per partition after the records handled so far."""

    def __init__(self) -> None:
        self.next: dict[TopicPartition, int] = {}

    def advance(self, records: list[Record]) -> None:
        for record in records:
            self.next[record.topic_partition] = record.offset + 1

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.next.pop(tp, None)


class TradingDispatch:
    """Handler of the trading consumer."""

    def __init__(self, service: RiskService, *, signals_topic: str, orders_topic: str, fills_topic: str,
                 accounts_topic: str = "") -> None:
        self._service = service
        self._signals, self._orders, self._fills = signals_topic, orders_topic, fills_topic
        self._accounts = accounts_topic
        self._offsets = _Offsets()

    async def handle(self, records: list[Record]) -> None:
        fills, events, signals, statuses = [], [], [], []
        for record in records:
            topic = record.topic
            if topic == self._fills:
                fills.append(record.value)
            elif topic == self._orders:
                events.append(record.value)
            elif topic == self._signals:
                signals.append(PendingSignal(record.value, topic, record.partition, record.offset,
                                             record.header(HEADER_TRACEPARENT)))
            elif topic == self._accounts:
                statuses.append(record.value)
        await self._service.on_trading(fills, events, signals, statuses)
        self._offsets.advance(records)

    def committable_offsets(self) -> dict[TopicPartition, int]:
        held = self._service.held_offsets()
        return {tp: min(offset, held.get((tp.topic, tp.partition), offset))
                for tp, offset in self._offsets.next.items()}

    async def on_revoked(self, partitions: set[TopicPartition]) -> None:
        self._service.forget_partitions({(tp.topic, tp.partition) for tp in partitions})
        self._offsets.forget(partitions)


class MarketDataDispatch:
    """Handler of the market-data consumer."""

    def __init__(self, service: RiskService, telemetry: Telemetry, *, candles_topic: str, ticks_topic: str) -> None:
        self._service = service
        self._candles, self._ticks = candles_topic, ticks_topic
        self._offsets = _Offsets()
        self.saved: dict[TopicPartition, int] = {}  # offsets whose effects are stored
        self._ignored = telemetry.counter("tradeflow_risk_market_data_ignored_total",
                                          "Trades and candles risk ignored (impossible numbers)", ("topic", "reason"))

    async def handle(self, records: list[Record]) -> None:
        candles: list[Candle] = []
        ticks: list[Tick] = []
        for record in records:
            if record.topic == self._ticks:
                problem = tick_rejection_reason(record.value, now_ns=record.value.ts_event)
                if problem is None:
                    ticks.append(record.value)
                else:
                    self._ignored.labels(record.topic, reason_code(problem)).inc()
            elif record.topic == self._candles:
                problem = _candle_problem(record.value)
                if problem is None:
                    candles.append(record.value)
                else:
                    self._ignored.labels(record.topic, problem).inc()
        await self._service.on_market(candles, ticks)
        self._offsets.advance(records)

    def committable_offsets(self) -> dict[TopicPartition, int]:
        return dict(self.saved)

    async def on_revoked(self, partitions: set[TopicPartition]) -> None:
        self._offsets.forget(partitions)
        for tp in partitions:
            self.saved.pop(tp, None)

    def handled_offsets(self) -> dict[TopicPartition, int]:
        return dict(self._offsets.next)


class MarketStateSaver:
    """A service Component: stores marks, watermarks and equity peaks every ``interval_s``, then
    lets the market-data consumer commit up to the records handled before that save."""

    name = "market-state-saver"

    def __init__(self, service: RiskService, dispatch: MarketDataDispatch, interval_s: float) -> None:
        self._service = service
        self._dispatch = dispatch
        self._interval_s = interval_s
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.save()

    async def save(self) -> None:
        handled = self._dispatch.handled_offsets()
        await self._service.save_market_state()
        self._dispatch.saved.update(handled)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.save()
            except Exception:  # noqa: BLE001 - the next round saves it; commits wait meanwhile
                log.exception("storing the market state failed; retrying")
