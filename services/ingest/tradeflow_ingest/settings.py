"""Configuration of the ingest service (``TRADEFLOW_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field
from tradeflow.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """Ingest settings on top of every service's (broker, HTTP, telemetry).

    The synthetic market is off unless ``TRADEFLOW_SYNTHETIC_SYMBOLS`` is above 0.
    """

    synthetic_symbols: int = Field(
        default=0, ge=0, le=10_000, description="symbols of the synthetic market; 0 turns it off"
    )
    synthetic_rate: float = Field(
        default=200.0, gt=0, le=1_000_000, description="synthetic trades per second over all symbols"
    )
    synthetic_seed: int = Field(default=42, description="seed of the synthetic market (same seed, same trades)")
    synthetic_exchange: str = Field(
        default="synthetic",
        min_length=1,
        max_length=64,
        pattern=r"^[^:\s]+$",  # the message key is exchange:symbol
        description="exchange name of the synthetic trades",
    )
