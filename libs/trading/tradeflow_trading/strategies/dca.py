"""``dca``: dollar-cost averaging on a fixed schedule."""

from __future__ import annotations

from tradeflow.timeframes import timeframe

from tradeflow_trading.money import DEFAULT_QUANTITY_STEP, div, quantize_down, to_decimal
from tradeflow_trading.strategy import EventStrategy, FloatParam, IntParam, StrategyContext


class Dca(EventStrategy):
    """Dollar-cost averaging, long only: buy ``amount`` of quote currency every ``every`` candles,
    ``amount`` x ``boost`` instead when the close is ``drawdown`` below the position's average
    price; optionally sell everything once the close is ``take_profit`` above it.

    The schedule is fixed by time, not by when the instance started: a buy falls on the candles
    whose start is a multiple of ``every`` candle lengths since the epoch, so live and backtest
    buy on the same candles. ``drawdown`` 0 turns the boost off, ``take_profit`` 0 the exit.
    """

    name = "dca"
    every = IntParam(24, low=1, high=1_000_000, doc="candles between buys")
    amount = FloatParam(100.0, low=0.0, high=1e12, doc="quote currency per buy (at the deciding close)")
    drawdown = FloatParam(0.0, low=0.0, high=0.99, doc="fraction below the average price that boosts a buy (0: off)")
    boost = FloatParam(2.0, low=1.0, high=100.0, doc="multiplier of amount on a drawdown")
    take_profit = FloatParam(0.0, low=0.0, high=100.0, doc="fraction above the average price that sells all (0: off)")

    def on_candle(self, ctx: StrategyContext) -> None:
        p = self.params
        position = ctx.position
        close = ctx.close
        average = float(position.average_price)
        if p.take_profit and position.quantity > 0 and close >= average * (1 + p.take_profit):
            ctx.exit(f"dca: close {close:g} is {p.take_profit:.2%} above the average {average:g}")
            return
        length = timeframe(ctx.timeframe).length_ns
        if (ctx.candle.ts_start // length) % p.every:
            return
        amount, reason = p.amount, f"dca: every {p.every} candles"
        if p.drawdown and position.quantity > 0 and close <= average * (1 - p.drawdown):
            amount, reason = p.amount * p.boost, f"dca: close {close:g} is {p.drawdown:.2%} below the average {average:g}"
        quantity = quantize_down(div(to_decimal(amount), to_decimal(close)), DEFAULT_QUANTITY_STEP)
        if quantity > 0:
            ctx.enter_long(reason, quantity)
