"""Execution configuration (``TRADEFLOW_*`` environment variables, validated at start).

``TRADEFLOW_ACCOUNTS`` (design.md) says which accounts exist; everything else of this service
is prefixed ``execution_`` (``TRADEFLOW_EXECUTION_...``): the topics (overridable so tests and
staging copies use their own), the consumer group, the paper broker's trade window, history
margin and participation cap, and the markets whose tick and lot sizes are known.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode
from tradeflow.markets import ExchangeName
from tradeflow.settings import ServiceSettings, json_list
from tradeflow.topics import (
    EXEC_ACCOUNTS,
    EXEC_FILLS,
    EXEC_ORDERS,
    MD_TICKS,
    OPS_ALERTS,
    RISK_EVENTS,
    RISK_ORDERS,
    TopicName,
)
from tradeflow_db.settings import DatabasePoolSettings
from tradeflow_exchanges.ccxt_client import ExchangeListSettings
from tradeflow_trading.accounts import AccountsSettings
from tradeflow_trading.money import to_decimal

TOPIC_FIELDS = ("orders_topic", "risk_events_topic", "ticks_topic",
                "order_events_topic", "fills_topic", "accounts_topic")


class MarketConfig(BaseModel):
    """A market whose steps are known: limit prices off ``price_step`` and quantities off
    ``quantity_step`` are rejected, and fills are cut to them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exchange: ExchangeName
    symbol: str = Field(min_length=3, max_length=64, pattern=r"^[^/\s]+/[^/\s]+$")  # BASE/QUOTE[:SETTLE]
    price_step: Decimal = Field(gt=0)
    quantity_step: Decimal = Field(gt=0)

    @field_validator("price_step", "quantity_step", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        return to_decimal(value) if isinstance(value, float) else value


class ExecutionSettings(ServiceSettings, AccountsSettings, DatabasePoolSettings, ExchangeListSettings):
    """Settings of the execution service; its own are ``TRADEFLOW_EXECUTION_<FIELD>`` (ADR 0014)."""

    service_name: ClassVar[str] = "execution"

    orders_topic: TopicName = RISK_ORDERS.name
    risk_events_topic: TopicName = RISK_EVENTS.name
    ticks_topic: TopicName = MD_TICKS.name
    order_events_topic: TopicName = EXEC_ORDERS.name
    fills_topic: TopicName = EXEC_FILLS.name
    alerts_topic: TopicName = OPS_ALERTS.name  # live accounts: adopted orders, balance mismatches (ADR 0022)
    accounts_topic: TopicName = EXEC_ACCOUNTS.name  # live accounts' reconciliation status, read by risk (ADR 0022)
    consumer_max_batch: int = Field(default=2_000, ge=1, le=50_000, description="records per handled batch")
    trade_window: int = Field(
        default=500, ge=0, le=100_000,
        description="recent trades kept per symbol, so an order that arrives after its first trade fills "
                    "without reading md.ticks.v1 back")
    trade_window_s: float = Field(
        default=3_600.0, ge=0, le=86_400,
        description="the trade window spans at most this much event time (the count above bounds its memory)")
    history_margin_s: float = Field(
        default=60.0, ge=0, le=86_400,
        description="an order read back from md.ticks.v1 starts this long before its ts_event (publish-time "
                    "jitter and clock skew between the exchange and ingest)")
    max_participation: Decimal | None = Field(
        default=None, gt=0, le=1,
        description="a paper order takes at most this share of one trade's amount (the rest fills on later "
                    "trades); unset: an order fills whole at its trade, as in the backtest")
    markets: Annotated[list[MarketConfig], NoDecode] = Field(
        default_factory=list, max_length=100_000,
        description="markets with known steps (JSON list of {exchange, symbol, price_step, quantity_step})")

    # Live accounts (ADR 0022): credentials and sandbox come from their exchange's TRADEFLOW_EXCHANGES entry.
    live_poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="live accounts: the exchange is polled for orders and trades this often")
    live_ready_wait_s: float = Field(
        default=30.0, ge=0, le=600,
        description="at start, wait this long for each live account's first reconciliation before consuming orders")
    live_user_stream: bool = Field(
        default=True, description="live accounts: watch the exchange's user data stream (watch_orders) where "
                                  "ccxt has it; each event wakes a poll round at once")
    live_stream_poll_interval_s: float = Field(
        default=15.0, gt=0, le=600, description="live accounts: the polling period while the user data stream is up")
    in_flight_interval_s: float = Field(
        default=2.0, gt=0, le=600, description="live orders in flight are asked for by client order id this often")
    in_flight_threshold_s: float = Field(
        default=5.0, ge=0, le=3600, description="an order is asked for once it has been in flight this long")
    in_flight_retries: int = Field(
        default=3, ge=1, le=100,
        description="answers 'no such order' (past the threshold) before an in-flight order is rejected "
                    "as not_found_at_exchange")
    live_request_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="live accounts: a request without an answer this long is unknown")
    fills_lookback_s: float = Field(
        default=7 * 86_400.0, gt=0, le=30 * 86_400,
        description="the furthest back a live account's reconciliation reads its trades (an outage longer than "
                    "this loses the fills before it; Binance: read in 24-hour windows and pages of 1000)")
    reconcile_interval_s: float = Field(
        default=60.0, gt=0, le=86_400,
        description="live accounts: a full reconciliation (orders, fills, balances) at least this often")
    balance_checks: int = Field(
        default=3, ge=1, le=100,
        description="reconciliation rounds in a row a balance difference must persist before the account halts")

    @field_validator("markets", mode="before")
    @classmethod
    def _markets_from_json(cls, value: Any) -> Any:
        return json_list(value, "markets")

    @field_validator("max_participation", mode="before")
    @classmethod
    def _exact_participation(cls, value: Any) -> Any:
        return to_decimal(value) if isinstance(value, float) else value

    @model_validator(mode="after")
    def _distinct_topics(self) -> ExecutionSettings:
        names = [getattr(self, name) for name in TOPIC_FIELDS]
        if len(set(names)) != len(names):
            raise ValueError("TRADEFLOW_EXECUTION_*_TOPIC: the five topics must differ")
        return self

    @model_validator(mode="after")
    def _unique_markets(self) -> ExecutionSettings:
        keys = [(m.exchange, m.symbol) for m in self.markets]
        repeated = sorted({f"{e}:{s}" for e, s in keys if keys.count((e, s)) > 1})
        if repeated:
            raise ValueError(f"TRADEFLOW_EXECUTION_MARKETS: repeated markets: {', '.join(repeated)}")
        return self

    @model_validator(mode="after")
    def _live_accounts_have_exchanges(self) -> ExecutionSettings:
        configured = {e.exchange_name for e in self.exchanges}
        for account in self.accounts:
            if account.mode == "live" and account.exchange not in configured:
                raise ValueError(f"TRADEFLOW_ACCOUNTS: live account {account.id!r} trades on {account.exchange!r}, "
                                 "which has no TRADEFLOW_EXCHANGES entry (its credentials and URLs)")
        return self
