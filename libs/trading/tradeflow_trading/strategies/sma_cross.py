"""``sma_cross`` exactly as design.md defines it."""

from __future__ import annotations

from tradeflow_trading.strategy import (
    Decisions,
    IntParam,
    ParameterError,
    Params,
    StrategyData,
    VectorStrategy,
    crossed_above,
    crossed_below,
    sma,
)


def cached_sma(data: StrategyData, period: int):
    """The mean of the last ``period`` closes, shared by the trials of an optimiser on these candles."""
    return data.memo(("sma", "close", period), lambda: sma(data.close, period))


class SmaCross(VectorStrategy):
    """Moving-average crossover, long only: enter when the fast mean of closes crosses above the
    slow one, exit when it crosses below.

    After candle t closes, with F(t), S(t) the means of the last ``fast`` and ``slow`` closes up
    to and including t: ``enter_long`` when F(t) > S(t) and F(t-1) <= S(t-1); ``exit`` when
    F(t) < S(t) and F(t-1) >= S(t-1); nothing before t has ``slow`` + 1 candles (the means of
    t-1 do not exist before). The signal's ts_event is candle t's end.
    """

    name = "sma_cross"
    fast = IntParam(10, low=1, high=10_000, doc="closes in the fast mean")
    slow = IntParam(30, low=2, high=10_000, doc="closes in the slow mean (more than fast)")

    @classmethod
    def check_params(cls, params: Params) -> None:
        if params.fast >= params.slow:
            raise ParameterError("fast", f"must be less than slow ({params.slow}), got {params.fast}")

    def warmup(self) -> int:
        return self.params.slow + 1

    def decide(self, data: StrategyData) -> Decisions:
        fast, slow = cached_sma(data, self.params.fast), cached_sma(data, self.params.slow)
        p = self.params
        return Decisions(enter_long=crossed_above(fast, slow), exit=crossed_below(fast, slow),
                         enter_reason=f"SMA({p.fast}) crossed above SMA({p.slow})",
                         exit_reason=f"SMA({p.fast}) crossed below SMA({p.slow})")
