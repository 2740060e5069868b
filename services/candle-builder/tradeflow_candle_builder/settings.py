"""Candle-builder configuration: its own settings are ``TRADEFLOW_CANDLE_BUILDER_*`` (ADR 0014)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from tradeflow.settings import ServiceSettings, environment_variable
from tradeflow.topics import MD_CANDLES, MD_TICKS, TopicName
from tradeflow_db.settings import DatabasePoolSettings

DEFAULT_TICK_COMPRESS_AFTER_DAYS = 7


class CandleBuilderSettings(ServiceSettings, DatabasePoolSettings):
    """Settings of the candle-builder service, read from ``TRADEFLOW_CANDLE_BUILDER_<FIELD>``
    (its consumer group too: ``TRADEFLOW_CANDLE_BUILDER_CONSUMER_GROUP``, default candle-builder)."""

    service_name: ClassVar[str] = "candle-builder"

    # The design's topics; overridable so tests (and staging copies) can use their own.
    ticks_topic: TopicName = MD_TICKS.name
    candles_topic: TopicName = MD_CANDLES.name
    candle_grace_ms: int = Field(
        default=2_000, ge=0, le=600_000,
        description="how long after a 1m bucket's end (in stream time) out-of-order trades are still on time")
    idle_close_ms: int = Field(
        default=5_000, ge=100, le=3_600_000,
        description="wall-clock idleness after which a partition's time also advances by the idle time")
    close_check_interval_ms: int = Field(
        default=250, ge=10, le=60_000, description="how often idle partitions are checked for buckets to close")
    consumer_max_batch: int = Field(default=5_000, ge=1, le=100_000, description="records per handled batch")
    db_batch_rows: int = Field(
        default=20_000, ge=1, le=1_000_000, description="the database writer merges queued batches up to this many ticks")
    db_batch_ms: int = Field(
        default=20, ge=0, le=10_000, description="how long the database writer waits to fill a merged batch")
    db_queue_batches: int = Field(
        default=8, ge=1, le=1_000,
        description="consumed batches waiting for the database writer before consuming pauses (backpressure)")
    tick_retention_days: int = Field(
        default=30, ge=1, le=36_500, description="raw ticks older than this are dropped; candles are kept forever")
    tick_compress_after_days: int = Field(
        default=DEFAULT_TICK_COMPRESS_AFTER_DAYS, ge=0, le=36_500,
        description="ticks older than this are compressed where the database can (TimescaleDB under the Timescale "
                    "license; reported as unavailable elsewhere); 0 turns compression off; must be below "
                    "tick_retention_days (when not set: 7, or one day less than a shorter retention)")
    retention_interval_s: float = Field(
        default=3_600.0, ge=1.0, le=7 * 86_400.0, description="how often tick retention runs (the first run soon after start)")
    timescaledb_job_check_interval_s: float = Field(
        default=60.0, ge=1.0, le=86_400.0,
        description="how often TimescaleDB's background job statistics are read for metrics and alerts "
                    "(licensed TimescaleDB only)")
    instrument_refresh_s: float = Field(
        default=30.0, ge=0.5, le=3_600.0,
        description="how often each replica reloads the instrument registry (calendars, extended hours)")
    stream_client_queue: int = Field(
        default=1_000, ge=1, le=100_000,
        description="candle frames a live stream client may have waiting; when full it is disconnected (1013)")
    stream_fetch_max_wait_ms: int = Field(
        default=20, ge=1, le=500, description="longest the stream's candles-topic fetch waits at the broker (latency)")

    @model_validator(mode="after")
    def _distinct_topics(self) -> CandleBuilderSettings:
        if self.ticks_topic == self.candles_topic:
            raise ValueError(f"{environment_variable(type(self), 'ticks_topic')} and "
                             f"{environment_variable(type(self), 'candles_topic')} must differ")
        return self

    @model_validator(mode="after")
    def _compression_before_retention(self) -> CandleBuilderSettings:
        # A chunk dropped by retention before it is old enough to compress is never compressed.
        if "tick_compress_after_days" not in self.model_fields_set:
            # Not chosen: a short retention alone must not stop the service from starting.
            self.tick_compress_after_days = min(DEFAULT_TICK_COMPRESS_AFTER_DAYS, self.tick_retention_days - 1)
        elif self.tick_compress_after_days and self.tick_compress_after_days >= self.tick_retention_days:
            raise ValueError(
                f"{environment_variable(type(self), 'tick_compress_after_days')} ({self.tick_compress_after_days}) "
                f"must be less than {environment_variable(type(self), 'tick_retention_days')} "
                f"({self.tick_retention_days}), or 0 to turn tick compression off")
        return self
