"""What risk does per account and per strategy instance: limits, sizing, protective exits.

From configuration (``TRADEFLOW_RISK_ACCOUNT_PROFILES``, keyed by account id or ``"*"`` for
every account, and ``TRADEFLOW_RISK_STRATEGY_PROFILES``, keyed by strategy instance id). A
strategy instance's sizing and protective rules win over its account's. The limits of the
profile are an account's version 0; ``PUT /v1/accounts/{id}/limits`` versions replace them.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tradeflow_trading.sizing import ALL_CASH, Sizing

from tradeflow_risk.domain.limits import RiskLimits

STOP_LOSS = "stop_loss"
TAKE_PROFIT = "take_profit"
TRAILING_STOP = "trailing_stop"
TRIGGERS = (STOP_LOSS, TRAILING_STOP, TAKE_PROFIT)  # checked in this order on each trade


class ExitDistance(BaseModel):
    """How far from the reference price an exit triggers: a percentage or a multiple of the ATR."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pct: Decimal | None = Field(default=None, gt=0, lt=100, description="percent of the reference price")
    atr: Decimal | None = Field(default=None, gt=0, le=100, description="multiple of the symbol's ATR")

    @model_validator(mode="after")
    def _exactly_one(self) -> ExitDistance:
        if (self.pct is None) == (self.atr is None):
            raise ValueError("give exactly one of pct and atr")
        return self


class ProtectiveRules(BaseModel):
    """Stop-loss and take-profit from the entry (average) price, trailing stop from the best price since."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stop_loss: ExitDistance | None = None
    take_profit: ExitDistance | None = None
    trailing_stop: ExitDistance | None = None

    def distance(self, trigger: str) -> ExitDistance | None:
        return getattr(self, trigger)

    @property
    def any(self) -> bool:
        return any(self.distance(t) is not None for t in TRIGGERS)


class StrategyProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sizing: Sizing | None = None
    protective: ProtectiveRules | None = None


class AccountProfile(StrategyProfile):
    limits: RiskLimits = Field(default_factory=RiskLimits)
    equity_currency: str | None = Field(
        default=None, min_length=1, max_length=16,
        description="currency equity, P&L and limits are counted in (default: the first of the account's balances)")


DEFAULT_PROFILE = AccountProfile()


class Profiles:
    """Lookup of the effective sizing, protective rules and initial limits."""

    def __init__(self, accounts: dict[str, AccountProfile], strategies: dict[str, StrategyProfile]) -> None:
        self._accounts = accounts
        self._strategies = strategies

    def account(self, account_id: str) -> AccountProfile:
        return self._accounts.get(account_id) or self._accounts.get("*") or DEFAULT_PROFILE

    def sizing(self, account_id: str, strategy_id: str) -> Sizing:
        strategy = self._strategies.get(strategy_id)
        if strategy is not None and strategy.sizing is not None:
            return strategy.sizing
        return self.account(account_id).sizing or ALL_CASH

    def protective(self, account_id: str, strategy_id: str) -> ProtectiveRules | None:
        strategy = self._strategies.get(strategy_id)
        if strategy is not None and strategy.protective is not None:
            return strategy.protective
        return self.account(account_id).protective
