"""What the research commands share: the account a run trades with, and the candles it runs on.

- :class:`RunSettings`: ``--cash``, ``--fee-bps`` (maker and taker), ``--slippage-bps``, turned
  into the engine's :class:`~tradeflow_trading.fills.FillRule` (design.md, "Fills").
- :func:`load_history`: the candles of ``[since, until)`` from a candle file (``--candles``) or
  from the database through the candle-builder's ``GET /v1/candles`` (``TRADEFLOW_CANDLE_BUILDER_URL``);
  only closed candles (a bucket that has not ended yet is left out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from tradeflow.clients.candles import CandleClient, closed_before
from tradeflow.timeframes import timeframe as timeframe_named
from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.money import from_bps
from tradeflow_trading.strategy.candles import CandleFrame

from tradeflow_backtest.data import Market, read_candles_csv
from tradeflow_backtest.engine import DEFAULT_CASH, Backtest


class NoCandles(RuntimeError):
    """The range holds no candle to run on; the text says where it looked."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    cash: Decimal = DEFAULT_CASH
    fee_bps: Decimal = Decimal(10)
    slippage_bps: Decimal = Decimal(0)

    def fill_rule(self) -> FillRule:
        fee = from_bps(self.fee_bps)
        return FillRule(FeeSchedule(maker=fee, taker=fee), slippage_bps=self.slippage_bps)

    def backtest(self, frame: CandleFrame, symbol: str, exchange: str, *, cash: Decimal | None = None) -> Backtest:
        return Backtest(Market(symbol, frame), timeframe=frame.timeframe, cash=cash if cash is not None else self.cash,
                        fill_rule=self.fill_rule(), exchange=exchange)

    def to_json(self) -> dict[str, str]:
        return {"cash": format(self.cash, "f"), "fee_bps": format(self.fee_bps, "f"),
                "slippage_bps": format(self.slippage_bps, "f")}


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    exchange: str
    symbol: str
    timeframe: str
    since_ns: int
    until_ns: int
    candles_file: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "symbol": self.symbol, "timeframe": self.timeframe}


def load_history(request: HistoryRequest, candle_builder_url: str, *,
                 progress: Callable[[int], None] | None = None) -> CandleFrame:
    """The closed candles of the request (see the module docstring); :class:`NoCandles` when none.
    ``progress`` is told how many candles each page from the candle-builder brought."""
    tf = timeframe_named(request.timeframe)
    if request.candles_file is not None:
        frame = read_candles_csv(request.candles_file, tf)
        where = str(request.candles_file)
    else:
        frame = asyncio.run(_from_api(request, candle_builder_url, progress))
        where = f"the candle-builder at {candle_builder_url}"
    frame = between(frame, request.since_ns, request.until_ns)
    if len(frame) == 0:
        raise NoCandles(f"no {request.timeframe} candles of {request.exchange} {request.symbol} in the range "
                        f"from {where}")
    return frame


def between(frame: CandleFrame, start_ns: int, end_ns: int) -> CandleFrame:
    """The rows whose candle starts in ``[start_ns, end_ns)``."""
    first, stop = np.searchsorted(frame.ts_start, [start_ns, end_ns], side="left")
    return frame.rows(int(first), int(stop))


async def _from_api(request: HistoryRequest, candle_builder_url: str, progress: Callable[[int], None] | None) -> CandleFrame:
    client = CandleClient(candle_builder_url)
    try:
        candles = await client.history(request.exchange, request.symbol, request.timeframe, request.since_ns,
                                       request.until_ns, on_page=progress and (lambda page: progress(len(page))))
    finally:
        await client.aclose()
    candles = closed_before(candles, request.timeframe, time.time_ns())
    tf = timeframe_named(request.timeframe)
    return CandleFrame.from_arrays(tf, [c.ts for c in candles], [c.open for c in candles], [c.high for c in candles],
                                   [c.low for c in candles], [c.close for c in candles], [c.volume for c in candles])
