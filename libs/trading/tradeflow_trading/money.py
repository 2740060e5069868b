"""Exact decimals for money (design.md: prices, quantities, fees, balances and P&L are exact).

Market data arrives as float64; it becomes a Decimal through its shortest round-trip text
(``repr``), i.e. the number as the exchange printed it, never the binary expansion
(``Decimal(0.1)`` is 0.1000000000000000055511151231257827...). Quantities are cut *down* to
their step so an order never asks for more than was decided or paid for.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)
# Default steps where no market precision is known (paper accounts, backtests).
DEFAULT_QUANTITY_STEP = Decimal("1e-8")
DEFAULT_PRICE_STEP = Decimal("1e-8")
# Enough digits for any product of a price, a quantity and a rate without rounding.
MONEY_CONTEXT = Context(prec=50)


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """``value`` as an exact Decimal; floats through their shortest text, which is what was sent."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number: {value!r}")
        return Decimal(repr(value))
    return Decimal(value)


# The arithmetic below calls MONEY_CONTEXT's methods directly: the same results as inside
# ``localcontext(MONEY_CONTEXT)``, without entering a context on every call (the hot path of
# every fill and position update).
_multiply = MONEY_CONTEXT.multiply
_divide = MONEY_CONTEXT.divide


def quantize_down(value: Decimal, step: Decimal) -> Decimal:
    """``value`` cut down (towards zero) to a multiple of ``step``."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    return _multiply(_divide(value, step).to_integral_value(rounding=ROUND_DOWN), step)


def quantize_price(value: Decimal, step: Decimal = DEFAULT_PRICE_STEP) -> Decimal:
    """A computed price (slipped, averaged) rounded half-even to the price step."""
    return _multiply(_divide(value, step).to_integral_value(rounding=ROUND_HALF_EVEN), step)


def from_bps(bps: Decimal | int | str) -> Decimal:
    """Basis points as a fraction: 5 bps -> 0.0005."""
    return Decimal(bps) / BPS


def mul(*factors: Decimal) -> Decimal:
    """An exact product (50 significant digits: no rounding for money-sized values)."""
    result = ONE
    for factor in factors:
        result = _multiply(result, factor)
    return result


def div(numerator: Decimal, denominator: Decimal) -> Decimal:
    return _divide(numerator, denominator)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """True when ``value`` lies on the ``step`` grid (e.g. a limit price on the tick size)."""
    ratio = _divide(value, step)
    return ratio == ratio.to_integral_value()
