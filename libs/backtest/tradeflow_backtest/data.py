"""Candle history for a backtest: markets, and candle files (CSV).

A candle file (design.md, ``tradeflow backtest --candles FILE``) is a CSV with the header
``ts,open,high,low,close,volume``; ``ts`` is the candle's start, epoch milliseconds or ISO 8601
with an offset (:mod:`tradeflow.time`, the one parser of times). Rows must be in
increasing time order on the timeframe's grid with possible prices (high >= open, close >= low,
all positive, volume >= 0); the first bad row stops the read with its line number and what is
wrong, since a backtest over silently dropped candles would trade on a different history.
Missing candles (a minute without trades) are allowed: the next candle is simply later.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tradeflow.time import NS_PER_MS, TimeFormatError, parse_time_ns
from tradeflow.timeframes import Timeframe
from tradeflow_trading.strategy.candles import CandleDataError, CandleFrame

CANDLE_COLUMNS = ("ts", "open", "high", "low", "close", "volume")


class CandleFileError(ValueError):
    """A candle file that cannot be read; the message names the line (1 = the header)."""


@dataclass(frozen=True, slots=True)
class Market:
    """One market of a backtest: its symbol (``BASE/QUOTE``), its candles, and optionally candles
    of higher timeframes read elsewhere (by default they are cut from ``candles``)."""

    symbol: str
    candles: CandleFrame
    higher: Mapping[str, CandleFrame] = field(default_factory=dict)


def read_candles_csv(source: str | Path | io.TextIOBase, timeframe: Timeframe) -> CandleFrame:
    """The candles of a candle file (a path or an open text stream) as a checked frame."""
    try:
        table = pd.read_csv(source, dtype={"ts": str}, skipinitialspace=True, encoding_errors="strict")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CandleFileError(f"not a candle CSV: {exc}") from None
    columns = [str(c).strip().lower().lstrip("\ufeff") for c in table.columns]
    if tuple(columns) != CANDLE_COLUMNS:
        raise CandleFileError(f"line 1: expected the header {','.join(CANDLE_COLUMNS)!r}, got {','.join(columns)!r}")
    table.columns = list(CANDLE_COLUMNS)
    starts = _parse_times(table["ts"])
    values = {}
    for name in CANDLE_COLUMNS[1:]:
        column = pd.to_numeric(table[name], errors="coerce")
        bad = np.flatnonzero(column.isna().to_numpy())
        if bad.size:
            raise CandleFileError(f"line {bad[0] + 2}: {name} is not a number: {table[name].iloc[bad[0]]!r}")
        values[name] = column.to_numpy(dtype=np.float64)
    try:
        return CandleFrame.from_arrays(timeframe, starts, values["open"], values["high"], values["low"],
                                       values["close"], values["volume"])
    except CandleDataError as exc:
        raise CandleFileError(_with_line(str(exc))) from None


def _parse_times(texts: pd.Series) -> np.ndarray:
    """Epoch ms (the common case, parsed in bulk) or ISO 8601 (one by one, through tradeflow.time)."""
    texts = texts.fillna("").str.strip()
    plain = texts.str.fullmatch(r"\d{1,16}").to_numpy()
    starts = np.zeros(len(texts), dtype=np.int64)
    starts[plain] = texts[plain].astype(np.int64).to_numpy() * NS_PER_MS
    for i in np.flatnonzero(~plain):
        try:
            starts[i] = parse_time_ns(texts.iloc[i])
        except TimeFormatError as exc:
            raise CandleFileError(f"line {i + 2}: ts {exc}") from None
    return starts


def _with_line(message: str) -> str:
    """'row 4: ...' (0-based data row) as 'line 6: ...' (the file's line, the header is line 1)."""
    if message.startswith("row "):
        number, _, rest = message[4:].partition(":")
        if number.isdigit():
            return f"line {int(number) + 2}:{rest}"
    return message


def write_candles_csv(frame: CandleFrame, target: io.TextIOBase) -> None:
    """A frame as a candle file (epoch ms), e.g. to hand a history to ``tradeflow backtest``."""
    writer = csv.writer(target, lineterminator="\n")
    writer.writerow(CANDLE_COLUMNS)
    for i in range(len(frame)):
        writer.writerow([int(frame.ts_start[i]) // NS_PER_MS, repr(float(frame.open[i])), repr(float(frame.high[i])),
                         repr(float(frame.low[i])), repr(float(frame.close[i])), repr(float(frame.volume[i]))])
