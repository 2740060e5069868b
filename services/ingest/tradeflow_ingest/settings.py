"""Configuration of the ingest service: its own settings are ``TRADEFLOW_INGEST_*`` (ADR 0014)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from tradeflow.markets import ExchangeName
from tradeflow.settings import ServiceSettings
from tradeflow_exchanges.ccxt_client import ExchangeListSettings


class IngestSettings(ServiceSettings, ExchangeListSettings):
    """Ingest settings on top of every service's (broker, HTTP, telemetry).

    The fields declared here are read from ``TRADEFLOW_INGEST_<FIELD>``. The synthetic market
    is off unless ``TRADEFLOW_INGEST_SYNTHETIC_SYMBOLS`` is above 0. Exchange feeds come from
    ``TRADEFLOW_EXCHANGES`` (shared with the backfill), a JSON list of
    :class:`ExchangeFeedSettings`, e.g. ``[{"id": "binance", "symbols": ["BTC/USDT", "ETH/USDT"]}]``.
    """

    service_name: ClassVar[str] = "ingest"

    synthetic_symbols: int = Field(
        default=0, ge=0, le=10_000, description="symbols of the synthetic market; 0 turns it off"
    )
    synthetic_rate: float = Field(
        default=200.0, gt=0, le=1_000_000, description="synthetic trades per second over all symbols"
    )
    synthetic_seed: int = Field(default=42, description="seed of the synthetic market (same seed, same trades)")
    synthetic_exchange: ExchangeName = Field(default="synthetic", description="exchange name of the synthetic trades")
    synthetic_history_s: float = Field(
        default=0.0, ge=0, le=30 * 86_400,
        description="the synthetic market starts this long in the past and runs synthetic_speed times faster than "
                    "the wall clock until it reaches the present (the demo: strategies trade within seconds)",
    )
    synthetic_speed: float = Field(
        default=1.0, ge=1, le=3600, description="how much faster than the wall clock the synthetic history runs")
    max_price_deviation: float = Field(
        default=0.5, gt=0, le=100,
        description="a tick further than this fraction from its symbol's last accepted price is held back",
    )
    subscriptions_group: str = Field(
        default="ingest-subscriptions", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$",
        description="consumer group of the ingest replicas that share the subscriptions",
    )
    takeover_lookback_s: float = Field(
        default=300.0, ge=10, le=86_400,
        description="a replica taking over a symbol looks this far back on md.ticks.v1 for the last published trade",
    )
