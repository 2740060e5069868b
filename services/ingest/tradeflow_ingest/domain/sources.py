"""The contract every tick source of the service fulfils (synthetic now, exchange feeds next).

A source is a component (``start``/``stop``) that produces ticks and hands them to the
publisher it was built with; the API lists each source's :class:`SourceStatus`. A ccxt
websocket/REST feed (issue 3) is one more implementation of :class:`TickSource`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from tradeflow_ingest.domain.resume_point import ResumePoint


@dataclass(frozen=True, slots=True)
class SourceStatus:
    kind: str  # "synthetic" (later: "ccxt-ws", "ccxt-rest")
    exchange: str
    symbols: tuple[str, ...]
    rate: float | None  # configured ticks per second, None when the feed sets the pace
    published: int
    rejected: int
    last_event_ns: int | None  # ts_event of the last published tick
    running: bool


class TickSource(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> SourceStatus: ...


class SubscribableFeed(Protocol):
    """An exchange feed whose symbols change at run time (the subscriptions decide them)."""

    @property
    def symbols(self) -> tuple[str, ...]: ...

    def set_symbols(self, symbols: tuple[str, ...], resume: Mapping[str, ResumePoint] | None = None) -> None:
        """Serve ``symbols`` from now on; those in ``resume`` from their resume point."""

    async def symbols_applied(self) -> None:
        """Return once the last set_symbols is in effect (removed symbols publish no more)."""

    def known_symbol(self, symbol: str) -> bool | None: ...
