"""``sma_cross`` filtered by a higher timeframe's trend: the multi-timeframe example."""

from __future__ import annotations

import numpy as np

from tradeflow_trading.strategies.sma_cross import SmaCross, cached_sma
from tradeflow_trading.strategy import ChoiceParam, Decisions, IntParam, StrategyData, crossed_above, sma


class SmaCrossTrend(SmaCross):
    """``sma_cross`` that never enters against a falling higher-timeframe trend (1w by default).

    The trend is the mean of the last ``trend`` closes of ``trend_timeframe`` candles; it is
    falling when that mean is below the previous candle's. An entry needs the newest trend
    candle *closed* by the deciding candle's end to be not falling (a forming week is never
    read); before ``trend`` + 1 of them have closed there is no entry. Exits are
    ``sma_cross``'s.
    """

    name = "sma_cross_trend"
    trend = IntParam(10, low=1, high=500, doc="higher-timeframe closes in the trend mean")
    trend_timeframe = ChoiceParam("1w", choices=("1h", "4h", "1d", "1w"), doc="timeframe of the trend")

    def informative(self) -> dict[str, int]:
        return {self.params.trend_timeframe: self.params.trend + 1}

    def decide(self, data: StrategyData) -> Decisions:
        p = self.params
        crossing = super().decide(data)
        higher = data.higher(p.trend_timeframe)
        trend = sma(higher.close, p.trend)
        not_falling = np.zeros(len(higher))
        not_falling[1:] = trend[1:] >= trend[:-1]  # False where either mean is missing
        allowed = data.on_base(p.trend_timeframe, not_falling) == 1.0  # NaN (no closed candle yet) -> False
        fast, slow = cached_sma(data, p.fast), cached_sma(data, p.slow)
        return Decisions(enter_long=crossed_above(fast, slow) & allowed, exit=crossing.exit,
                         enter_reason=f"{crossing.enter_reason}, {p.trend_timeframe} SMA({p.trend}) not falling",
                         exit_reason=crossing.exit_reason)
