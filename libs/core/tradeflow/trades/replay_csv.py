"""Replay files (CSV) to ticks, one line at a time.

Format (shared/design.md): a header ``ts,exchange,symbol,price,amount,side,trade_id``, then one
trade per line. ``ts`` is epoch milliseconds or ISO 8601 (see
:mod:`tradeflow.time`; an ISO time without an offset is UTC, the platform's one rule). ``side`` is compared
case-insensitively; surrounding spaces in any field are ignored; blank lines are ignored.

:func:`parse_replay_lines` is a generator: it holds one line at a time, so a file of any size
streams through. Lines come out in file order (an out-of-order ``ts`` is kept where it is:
ordering by event time is the consumers' job). A bad line does not stop the file: it comes out
as a :class:`RejectedLine` with its 1-based line number (the header is line 1) and the reason;
only a missing or wrong header fails the whole file (:class:`ReplayFileError`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from tradeflow.marketdata import tick_rejection_reason
from tradeflow.messages import Tick
from tradeflow.time import TimeFormatError, parse_time_ns
from tradeflow.trades.receive_clock import ReceiveClock

REPLAY_COLUMNS = ("ts", "exchange", "symbol", "price", "amount", "side", "trade_id")
_BYTE_ORDER_MARK = "\ufeff"


class ReplayFileError(ValueError):
    """The file as a whole cannot be replayed (missing or wrong header)."""


class _BadLine(ValueError):
    """One line that cannot become a tick; its text is the reason (``code: details``)."""


class RejectedLine(NamedTuple):
    """A line that was skipped: its 1-based line number and why."""

    line_no: int
    reason: str


def parse_replay_lines(lines: Iterable[str], clock: ReceiveClock) -> Iterator[Tick | RejectedLine]:
    """Each data line of a replay file as a :class:`Tick` or a :class:`RejectedLine`, in file order.

    ``lines`` is any iterable of text lines (an open file works; newlines are optional).
    ``ts_recv`` of each tick is stamped from ``clock`` as its line is read, so ticks with the
    same event time keep file order downstream. A tick is validated with
    ``tick_rejection_reason`` (future skew measured against its ``ts_recv``); an invalid tick is
    a rejected line like a malformed one. Raises :class:`ReplayFileError` before the first
    item when the header is missing or wrong.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    _check_header(header)
    for row in reader:
        if not row:
            continue  # blank line
        line_no = reader.line_num
        try:
            tick = _tick_from_row(row, clock)
        except _BadLine as exc:
            yield RejectedLine(line_no, str(exc))
            continue
        reason = tick_rejection_reason(tick, now_ns=tick.ts_recv)
        if reason is None:
            yield tick
        else:
            yield RejectedLine(line_no, reason)


def _check_header(header: list[str] | None) -> None:
    expected = ",".join(REPLAY_COLUMNS)
    if header is None:
        raise ReplayFileError(f"empty file: expected the header line {expected!r}")
    columns = [c.strip().lower() for c in header]
    if columns and columns[0].startswith(_BYTE_ORDER_MARK):
        columns[0] = columns[0][len(_BYTE_ORDER_MARK) :]
    if tuple(columns) != REPLAY_COLUMNS:
        raise ReplayFileError(f"line 1: expected the header {expected!r}, got {','.join(header)!r}")


def _tick_from_row(row: list[str], clock: ReceiveClock) -> Tick:
    if len(row) != len(REPLAY_COLUMNS):
        raise _BadLine(f"malformed_line: expected {len(REPLAY_COLUMNS)} columns, got {len(row)}")
    ts, exchange, symbol, price, amount, side, trade_id = (field.strip() for field in row)
    try:
        ts_event = parse_time_ns(ts)
    except TimeFormatError as exc:
        raise _BadLine(f"invalid_time: {exc}") from None
    exchange_ok = exchange and ":" not in exchange  # the key is exchange:symbol
    if not exchange_ok or not symbol:
        raise _BadLine(f"invalid_instrument: exchange (without ':') and symbol must be non-empty, "
                       f"got {exchange!r}, {symbol!r}")
    if not trade_id:
        raise _BadLine("invalid_trade_id: trade_id must be non-empty")
    return Tick(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price=_number("price", price),
        amount=_number("amount", amount),
        side=side.lower(),
        ts_event=ts_event,
        ts_recv=clock.next(),
    )


def _number(column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise _BadLine(f"invalid_{column}: not a number: {text!r}") from None
