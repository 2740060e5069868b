"""The exchange feed's states through its seams: a scripted exchange in the process (the ccxt.pro
methods the feed calls) and the in-memory bus. Websocket -> lost (alert, REST polling) ->
reconnected (alert, catch-up) without losing or repeating a trade."""

from __future__ import annotations

import asyncio
import time

import ccxt
from tradeflow.bus.connection import Backoff
from tradeflow.messages import Alert
from tradeflow.testing import MemoryBus
from tradeflow.topics import MD_TICKS, OPS_ALERTS
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings
from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed
from tradeflow_ingest.adapters.tick_publisher import TickPublisher

SYMBOL = "BTC/USDT"


class ScriptedExchange:
    """What the feed uses of a ccxt.pro exchange. Trades the test makes are kept for REST
    (``fetch_trades`` from ``since``) and, while the websocket is up, pushed into ``trades`` (ccxt's
    per-symbol cache) waking the watcher; ``drop()`` fails the watcher with a NetworkError and
    keeps the websocket down until ``restore()``."""

    has = {"watchTradesForSymbols": True}

    def __init__(self) -> None:
        self.markets = {SYMBOL: {"symbol": SYMBOL}}
        self.trades: dict[str, list] = {}
        self.history: list[dict] = []
        self.ws_up = True
        self.rest_calls = 0
        self.watch_calls = 0
        self._wake = asyncio.Event()
        self._failure: BaseException | None = None
        self._next_id = 1

    def make_trade(self) -> dict:
        trade = {"id": str(self._next_id), "timestamp": time.time_ns() // 1_000_000 - 1, "symbol": SYMBOL,
                 "price": 100.0 + self._next_id, "amount": 1.0, "side": "buy"}
        self._next_id += 1
        self.history.append(trade)
        if self.ws_up:
            self.trades.setdefault(SYMBOL, []).append(trade)
            self._wake.set()
        return trade

    def drop(self) -> None:
        self.ws_up = False
        self._failure = ccxt.NetworkError("connection reset by the scripted exchange")
        self._wake.set()

    def restore(self) -> None:
        self.ws_up = True

    async def load_markets(self) -> dict:
        return self.markets

    async def watch_trades_for_symbols(self, symbols: list[str]) -> list:
        self.watch_calls += 1
        if not self.ws_up and self._failure is None:
            raise ccxt.NetworkError("websocket refused")
        while True:
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            if self._wake.is_set():
                self._wake.clear()
                return list(self.trades.get(SYMBOL, []))
            await self._wake.wait()

    async def fetch_trades(self, symbol: str, since: int | None = None, limit: int | None = None, params=None):
        self.rest_calls += 1
        page = [t for t in self.history if since is None or t["timestamp"] >= since]
        return page[:limit]

    async def close(self) -> None:
        return None

    async def close_ws_clients(self) -> None:
        return None

    def set_markets_from_exchange(self, other) -> None:
        self.markets = other.markets


async def wait_for(condition, timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_the_feed_falls_back_to_rest_when_the_websocket_drops_and_resumes_it_without_gaps_or_repeats():
    bus = MemoryBus()
    producer = bus.producer()
    await producer.start()
    publisher = TickPublisher(producer, bus.dead_letters(producer), bus.telemetry)
    exchange = ScriptedExchange()
    settings = ExchangeFeedSettings(id="gate", name="scripted", poll_interval_s=0.05, alert_interval_s=0.01)
    feed = CcxtTradeFeed(settings, publisher=publisher, clock=ReceiveClock(), telemetry=bus.telemetry,
                         exchange_factory=lambda _: exchange, backoff=Backoff(initial_s=0.3, maximum_s=0.3))
    feed.set_symbols((SYMBOL,))
    await feed.start()
    try:
        def published() -> list[str]:
            return [t.trade_id for t in bus.broker.values(MD_TICKS)]

        await wait_for(lambda: exchange.watch_calls >= 1, what="the websocket subscription")
        exchange.make_trade()
        await wait_for(lambda: published() == ["1"], what="the first trade")
        status = feed.feed_status()
        assert (status.mode, status.connected) == ("websocket", True)

        exchange.drop()  # websocket lost: REST polling takes over
        await wait_for(lambda: feed.feed_status().mode == "rest", what="REST mode")
        assert not feed.feed_status().connected
        exchange.make_trade()  # made while the websocket is down: REST finds it
        await wait_for(lambda: published() == ["1", "2"], what="the trade polled by REST")

        exchange.restore()
        exchange.make_trade()  # made just before the reconnect: the REST catch-up or the websocket
        await wait_for(lambda: feed.feed_status().mode == "websocket" and feed.feed_status().connected, 10,
                       "the reconnected websocket")
        exchange.make_trade()
        await wait_for(lambda: published()[-1:] == ["4"], what="trades after the reconnect")
        assert published() == ["1", "2", "3", "4"]  # nothing lost, nothing twice
        assert feed.feed_status().reconnects >= 1

        kinds = [a.kind for a in bus.broker.values(OPS_ALERTS) if isinstance(a, Alert)]
        assert kinds.index("feed_websocket_lost") < kinds.index("feed_websocket_recovered")
        assert {r.key for r in bus.broker.records(MD_TICKS.name)} == {b"scripted:BTC/USDT"}
    finally:
        await feed.stop()
