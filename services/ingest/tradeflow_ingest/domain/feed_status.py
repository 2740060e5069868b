"""What an exchange feed reports about itself (``GET /v1/feeds``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class SymbolFeedStatus:
    symbol: str
    received: int  # distinct trades the exchange sent (websocket/REST overlap counted once)
    published: int  # acknowledged on md.ticks.v1
    rejected: int  # held back to md.ticks.v1.dlq (invalid or implausible)
    last_trade_ns: int | None  # event time of the last published trade
    trades_per_second: float  # received, over the last minute


@dataclass(frozen=True, slots=True)
class FeedStatus:
    exchange: str
    mode: Literal["websocket", "rest"]
    connected: bool  # the websocket has delivered since its last (re)connect
    reconnects: int  # websocket connection attempts after the first
    breaker_state: str  # closed | open | half_open
    symbols: tuple[SymbolFeedStatus, ...]


class ExchangeFeed(Protocol):
    def feed_status(self) -> FeedStatus: ...
