"""Constructed problems for the research tools' tests: strategies whose best parameters are known.

``enter_exit_at`` enters on candle ``entry`` and exits on candle ``leave``; on :func:`valley_and_peak`
candles (the close falls to its lowest on candle 8, rises to its highest on candle 30, falls
after; each open is the previous close) the best return, without fees, is entering on candle 8
(filled at the open of candle 9, the trough) and exiting on 30 (filled at the peak).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tradeflow_trading.strategy import CandleFrame

from tests.strategy_candles import frame_of

BEST = {"entry": 8, "leave": 30}

STRATEGIES = '''
import time

import numpy as np
from tradeflow_trading.strategy import Decisions, IntParam, ParameterError, VectorStrategy


class EnterExitAt(VectorStrategy):
    """Enters on candle ``entry`` and exits on candle ``leave``, counted from the first candle."""

    name = "enter_exit_at"
    entry = IntParam(0, low=0, high=39)
    leave = IntParam(1, low=0, high=39)

    @classmethod
    def check_params(cls, params):
        if params.entry >= params.leave:
            raise ParameterError("entry", f"must be before leave ({params.leave})")

    def decide(self, data):
        rows = np.arange(len(data))
        return Decisions(enter_long=rows == self.params.entry, exit=rows == self.params.leave)


class SlowEnterExitAt(EnterExitAt):
    """The same, taking a tenth of a second per run (to interrupt a study in the middle)."""

    name = "slow_enter_exit_at"

    def decide(self, data):
        time.sleep(0.1)
        return super().decide(data)


class PeeksAhead(VectorStrategy):
    """Cheats: enters when the NEXT close is higher (reads a candle that has not closed yet)."""

    name = "peeks_ahead"

    def decide(self, data):
        following = np.r_[data.close[1:], data.close[-1]]
        return Decisions(enter_long=following > data.close, exit=following < data.close)
'''


def valley_and_peak() -> CandleFrame:
    i = np.arange(42)
    closes = 100.0 + np.where(i <= 8, -3 * i, np.where(i <= 30, -24 + 4 * (i - 8), 64 - 2 * (i - 30)))
    return frame_of(closes.astype(float))


def write_strategies(directory: Path) -> Path:
    path = directory / "research_strategies.py"
    path.write_text(STRATEGIES)
    return path
