"""Wiring of the candle-builder: settings -> components -> FastAPI app (``tradeflow run candle-builder``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from tradeflow.bus import Bus, KafkaBus
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.service import (
    DemoContext,
    ReadinessCheck,
    ServiceDefinition,
    ServiceDemo,
    broker_check,
    consumer_check,
    create_wired_app,
)
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_CANDLES, MD_TICKS, OPS_ALERTS, TopicSpec

from tradeflow_candle_builder.adapters.candle_feed import CandleFeed
from tradeflow_candle_builder.adapters.candle_store import REQUIRED_REVISION, CandleStore
from tradeflow_candle_builder.adapters.emission_marks import EmissionMarks
from tradeflow_candle_builder.adapters.instrument_store import InstrumentStore
from tradeflow_candle_builder.adapters.session_candle_store import SessionCandleStore
from tradeflow_candle_builder.aggregate_catch_up import AggregateCatchUp
from tradeflow_candle_builder.api import create_candles_router
from tradeflow_candle_builder.instrument_registry import InstrumentRegistry
from tradeflow_candle_builder.instruments_api import create_instruments_router
from tradeflow_candle_builder.pipeline import CandlePipeline
from tradeflow_candle_builder.ports import CandleRepository, EmissionMarkRepository, SessionCandleRepository
from tradeflow_candle_builder.settings import CandleBuilderSettings
from tradeflow_candle_builder.stream.api import create_stream_router
from tradeflow_candle_builder.stream.broadcaster import CandleBroadcaster
from tradeflow_candle_builder.tick_compression import TickCompressionSetup
from tradeflow_candle_builder.tick_retention import TickRetentionJob
from tradeflow_candle_builder.timescaledb_jobs import TimescaleJobMonitor

SERVICE_NAME = "candle-builder"
DEFAULT_PORT = 8002
DB_POOL_SIZE = 4  # the writer, the API and recovery reads


def topic_specs(settings: CandleBuilderSettings) -> tuple[TopicSpec, TopicSpec]:
    """The design's topic specs under the configured names (tests use their own topics)."""
    return (dataclasses.replace(MD_TICKS, name=settings.ticks_topic),
            dataclasses.replace(MD_CANDLES, name=settings.candles_topic))


def _stream_check(feed: CandleFeed) -> ReadinessCheck:
    async def reading() -> tuple[bool, str]:
        if feed.is_positioned():
            return True, "reading the candles topic"
        return False, "not yet reading the candles topic"

    return ReadinessCheck("candle-stream", reading)


def create_stream(settings: CandleBuilderSettings, bus: Bus) -> tuple[CandleBroadcaster, CandleFeed]:
    """The live stream's fan-out and the group-less reader of the candles topic that feeds it."""
    broadcaster = CandleBroadcaster(bus.telemetry, client_queue=settings.stream_client_queue)
    feed = CandleFeed(bus, broadcaster, topic=topic_specs(settings)[1],
                      fetch_max_wait_ms=settings.stream_fetch_max_wait_ms,
                      client_id=f"{settings.kafka_client_id}-{SERVICE_NAME}-stream")
    return broadcaster, feed


@dataclass
class CandleBuilder:
    """The wired service: what the app runs and the parts a test drives directly."""

    components: list[Any]
    routers: list[Any]
    readiness_checks: list[ReadinessCheck]
    producer: Any
    pipeline: CandlePipeline
    consumer: Any
    broadcaster: CandleBroadcaster
    feed: CandleFeed


def create_pipeline(settings: CandleBuilderSettings, bus: Bus, producer: Any, dead_letters: Any,
                    registry: InstrumentRegistry, store: CandleRepository, marks: EmissionMarkRepository,
                    sessions: SessionCandleRepository, clock: Clock = SYSTEM_CLOCK) -> tuple[CandlePipeline, Any]:
    """The candle pipeline over its storage ports and the consumer group that feeds it the ticks
    topic (``build`` passes the database adapters; the pipeline's unit tests in-memory ones)."""
    pipeline = CandlePipeline(settings, bus.telemetry, store, producer, dead_letters, registry,
                              marks=marks, sessions=sessions, clock=clock)
    consumer = bus.consumer(
        topics=[topic_specs(settings)[0]],
        group_id=settings.consumer_group,
        handler=pipeline.handle,
        dead_letters=dead_letters,
        max_batch=settings.consumer_max_batch,
        committable_offsets=pipeline.committable_offsets,
        on_assigned=pipeline.on_assigned,
        on_revoked=pipeline.on_revoked,
        client_id=f"{settings.kafka_client_id}-{SERVICE_NAME}",
    )
    return pipeline, consumer


