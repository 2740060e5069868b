"""What a strategy decides after a closed candle: an intent, and the signal it becomes.

An :class:`Intent` is the SDK's output, the same live and in the backtest: enter long, exit,
or move the position to a target quantity, with a reason, named by the candle that decided
it. The strategy service turns it into the ``strategy.signals.v1`` message with the design's
deterministic id (:meth:`Intent.signal`); the backtest turns it into an order for the next
candle. ``enter_short`` exists on the wire but not in the SDK yet: the backtest and paper
accounts are spot (cash) accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from tradeflow.messages import Signal

from tradeflow_trading.ids import signal_id
from tradeflow_trading.money import to_decimal
from tradeflow_trading.strategy.candles import CandleFrame

IntentKind = Literal["enter_long", "exit", "target"]
INTENT_KINDS: tuple[IntentKind, ...] = ("enter_long", "exit", "target")


@dataclass(frozen=True, slots=True)
class Intent:
    """One decision on one candle of one market.

    ``ts_start``/``ts_end`` are the deciding candle's; the signal's ``ts_event`` is its end
    (design.md), and an order from it fills at the first trade at or after that end.
    ``price`` is the candle's close (the decision price). ``quantity`` (base units) is
    optional for ``enter_long``: without it the sizing rule decides (the backtest's default
    buys with all available cash). ``target_quantity`` is the wanted position for ``target``.
    """

    kind: IntentKind
    symbol: str
    timeframe: str
    ts_start: int
    ts_end: int
    price: Decimal
    reason: str = ""
    quantity: Decimal | None = None
    target_quantity: Decimal | None = None

    def signal_id(self, instance_id: str, exchange: str) -> str:
        return signal_id(instance_id, exchange, self.symbol, self.timeframe, self.ts_start, self.kind)

    def signal(self, *, instance_id: str, account_id: str, exchange: str, strategy: str = "") -> Signal:
        """The ``strategy.signals.v1`` message of this intent for one strategy instance."""
        return Signal(signal_id=self.signal_id(instance_id, exchange), account_id=account_id, strategy_id=instance_id,
                      strategy=strategy, exchange=exchange, symbol=self.symbol, timeframe=self.timeframe,
                      intent=self.kind, quantity=self.quantity, target_quantity=self.target_quantity,
                      price=self.price, reason=self.reason, ts_event=self.ts_end)


def intent_on(frame: CandleFrame, row: int, symbol: str, kind: IntentKind, reason: str = "", *,
              quantity: Decimal | None = None, target_quantity: Decimal | None = None) -> Intent:
    """The intent decided on candle ``row`` of ``frame`` (its close is the decision price)."""
    return Intent(kind, symbol, frame.timeframe, int(frame.ts_start[row]), int(frame.ts_end[row]),
                  to_decimal(float(frame.close[row])), reason, quantity, target_quantity)
