"""Publishing the service's ticks: validate, send to md.ticks.v1 or its DLQ, count."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tradeflow.bus import DeadLetters, Producer
from tradeflow.codec import encode, message_headers
from tradeflow.marketdata import reason_code, tick_rejection_reason
from tradeflow.messages import Tick
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_TICKS, market_key


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    published: int  # acknowledged on md.ticks.v1
    rejected: int  # invalid, sent to md.ticks.v1.dlq
    failed: int  # not acknowledged by the broker (valid or not)
    last_event_ns: int | None  # ts_event of the last acknowledged tick of the batch
    first_error: BaseException | None = None


class TickPublisher:
    """Sends a batch of ticks keyed ``exchange:symbol``, in order, and waits for all acks together.

    Each tick is checked with ``tick_rejection_reason`` (future skew measured against its
    ``ts_recv``); an invalid one goes to ``md.ticks.v1.dlq`` with the reason instead. Broker
    failures do not raise: they are counted in the outcome, so the acknowledged part of a
    batch is still accounted for.
    """

    def __init__(self, producer: Producer, dead_letters: DeadLetters, telemetry: Telemetry) -> None:
        self._producer = producer
        self._dead_letters = dead_letters
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
        acks: list[asyncio.Future] = []
        rejection_reasons: list[str | None] = []
        for tick in ticks:
            key = market_key(tick.exchange, tick.symbol)
            reason = tick_rejection_reason(tick, now_ns=tick.ts_recv)
            rejection_reasons.append(reason)
            if reason is None:
                acks.append(self._producer.send(MD_TICKS, key, tick))
            else:
                acks.append(self._dead_letters.publish(
                    MD_TICKS.name, key.encode(), encode(tick), reason, headers=message_headers(Tick)
                ))
        results = await asyncio.gather(*acks, return_exceptions=True)

        published: Counter[str] = Counter()
        rejected = failed = 0
        last_event_ns = first_error = None
        for tick, reason, result in zip(ticks, rejection_reasons, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                first_error = first_error or result
            elif reason is None:
                published[tick.exchange] += 1
                last_event_ns = tick.ts_event
            else:
                rejected += 1
                self._rejected_total.labels(tick.exchange, reason_code(reason)).inc()
        for exchange, count in published.items():
            self._published_total.labels(exchange).inc(count)
        return PublishOutcome(published.total(), rejected, failed, last_event_ns, first_error)
