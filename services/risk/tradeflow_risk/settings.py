"""Risk configuration (``TRADEFLOW_*`` environment variables, validated at start).

Design-fixed: ``TRADEFLOW_ACCOUNTS`` (the accounts) and ``TRADEFLOW_EXCHANGES`` (for ccxt
markets). Risk's own settings are ``TRADEFLOW_RISK_...`` (ADR 0014).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode
from tradeflow.settings import ServiceSettings
from tradeflow.timeframes import TimeframeName
from tradeflow.topics import (
    EXEC_ACCOUNTS,
    EXEC_FILLS,
    EXEC_ORDERS,
    MD_CANDLES,
    MD_TICKS,
    RISK_EVENTS,
    RISK_ORDERS,
    STRATEGY_SIGNALS,
    TopicName,
)
from tradeflow_db.settings import DatabasePoolSettings
from tradeflow_exchanges.ccxt_client import ExchangeListSettings
from tradeflow_trading.accounts import AccountsSettings

from tradeflow_risk.domain.profiles import AccountProfile, StrategyProfile


def _json_object(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f"must be a JSON object of {what}: {exc}") from None
    return value


class RiskSettings(ServiceSettings, AccountsSettings, ExchangeListSettings, DatabasePoolSettings):
    """Settings of the risk service; its own are ``TRADEFLOW_RISK_<FIELD>`` (ADR 0014). The consumer
    group of the trading topics (signals, order events, fills; partitioned by account) is
    ``TRADEFLOW_RISK_CONSUMER_GROUP``, default ``risk``."""

    service_name: ClassVar[str] = "risk"

    market_data_group: str | None = Field(
        default=None, min_length=1, max_length=255,
        description="consumer group of the market data each replica reads whole (default: risk-md-<instance id>)")
    # The design's topics; overridable so tests (and staging copies) can use their own.
    signals_topic: TopicName = STRATEGY_SIGNALS.name
    exec_orders_topic: TopicName = EXEC_ORDERS.name
    exec_fills_topic: TopicName = EXEC_FILLS.name
    exec_accounts_topic: TopicName = EXEC_ACCOUNTS.name
    candles_topic: TopicName = MD_CANDLES.name
    ticks_topic: TopicName = MD_TICKS.name
    orders_topic: TopicName = RISK_ORDERS.name
    events_topic: TopicName = RISK_EVENTS.name

    account_profiles: Annotated[dict[str, AccountProfile], NoDecode] = Field(
        default_factory=dict,
        description="per account id (or '*' for every account): limits (version 0), sizing, protective exits, "
                    "equity_currency; JSON object")
    strategy_profiles: Annotated[dict[str, StrategyProfile], NoDecode] = Field(
        default_factory=dict, description="per strategy instance id: sizing and protective exits; JSON object")
    instruments_url: str | None = Field(
        default=None, description="base URL of the candle-builder whose /v1/instruments names market calendars "
                                  "(trading hours); without one every instrument is 24/7")
    instruments_refresh_s: float = Field(default=60.0, ge=1.0, le=86_400.0,
                                              description="how often the instrument registry is read again")
    market_timeframe: TimeframeName = Field(
        default="1h", description="timeframe of the candles ATR, volatility and correlations are computed from")
    volatility_period: int = Field(default=14, ge=2, le=1_000, description="candles of the ATR and stdev")
    correlation_window: int = Field(default=50, ge=3, le=5_000, description="returns the correlations use")
    consumer_max_batch: int = Field(default=2_000, ge=1, le=100_000, description="records per handled batch")
    market_data_fetch_max_wait_ms: int = Field(
        default=100, ge=1, le=500,
        description="fetch wait of the market-data consumer (marks, volatility, protective exits): off the "
                    "signal-to-order path, so it need not poll as often as the trading topics; on Tansu, which "
                    "answers a fetch only at this deadline, it is the most a stop waits for its trade (on Kafka, "
                    "which answers at once, it only bounds idle polling)")
    market_state_flush_s: float = Field(
        default=1.0, ge=0.05, le=60.0, description="how often marks, trailing-stop watermarks and equity peaks are stored")

    @field_validator("account_profiles", "strategy_profiles", mode="before")
    @classmethod
    def _profiles_from_json(cls, value: Any) -> Any:
        return _json_object(value, "profiles by id")

    @field_validator("instruments_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^https?://[^/]+", value):
            raise ValueError("must be an http(s) URL of the candle-builder, e.g. http://candle-builder:8002")
        return value

    @model_validator(mode="after")
    def _profiles_name_accounts(self) -> RiskSettings:
        known = {account.id for account in self.accounts}
        unknown = sorted(set(self.account_profiles) - known - {"*"})
        if unknown:
            raise ValueError(f"TRADEFLOW_RISK_ACCOUNT_PROFILES names accounts not in TRADEFLOW_ACCOUNTS: "
                             f"{', '.join(unknown)}")
        return self

    def market_data_group_of(self, instance: str) -> str:
        return self.market_data_group or f"risk-md-{instance}"
