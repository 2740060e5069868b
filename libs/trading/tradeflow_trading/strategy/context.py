"""The context an event strategy's handlers receive: candles, position, parameters, intents.

One context per strategy instance and market, moved forward by its driver (the live runner
or the backtest) before each call. It gives exactly what the design allows a strategy to see:
closed candles of its timeframe (the last ``warmup()`` of them), closed higher-timeframe
candles, its position as the fold of its fills, its parameters and a logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal

from tradeflow_trading.money import ZERO, to_decimal
from tradeflow_trading.positions import Position
from tradeflow_trading.strategy.candles import Bar, CandleFrame
from tradeflow_trading.strategy.intents import Intent, IntentKind, intent_on
from tradeflow_trading.strategy.params import Params


class IntentError(ValueError):
    """An intent the SDK cannot send (a second one of a kind on a candle, a negative target)."""


def _amount(value: Decimal | int | str | float, what: str) -> Decimal:
    amount = to_decimal(value)
    if not amount.is_finite():
        raise IntentError(f"{what} must be a finite number, got {value!r}")
    return amount


class StrategyContext:
    """What :meth:`EventStrategy.on_candle` reads and how it emits intents."""

    def __init__(self, *, symbol: str, timeframe: str, params: Params, window: int, position: Position,
                 logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.params = params
        self.window = window
        self.position = position
        self.log = logger
        self.warming_up = False
        self.intents: list[Intent] = []
        self._frame: CandleFrame | None = None
        self._index = -1
        self._higher: Callable[[str], CandleFrame] | None = None

    # --- moved by the driver ---------------------------------------------------------------------

    def at(self, frame: CandleFrame, index: int, higher: Callable[[str], CandleFrame] | None) -> None:
        """Point the context at row ``index`` of ``frame`` (the candle that just closed)."""
        self._frame = frame
        self._index = index
        self._higher = higher
        self.intents = []

    # --- what the strategy reads -----------------------------------------------------------------

    @property
    def candle(self) -> Bar:
        """The candle that just closed."""
        return self._frame.bar(self._index)

    @property
    def close(self) -> float:
        return float(self._frame.close[self._index])

    @property
    def ts_end(self) -> int:
        return int(self._frame.ts_end[self._index])

    @property
    def candles(self) -> CandleFrame:
        """The last ``warmup()`` closed candles, this one included (fewer at the very start)."""
        stop = self._index + 1
        return self._frame.rows(max(0, stop - self.window), stop)

    def higher(self, timeframe: str) -> CandleFrame:
        """Closed candles of a declared higher timeframe, as of this candle's end."""
        if self._higher is None:
            raise KeyError(f"no higher timeframes declared, asked for {timeframe!r}")
        return self._higher(timeframe)

    # --- intents -------------------------------------------------------------------------------

    def enter_long(self, reason: str, quantity: Decimal | int | str | None = None) -> None:
        """Buy: ``quantity`` base units, or (None) what the sizing rule gives."""
        amount = None if quantity is None else _amount(quantity, "quantity")
        if amount is not None and amount <= 0:
            raise IntentError(f"enter_long quantity must be positive, got {amount}")
        self._emit("enter_long", reason, quantity=amount)

    def exit(self, reason: str) -> None:
        """Close the whole position."""
        self._emit("exit", reason)

    def target(self, quantity: Decimal | int | str, reason: str) -> None:
        """Move the position to ``quantity`` base units (>= 0: spot accounts hold no short)."""
        amount = _amount(quantity, "target quantity")
        if amount < ZERO:
            raise IntentError(f"target quantity must not be negative, got {amount}")
        self._emit("target", reason, target_quantity=amount)

    def _emit(self, kind: IntentKind, reason: str, *, quantity: Decimal | None = None,
              target_quantity: Decimal | None = None) -> None:
        # A signal id names (candle, intent): a second one of the same kind on this candle would
        # share the id and be dropped downstream as a duplicate, so refuse it here, loudly.
        if any(intent.kind == kind for intent in self.intents):
            raise IntentError(f"{kind} was already emitted for the candle starting at {self._frame.ts_start[self._index]}; "
                              f"one intent of each kind per candle (pass a quantity or use target for more)")
        self.intents.append(intent_on(self._frame, self._index, self.symbol, kind, reason, quantity=quantity,
                                      target_quantity=target_quantity))
