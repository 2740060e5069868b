"""ccxt unified trade structures to :class:`~tradeflow.messages.Tick` (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tradeflow.messages import Tick
from tradeflow.time import NS_PER_MS


class UnusableTrade(ValueError):
    """A trade without the fields a tick cannot do without (symbol, id, timestamp)."""


def trade_fields(trade: Mapping[str, Any]) -> tuple[str, str, int]:
    """(symbol, trade id, event time in ms) of a ccxt trade; raises UnusableTrade when one is missing."""
    symbol, trade_id, ts_ms = trade.get("symbol"), trade.get("id"), trade.get("timestamp")
    if not symbol or trade_id is None or str(trade_id) == "":
        raise UnusableTrade(f"trade without symbol or id: {dict(trade)!r}")
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
        raise UnusableTrade(f"trade {symbol} {trade_id} without an integer ms timestamp: {ts_ms!r}")
    return str(symbol), str(trade_id), ts_ms


def _number(value: Any) -> float:
    # A missing or non-numeric value becomes NaN, which the publisher's validation sends to the
    # DLQ with a precise reason instead of this module guessing a value.
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def trade_to_tick(exchange: str, trade: Mapping[str, Any], ts_recv: int) -> Tick:
    """The tick of a ccxt trade. ``side`` is kept as given (``None`` becomes ``""``, invalid later)."""
    symbol, trade_id, ts_ms = trade_fields(trade)
    return tick_of_fields(exchange, symbol, trade_id, ts_ms, trade, ts_recv)


def tick_of_fields(exchange: str, symbol: str, trade_id: str, ts_ms: int, trade: Mapping[str, Any],
                   ts_recv: int) -> Tick:
    """:func:`trade_to_tick` for a trade whose :func:`trade_fields` the caller already has."""
    return Tick(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price=_number(trade.get("price")),
        amount=_number(trade.get("amount")),
        side=str(trade.get("side") or ""),
        ts_event=ts_ms * NS_PER_MS,
        ts_recv=ts_recv,
    )


def _id_order(trade_id: str) -> tuple[int, int | str]:
    return (0, int(trade_id)) if trade_id.isdigit() else (1, trade_id)


def in_exchange_order(trades: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Usable trades sorted by (symbol, timestamp, numeric id): the order the exchange made them.

    A REST page and a websocket batch may overlap or interleave; sorting before publishing
    keeps each symbol's ticks in exchange order. Unusable trades are left out (see
    :func:`trade_fields`); the caller counts them via ``len(trades) - len(result)``.
    """
    usable = []
    for trade in trades:
        try:
            symbol, trade_id, ts_ms = trade_fields(trade)
        except UnusableTrade:
            continue
        usable.append(((symbol, ts_ms, _id_order(trade_id)), trade))
    usable.sort(key=lambda pair: pair[0])
    return [trade for _, trade in usable]
