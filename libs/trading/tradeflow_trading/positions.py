"""Positions and balances are the fold of fills (design.md): exact, in the order fills happened.

The fold runs in :func:`fill_order` (event time, then fill id): a total order that does not
depend on when a fill became known, so a fill learned late (an order that met past trades)
gives the same position as one learned at once.

A :class:`Position` is signed (long > 0, short < 0) with the volume-weighted average price of
its open quantity. A fill that reduces it realizes ``(price - average) x reduced`` (negated for
shorts); one that crosses zero closes the old side and opens the new one at the fill price.
Fees are kept apart from the price P&L, per currency, so "P&L after fees" is explicit:
``realized_pnl - fees[quote]`` when fees are paid in the quote currency (paper accounts).

:class:`Balances` applies the cash side of the same fills: a buy spends ``quantity x price``
of the quote currency and receives the base, a sell the reverse, and the fee leaves its own
currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from tradeflow.messages import Fill

from tradeflow_trading.money import ZERO, div, mul, quantize_price


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTC/USDT`` -> (``BTC``, ``USDT``): a unified spot symbol's base and quote currencies."""
    base, slash, rest = symbol.partition("/")
    quote = rest.split(":", 1)[0]
    if not slash or not base or not quote:
        raise ValueError(f"symbol must be BASE/QUOTE, got {symbol!r}")
    return base, quote


def fill_order(fill: Fill) -> tuple[int, str]:
    """Where ``fill`` stands in its position's fold: event time, then fill id."""
    return (fill.ts_event, fill.fill_id)


def _frozen(mapping: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Position:
    account_id: str
    exchange: str
    symbol: str
    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Mapping[str, Decimal] = field(default_factory=lambda: _frozen({}))
    opened_at: int = 0  # ts of the fill that opened the current side (protective exits key on it)
    fills: int = 0

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def side(self) -> str:
        return "flat" if self.quantity == 0 else ("long" if self.quantity > 0 else "short")

    def unrealized_pnl(self, mark_price: Decimal) -> Decimal:
        return mul(mark_price - self.average_price, self.quantity)

    def notional(self, mark_price: Decimal) -> Decimal:
        return mul(abs(self.quantity), mark_price)

    def apply(self, fill: Fill) -> Position:
        """The position after ``fill`` (which must be of this account and symbol)."""
        if (fill.account_id, fill.exchange, fill.symbol) != (self.account_id, self.exchange, self.symbol):
            raise ValueError(f"fill {fill.fill_id} is for {fill.account_id}/{fill.exchange}/{fill.symbol}, "
                             f"not {self.account_id}/{self.exchange}/{self.symbol}")
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        quantity, average, realized, opened_at = self.quantity, self.average_price, self.realized_pnl, self.opened_at
        if quantity == 0 or (quantity > 0) == (signed > 0):
            # Opening or adding: the average moves to the volume-weighted price.
            new_quantity = quantity + signed
            average = quantize_price(div(mul(average, abs(quantity)) + mul(fill.price, abs(signed)), abs(new_quantity)))
            if quantity == 0:
                opened_at = fill.ts_event
            quantity = new_quantity
        else:
            reduced = min(abs(signed), abs(quantity))
            direction = 1 if quantity > 0 else -1
            realized += mul(fill.price - average, reduced) * direction
            quantity += signed
            if quantity == 0:
                average, opened_at = ZERO, 0
            elif (quantity > 0) != (direction > 0):  # crossed zero: the rest opens the other side
                average, opened_at = fill.price, fill.ts_event
        fees = dict(self.fees)
        fees[fill.fee_currency] = fees.get(fill.fee_currency, ZERO) + fill.fee
        return Position(account_id=self.account_id, exchange=self.exchange, symbol=self.symbol, quantity=quantity,
                        average_price=average, realized_pnl=realized, fees=_frozen(fees), opened_at=opened_at,
                        fills=self.fills + 1)

    @classmethod
    def fold(cls, account_id: str, exchange: str, symbol: str, fills: Iterable[Fill]) -> Position:
        """The position of ``fills`` (applied in :func:`fill_order`)."""
        position = cls(account_id, exchange, symbol)
        for fill in sorted(fills, key=fill_order):
            position = position.apply(fill)
        return position


@dataclass(frozen=True, slots=True)
class Balances:
    """Cash per currency of one account (free balances; open orders are the holder's concern)."""

    amounts: Mapping[str, Decimal] = field(default_factory=lambda: _frozen({}))

    @classmethod
    def of(cls, amounts: Mapping[str, Decimal | str | int]) -> Balances:
        return cls(_frozen({currency: Decimal(amount) for currency, amount in amounts.items()}))

    def get(self, currency: str) -> Decimal:
        return self.amounts.get(currency, ZERO)

    def apply(self, fill: Fill) -> Balances:
        base, quote = split_symbol(fill.symbol)
        notional = mul(fill.quantity, fill.price)
        amounts = dict(self.amounts)
        if fill.side == "buy":
            amounts[quote] = amounts.get(quote, ZERO) - notional
            amounts[base] = amounts.get(base, ZERO) + fill.quantity
        else:
            amounts[quote] = amounts.get(quote, ZERO) + notional
            amounts[base] = amounts.get(base, ZERO) - fill.quantity
        amounts[fill.fee_currency] = amounts.get(fill.fee_currency, ZERO) - fill.fee
        return Balances(_frozen(amounts))
