"""The strategy SDK (design.md, "Strategies"): write a strategy once, run it live and in the backtest.

Pure: no Kafka, no database, no clock. The strategy service drives it with
:class:`LiveRunner`; ``tradeflow_backtest`` with a loop over a whole history. Choices and
their measurements: docs/adr/0017.

Writing a strategy::

    from tradeflow_trading.strategy import (Decisions, IntParam, VectorStrategy, crossed_above,
                                            crossed_below, sma)

    class SmaCross(VectorStrategy):
        \"\"\"Long when the fast mean crosses above the slow one.\"\"\"
        name = "sma_cross"
        fast = IntParam(10, low=1, high=10_000)
        slow = IntParam(30, low=2, high=10_000)

        def warmup(self) -> int:
            return self.params.slow + 1

        def decide(self, data):
            fast, slow = sma(data.close, self.params.fast), sma(data.close, self.params.slow)
            return Decisions(enter_long=crossed_above(fast, slow), exit=crossed_below(fast, slow))

Modules: :mod:`.params` (declared parameters), :mod:`.base` (the base classes, the data a
vectorised strategy reads), :mod:`.context` (what an event strategy reads and emits),
:mod:`.intents` (decisions and their signals), :mod:`.candles` (candle columns, higher
timeframes), :mod:`.indicators` (window-exact indicators), :mod:`.runner` (the live driver),
:mod:`.parity` (live-vs-backtest decision checks), :mod:`.loader` (the catalog: entry points
and user files, reloading).
"""

from tradeflow_trading.strategy.base import (
    Decisions,
    EventStrategy,
    Strategy,
    StrategyData,
    StrategyDefinitionError,
    VectorStrategy,
)
from tradeflow_trading.strategy.candles import Bar, CandleDataError, CandleFrame, resample
from tradeflow_trading.strategy.context import IntentError, StrategyContext
from tradeflow_trading.strategy.indicators import (
    atr,
    bollinger,
    crossed_above,
    crossed_below,
    ema,
    highest,
    lowest,
    recursive_window,
    rsi,
    sma,
    stddev,
    window_sum,
)
from tradeflow_trading.strategy.intents import Intent
from tradeflow_trading.strategy.params import (
    ChoiceParam,
    Dimension,
    FloatParam,
    IntParam,
    ParameterError,
    Params,
)
from tradeflow_trading.strategy.runner import LiveRunner

__all__ = [
    "Bar", "CandleDataError", "CandleFrame", "ChoiceParam", "Decisions", "Dimension", "EventStrategy", "FloatParam",
    "Intent", "IntentError", "IntParam", "LiveRunner", "ParameterError", "Params", "Strategy", "StrategyContext",
    "StrategyData", "StrategyDefinitionError", "VectorStrategy", "atr", "bollinger", "crossed_above", "crossed_below",
    "ema", "highest", "lowest", "recursive_window", "resample", "rsi", "sma", "stddev", "window_sum",
]
