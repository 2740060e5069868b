"""Position sizing: how much an entry trades when its signal carries no quantity.

Shared by risk (live and paper) and the backtest, so both size an entry the same way. Each
method is a validated model (chosen per account or strategy instance in configuration, a JSON
object with ``"method"``) and :func:`size_entry` turns it plus the account's numbers into a
:class:`Size`:

- ``fixed_quote`` ``{"amount"}``: spend ``amount`` of the quote currency.
- ``fraction_of_cash`` ``{"fraction"}``: spend ``fraction`` of the free quote balance. The
  backtest's default (``fraction`` 1: all available cash).
- ``fraction_of_equity`` ``{"fraction"}``: spend ``fraction`` of the equity (cash plus
  positions at their marks).
- ``volatility_target`` ``{"risk_fraction", "measure": "atr"|"stdev", "atr_multiple"}``: with
  ``atr``, a quantity whose move of ``atr_multiple`` ATRs costs ``risk_fraction`` of equity
  (``equity x risk_fraction / (ATR x atr_multiple)``); with ``stdev``, a quantity whose value
  moves by ``risk_fraction`` of equity in one standard deviation of returns
  (``equity x risk_fraction / (price x stdev)``).
- ``kelly`` ``{"scale", "cap", "min_trades", "fallback_fraction"}``: Kelly's fraction
  ``f* = W - (1 - W) / R`` (W the win rate, R the average win over the average loss of the
  closed trades), times ``scale`` (half Kelly by default), capped at ``cap``, of equity; the
  ``fallback_fraction`` of equity until ``min_trades`` trades are closed.

Buys sized in money become **quote-sized** market buys (``Order.quote_quantity``, ADR 0015):
the fill rule turns the amount into a quantity at the fill price, fee included, so "spend all
available cash" is exact whatever the price does between the decision and the fill. Sells
(short entries) need a base quantity: the amount is divided by the price and cut to the step.
Amounts are cut down to 1e-8 of the quote currency.
Volatility targets size a quantity directly.

**The minimum size** (:func:`below_minimum`): an entry that could never fill is refused, not
sent. At the decision price, a quote-sized buy must buy at least one quantity step by the fill
rule's own formula (``quote / (price x (1 + taker))`` cut to the step), and at least the
market's minimum quantity; a base quantity must be at least one step and the minimum; the
notional at least the market's minimum notional (where the market data knows them). Risk
rejects such an entry with ``below_minimum_size`` (:data:`BELOW_MINIMUM_SIZE`) and the backtest
skips it with the same reason, both through this one function. Typical case: an entry signal
while the account holds, sized from the cash an all-cash buy left over (less than one step).
The price can still move between the decision and the fill: an entry just above the minimum
may buy nothing at its fill price (execution then expires it, the backtest reports
``insufficient_cash``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tradeflow_trading.fills import quantity_for_quote
from tradeflow_trading.money import (
    DEFAULT_PRICE_STEP,
    DEFAULT_QUANTITY_STEP,
    ONE,
    ZERO,
    div,
    mul,
    quantize_down,
)


class _Method(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FixedQuote(_Method):
    method: Literal["fixed_quote"] = "fixed_quote"
    amount: Decimal = Field(gt=0, description="quote currency spent per entry")


class FractionOfCash(_Method):
    method: Literal["fraction_of_cash"] = "fraction_of_cash"
    fraction: Decimal = Field(default=ONE, gt=0, le=1, description="share of the free quote balance")


class FractionOfEquity(_Method):
    method: Literal["fraction_of_equity"] = "fraction_of_equity"
    fraction: Decimal = Field(gt=0, le=1, description="share of the equity")


class VolatilityTarget(_Method):
    method: Literal["volatility_target"] = "volatility_target"
    risk_fraction: Decimal = Field(gt=0, le=1, description="share of equity one unit of volatility may cost")
    measure: Literal["atr", "stdev"] = "atr"
    atr_multiple: Decimal = Field(default=ONE, gt=0, le=100, description="ATRs of adverse move (measure atr)")


class Kelly(_Method):
    method: Literal["kelly"] = "kelly"
    scale: Decimal = Field(default=Decimal("0.5"), gt=0, le=1, description="share of the Kelly fraction (0.5: half Kelly)")
    cap: Decimal = Field(default=Decimal("0.25"), gt=0, le=1, description="most of the equity one entry may take")
    min_trades: int = Field(default=20, ge=1, le=100_000, description="closed trades needed before Kelly applies")
    fallback_fraction: Decimal = Field(default=Decimal("0.01"), ge=0, le=1,
                                       description="share of equity while fewer trades are closed")


Sizing = Annotated[FixedQuote | FractionOfCash | FractionOfEquity | VolatilityTarget | Kelly,
                   Field(discriminator="method")]
ALL_CASH = FractionOfCash(fraction=ONE)


class SizingError(ValueError):
    """The method cannot size this entry (no ATR yet, nothing to spend...); the text says why."""


BELOW_MINIMUM_SIZE = "below_minimum_size"  # the reason code of an entry too small to fill (risk, backtest)


class BelowMinimumSize(SizingError):
    """The entry's size is below the market's minimum (it rounds to nothing at the quantity step)."""


@dataclass(frozen=True, slots=True)
class EntryMinimums:
    """A market's smallest order: its quantity step (fills are cut to it), and the exchange's
    minimum quantity and minimum notional (quote value) where they are known."""

    quantity_step: Decimal = DEFAULT_QUANTITY_STEP
    min_quantity: Decimal | None = None
    min_notional: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Why an entry is below the minimum size: a sentence, and what it would trade at the price."""

    message: str
    quantity: Decimal  # base quantity at the decision price, cut to the step
    notional: Decimal  # its quote value (a quote-sized buy: its amount)


