"""``rsi``: Wilder's RSI crossing its bands."""

from __future__ import annotations

import numpy as np

from tradeflow_trading.strategy import (
    Decisions,
    FloatParam,
    IntParam,
    ParameterError,
    Params,
    StrategyData,
    VectorStrategy,
    crossed_above,
    crossed_below,
    recursive_window,
    rsi,
)


class Rsi(VectorStrategy):
    """Wilder's RSI, long only: enter when it crosses up through ``lower``, exit when it crosses
    down through ``upper``.

    RSI(t) is TA-Lib's Wilder RSI of ``period`` over the last ``window`` closes (default
    10 x period + 1, see docs/adr/0017); "crosses up through lower" is RSI(t) > lower and
    RSI(t-1) <= lower, "crosses down through upper" is RSI(t) < upper and RSI(t-1) >= upper.
    """

    name = "rsi"
    period = IntParam(14, low=2, high=500, doc="RSI period (Wilder's smoothing)")
    lower = FloatParam(30.0, low=0.0, high=100.0, doc="entry when the RSI crosses up through it")
    upper = FloatParam(70.0, low=0.0, high=100.0, doc="exit when the RSI crosses down through it")
    window = IntParam(0, low=0, high=100_000, doc="closes each RSI value is computed from (0: 10 x period + 1)")

    @classmethod
    def check_params(cls, params: Params) -> None:
        if params.lower >= params.upper:
            raise ParameterError("lower", f"must be less than upper ({params.upper}), got {params.lower}")
        if params.window and params.window < params.period + 1:
            raise ParameterError("window", f"must be 0 or at least period + 1 ({params.period + 1}), got {params.window}")

    def setup(self) -> None:
        self.rsi_window = recursive_window(self.params.period, self.params.window or None, extra=1)

    def warmup(self) -> int:
        return self.rsi_window + 1  # RSI(t-1) needs the candle before the window of RSI(t)

    def decide(self, data: StrategyData) -> Decisions:
        p = self.params
        values = data.memo(("rsi", p.period, self.rsi_window), lambda: rsi(data.close, p.period, self.rsi_window))
        return Decisions(enter_long=crossed_above(values, np.full_like(values, p.lower)),
                         exit=crossed_below(values, np.full_like(values, p.upper)),
                         enter_reason=f"RSI({p.period}) crossed up through {p.lower:g}",
                         exit_reason=f"RSI({p.period}) crossed down through {p.upper:g}")
