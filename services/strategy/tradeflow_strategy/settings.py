"""Strategy service configuration: its own settings are ``TRADEFLOW_STRATEGY_*`` (ADR 0014).

``TRADEFLOW_STRATEGY_PATHS`` (users' strategy files) and ``TRADEFLOW_ACCOUNTS`` (the accounts an
instance may trade) come from the shared mixins of libs/trading, with the meaning they have for
every service and tool.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode
from tradeflow.clients.candles import CandleApiSettings
from tradeflow.settings import ServiceSettings, json_list
from tradeflow.topics import EXEC_FILLS, MD_CANDLES, STRATEGY_SIGNALS, TopicName
from tradeflow_db.settings import DatabasePoolSettings
from tradeflow_trading.accounts import AccountsSettings
from tradeflow_trading.strategy.loader import StrategyPathsSettings


class StrategySettings(ServiceSettings, AccountsSettings, StrategyPathsSettings, CandleApiSettings,
                       DatabasePoolSettings):
    """Settings of the strategy service, read from ``TRADEFLOW_STRATEGY_<FIELD>`` (its consumer
    group too: ``TRADEFLOW_STRATEGY_CONSUMER_GROUP``, default strategy)."""

    service_name: ClassVar[str] = "strategy"

    # The design's topics; overridable so tests (and staging copies) can use their own.
    topic_candles: TopicName = MD_CANDLES.name
    topic_fills: TopicName = EXEC_FILLS.name
    topic_signals: TopicName = STRATEGY_SIGNALS.name
    candle_builder_timeout_s: float = Field(default=10.0, gt=0, le=300, description="per warm-up request")
    warm_up_concurrency: int = Field(
        default=32, ge=1, le=256, description="markets warmed up at once (requests to the candle-builder in flight)")
    batch_max_records: int = Field(default=5_000, ge=1, le=100_000, description="records per handled batch")
    commit_interval_s: float = Field(
        default=1.0, gt=0, le=300,
        description="how often handled candles are committed; after a crash the candles since the last commit are "
                    "decided again (same signal ids), so longer means more repeated signals, never lost ones")
    instance_refresh_s: float = Field(
        default=2.0, ge=0.05, le=300,
        description="how often every replica reloads the instances and the new fills from the database")
    reload_interval_s: float = Field(
        default=1.0, ge=0.05, le=300, description="how often the strategy files are checked for changes")
    status_interval_s: float = Field(
        default=1.0, ge=0.05, le=300,
        description="how often this replica writes the status of its markets (GET /v1/strategies/{id} reads it)")
    last_signals: int = Field(default=10, ge=1, le=1_000, description="signals kept per market in the status")
    instances: Annotated[list[dict[str, Any]], NoDecode] = Field(
        default_factory=list, max_length=10_000,
        description="instances created at start when no instance has their id (JSON list of POST /v1/strategies "
                    "bodies); one that exists is left as it is (paused, failed), one deleted comes back at the next "
                    "start unless removed from this list")

    @field_validator("instances", mode="before")
    @classmethod
    def _instances_from_json(cls, value: Any) -> Any:
        return json_list(value, "instance definitions")

