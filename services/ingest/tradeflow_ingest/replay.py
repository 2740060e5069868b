"""Publish a replay file (CSV) to md.ticks.v1 as fast as the broker takes it.

Behind ``tradeflow replay FILE``. The file streams through (one line at a time; at most two
batches of unacknowledged ticks are held), so files of millions of lines run in bounded memory.
Bad lines are logged with their line numbers and reported; the rest of the file is published.
They do not go to the DLQ: a malformed line is not a message, and the operator running the
replay gets the report directly. Ticks keep file order per ``exchange:symbol`` key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from opentelemetry.trace import SpanKind, Tracer
from tradeflow.admin import ensure_topics
from tradeflow.bus import Producer
from tradeflow.bus.trace_context import span_headers
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_TICKS, market_key
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow.trades.replay_csv import RejectedLine, parse_replay_lines

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 10_000  # ticks enqueued before their acks are awaited together (2 batches in flight)
MAX_REPORTED_SKIPS = 10_000  # line numbers kept in the report; the count is always exact


@dataclass(frozen=True)
class ReplayReport:
    published: int
    skipped: list[tuple[int, str]]  # (1-based line number, reason), the first MAX_REPORTED_SKIPS
    skipped_not_listed: int = 0  # skipped lines past MAX_REPORTED_SKIPS (bounded memory)
    topic: str = MD_TICKS.name

    @property
    def skipped_total(self) -> int:
        return len(self.skipped) + self.skipped_not_listed

    def summary(self) -> str:
        """Human-readable result: the counts, then one line per skipped line."""
        lines = [f"published {self.published} ticks to {self.topic}; skipped {self.skipped_total} lines"]
        lines += [f"  line {line_no}: {reason}" for line_no, reason in self.skipped]
        if self.skipped_not_listed:
            lines.append(f"  ... and {self.skipped_not_listed} more skipped lines")
        return "\n".join(lines)


async def publish_replay_file(
    path: str | Path,
    settings: CommonSettings,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    telemetry: Telemetry | None = None,
    topic: str = MD_TICKS.name,
) -> ReplayReport:
    """Publish every valid line of ``path``; return when the broker has acknowledged all of them.

    Raises ``ReplayFileError`` (before anything is published) when the header is missing or
    wrong, ``OSError`` when the file cannot be read, and the producer's error when the broker
    refuses a batch (ticks of earlier batches stay published).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    own_telemetry = telemetry is None
    telemetry = telemetry or Telemetry("replay", settings)
    try:
        with _open_replay_file(path) as lines:
            items = parse_replay_lines(lines, ReceiveClock())
            first = next(items, None)  # reads and checks the header before connecting
            await ensure_topics(settings, [dataclasses.replace(MD_TICKS, name=topic)])
            producer = Producer(settings, telemetry, client_id=f"{settings.kafka_client_id}-replay")
            await producer.start()
            try:
                all_items = itertools.chain([] if first is None else [first], items)
                tracer = telemetry.tracer if telemetry.tracing else None
                return await _publish(producer, all_items, batch_size, tracer, topic)
            finally:
                await producer.stop()
    finally:
        if own_telemetry:
            telemetry.shutdown()


def _open_replay_file(path: str | Path) -> TextIO:
    # Plain buffered reads in the event loop: each takes microseconds on a local file and the
    # replay process has nothing else to serve; a thread hop per line would cost far more.
    return open(path, newline="", encoding="utf-8")  # newline="": the csv module handles line ends


async def _publish(producer: Producer, items: Iterable[Tick | RejectedLine], batch_size: int,
                   tracer: Tracer | None = None, topic: str = MD_TICKS.name) -> ReplayReport:
    """Send in batches; with a ``tracer``, each batch's ticks carry the traceparent of a span of
    their own (one per batch, as ingest's feeds do): where their trades' traces begin."""
    published = 0
    span = None
    headers: list[tuple[str, bytes]] | None = None
    skipped: list[tuple[int, str]] = []
    skipped_not_listed = 0
    acks: list[asyncio.Future] = []
    in_flight: asyncio.Future | None = None  # the previous batch's acks, awaited together
    for item in items:
        if type(item) is Tick:
            if tracer is not None and span is None:
                span = tracer.start_span("ingest publish", kind=SpanKind.PRODUCER, attributes={
                    "messaging.system": "kafka", "messaging.destination.name": topic,
                    "tradeflow.exchange": item.exchange, "tradeflow.first_trade_id": item.trade_id})
                headers = span_headers(span)
            acks.append(producer.send(topic, market_key(item.exchange, item.symbol), item, headers))
            if len(acks) >= batch_size:
                span = _end_batch_span(span, len(acks))
                # Two batches in flight: the broker acknowledges one while the next is parsed.
                if in_flight is not None:
                    published += len(await in_flight)
                in_flight = asyncio.gather(*acks)
                acks = []
            continue
        if len(skipped) < MAX_REPORTED_SKIPS:
            skipped.append((item.line_no, item.reason))
            log.warning("replay: skipped line %d: %s", item.line_no, item.reason)
        else:
            skipped_not_listed += 1
    span = _end_batch_span(span, len(acks))
    if in_flight is not None:
        published += len(await in_flight)
    published += len(await asyncio.gather(*acks))
    report = ReplayReport(published, skipped, skipped_not_listed, topic)
    log.info("replay: published %d ticks, skipped %d lines", published, report.skipped_total)
    return report


def _end_batch_span(span, count: int) -> None:
    if span is not None:
        span.set_attribute("messaging.batch.message_count", count)
        span.end()
    return None
