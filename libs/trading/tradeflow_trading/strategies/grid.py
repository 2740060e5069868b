"""``grid``: a fixed grid of price levels around a reference price."""

from __future__ import annotations

import math
from decimal import Decimal

from tradeflow.messages import Fill

from tradeflow_trading.money import DEFAULT_QUANTITY_STEP, div, quantize_down, to_decimal
from tradeflow_trading.strategy import EventStrategy, FloatParam, IntParam, StrategyContext


class Grid(EventStrategy):
    """Grid trading, long only: levels every ``step`` (a fraction of the reference price) around
    ``reference``; a close one level below the last traded level buys a lot of ``lot`` quote
    currency, a close one level above it sells the newest lot held.

    Level k is ``reference x (1 + k x step)``; the grid starts at level 0 (``reference``, or the
    first close seen when 0) and goes at most ``levels`` levels down (that many lots held). One
    lot per candle. With no lot held the last level follows the price up, but not above the
    reference, so the next buy is one step below the recent price.
    """

    name = "grid"
    reference = FloatParam(0.0, low=0.0, high=1e12, doc="price of level 0 (0: the first close seen)")
    step = FloatParam(0.01, low=0.0001, high=0.5, doc="distance between levels, as a fraction of the reference")
    levels = IntParam(5, low=1, high=1000, doc="levels below the reference (lots held at most)")
    lot = FloatParam(100.0, low=0.0, high=1e12, doc="quote currency spent per lot (at the deciding close)")

    def setup(self) -> None:
        self.origin = self.params.reference or None
        self.level = 0  # the last traded level
        self.lots: list[Decimal] = []  # quantities bought, newest last (from fills)

    def price_of(self, level: int) -> float:
        return self.origin * (1 + level * self.params.step)

    def on_candle(self, ctx: StrategyContext) -> None:
        close = ctx.close
        if self.origin is None:
            self.origin = close
        if not self.lots:
            # Follow the price up to the reference while nothing is held.
            below = math.floor((close / self.origin - 1) / self.params.step)
            self.level = max(self.level, min(0, below))
        if close >= self.price_of(self.level + 1) and self.lots:
            quantity = self.lots.pop()
            ctx.target(max(ctx.position.quantity - quantity, Decimal(0)),
                       f"grid: close {close:g} at level {self.level + 1} above {self.level}")
            self.level += 1
        elif close <= self.price_of(self.level - 1) and self.level > -self.params.levels:
            quantity = quantize_down(div(to_decimal(self.params.lot), to_decimal(close)), DEFAULT_QUANTITY_STEP)
            if quantity > 0:
                ctx.enter_long(f"grid: close {close:g} at level {self.level - 1} below {self.level}", quantity)
                self.level -= 1

    def on_fill(self, ctx: StrategyContext, fill: Fill) -> None:
        if fill.side == "buy":
            self.lots.append(fill.quantity)
