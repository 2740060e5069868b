"""``bollinger_reversion``: buy a close below the lower band, sell at the middle band."""

from __future__ import annotations

from tradeflow_trading.strategy import (
    Decisions,
    FloatParam,
    IntParam,
    StrategyData,
    VectorStrategy,
    bollinger,
)


class BollingerReversion(VectorStrategy):
    """Mean reversion to the middle Bollinger band, long only: enter when a close falls below the
    lower band, exit when a close is back at or above the middle band.

    Middle = mean of the last ``period`` closes; bands = middle -/+ ``width`` population standard
    deviations of those closes.
    """

    name = "bollinger_reversion"
    period = IntParam(20, low=2, high=10_000, doc="closes in the mean and the deviation")
    width = FloatParam(2.0, low=0.1, high=10.0, doc="band distance from the middle, in standard deviations")

    def warmup(self) -> int:
        return self.params.period

    def decide(self, data: StrategyData) -> Decisions:
        p = self.params
        lower, middle, _ = data.memo(("bollinger", p.period, p.width), lambda: bollinger(data.close, p.period, p.width))
        close = data.close
        return Decisions(enter_long=close < lower, exit=close >= middle,
                         enter_reason=f"close below the lower band ({p.period}, {p.width:g})",
                         exit_reason=f"close back at the middle band ({p.period})")
