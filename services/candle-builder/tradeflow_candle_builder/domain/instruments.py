"""Registered instruments: what a registration says and how a new one relates to a stored one (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from tradeflow.markets import instrument_problem

from tradeflow_candle_builder.domain.sessions import SessionTable, SessionTimeframe, session_timeframes

TWENTY_FOUR_SEVEN = "24/7"
__all__ = ["TWENTY_FOUR_SEVEN", "InstrumentSpec", "SessionRules", "instrument_problem"]  # instrument_problem: tradeflow.markets


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
