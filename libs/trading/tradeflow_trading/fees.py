"""Maker/taker fee schedules: fees are the account's rates on the notional (design.md)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from tradeflow_trading.money import mul

Liquidity = Literal["maker", "taker"]


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    maker: Decimal
    taker: Decimal

    def rate(self, liquidity: Liquidity) -> Decimal:
        return self.maker if liquidity == "maker" else self.taker

    def fee(self, notional: Decimal, liquidity: Liquidity) -> Decimal:
        """The fee on ``notional`` (quote currency), exact."""
        return mul(abs(notional), self.rate(liquidity))


NO_FEES = FeeSchedule(Decimal(0), Decimal(0))
