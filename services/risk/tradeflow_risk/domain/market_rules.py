"""An exchange market's precision and minimums (from ccxt markets), and how an order meets them.

Quantities are cut down to the amount step (never rounded up: an order asks for no more than
was decided); a limit price must lie on the price step (a price is a choice, so it is refused,
not moved). Where the exchange's markets are unknown (not configured in TRADEFLOW_EXCHANGES, or
not a ccxt exchange, like the synthetic one) only the default step of 1e-8 applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradeflow_trading.money import DEFAULT_QUANTITY_STEP


@dataclass(frozen=True, slots=True)
class MarketRules:
    amount_step: Decimal | None = None
    price_step: Decimal | None = None
    min_amount: Decimal | None = None
    min_cost: Decimal | None = None

    @property
    def quantity_step(self) -> Decimal:
        return self.amount_step or DEFAULT_QUANTITY_STEP


UNKNOWN_MARKET = MarketRules()
