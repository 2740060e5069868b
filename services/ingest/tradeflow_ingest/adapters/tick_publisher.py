"""Publishing the service's ticks: validate, send to md.ticks.v1 or its DLQ, count."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from opentelemetry.trace import SpanKind
from tradeflow.bus import DeadLetters, Producer
from tradeflow.bus.alerts import AlertPublisher
from tradeflow.codec import encode, message_headers
from tradeflow.marketdata import reason_code, tick_rejection_reason
from tradeflow.messages import Alert, Tick
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_TICKS, OPS_ALERTS, market_key

from tradeflow_ingest.domain.price_guard import PriceGuard

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    published: int  # acknowledged on md.ticks.v1
    rejected: int  # invalid, sent to md.ticks.v1.dlq
    failed: int  # not acknowledged by the broker (valid or not)
    last_event_ns: int | None  # ts_event of the last acknowledged tick of the batch
    first_error: BaseException | None = None
    published_by_symbol: dict[str, int] = field(default_factory=dict)
    rejected_by_symbol: dict[str, int] = field(default_factory=dict)


class TickPublisher:
    """Sends a batch of ticks keyed ``exchange:symbol``, in order, and waits for all acks together.

    Each tick is checked with ``tick_rejection_reason`` (future skew measured against its
    ``ts_recv``); an invalid one goes to ``md.ticks.v1.dlq`` with the reason instead. With a
    :class:`PriceGuard`, a valid tick too far from its symbol's last accepted price is held
    back the same way and also raised as an :class:`Alert` on ``ops.alerts.v1``. Broker
    failures do not raise: they are counted in the outcome, so the acknowledged part of a
    batch is still accounted for.
    """

    def __init__(
        self,
        producer: Producer,
        dead_letters: DeadLetters,
        telemetry: Telemetry,
        *,
        price_guard: PriceGuard | None = None,
        service_name: str = "ingest",
    ) -> None:
        self._producer = producer
        self._dead_letters = dead_letters
        self._price_guard = price_guard
        self._service_name = service_name
        # One span per published batch (not per trade: this is the hot path), only where spans go
        # somewhere. Its traceparent is on every tick of the batch: where a trade's trace begins.
        self._tracer = telemetry.tracer if telemetry.tracing else None
        self._published_total = telemetry.counter(
            "tradeflow_ingest_ticks_published_total",
            "Ticks published to md.ticks.v1 (acknowledged by the broker)",
            ("exchange",),
        )
        self._rejected_total = telemetry.counter(
            "tradeflow_ingest_ticks_rejected_total",
            "Ticks refused as invalid and sent to md.ticks.v1.dlq",
            ("exchange", "reason"),
        )

    async def publish(self, ticks: Sequence[Tick]) -> PublishOutcome:
        if self._tracer is None or not ticks:
            span = contextlib.nullcontext()
        else:
            span = self._tracer.start_as_current_span(
                "ingest publish", kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "kafka", "messaging.destination.name": MD_TICKS.name,
                            "messaging.batch.message_count": len(ticks), "tradeflow.exchange": ticks[0].exchange,
                            "tradeflow.first_trade_id": ticks[0].trade_id,
                            "tradeflow.last_trade_id": ticks[-1].trade_id})
        with span:
            return await self._publish(ticks)

    async def _publish(self, ticks: Sequence[Tick]) -> PublishOutcome:
        rejection_reasons: list[str | None] = []
        valid: list[tuple[str, Tick]] = []
        dead: list[asyncio.Future] = []
        alert_acks: list[asyncio.Future] = []
        for tick in ticks:
            key = market_key(tick.exchange, tick.symbol)
            reason = tick_rejection_reason(tick, now_ns=tick.ts_recv)
            if reason is None and self._price_guard is not None:
                reason = self._price_guard.check(tick.exchange, tick.symbol, tick.price)
                if reason is not None:
                    alert_acks.append(self._producer.send(OPS_ALERTS, self._service_name, self._alert(tick, reason)))
            rejection_reasons.append(reason)
            if reason is None:
                valid.append((key, tick))
            else:
                dead.append(self._dead_letters.publish(
                    MD_TICKS.name, key.encode(), encode(tick), reason, headers=message_headers(Tick)
                ))
        sent = self._producer.send_all(MD_TICKS, valid)  # all at once; the acks are awaited together
        sent_results, *results = await asyncio.gather(sent, *dead, *alert_acks, return_exceptions=True)
        if isinstance(sent_results, BaseException):  # cancelled: none of them counts as acknowledged
            sent_results = [sent_results] * len(valid)
        for result in results[len(dead):]:
            if isinstance(result, BaseException):  # the tick itself is in the DLQ either way
                log.error("an alert was not acknowledged: %s", result)
        valid_results = iter(sent_results)
        dead_results = iter(results[:len(dead)])
        results = [next(valid_results) if reason is None else next(dead_results) for reason in rejection_reasons]

        published: Counter[str] = Counter()
        published_by_symbol: Counter[str] = Counter()
        rejected_by_symbol: Counter[str] = Counter()
        rejected = failed = 0
        last_event_ns = first_error = None
        for tick, reason, result in zip(ticks, rejection_reasons, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                first_error = first_error or result
            elif reason is None:
                published[tick.exchange] += 1
                published_by_symbol[tick.symbol] += 1
                last_event_ns = tick.ts_event
            else:
                rejected += 1
                rejected_by_symbol[tick.symbol] += 1
                self._rejected_total.labels(tick.exchange, reason_code(reason)).inc()
        for exchange, count in published.items():
            self._published_total.labels(exchange).inc(count)
        return PublishOutcome(published.total(), rejected, failed, last_event_ns, first_error,
                              dict(published_by_symbol), dict(rejected_by_symbol))

    def alert_publisher(self, *, interval_s: float | None = None,
                        monotonic: Callable[[], float] = time.monotonic) -> AlertPublisher:
        """This service's operational alerts on ops.alerts.v1 through the same producer."""
        return AlertPublisher(self._producer, self._service_name, interval_s=interval_s, monotonic=monotonic)

    def _alert(self, tick: Tick, reason: str) -> Alert:
        return Alert(
            service=self._service_name,
            severity="warning",
            kind=reason_code(reason),
            message=f"{tick.exchange} {tick.symbol} trade {tick.trade_id} held back: {reason}",
            labels={"exchange": tick.exchange, "symbol": tick.symbol, "trade_id": tick.trade_id},
            ts_event=time.time_ns(),
        )


def _log_alert_failure(ack: asyncio.Future) -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.error("an alert was not acknowledged: %s", ack.exception())
