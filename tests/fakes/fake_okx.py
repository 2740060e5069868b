"""A local fake of OKX v5 spot market data (REST + public websocket) that ccxt's parsers accept.

Serves, on 127.0.0.1 and a free port (every answer in OKX's ``{"code": "0", "msg": "", "data": [...]}``):

* ``GET /api/v5/public/instruments?instType=SPOT``: the configured instruments (other types: none);
* ``GET /api/v5/market/trades`` (``instId``, ``limit`` 1..500, default 100): the most recent
  trades, newest first. This is what ccxt's ``okx.fetch_trades`` calls; it sends no time (ccxt
  filters the answer by ``since`` itself), so a client sees at most the last 500 trades;
* ``GET /api/v5/market/history-trades`` (``instId``, ``type`` 1 = by trade id [default] or 2 = by
  timestamp, ``after`` = older than, ``before`` = newer than, ``limit`` 1..100, default 100):
  newest first, the newest ``limit`` of the range, as OKX pages history backwards. ccxt calls it
  only with the ``method`` 'publicGetMarketHistoryTrades' (option or param; the feed's catch-up
  passes it with ``after`` = the oldest trade id it has) or ``paginate``;
* ``GET /api/v5/public/time``;
* ``/ws/v5/public``: the public websocket. ``{"op": "subscribe", "args": [{"channel": "trades",
  "instId": "BTC-USDT"}, ...]}`` is answered per arg with ``{"event": "subscribe", "arg": ...,
  "connId": ...}`` (an unknown instrument with OKX's error 60018), then the ``trades`` channel
  pushes ``{"arg": {...}, "data": [trade]}``; the text frame ``ping`` is answered ``pong``.

A limit out of range is OKX's error 51000 (HTTP 400). Trades are made by the test
(:meth:`FakeOkx.make_trade`): recorded (REST serves them) and pushed to every subscribed
websocket; one trade id sequence per instrument. Test controls as the fake Binance:
:meth:`drop_websockets`, ``refuse_websockets``, ``stall_websockets`` (connected, silent),
:meth:`fail_rest` / :meth:`heal_rest`, ``requests`` and ``subscriptions``.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.fakes.loopback_exchange import LoopbackExchange

MAX_TRADES_LIMIT = 500
MAX_HISTORY_TRADES_LIMIT = 100
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class OkxTrade:
    inst_id: str  # e.g. BTC-USDT
    trade_id: int
    price: str
    size: str
    ts_ms: int
    side: str  # the taker's side: buy or sell

    def json(self) -> dict:
        return {"instId": self.inst_id, "tradeId": str(self.trade_id), "px": self.price, "sz": self.size,
                "side": self.side, "ts": str(self.ts_ms), "count": "1", "source": "0"}


@dataclass
class _Subscriber:
    ws: web.WebSocketResponse
    inst_ids: set[str] = field(default_factory=set)  # subscribed to the trades channel


def _instrument(inst_id: str) -> dict:
    base, quote = inst_id.split("-")
    return {
        "instType": "SPOT", "instId": inst_id, "uly": "", "instFamily": "", "baseCcy": base, "quoteCcy": quote,
        "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "", "stk": "", "listTime": "1611907686000",
        "expTime": "", "lever": "10", "tickSz": "0.1", "lotSz": "0.00000001", "minSz": "0.00001", "ctType": "",
        "alias": "", "state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000", "maxTwapSz": "",
        "maxIcebergSz": "", "maxTriggerSz": "", "maxStopSz": "", "ruleType": "normal",
    }


def _ok(data: list) -> web.Response:
    return web.json_response({"code": "0", "msg": "", "data": data})


def _error(code: str, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": []}, status=status)


class FakeOkx(LoopbackExchange):
    """Start with ``await start()``; point ccxt at ``{"rest": rest_url, "ws": ws_url}``."""

    def __init__(self, inst_ids: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")) -> None:
        super().__init__()
        self.trades: dict[str, list[OkxTrade]] = {inst_id: [] for inst_id in inst_ids}
        self.refuse_websockets = False  # new connections are answered 503 (the stream is down)
        self.stall_websockets = False  # connections stay open (pongs too) but no trades are pushed
        self.requests: list[str] = []  # "GET /api/v5/market/trades?..." in order, websocket included
        self.subscriptions: list[list[str]] = []  # instIds of every trades subscribe received
        self.pings = 0  # "ping" frames received
        self._rest_failures: deque[int] = deque()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5"  # ccxt adds /public

    @property
    def connected_websockets(self) -> int:
        return sum(1 for s in self._subscribers if s.inst_ids and not s.ws.closed)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v5/public/instruments", self._instruments)
        app.router.add_get("/api/v5/market/trades", self._recent_trades)
        app.router.add_get("/api/v5/market/history-trades", self._history_trades)
        app.router.add_get("/api/v5/public/time", self._time)
        app.router.add_get("/ws/v5/public", self._websocket)

    # --- test controls -------------------------------------------------------------------

    async def make_trade(self, inst_id: str, price: float, size: float, *, taker_side: str = "buy",
                         ts_ms: int | None = None) -> OkxTrade:
        """Record a trade (REST serves it from now on) and push it to the subscribed websockets."""
        history = self.trades[inst_id]
        trade = OkxTrade(inst_id, len(history) + 1, f"{price:.1f}", f"{size:.8f}",
                         ts_ms if ts_ms is not None else int(time.time() * 1000), taker_side)
        history.append(trade)
        if self.stall_websockets:
            return trade
        push = json.dumps({"arg": {"channel": "trades", "instId": inst_id}, "data": [trade.json()]})
        for subscriber in list(self._subscribers):
            if inst_id in subscriber.inst_ids and not subscriber.ws.closed:
                try:
                    await subscriber.ws.send_str(push)
                except ConnectionError:  # the client went away mid-send
                    self._subscribers.remove(subscriber)
        return trade

    def fail_rest(self, status: int, times: int = 1) -> None:
        """The next ``times`` trade requests are answered ``status`` (429: OKX's rate-limit error)."""
        self._rest_failures.extend([status] * times)

    def heal_rest(self) -> None:
        self._rest_failures.clear()

    # --- handlers ------------------------------------------------------------------------

    def _log(self, request: web.Request) -> None:
        self.requests.append(f"{request.method} {request.path_qs}")

    def _injected_failure(self) -> web.Response | None:
        if not self._rest_failures:
            return None
        status = self._rest_failures.popleft()
        if status == 429:
            return _error("50011", "Too Many Requests", status=429)
        return web.Response(status=status, text="Service Unavailable")

    async def _time(self, request: web.Request) -> web.Response:
        self._log(request)
        return _ok([{"ts": str(int(time.time() * 1000))}])

    async def _instruments(self, request: web.Request) -> web.Response:
        self._log(request)
        inst_type = request.query.get("instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            return _error("51000", "Parameter instType error")
        return _ok([_instrument(inst_id) for inst_id in self.trades] if inst_type == "SPOT" else [])

    def _query(self, request: web.Request, max_limit: int) -> tuple[list[OkxTrade], int] | web.Response:
        if (failure := self._injected_failure()) is not None:
            return failure
        history = self.trades.get(request.query.get("instId", ""))
        if history is None:
            return _error("51001", "Instrument ID does not exist")
        try:
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return _error("51000", "Parameter limit error")
        if not 1 <= limit <= max_limit:
            return _error("51000", "Parameter limit error")
        return history, limit

    async def _recent_trades(self, request: web.Request) -> web.Response:
        self._log(request)
        query = self._query(request, MAX_TRADES_LIMIT)
        if isinstance(query, web.Response):
            return query
        history, limit = query
        return _ok([t.json() for t in reversed(history[-limit:])])

    async def _history_trades(self, request: web.Request) -> web.Response:
        self._log(request)
        query = self._query(request, MAX_HISTORY_TRADES_LIMIT)
        if isinstance(query, web.Response):
            return query
        history, limit = query
        by_ts = request.query.get("type", "1") == "2"
        selected = history
        try:
            if "after" in request.query:  # older than
                after = int(request.query["after"])
                selected = [t for t in selected if (t.ts_ms if by_ts else t.trade_id) < after]
            if "before" in request.query:  # newer than
                before = int(request.query["before"])
                selected = [t for t in selected if (t.ts_ms if by_ts else t.trade_id) > before]
        except ValueError:
            return _error("51000", "Parameter after or before error")
        return _ok([t.json() for t in reversed(selected[-limit:])])

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
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
                if message.data == "ping":
                    self.pings += 1
                    await ws.send_str("pong")
                    continue
                await self._command(subscriber, message.data)
        finally:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
        return ws

    async def _command(self, subscriber: _Subscriber, text: str) -> None:
        ws = subscriber.ws
        try:
            command = json.loads(text)
        except ValueError:
            await ws.send_str(json.dumps({"event": "error", "code": "60012", "msg": f"Illegal request: {text}"}))
            return
        op, args = command.get("op"), command.get("args") or []
        if op not in ("subscribe", "unsubscribe"):
            await ws.send_str(json.dumps({"event": "error", "code": "60012", "msg": f"Illegal request: {text}"}))
            return
        subscribed = []
        for arg in args:
            inst_id = arg.get("instId")
            if arg.get("channel") != "trades" or inst_id not in self.trades:
                await ws.send_str(json.dumps({"event": "error", "code": "60018",
                                              "msg": f"Wrong URL or channel:{arg.get('channel')},instId:{inst_id} "
                                                     "doesn't exist", "connId": "fake0001"}))
                continue
            if op == "subscribe":
                subscriber.inst_ids.add(inst_id)
                subscribed.append(inst_id)
            else:
                subscriber.inst_ids.discard(inst_id)
            await ws.send_str(json.dumps({"event": op, "arg": {"channel": "trades", "instId": inst_id},
                                          "connId": "fake0001"}))
        if subscribed:
            self.subscriptions.append(subscribed)