def build(settings: CandleBuilderSettings, bus: Bus, store: CandleStore, clock: Clock = SYSTEM_CLOCK) -> CandleBuilder:
    """Wire the service from its settings, a bus, its database (the :class:`CandleStore` pool)
    and a clock. Pure: nothing starts or connects here. ``create_app`` passes the Kafka bus,
    the real store and the system clock."""
    telemetry = bus.telemetry
    ticks_spec, candles_spec = topic_specs(settings)
    client_id = f"{settings.kafka_client_id}-{SERVICE_NAME}"
    producer = bus.producer(client_id=client_id)
    dead_letters = bus.dead_letters(producer)
    instruments = InstrumentStore(store)
    registry = InstrumentRegistry(instruments, refresh_s=settings.instrument_refresh_s)
    sessions = SessionCandleStore(store)
    pipeline, consumer = create_pipeline(settings, bus, producer, dead_letters, registry, store,
                                         EmissionMarks(store), sessions, clock)
    retention = TickRetentionJob(settings.libpq_url, telemetry, days=settings.tick_retention_days,
                                 interval_s=settings.retention_interval_s)
    compression = TickCompressionSetup(settings.libpq_url, days=settings.tick_compress_after_days)
    catch_up = AggregateCatchUp(store, days=settings.tick_retention_days)
    database_jobs = TimescaleJobMonitor(settings.libpq_url, telemetry, producer, service_name=SERVICE_NAME,
                                        interval_s=settings.timescaledb_job_check_interval_s)
    broadcaster, feed = create_stream(settings, bus)
    return CandleBuilder(
        # Stopped in reverse: the consumer commits and leaves, the pipeline finishes its
        # writes and emissions, then the producer flushes and the database pool closes.
        # The database first: an unmigrated one stops the start before anything else (its
        # message names the revision and `tradeflow db upgrade`).
        components=[store, bus.topics_exist([ticks_spec, candles_spec, OPS_ALERTS]), catch_up, registry,
                    producer, pipeline, consumer, retention, compression, database_jobs, feed],
        routers=[create_candles_router(store, sessions, registry),
                 create_instruments_router(instruments, registry), create_stream_router(broadcaster)],
        readiness_checks=[
            broker_check(producer),
            ReadinessCheck("database", store.ping),
            consumer_check(consumer),
            _stream_check(feed),
        ],
        producer=producer, pipeline=pipeline, consumer=consumer, broadcaster=broadcaster, feed=feed,
    )


def create_app(settings: CandleBuilderSettings) -> FastAPI:
    telemetry = Telemetry(SERVICE_NAME, settings)
    # The schema check stops the start on a database without REQUIRED_REVISION, naming it and
    # `tradeflow db upgrade`, before anything queries a table.
    store = CandleStore(settings.service_database(SERVICE_NAME, required_revision=REQUIRED_REVISION,
                                                  default_pool_size=DB_POOL_SIZE,
                                                  configure=CandleStore.configure_connection))
    service = build(settings, KafkaBus(settings, telemetry), store, SYSTEM_CLOCK)
    return create_wired_app(SERVICE_NAME, settings, telemetry, service,
                            description="Trades from the ticks topic to candles of every timeframe: stored, streamed "
                                        "and served.")


def demo_examples(context: DemoContext) -> list[str]:
    """What `tradeflow demo` suggests: the candles of a market it saw trade, and a registration
    (a state-changing request, so with the demo's API key)."""
    query = urlencode({"exchange": context.exchange, "symbol": context.symbol, "timeframe": "1m"})
    instrument = json.dumps({"exchange": "nasdaq", "symbol": "AAPL", "calendar": "XNYS"})
    return [f"curl '{context.base_url}/v1/candles?{query}'",
            f"curl -X POST {context.base_url}/v1/instruments -H 'Authorization: Bearer {context.api_key}' "
            f"-H 'content-type: application/json' -d '{instrument}'"]


SERVICE = ServiceDefinition(
    name=SERVICE_NAME, default_port=DEFAULT_PORT, settings_type=CandleBuilderSettings, create_app=create_app,
    # Downstream of ingest: started after it, stopped after it (it takes the last ticks).
    demo=ServiceDemo(stage=20, examples=demo_examples),
)
