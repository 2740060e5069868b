"""Trading accounts from ``TRADEFLOW_ACCOUNTS`` (design.md, "Accounts, risk and execution").

``TRADEFLOW_ACCOUNTS`` is a JSON list of ``{"id", "exchange", "mode": "paper"|"live",
"balances": {"USDT": "10000"}, "fees": {"maker": "0.001", "taker": "0.001"}, "slippage_bps": 0}``.
Amounts are decimal strings (numbers are accepted and read through their text, never as
binary floats). A live account's credentials come from the ``TRADEFLOW_EXCHANGES`` entry of
its exchange, never from here.

Mix :class:`AccountsSettings` into a service's settings; an invalid list stops the service at
start with a message naming ``TRADEFLOW_ACCOUNTS`` and the bad entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode
from tradeflow.markets import ExchangeName
from tradeflow.settings import json_list

from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.money import to_decimal

ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_FEE_RATE = Decimal("0.1")
MAX_SLIPPAGE_BPS = Decimal(1000)


def _exact(value: Any) -> Any:
    """Numbers through their text (0.001 stays 0.001); Decimal and str as they are."""
    if isinstance(value, float):
        return to_decimal(value)
    return value


class AccountFees(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    maker: Decimal = Field(default=Decimal("0.001"), ge=0, le=MAX_FEE_RATE)
    taker: Decimal = Field(default=Decimal("0.001"), ge=0, le=MAX_FEE_RATE)

    @field_validator("maker", "taker", mode="before")
    @classmethod
    def _exact_rates(cls, value: Any) -> Any:
        return _exact(value)


class AccountConfig(BaseModel):
    """One account: where it trades, paper or live, its starting balances, fees and slippage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ACCOUNT_ID_PATTERN)
    exchange: ExchangeName
    mode: Literal["paper", "live"] = "paper"
    balances: dict[str, Decimal] = Field(default_factory=dict)
    fees: AccountFees = Field(default_factory=AccountFees)
    slippage_bps: Decimal = Field(default=Decimal(0), ge=0, le=MAX_SLIPPAGE_BPS)

    @field_validator("balances", mode="before")
    @classmethod
    def _exact_balances(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {currency: _exact(amount) for currency, amount in value.items()}
        return value

    @field_validator("slippage_bps", mode="before")
    @classmethod
    def _exact_slippage(cls, value: Any) -> Any:
        return _exact(value)

    @field_validator("balances")
    @classmethod
    def _balances_not_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        negative = [currency for currency, amount in value.items() if amount < 0]
        if negative:
            raise ValueError(f"balances must not be negative: {', '.join(negative)}")
        return value

    @property
    def fee_schedule(self) -> FeeSchedule:
        return FeeSchedule(maker=self.fees.maker, taker=self.fees.taker)

    def fill_rule(self) -> FillRule:
        """The paper fill rule of this account (execution's paper broker and the backtest)."""
        return FillRule(fees=self.fee_schedule, slippage_bps=self.slippage_bps)


class AccountsSettings(BaseModel):
    """``TRADEFLOW_ACCOUNTS`` for a settings class: mix it into a service's settings."""

    accounts: Annotated[list[AccountConfig], NoDecode] = Field(
        default_factory=list, max_length=1000,
        description="trading accounts (JSON list of {id, exchange, mode, balances, fees, slippage_bps})")

    @field_validator("accounts", mode="before")
    @classmethod
    def _accounts_from_json(cls, value: Any) -> Any:
        return json_list(value, "accounts")

    @model_validator(mode="after")
    def _unique_ids(self) -> AccountsSettings:
        ids = [account.id for account in self.accounts]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"TRADEFLOW_ACCOUNTS: account ids must be unique, repeated: {', '.join(duplicates)}")
        return self

    def account(self, account_id: str) -> AccountConfig | None:
        return find_account(self.accounts, account_id)


def find_account(accounts: Sequence[AccountConfig], account_id: str) -> AccountConfig | None:
    for account in accounts:
        if account.id == account_id:
            return account
    return None


DEMO_ACCOUNT_ID = "paper-demo"


def demo_accounts(exchange: str) -> str:
    """``TRADEFLOW_ACCOUNTS`` of ``tradeflow demo``, the same for every service taking part: one
    paper account on the synthetic market (quoted in USD: ingest's symbols are SYMnn/USD)."""
    return json.dumps([{"id": DEMO_ACCOUNT_ID, "exchange": exchange, "mode": "paper", "balances": {"USD": "10000"},
                        "fees": {"maker": "0.0002", "taker": "0.001"}, "slippage_bps": "2"}])
