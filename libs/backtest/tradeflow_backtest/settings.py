"""The research commands' settings: where the candles and the strategy service are, the key to
store runs with, and the user's strategy files (all shared ``TRADEFLOW_*`` names, ADR 0014)."""

from __future__ import annotations

from tradeflow.clients.settings import ClientSettings
from tradeflow_trading.strategy.loader import StrategyPathsSettings


class ResearchSettings(ClientSettings, StrategyPathsSettings):
    """``TRADEFLOW_CANDLE_BUILDER_URL``, ``TRADEFLOW_STRATEGY_URL``, ``TRADEFLOW_API_KEYS`` (or ``_FILE``),
    ``TRADEFLOW_STRATEGY_PATHS``."""
