"""An account's risk limits (design.md names them) and what happens when a loss limit breaks.

Every limit is optional: ``None`` means no limit. Amounts are in the account's equity currency
(the quote currency of its symbols, e.g. USDT). ``PUT /v1/accounts/{id}/limits`` replaces the
whole set; an invalid value is a 422 naming the field (pydantic's validation).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PositiveAmount = Annotated[Decimal, Field(gt=0, max_digits=38)]
BreachAction = Literal["halt", "reduce"]


class RiskLimits(BaseModel):
    """The limits of one account. Applied to the next decision after a change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_notional: PositiveAmount | None = Field(default=None, description="largest notional of one order")
    max_position_notional: PositiveAmount | None = Field(
        default=None, description="largest exposure in one symbol (position plus open orders); the default of every symbol")
    max_position_notional_by_symbol: dict[str, PositiveAmount] = Field(
        default_factory=dict, description="per-symbol overrides of max_position_notional, e.g. {\"BTC/USDT\": \"5000\"}")
    max_gross_exposure: PositiveAmount | None = Field(
        default=None, description="largest sum of the exposures of every symbol (positions plus open orders)")
    max_open_orders: int | None = Field(default=None, ge=0, le=100_000, description="most orders open at once")
    max_orders_per_minute: int | None = Field(
        default=None, ge=0, le=100_000, description="most approved orders within 60 s of event time")
    max_daily_loss: PositiveAmount | None = Field(
        default=None, description="loss of equity (marked to market) since the start of the UTC day that breaks")
    max_drawdown_pct: Decimal | None = Field(
        default=None, gt=0, le=100, description="fall of equity from its peak, in percent, that breaks")
    breach_action: BreachAction = Field(
        default="halt", description="what a breach of max_daily_loss or max_drawdown_pct does: halt (and engage "
                                    "the kill switch) or reduce (only orders that reduce positions pass)")
    max_correlated_exposure: PositiveAmount | None = Field(
        default=None, description="largest exposure of a group of symbols whose returns correlate above the threshold")
    correlation_threshold: Decimal = Field(
        default=Decimal("0.8"), gt=0, le=1, description="correlation of returns from which two symbols are grouped")
    cooldown_losing_trades: int | None = Field(
        default=None, ge=1, le=1_000, description="losing trades in a row after which entries pause")
    cooldown_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60, description="how long entries pause after them")
    enforce_trading_hours: bool = Field(
        default=True, description="refuse orders while the instrument's market (its calendar) is closed")

    def position_limit(self, symbol: str) -> Decimal | None:
        return self.max_position_notional_by_symbol.get(symbol, self.max_position_notional)
