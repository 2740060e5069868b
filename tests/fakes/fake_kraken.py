"""A local fake of Kraken spot market data (REST + websocket v2) in Kraken's own formats, so that
ccxt's kraken parsers read it.

Serves, on 127.0.0.1 and a free port (REST answers are ``{"error": [...], "result": ...}`` with
HTTP 200, errors included, as Kraken does):

* ``GET /0/public/Assets`` and ``GET /0/public/AssetPairs``: the configured pairs (Kraken's asset
  ids such as ``XXBT``/``ZUSD``, altname, wsname) with their assets;
* ``GET /0/public/Trades`` (``pair``, ``since``, ``count`` 1..1000, default 1000): with ``since``,
  the oldest ``count`` trades made after it (exclusive), else the newest ``count``. Rows are
  ``[price, volume, time, "b"|"s", "m"|"l", "", trade_id]`` (time: float seconds), and
  ``result.last`` is the time of the page's last trade in nanoseconds (``since`` when the page is
  empty): Kraken's own cursor, to be sent back as the next ``since``. A ``since`` of 19 digits or
  more is read as nanoseconds; a shorter one as seconds, decimals allowed (ccxt sends whole seconds:
  ``since`` in ms, divided by 1000 and truncated);
* ``/v2``: the websocket v2. On connect a ``status`` message; ``{"method": "subscribe", "params":
  {"channel": "trade", "symbol": ["BTC/USD", ...]}, "req_id": N}`` is acknowledged per symbol
  (``{"method": "subscribe", "result": {...}, "success": true, "req_id": N, ...}``; an unknown
  pair gets ``success: false`` with Kraken's error), followed by a ``snapshot`` of that pair's
  newest 50 trades (none when it has none); then ``{"channel": "trade", "type": "update", "data":
  [trade]}`` per trade (``trade_id``, ``timestamp`` in RFC 3339 with microseconds); a
  ``{"channel": "heartbeat"}`` every ``heartbeat_s`` on a subscribed connection; ``{"method":
  "ping", "req_id": N}`` is answered ``{"method": "pong", "req_id": N, ...}``.

Trades are made by the test (:meth:`FakeKraken.make_trade`): recorded (REST serves them) and
pushed to the websockets subscribed to the pair. One trade id sequence per pair; times in
microseconds, strictly increasing per pair, so that ``last`` names one trade. Test controls:
``stall_websockets`` (connections stay open and keep sending heartbeats and pongs, but no
trades: a stalled stream that only a silence watch notices), ``refuse_websockets``,
:meth:`drop_websockets`, ``requests``, ``subscriptions`` and ``pings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from aiohttp import WSMsgType, web

from tests.fakes.loopback_exchange import LoopbackExchange

MAX_TRADES_COUNT = 1000
SNAPSHOT_TRADES = 50
NS_DIGITS = 19  # a since this long (or longer) is nanoseconds, like Kraken's `last`
NS_PER_S = 1_000_000_000
NS_PER_US = 1_000


@dataclass(frozen=True)
class KrakenPair:
    """One spot pair: its AssetPairs key (``XXBTZUSD``), asset ids, altname and names."""

    key: str
    base: str  # asset id, e.g. XXBT
    quote: str  # asset id, e.g. ZUSD
    altname: str  # e.g. XBTUSD
    wsname: str  # websocket v1 name, e.g. XBT/USD
    symbol: str  # websocket v2 name, e.g. BTC/USD


# asset id -> altname (Kraken's Assets); the pairs below use these
ASSETS = {"XXBT": "XBT", "XETH": "ETH", "SOL": "SOL", "ZUSD": "ZUSD"}
DEFAULT_PAIRS = (
    KrakenPair("XXBTZUSD", "XXBT", "ZUSD", "XBTUSD", "XBT/USD", "BTC/USD"),
    KrakenPair("XETHZUSD", "XETH", "ZUSD", "ETHUSD", "ETH/USD", "ETH/USD"),
    KrakenPair("SOLUSD", "SOL", "ZUSD", "SOLUSD", "SOL/USD", "SOL/USD"),
)


@dataclass(frozen=True)
class KrakenTrade:
    pair: KrakenPair
    trade_id: int
    price: str
    volume: str
    ts_ns: int  # a whole number of microseconds
    side: str  # the taker's side: buy or sell
    order_type: str  # market or limit

    def rest_row(self) -> list:
        return [self.price, self.volume, self.ts_ns / NS_PER_S, self.side[0], self.order_type[0], "",
                self.trade_id]

    def ws_json(self) -> dict:
        seconds, micros = divmod(self.ts_ns // NS_PER_US, 1_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"
        return {"symbol": self.pair.symbol, "side": self.side, "price": float(self.price),
                "qty": float(self.volume), "ord_type": self.order_type, "trade_id": self.trade_id,
                "timestamp": stamp}


@dataclass
class _Subscriber:
    ws: web.WebSocketResponse
    symbols: set[str] = field(default_factory=set)  # v2 names subscribed to the trade channel
    heartbeat: asyncio.Task | None = None


def _ok(result: dict) -> web.Response:
    return web.json_response({"error": [], "result": result})


def _error(message: str) -> web.Response:
    return web.json_response({"error": [message]})  # Kraken answers errors with HTTP 200


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() // 1000 % 1_000_000:06d}Z"


def _asset(altname: str) -> dict:
    return {"aclass": "currency", "altname": altname, "decimals": 10, "display_decimals": 5,
            "collateral_value": 1.0, "status": "enabled"}


def _asset_pair(pair: KrakenPair) -> dict:
    return {
        "altname": pair.altname, "wsname": pair.wsname, "aclass_base": "currency", "base": pair.base,
        "aclass_quote": "currency", "quote": pair.quote, "lot": "unit", "cost_decimals": 5, "pair_decimals": 1,
        "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [2, 3], "leverage_sell": [2, 3],
        "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
        "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40, "ordermin": "0.0001",
        "costmin": "0.5", "tick_size": "0.1", "status": "online",
    }


def since_ns(value: str) -> int:
    """Kraken's ``since``: nanoseconds when it has 19 digits or more, else seconds (decimals allowed).
    Raises ValueError for anything else."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(value) from None
    if not number.is_finite() or number < 0:
        raise ValueError(value)
    if "." not in value and len(value.lstrip("0")) >= NS_DIGITS:
        return int(number)
    return int(number * NS_PER_S)


