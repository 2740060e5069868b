"""Registered instruments: what a registration says and how a new one relates to a stored one (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tradeflow_candle_builder.domain.sessions import SessionTable, SessionTimeframe, session_timeframes

TWENTY_FOUR_SEVEN = "24/7"
# Exchange ids as ccxt and our keys use them; symbols as ccxt writes them (BTC/USDT, BTC/USDT:USDT, AAPL).
_EXCHANGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_.:+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """One instrument's market calendar: "24/7" (UTC-aligned bars) or an exchange_calendars code."""

    exchange: str
    symbol: str
    calendar: str = TWENTY_FOUR_SEVEN
    extended_hours: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.exchange, self.symbol

    @property
    def has_sessions(self) -> bool:
        return self.calendar != TWENTY_FOUR_SEVEN

    def same_settings(self, other: InstrumentSpec) -> bool:
        return (self.calendar, self.extended_hours) == (other.calendar, other.extended_hours)


def instrument_problem(exchange: str, symbol: str) -> str | None:
    """Why ``exchange``/``symbol`` cannot be registered, or None."""
    if not _EXCHANGE.match(exchange):
        return f"exchange: {exchange!r} must be 1-64 letters, digits, '_', '.' or '-' (e.g. binance)"
    if not _SYMBOL.match(symbol):
        return f"symbol: {symbol!r} must be 1-64 letters, digits, '/', ':', '_', '.', '+' or '-' (e.g. BTC/USDT, AAPL)"
    return None


class SessionRules:
    """How a session instrument's trades become candles: which trades count, and the higher grids."""

    __slots__ = ("spec", "table", "timeframes")

    def __init__(self, spec: InstrumentSpec, table: SessionTable) -> None:
        self.spec = spec
        self.table = table
        self.timeframes: tuple[SessionTimeframe, ...] = session_timeframes(table)

    def counts(self, ts_ns: int) -> bool:
        """Whether a trade at ``ts_ns`` is inside a (regular or, when on, extended) session."""
        return self.table.contains(ts_ns)

    def timeframe(self, name: str) -> SessionTimeframe:
        for tf in self.timeframes:
            if tf.name == name:
                return tf
        raise ValueError(f"no session timeframe {name!r}")
