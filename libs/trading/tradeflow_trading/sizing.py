"""Sizing: how much an entry without a quantity buys (the backtest's default, risk's rules).

A signal's ``enter_long`` may leave the quantity to the account (design.md: "By default each
entry buys with all available cash"). A sizing rule answers with the quote amount to spend,
from the account's free cash and equity at the decision; the order is then a quote-sized
market buy (ADR 0015), which spends at most that amount including its fee whatever the price
moved to before the fill. The backtest and risk take the same rule objects, so a sized entry
is the same order in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from tradeflow_trading.money import ZERO, mul


class Sizing(Protocol):
    def entry_quote(self, *, cash: Decimal, equity: Decimal) -> Decimal:
        """Quote currency an entry may spend (0: no order)."""
        ...


@dataclass(frozen=True, slots=True)
class AllCash:
    """Each entry buys with all available cash (the backtest's default)."""

    def entry_quote(self, *, cash: Decimal, equity: Decimal) -> Decimal:
        return max(cash, ZERO)


@dataclass(frozen=True, slots=True)
class FractionOfEquity:
    """Each entry spends ``fraction`` of the equity, at most the free cash."""

    fraction: Decimal

    def __post_init__(self) -> None:
        if not ZERO < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")

    def entry_quote(self, *, cash: Decimal, equity: Decimal) -> Decimal:
        return max(min(cash, mul(equity, self.fraction)), ZERO)


@dataclass(frozen=True, slots=True)
class FixedQuote:
    """Each entry spends ``amount`` of quote currency, at most the free cash."""

    amount: Decimal

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError(f"amount must be positive, got {self.amount}")

    def entry_quote(self, *, cash: Decimal, equity: Decimal) -> Decimal:
        return max(min(cash, self.amount), ZERO)
