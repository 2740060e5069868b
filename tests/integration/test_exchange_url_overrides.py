"""The ``urls`` overrides of each supported exchange send ALL its market-data traffic to loopback.

Per exchange id, a recording aiohttp server on 127.0.0.1 answers every request and websocket
upgrade with 503. The ccxt client made by ``create_ccxt_exchange`` with the documented overrides
(README, "Exchange feeds") loads its markets, fetches trades from a cursor as the feed does, and
watches trades as the feed does; each call fails (503), and every request it made must have
reached the recording server. ccxt's HTTP call and websocket client factory are wrapped to list
every URL the client tried and to refuse any that is not loopback, so a missing override shows
as a failure here and never as a request to the real exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import ccxt
import pytest
from aiohttp import web
from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings, create_ccxt_exchange, trades_request
from tradeflow_ops.infra.processes import free_port

pytestmark = pytest.mark.integration

SINCE_MS = 1_700_000_000_000


@dataclass(frozen=True)
class LoopbackExchange:
    urls: Callable[[str, str], dict[str, str]]  # (http base, ws base) -> the ``urls`` overrides
    market: dict  # one spot market as ccxt would have loaded it (the server loads none)
    rest_paths: tuple[str, ...]  # the market-data paths the client must have requested
    ws_path: str  # the websocket path (prefix) of the trades subscription


def spot_market(market_id: str, symbol: str, **extra) -> dict:
    base, quote = symbol.split("/")
    return {"id": market_id, "symbol": symbol, "base": base, "quote": quote, "baseId": base, "quoteId": quote,
            "type": "spot", "spot": True, "margin": False, "swap": False, "future": False, "option": False,
            "contract": False, "linear": None, "inverse": None, "active": True,
            "precision": {"amount": 1e-8, "price": 0.01}, "limits": {}, "info": {}, **extra}


# The overrides documented in README ("Exchange feeds"): REST and websocket of market data.
EXCHANGES: dict[str, LoopbackExchange] = {
    "binance": LoopbackExchange(
        lambda http, ws: {"public": f"{http}/api/v3", "ws.spot": f"{ws}/ws"},
        spot_market("BTCUSDT", "BTC/USDT", lowercaseId="btcusdt"),
        ("/api/v3/exchangeInfo", "/api/v3/aggTrades"), "/ws"),
    "coinbase": LoopbackExchange(
        lambda http, ws: {"rest": http, "ws": f"{ws}/"},
        spot_market("BTC-USD", "BTC/USD"),
        ("/v2/currencies", "/api/v3/brokerage/market/products/BTC-USD/ticker"), "/"),
    "kraken": LoopbackExchange(
        lambda http, ws: {"public": http, "ws.public": f"{ws}/", "ws.publicV2": f"{ws}/v2"},
        spot_market("XXBTZUSD", "BTC/USD", wsId="XBT/USD", altname="XBTUSD"),
        ("/0/public/Assets", "/0/public/Trades"), "/v2"),
    "bybit": LoopbackExchange(
        lambda http, ws: {"public": http, "ws.public.spot": f"{ws}/v5/public/spot"},
        spot_market("BTCUSDT", "BTC/USDT"),
        ("/v5/market/instruments-info", "/v5/market/recent-trade"), "/v5/public/spot"),
    "okx": LoopbackExchange(
        lambda http, ws: {"rest": http, "ws": f"{ws}/ws/v5"},
        spot_market("BTC-USDT", "BTC/USDT"),
        ("/api/v5/public/instruments", "/api/v5/market/trades"), "/ws/v5/public"),
}


class RecordingServer:
    """Answers every request 503 and records it ("GET /path?query", websocket upgrades marked)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _any(self, request: web.Request) -> web.Response:
        upgrade = " (websocket)" if request.headers.get("Upgrade", "").lower() == "websocket" else ""
        self.requests.append(f"{request.method} {request.path_qs}{upgrade}")
        return web.Response(status=503, text="Service Unavailable")


def guard_loopback(exchange: ccxt.pro.Exchange, tried: list[str]) -> None:
    """Record every URL the client tries (HTTP and websocket); refuse any that is not loopback."""
    http_fetch, ws_client = exchange.fetch, exchange.client

    def check(url: str) -> None:
        tried.append(url)
        if urlsplit(url).hostname != "127.0.0.1":
            raise ccxt.NetworkError(f"refused non-loopback URL {url}")

    async def fetch(url, method="GET", headers=None, body=None):
        check(url)
        return await http_fetch(url, method, headers, body)

    def client(url):
        check(url)
        return ws_client(url)

    exchange.fetch = fetch
    exchange.client = client


@pytest.fixture
async def recording_server():
    server = RecordingServer()
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("exchange_id", sorted(EXCHANGES))
async def test_every_market_data_request_of_the_exchange_reaches_the_loopback_server(
    exchange_id, recording_server
):
    spec = EXCHANGES[exchange_id]
    host = f"127.0.0.1:{recording_server.port}"
    overrides = spec.urls(f"http://{host}", f"ws://{host}")
    exchange = create_ccxt_exchange(ExchangeFeedSettings(id=exchange_id, urls=overrides))
    exchange.timeout = 5_000
    tried: list[str] = []
    guard_loopback(exchange, tried)
    symbol = spec.market["symbol"]
    try:
        with pytest.raises(ccxt.NetworkError):  # 503 from the recording server
            await exchange.load_markets()
        exchange.set_markets([spec.market])
        limit, params = trades_request(exchange_id, SINCE_MS + 60_000)
        with pytest.raises(ccxt.NetworkError):
            await exchange.fetch_trades(symbol, since=SINCE_MS, limit=limit, params=params)
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(exchange.watch_trades_for_symbols([symbol]), 10)
    finally:
        await exchange.close()

    assert all(urlsplit(url).hostname == "127.0.0.1" for url in tried), tried
    paths = [request.split()[1] for request in recording_server.requests]
    # everything the client tried arrived (ccxt asks for the same websocket client more than once)
    assert {urlsplit(url)._replace(scheme="", netloc="").geturl() for url in tried} == set(paths), (
        tried, recording_server.requests)
    for rest_path in spec.rest_paths:
        assert any(path.startswith(rest_path) for path in paths), (rest_path, recording_server.requests)
    upgrades = [path for path, request in zip(paths, recording_server.requests, strict=True)
                if request.endswith("(websocket)")]
    assert upgrades and all(path.startswith(spec.ws_path) for path in upgrades), recording_server.requests
    assert exchange.has["watchTradesForSymbols"]  # the feed subscribes all its symbols in one call
    for path in overrides:  # the overrides took: those entries of urls['api'] are loopback now
        node = exchange.urls["api"]
        for part in path.split("."):
            node = node[part]
        assert urlsplit(node).hostname == "127.0.0.1"