class FakeKraken(LoopbackExchange):
    """Start with ``await start()``; point ccxt at ``{"public": rest_url, "ws.publicV2": ws_url}``."""

    def __init__(self, pairs: tuple[KrakenPair, ...] = DEFAULT_PAIRS, heartbeat_s: float = 1.0) -> None:
        super().__init__()
        self.pairs = {pair.key: pair for pair in pairs}
        self._by_symbol = {pair.symbol: pair for pair in pairs}
        self.trades: dict[str, list[KrakenTrade]] = {pair.key: [] for pair in pairs}
        self.heartbeat_s = heartbeat_s
        self.stall_websockets = False  # connections stay open (heartbeats, pongs) but push no trades
        self.refuse_websockets = False  # new connections are answered 503 (the stream is down)
        self.requests: list[str] = []  # "GET /0/public/Trades?..." in order, websocket connections included
        self.subscriptions: list[list[str]] = []  # symbols of every trade subscribe received
        self.pings = 0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    @property
    def connected_websockets(self) -> int:
        return sum(1 for s in self._subscribers if s.symbols and not s.ws.closed)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/0/public/Assets", self._assets)
        app.router.add_get("/0/public/AssetPairs", self._asset_pairs)
        app.router.add_get("/0/public/Trades", self._trades)
        app.router.add_get("/v2", self._websocket)

    # --- test controls -------------------------------------------------------------------

    async def make_trade(self, symbol: str, price: float, volume: float, *, taker_side: str = "buy",
                         ts_ns: int | None = None) -> KrakenTrade:
        """Record a trade of ``symbol`` (v2 name, e.g. BTC/USD) and push it to the subscribed
        websockets (unless stalled). Its time is ``ts_ns`` (default now), in whole microseconds,
        moved just after the pair's previous trade if it is not later."""
        pair = self._by_symbol[symbol]
        history = self.trades[pair.key]
        wanted = time.time_ns() if ts_ns is None else ts_ns
        wanted -= wanted % NS_PER_US
        if history and wanted <= history[-1].ts_ns:
            wanted = history[-1].ts_ns + NS_PER_US
        trade = KrakenTrade(pair, len(history) + 1, f"{price:.1f}", f"{volume:.8f}", wanted, taker_side,
                            "market" if len(history) % 3 else "limit")
        history.append(trade)
        if not self.stall_websockets:
            await self._push(symbol, "update", [trade])
        return trade

    # --- REST ----------------------------------------------------------------------------

    def _log(self, request: web.Request) -> None:
        self.requests.append(f"{request.method} {request.path_qs}")

    async def _assets(self, request: web.Request) -> web.Response:
        self._log(request)
        return _ok({asset_id: _asset(altname) for asset_id, altname in ASSETS.items()})

    async def _asset_pairs(self, request: web.Request) -> web.Response:
        self._log(request)
        return _ok({key: _asset_pair(pair) for key, pair in self.pairs.items()})

    async def _trades(self, request: web.Request) -> web.Response:
        self._log(request)
        query = request.query
        pair = self.pairs.get(query.get("pair", ""))
        if pair is None:
            return _error("EQuery:Unknown asset pair")
        try:
            count = int(query.get("count", MAX_TRADES_COUNT))
            since = since_ns(query["since"]) if "since" in query else None
        except ValueError:
            return _error("EGeneral:Invalid arguments")
        if not 1 <= count <= MAX_TRADES_COUNT:
            return _error("EGeneral:Invalid arguments")
        history = self.trades[pair.key]
        if since is None:
            page = history[-count:]
        else:
            page = [t for t in history if t.ts_ns > since][:count]
        last = page[-1].ts_ns if page else (since if since is not None else 0)
        return _ok({pair.key: [t.rest_row() for t in page], "last": str(last)})

    # --- websocket v2 --------------------------------------------------------------------

    async def _push(self, symbol: str, kind: str, trades: list[KrakenTrade]) -> None:
        message = json.dumps({"channel": "trade", "type": kind, "data": [t.ws_json() for t in trades]})
        for subscriber in list(self._subscribers):
            if symbol in subscriber.symbols and not subscriber.ws.closed:
                try:
                    await subscriber.ws.send_str(message)
                except ConnectionError:  # the client went away mid-send
                    self._subscribers.remove(subscriber)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        if self.refuse_websockets:
            return web.Response(status=503, text="stream unavailable")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        subscriber = _Subscriber(ws)
        self._subscribers.append(subscriber)
        await ws.send_str(json.dumps({"channel": "status", "type": "update", "data": [
            {"version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": id(ws)}]}))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._command(subscriber, message.data)
        finally:
            if subscriber.heartbeat is not None:
                subscriber.heartbeat.cancel()
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
        return ws

    async def _heartbeats(self, ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(ConnectionError):
            while not ws.closed:
                await asyncio.sleep(self.heartbeat_s)
                await ws.send_str('{"channel":"heartbeat"}')

    async def _command(self, subscriber: _Subscriber, text: str) -> None:
        ws = subscriber.ws
        time_in = _stamp()
        try:
            command = json.loads(text)
            method, params, req_id = command.get("method"), command.get("params") or {}, command.get("req_id")
        except (ValueError, AttributeError):
            await ws.send_str(json.dumps({"error": "Malformed request", "success": False, "time_in": time_in,
                                          "time_out": _stamp()}))
            return
        if method == "ping":
            self.pings += 1
            await ws.send_str(json.dumps({"method": "pong", "req_id": req_id, "time_in": time_in,
                                          "time_out": _stamp()}))
            return
        if method not in ("subscribe", "unsubscribe") or params.get("channel") != "trade":
            await ws.send_str(json.dumps({"error": f"Unsupported request: {text}", "method": method,
                                          "req_id": req_id, "success": False, "time_in": time_in,
                                          "time_out": _stamp()}))
            return
        symbols = params.get("symbol") or []
        accepted = []
        for symbol in symbols:
            if symbol not in self._by_symbol:
                await ws.send_str(json.dumps({"error": f"Currency pair not supported {symbol}", "method": method,
                                              "req_id": req_id, "success": False, "symbol": symbol,
                                              "time_in": time_in, "time_out": _stamp()}))
                continue
            accepted.append(symbol)
            result = {"channel": "trade", "symbol": symbol}
            if method == "subscribe":
                result["snapshot"] = params.get("snapshot", True)
                subscriber.symbols.add(symbol)
            else:
                subscriber.symbols.discard(symbol)
            await ws.send_str(json.dumps({"method": method, "result": result, "success": True, "req_id": req_id,
                                          "time_in": time_in, "time_out": _stamp()}))
            history = self.trades[self._by_symbol[symbol].key]
            if method == "subscribe" and result["snapshot"] and history and not self.stall_websockets:
                await ws.send_str(json.dumps({"channel": "trade", "type": "snapshot",
                                              "data": [t.ws_json() for t in history[-SNAPSHOT_TRADES:]]}))
        if method == "subscribe" and accepted:
            self.subscriptions.append(accepted)
            if subscriber.heartbeat is None:
                subscriber.heartbeat = asyncio.create_task(self._heartbeats(ws))
