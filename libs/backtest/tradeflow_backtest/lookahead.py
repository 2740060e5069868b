"""``tradeflow lookahead``: does a strategy read candles it could not have seen yet?

A decision on candle t may depend on candles up to t only. The check runs the strategy on the
whole history, then again on histories cut short, and compares the decisions on the candles
both runs saw (:func:`tradeflow_trading.strategy.parity.truncation_changes`): any signal that
appears, disappears or changes when future candles are removed is a look-ahead (freqtrade's
lookahead-analysis idea). The cuts are right after each signal of the full run (the most
likely place for a leak: a signal that needs the next candle vanishes when it is removed), up
to ``max_signals`` of them spread over the history, plus ``extra_cuts`` evenly spaced ones.

Event strategies are handed one closed candle at a time by construction and cannot see later
ones: there is nothing to check, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tradeflow_trading.strategy.base import Strategy, VectorStrategy
from tradeflow_trading.strategy.candles import CandleFrame
from tradeflow_trading.strategy.parity import decide_history, truncation_changes


@dataclass(frozen=True, slots=True)
class LookaheadReport:
    strategy: str
    checked: bool
    cuts: list[int] = field(default_factory=list)
    signals: int = 0
    changes: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def clean(self) -> bool:
        return not self.changes

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "checked": self.checked, "cuts": len(self.cuts), "signals": self.signals,
                "lookahead": bool(self.changes), "changes": self.changes, "note": self.note}


def cut_rows(decisions_rows: np.ndarray, length: int, *, max_signals: int, extra_cuts: int) -> list[int]:
    """Rows to cut at: right after up to ``max_signals`` signals (spread evenly), plus even cuts."""
    after_signals = decisions_rows[decisions_rows + 1 < length] + 1
    if after_signals.size > max_signals:
        after_signals = after_signals[np.linspace(0, after_signals.size - 1, max_signals).round().astype(int)]
    even = np.linspace(1, length - 1, extra_cuts + 2)[1:-1].round().astype(int) if length > 2 else np.array([], int)
    return sorted(set(after_signals.tolist()) | set(even.tolist()))


def check_lookahead(strategy_type: type[Strategy], params: dict[str, Any], frame: CandleFrame, symbol: str, *,
                    max_signals: int = 50, extra_cuts: int = 10) -> LookaheadReport:
    name = strategy_type.name or strategy_type.__name__
    if not issubclass(strategy_type, VectorStrategy):
        return LookaheadReport(name, checked=False, note="an event strategy sees one closed candle at a time: "
                               "it cannot read later candles, nothing to check")
    decisions = decide_history(strategy_type(params), frame)
    signalled = np.flatnonzero(decisions.enter_long | decisions.exit)
    cuts = cut_rows(signalled, len(frame), max_signals=max_signals, extra_cuts=extra_cuts)
    changes = truncation_changes(strategy_type, params, frame, cuts, symbol)
    return LookaheadReport(name, checked=True, cuts=cuts, signals=int(signalled.size), changes=changes)