@dataclass(frozen=True, slots=True)
class SizingInputs:
    """What the sizing methods read. ``price`` is the decision price of the entry."""

    price: Decimal
    equity: Decimal
    free_cash: Decimal
    atr: Decimal | None = None
    returns_stdev: Decimal | None = None
    win_rate: Decimal | None = None
    payoff_ratio: Decimal | None = None
    closed_trades: int = 0


@dataclass(frozen=True, slots=True)
class Size:
    """Exactly one of a base ``quantity`` and a ``quote`` amount to spend (buys only)."""

    quantity: Decimal | None = None
    quote: Decimal | None = None


def kelly_fraction(win_rate: Decimal, payoff_ratio: Decimal) -> Decimal:
    """``W - (1 - W) / R``, at least 0 (a losing edge stakes nothing)."""
    if payoff_ratio <= 0:
        return ZERO
    return max(ZERO, win_rate - div(ONE - win_rate, payoff_ratio))


def _money_amount(method: FixedQuote | FractionOfCash | FractionOfEquity | Kelly, inputs: SizingInputs) -> Decimal:
    if isinstance(method, FixedQuote):
        return method.amount
    if isinstance(method, FractionOfCash):
        return mul(inputs.free_cash, method.fraction)
    if isinstance(method, FractionOfEquity):
        return mul(inputs.equity, method.fraction)
    if inputs.closed_trades < method.min_trades or inputs.win_rate is None or inputs.payoff_ratio is None:
        fraction = method.fallback_fraction
    else:
        fraction = min(method.cap, mul(method.scale, kelly_fraction(inputs.win_rate, inputs.payoff_ratio)))
    return mul(inputs.equity, fraction)


def _volatility_quantity(method: VolatilityTarget, inputs: SizingInputs) -> Decimal:
    budget = mul(inputs.equity, method.risk_fraction)
    if method.measure == "atr":
        if inputs.atr is None or inputs.atr <= 0:
            raise SizingError("volatility_target: no ATR yet for this symbol (too few candles)")
        return div(budget, mul(inputs.atr, method.atr_multiple))
    if inputs.returns_stdev is None or inputs.returns_stdev <= 0:
        raise SizingError("volatility_target: no standard deviation of returns yet for this symbol (too few candles)")
    return div(budget, mul(inputs.price, inputs.returns_stdev))


def size_entry(method: FixedQuote | FractionOfCash | FractionOfEquity | VolatilityTarget | Kelly,
               inputs: SizingInputs, side: str, quantity_step: Decimal = DEFAULT_QUANTITY_STEP) -> Size:
    """The size of an entry on ``side`` (``buy`` or ``sell``); SizingError when there is none."""
    if inputs.price <= 0:
        raise SizingError(f"{method.method}: the price must be positive, got {inputs.price}")
    if isinstance(method, VolatilityTarget):
        quantity = quantize_down(_volatility_quantity(method, inputs), quantity_step)
    else:
        amount = quantize_down(_money_amount(method, inputs), DEFAULT_PRICE_STEP)
        if amount <= 0:
            raise SizingError(f"{method.method}: nothing to spend (amount {amount})")
        if side == "buy":
            return Size(quote=amount)
        quantity = quantize_down(div(amount, inputs.price), quantity_step)
    if quantity <= 0:
        raise BelowMinimumSize(f"{method.method}: the size rounds to zero at step {quantity_step}")
    return Size(quantity=quantity)


def below_minimum(size: Size, price: Decimal, minimums: EntryMinimums, *,
                  taker_fee: Decimal = ZERO) -> Shortfall | None:
    """Whether an entry of ``size`` at the decision ``price`` is too small to ever fill (None: it
    is not). A quote-sized buy pays ``taker_fee`` on its amount, as the fill rule has it."""
    step = minimums.quantity_step
    if size.quote is not None:
        quantity = quantity_for_quote(size.quote, price, taker_fee, step)
        notional, asked = size.quote, f"a buy of {_text(size.quote)} quote"
    else:
        quantity = quantize_down(size.quantity or ZERO, step)
        notional, asked = mul(quantity, price), f"quantity {_text(size.quantity or ZERO)}"
    if quantity <= 0:
        return Shortfall(f"{asked} is less than one quantity step ({_text(step)}) at {_text(price)}", quantity,
                         notional)
    if minimums.min_quantity is not None and quantity < minimums.min_quantity:
        return Shortfall(f"{asked} is {_text(quantity)} at {_text(price)}, below the market's minimum quantity "
                         f"{_text(minimums.min_quantity)}", quantity, notional)
    if minimums.min_notional is not None and notional < minimums.min_notional:
        return Shortfall(f"{asked} is worth {_text(notional)} at {_text(price)}, below the market's minimum notional "
                         f"{_text(minimums.min_notional)}", quantity, notional)
    return None


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


MONEY_METHODS = (FixedQuote, FractionOfCash, FractionOfEquity)


def entry_quote(method: FixedQuote | FractionOfCash | FractionOfEquity, *, free_cash: Decimal,
                equity: Decimal) -> Decimal:
    """The quote amount a buy entry sized by a money method spends, as risk sizes it (0: none).

    Risk refuses an entry whose amount exceeds the free cash (``insufficient_balance``); callers
    that simulate risk (the backtest) compare the amount with the cash the same way."""
    if not isinstance(method, MONEY_METHODS):
        raise SizingError(f"{method.method} sizes from market data and trade statistics: not a money amount")
    return max(ZERO, quantize_down(_money_amount(method, SizingInputs(price=ONE, equity=equity, free_cash=free_cash)),
                                   DEFAULT_PRICE_STEP))
