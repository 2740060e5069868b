"""A local fake of Binance spot (REST + websocket market streams) that ccxt's parsers accept.

Serves, on 127.0.0.1 and a free port:

* ``GET /api/v3/exchangeInfo``: the configured symbols as spot markets;
* ``GET /api/v3/aggTrades`` (``symbol``, ``startTime``, ``endTime``, ``fromId``, ``limit``; like
  Binance, more than an hour between startTime and endTime is refused) and
  ``GET /api/v3/trades`` (``symbol``, ``limit``: the most recent);
* ``GET /api/v3/klines`` (``symbol``, ``interval=1m``, ``startTime``, ``endTime``, ``limit``):
  1m candles computed from the recorded trades;
* ``/ws/<stream>``: the market-stream websocket. A client sends
  ``{"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", ...], "id": N}``; the fake answers
  ``{"result": null, "id": N}`` and then pushes ``aggTrade``/``trade`` events of those streams.

Trades are made by the test (:meth:`FakeBinance.make_trade`): each is recorded (REST serves it)
and pushed to every subscribed websocket that is not paused. One id sequence per symbol, used as
both the aggregate-trade id (``a``) and the trade id (``t``), so a trade has the same id however
a client reads it. Test controls: :meth:`drop_websockets` (disconnect mid-stream),
``refuse_websockets`` (the stream is down), ``stall_websockets`` (connected, silent),
:meth:`fail_rest` (429/418 with Retry-After; ``request_times`` and ``refused_at`` say
when each request came and each refusal went), ``serve_trade_history = False`` (aggTrades
ignores the time and id it is asked for and answers the most recent trades, like an exchange
without trade history), :meth:`record_trades` (history made in bulk, without websocket pushes), :meth:`send_raw_frame` (malformed frames),
:meth:`stop`/:meth:`start` (restart on the same port).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.fakes.loopback_exchange import LoopbackExchange

MAX_AGG_TRADES_LIMIT = 1000
MAX_KLINES_LIMIT = 1000
MAX_AGG_TRADES_WINDOW_MS = 3_600_000
MINUTE_MS = 60_000


@dataclass(frozen=True)
class FakeTrade:
    symbol: str  # exchange id, e.g. BTCUSDT
    trade_id: int
    price: str
    amount: str
    ts_ms: int
    buyer_is_maker: bool  # Binance's "m": the taker sold

    def agg_trade_json(self) -> dict:
        return {"a": self.trade_id, "p": self.price, "q": self.amount, "f": self.trade_id,
                "l": self.trade_id, "T": self.ts_ms, "m": self.buyer_is_maker, "M": True}

    def trade_json(self) -> dict:
        return {"id": self.trade_id, "price": self.price, "qty": self.amount,
                "quoteQty": str(float(self.price) * float(self.amount)), "time": self.ts_ms,
                "isBuyerMaker": self.buyer_is_maker, "isBestMatch": True}

    def event(self, stream_kind: str) -> dict:
        base = {"E": self.ts_ms, "s": self.symbol, "p": self.price, "q": self.amount, "T": self.ts_ms,
                "m": self.buyer_is_maker, "M": True}
        if stream_kind == "aggTrade":
            return {"e": "aggTrade", "a": self.trade_id, "f": self.trade_id, "l": self.trade_id, **base}
        return {"e": "trade", "t": self.trade_id, **base}


@dataclass
class _Subscriber:
    ws: web.WebSocketResponse
    streams: set[str] = field(default_factory=set)  # e.g. "btcusdt@aggTrade"


def _market(symbol_id: str, base: str, quote: str) -> dict:
    return {
        "symbol": symbol_id, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "icebergAllowed": True, "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True, "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00000", "stepSize": "0.00001"},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER", "allowedSelfTradePreventionModes": ["NONE"],
    }


class FakeBinance(LoopbackExchange):
    """Start with ``await start()``; point ccxt at :attr:`rest_url` and :attr:`ws_url`."""

    def __init__(self, markets: dict[str, tuple[str, str]] | None = None) -> None:
        super().__init__()
        # exchange id -> (base, quote)
        self.markets = markets or {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}
        self.trades: dict[str, list[FakeTrade]] = {symbol: [] for symbol in self.markets}
        self.refuse_websockets = False  # new connections are answered 503 (the stream is down)
        self.stall_websockets = False  # connections stay open but no events are pushed
        self.requests: list[str] = []  # "GET /api/v3/aggTrades?..." in order, for assertions
        # (time.monotonic(), "GET /path?query") of every request, websocket connections included
        self.request_times: list[tuple[float, str]] = []
        self.refused_at: list[float] = []  # time.monotonic() of each injected 429/418 answer
        self.subscriptions: list[list[str]] = []  # params of every SUBSCRIBE received
        self.serve_trade_history = True  # False: aggTrades answers the most recent trades only
        self._rest_failures: deque[tuple[int, float]] = deque()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v3"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def connected_websockets(self) -> int:
        return sum(1 for s in self._subscribers if s.streams and not s.ws.closed)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/aggTrades", self._agg_trades)
        app.router.add_get("/api/v3/trades", self._recent_trades)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/ws/{stream}", self._websocket)
        app.router.add_get("/ws", self._websocket)

    # --- test controls -------------------------------------------------------------------

    async def make_trade(self, symbol: str, price: float, amount: float, *, taker_side: str = "buy",
                         ts_ms: int | None = None) -> FakeTrade:
        """Record a trade (REST serves it from now on) and push it to the subscribed websockets."""
        history = self.trades[symbol]
        trade = FakeTrade(symbol, len(history) + 1, f"{price:.2f}", f"{amount:.5f}",
                          ts_ms if ts_ms is not None else int(time.time() * 1000), taker_side == "sell")
        history.append(trade)
        if not self.stall_websockets:
            for subscriber in list(self._subscribers):
                for kind in ("aggTrade", "trade"):
                    if f"{symbol.lower()}@{kind}" in subscriber.streams and not subscriber.ws.closed:
                        try:
                            await subscriber.ws.send_str(json.dumps(trade.event(kind)))
                        except ConnectionError:  # the client went away (killed) mid-send
                            self._subscribers.remove(subscriber)
                            break
        return trade

    def record_trades(self, symbol: str, trades: list[tuple[int, float, float, str]]) -> list[FakeTrade]:
        """Add past trades ``(ts_ms, price, amount, taker_side)`` in time order (REST serves them;
        nothing is pushed). Ids continue the symbol's sequence."""
        history = self.trades[symbol]
        made = []
        for ts_ms, price, amount, taker_side in sorted(trades, key=lambda t: t[0]):
            made.append(FakeTrade(symbol, len(history) + 1, f"{price:.2f}", f"{amount:.5f}", ts_ms,
                                  taker_side == "sell"))
            history.append(made[-1])
        return made

    async def send_raw_frame(self, text: str) -> None:
        """Send ``text`` as-is to every subscribed websocket (malformed or unexpected frames)."""
        for subscriber in list(self._subscribers):
            if not subscriber.ws.closed:
                await subscriber.ws.send_str(text)

    def fail_rest(self, status: int, retry_after_s: float = 0.0, times: int = 1, after: int = 0) -> None:
        """The next ``times`` trade requests are answered ``status``: 429/418 with Retry-After and
        Binance's rate-limit error, any other status as a bare outage (e.g. 503). With ``after``,
        that many trade requests are served normally first."""
        self._rest_failures.extend([(0, 0.0)] * after + [(status, retry_after_s)] * times)

    def heal_rest(self) -> None:
        """Forget the failures :meth:`fail_rest` queued that have not been served yet."""
        self._rest_failures.clear()

    # --- handlers ------------------------------------------------------------------------

    def _log(self, request: web.Request) -> None:
        self.requests.append(f"{request.method} {request.path_qs}")
        self.request_times.append((time.monotonic(), f"{request.method} {request.path_qs}"))

    async def _time(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response({
            "timezone": "UTC", "serverTime": int(time.time() * 1000),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                            "limit": 6000}],
            "exchangeFilters": [],
            "symbols": [_market(symbol, base, quote) for symbol, (base, quote) in self.markets.items()],
        })

    def _injected_failure(self) -> web.Response | None:
        if not self._rest_failures:
            return None
        status, retry_after_s = self._rest_failures.popleft()
        if status == 0:  # served normally (fail_rest's ``after``)
            return None
        self.refused_at.append(time.monotonic())
        if status not in (418, 429):  # the exchange is down: no Binance error code, no Retry-After
            return web.Response(status=status, text="Service Unavailable")
        return web.json_response({"code": -1003, "msg": "Too many requests; slow down."}, status=status,
                                 headers={"Retry-After": str(int(retry_after_s))})

    def _history(self, request: web.Request) -> list[FakeTrade] | web.Response:
        symbol = request.query.get("symbol", "")
        if symbol not in self.trades:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        return self.trades[symbol]

    async def _agg_trades(self, request: web.Request) -> web.Response:
        self._log(request)
        if (failure := self._injected_failure()) is not None:
            return failure
        history = self._history(request)
        if isinstance(history, web.Response):
            return history
        query = request.query
        limit = min(int(query.get("limit", 500)), MAX_AGG_TRADES_LIMIT)
        if "startTime" in query and "endTime" in query and \
                int(query["endTime"]) - int(query["startTime"]) > MAX_AGG_TRADES_WINDOW_MS:
            return web.json_response({"code": -1127, "msg": "More than 1 hours between startTime and endTime."},
                                     status=400)
        if not self.serve_trade_history:
            return web.json_response([t.agg_trade_json() for t in history[-limit:]])
        selected = history
        if "fromId" in query:
            selected = [t for t in selected if t.trade_id >= int(query["fromId"])]
        if "startTime" in query:
            selected = [t for t in selected if t.ts_ms >= int(query["startTime"])]
        if "endTime" in query:
            selected = [t for t in selected if t.ts_ms <= int(query["endTime"])]
        # Binance: with a start (id or time) the oldest come first, otherwise the most recent.
        page = selected[:limit] if ("fromId" in query or "startTime" in query) else selected[-limit:]
        return web.json_response([t.agg_trade_json() for t in page])

    async def _klines(self, request: web.Request) -> web.Response:
        """1m klines of the recorded trades: [open time, o, h, l, c, volume, close time, quote
        volume, trades, taker buy base, taker buy quote, "0"], oldest first from startTime."""
        self._log(request)
        if (failure := self._injected_failure()) is not None:
            return failure
        history = self._history(request)
        if isinstance(history, web.Response):
            return history
        query = request.query
        if query.get("interval") != "1m":
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        start = int(query.get("startTime", 0))
        end = int(query.get("endTime", 2**62))
        limit = min(int(query.get("limit", 500)), MAX_KLINES_LIMIT)
        minutes: dict[int, list[FakeTrade]] = {}
        for trade in history:
            minute = trade.ts_ms - trade.ts_ms % MINUTE_MS
            if start <= minute <= end:
                minutes.setdefault(minute, []).append(trade)
        rows = []
        for minute in sorted(minutes)[:limit]:
            trades = minutes[minute]  # in id order, which is time order
            prices = [float(t.price) for t in trades]
            volume = sum(float(t.amount) for t in trades)
            rows.append([minute, trades[0].price, f"{max(prices):.2f}", f"{min(prices):.2f}", trades[-1].price,
                         repr(volume), minute + MINUTE_MS - 1, "0", len(trades), "0", "0", "0"])
        return web.json_response(rows)

    async def _recent_trades(self, request: web.Request) -> web.Response:
        self._log(request)
        if (failure := self._injected_failure()) is not None:
            return failure
        history = self._history(request)
        if isinstance(history, web.Response):
            return history
        limit = min(int(request.query.get("limit", 500)), MAX_AGG_TRADES_LIMIT)
        return web.json_response([t.trade_json() for t in history[-limit:]])

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.request_times.append((time.monotonic(), f"{request.method} {request.path_qs}"))
        if self.refuse_websockets:
            return web.Response(status=503, text="stream unavailable")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        subscriber = _Subscriber(ws)
        self._subscribers.append(subscriber)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    command = json.loads(message.data)
                except ValueError:
                    await ws.send_str(json.dumps({"error": {"code": 2, "msg": "Invalid JSON"}}))
                    continue
                if command.get("method") == "SUBSCRIBE":
                    params = [str(p) for p in command.get("params", [])]
                    self.subscriptions.append(params)
                    subscriber.streams.update(params)
                    await ws.send_str(json.dumps({"result": None, "id": command.get("id")}))
                elif command.get("method") == "UNSUBSCRIBE":
                    subscriber.streams.difference_update(command.get("params", []))
                    await ws.send_str(json.dumps({"result": None, "id": command.get("id")}))
        finally:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
        return ws
