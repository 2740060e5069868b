"""A local fake of a Binance spot *account* (signed REST) that ccxt's own parsers accept.

Serves, on 127.0.0.1 and a free port, the private endpoints a trading client uses, in Binance's
formats (field names, status words, error codes and messages):

* ``GET /api/v3/exchangeInfo``: the configured symbols as spot markets (tick 0.01, lot 0.00001);
* ``POST /api/v3/order`` (``newClientOrderId``; ``newOrderRespType`` FULL answers with ``fills``),
  ``GET /api/v3/order`` and ``DELETE /api/v3/order`` (``orderId`` or ``origClientOrderId``);
* ``POST /api/v3/order/cancelReplace`` (what ccxt's ``edit_order`` sends for spot): cancel an
  order (``cancelOrderId`` or ``cancelOrigClientOrderId``, ``cancelRestrictions`` ONLY_NEW /
  ONLY_PARTIALLY_FILLED, else -1145) and place its replacement (``newClientOrderId`` may be the
  canceled order's: client order ids are unique among *open* orders here, as Binance says), in
  ``cancelReplaceMode`` STOP_ON_FAILURE or ALLOW_FAILURE. Success: ``cancelResult``/
  ``newOrderResult`` SUCCESS with ``cancelResponse`` and ``newOrderResponse``; a failed cancel
  under STOP_ON_FAILURE: -2022 "Order cancel-replace failed." with the failure body (``data``:
  cancelResult FAILURE, newOrderResult NOT_ATTEMPTED, the cancel's -2011); a failed replacement
  after a successful cancel: HTTP 409, -2021 "Order cancel-replace partially failed." (the order
  stays canceled). A query by ``origClientOrderId`` answers the newest order with that id;
* ``GET /api/v3/depth``: one level each side of :attr:`market_price` (the mid at submission);
* ``/ws-api/v3``: Binance's WebSocket API for the user data stream: a signed
  ``userDataStream.subscribe.signature`` request, then ``executionReport`` events
  (``{"subscriptionId": 0, "event": {...}}``) for every new order, trade, cancel and expiry;
* ``GET /api/v3/openOrders`` (``symbol`` optional), ``GET /api/v3/myTrades`` (``symbol``,
  ``startTime``, ``endTime``, ``fromId``, ``orderId``, ``limit``) with Binance's bounds: at most
  24 hours between ``startTime`` and ``endTime`` (one of them alone: the 24 hours after or
  before it), ``fromId`` not with a time, ``limit`` 1..1000 (default 500), oldest first; without
  any of them the newest trades), ``GET /api/v3/account`` (balances).

Every private request must carry ``X-MBX-APIKEY`` and an HMAC-SHA256 ``signature`` of its query
(GET/DELETE) or body (POST) under the secret; otherwise -2015/-1022 like Binance. A client order
id is unique among the orders the account has (Binance: -2010 "Duplicate order sent.").

The matching engine is driven by the test: orders rest until :meth:`fill` trades them (partially
or fully, maker or taker), a market order fills at once at :attr:`market_price`, a limit order
that crosses :attr:`market_price` fills at once as a taker. Commission is ``fee_rate`` of the
notional, paid in the quote asset; balances move as Binance's do (free and locked).

Failure controls for the next create/cancel: :meth:`reject_next_create` (Binance error code and
message), :meth:`time_out_next_create` (the order is placed, or not, and the answer never comes
back in time), :meth:`drop_next_create` (the connection is closed without an answer, after the
order was placed or not), :meth:`fill_on_next_cancel` (the order fills while the cancel is on its
way: the cancel is answered -2011 "Unknown order sent."), :meth:`fail_requests` (429 with
Retry-After on the next N private requests), :meth:`fill_on_next_amend` (the order fills just before a
cancelReplace reaches the matching engine), :meth:`time_out_next_amend` (the cancelReplace is carried
out, or not, and its answer is held back). :meth:`place_external` places an order as another
client (the exchange's website) would; ``garbage_trades``/``garbage_orders`` are served after the real
entries of myTrades/openOrders (malformed messages). The books are kept across :meth:`stop`/:meth:`start`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.fakes.fake_binance import _market
from tests.fakes.loopback_exchange import LoopbackExchange

TICK = Decimal("0.01")
LOT = Decimal("0.00001")
ZERO = Decimal(0)


def _s(value: Decimal) -> str:
    return format(value, "f")


@dataclass
class FakeTradeFill:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    maker: bool
    ts_ms: int

    def json(self) -> dict:
        return {"symbol": self.symbol, "id": self.trade_id, "orderId": self.order_id, "orderListId": -1,
                "price": _s(self.price), "qty": _s(self.qty), "quoteQty": _s(self.price * self.qty),
                "commission": _s(self.commission), "commissionAsset": self.commission_asset, "time": self.ts_ms,
                "isBuyer": self.side == "BUY", "isMaker": self.maker, "isBestMatch": True}


@dataclass
class FakeOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    type: str  # LIMIT / MARKET
    qty: Decimal
    price: Decimal  # 0 for market orders
    time_in_force: str
    ts_ms: int
    status: str = "NEW"
    executed: Decimal = ZERO
    quote: Decimal = ZERO
    update_ms: int = 0
    trades: list[FakeTradeFill] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def json(self) -> dict:
        return {"symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
                "clientOrderId": self.client_order_id, "price": _s(self.price), "origQty": _s(self.qty),
                "executedQty": _s(self.executed), "cummulativeQuoteQty": _s(self.quote), "status": self.status,
                "timeInForce": self.time_in_force, "type": self.type, "side": self.side, "stopPrice": "0.00000000",
                "icebergQty": "0.00000000", "time": self.ts_ms, "updateTime": self.update_ms or self.ts_ms,
                "isWorking": True, "workingTime": self.ts_ms, "origQuoteOrderQty": "0.00000000",
                "selfTradePreventionMode": "NONE"}


class FakeBinanceAccount(LoopbackExchange):
    """Start with ``await start()``; point ccxt's ``public`` and ``private`` URLs at :attr:`rest_url`."""

    def __init__(self, *, api_key: str, secret: str, balances: dict[str, str],
                 markets: dict[str, tuple[str, str]] | None = None, fee_rate: str = "0.001") -> None:
        super().__init__()
        self.api_key, self.secret = api_key, secret
        self.markets = markets or {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}
        self.free: dict[str, Decimal] = {a: Decimal(v) for a, v in balances.items()}
        self.locked: dict[str, Decimal] = {a: ZERO for a in balances}
        self.fee_rate = Decimal(fee_rate)
        self.market_price: dict[str, Decimal] = {}
        self.orders: dict[int, FakeOrder] = {}
        self.trades: list[FakeTradeFill] = []
        self.requests: list[str] = []
        self.bad_signatures = 0
        self._next_order_id = 1000
        self._next_trade_id = 5000
        self._create_faults: list[tuple[str, object]] = []  # ("reject", (code, msg)) / ("timeout"|"drop", placed)
        self._cancel_fills: list[Decimal | None] = []
        self._amend_fills: list[Decimal | None] = []
        self._amend_faults: list[bool] = []  # time out the next cancelReplace: carried out or not
        self._throttled = 0
        self.pushed: list[dict] = []  # every executionReport sent on the user data stream
        self.mute_user_stream = False  # True: changes are not pushed (a silent stream; polling finds them)
        self.garbage_trades: list[dict] = []  # served by myTrades after the real ones (malformed messages)
        self.my_trades_requests: list[dict] = []  # the parameters of every answered myTrades request
        self.garbage_orders: list[dict] = []  # served by openOrders after the real ones
        self.spread = Decimal("0.02")
        self.answer_delay_s = 60.0  # how long a timed-out answer is held back

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v3"

    @property
    def ws_api_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws-api/v3"

    @property
    def user_streams(self) -> int:
        """Websocket clients subscribed to the user data stream now."""
        return sum(1 for s in self._subscribers if s.subscribed and not s.ws.closed)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_post("/api/v3/order", self._create)
        app.router.add_post("/api/v3/order/cancelReplace", self._cancel_replace)
        app.router.add_get("/api/v3/order", self._query)
        app.router.add_delete("/api/v3/order", self._cancel)
        app.router.add_get("/api/v3/openOrders", self._open_orders)
        app.router.add_get("/api/v3/myTrades", self._my_trades)
        app.router.add_get("/api/v3/account", self._account)
        app.router.add_get("/ws-api/v3", self._ws_api)

    # --- test controls -------------------------------------------------------------------------------

    def reject_next_create(self, code: int, msg: str) -> None:
        self._create_faults.append(("reject", (code, msg)))

    def time_out_next_create(self, *, placed: bool) -> None:
        """The next create is placed (or not) and its answer is held back past the client's timeout."""
        self._create_faults.append(("timeout", placed))

    def drop_next_create(self, *, placed: bool) -> None:
        """The next create is placed (or not) and the connection is closed without an answer."""
        self._create_faults.append(("drop", placed))

    def fill_on_next_cancel(self, quantity: Decimal | None = None) -> None:
        """The order the next cancel names fills (``quantity``, default all that is left) just before
        the cancel reaches the matching engine."""
        self._cancel_fills.append(quantity)

    def fill_on_next_amend(self, quantity: Decimal | None = None) -> None:
        """The order the next cancelReplace names fills (``quantity``, default all that is left) just
        before the request reaches the matching engine."""
        self._amend_fills.append(quantity)

    def time_out_next_amend(self, *, applied: bool) -> None:
        """The next cancelReplace is carried out (or not) and its answer is held back past the timeout."""
        self._amend_faults.append(applied)

    def fail_requests(self, times: int) -> None:
        """The next ``times`` private requests are answered 429 (-1003) with Retry-After: 1."""
        self._throttled += times

    def heal(self) -> None:
        """Forget the 429s :meth:`fail_requests` queued that were not served yet."""
        self._throttled = 0

    def order_by_client_id(self, client_order_id: str) -> FakeOrder | None:
        """The newest order with this client order id (an amended order's replacement)."""
        return next((o for o in reversed(self.orders.values()) if o.client_order_id == client_order_id), None)

    def orders_by_client_id(self, client_order_id: str) -> list[FakeOrder]:
        """Every order with this client order id, oldest first (an amendment replaces one)."""
        return [o for o in self.orders.values() if o.client_order_id == client_order_id]

    def place_external(self, symbol: str, side: str, qty: str, price: str, client_order_id: str) -> FakeOrder:
        """An order placed by another client of the account (the exchange's website)."""
        order = self._new_order(symbol, side.upper(), "LIMIT", Decimal(qty), Decimal(price), "GTC", client_order_id)
        self._lock_for(order)
        return order

    def fill(self, client_order_id: str, quantity: str | Decimal | None = None, price: str | Decimal | None = None,
             *, maker: bool = True, at_ms: int | None = None) -> FakeTradeFill:
        """Trade ``quantity`` (default: all that is left) of a resting order at ``price`` (default its
        limit), at the exchange's time ``at_ms`` (default now: an earlier one plays an outage in fake time)."""
        order = self.order_by_client_id(client_order_id)
        assert order is not None and order.open, f"{client_order_id} is not open at the fake"
        left = order.qty - order.executed
        qty = left if quantity is None else Decimal(quantity)
        return self._trade(order, min(qty, left), Decimal(price) if price is not None else order.price, maker,
                           at_ms=at_ms)

    def expire(self, client_order_id: str) -> None:
        order = self.order_by_client_id(client_order_id)
        assert order is not None and order.open
        self._unlock(order)
        order.status = "EXPIRED"
        order.update_ms = _now_ms()
        self._push(order, "EXPIRED")

    def balances(self) -> dict[str, Decimal]:
        return {a: self.free.get(a, ZERO) + self.locked.get(a, ZERO) for a in set(self.free) | set(self.locked)}

    # --- matching engine -----------------------------------------------------------------------------

    def _new_order(self, symbol: str, side: str, type_: str, qty: Decimal, price: Decimal, tif: str,
                   client_order_id: str) -> FakeOrder:
        self._next_order_id += 1
        order = FakeOrder(self._next_order_id, client_order_id, symbol, side, type_, qty, price, tif, _now_ms())
        self.orders[order.order_id] = order
        self._push(order, "NEW")
        return order

    def _assets(self, order: FakeOrder) -> tuple[str, str]:
        return self.markets[order.symbol]

    def _lock_for(self, order: FakeOrder) -> None:
        base, quote = self._assets(order)
        if order.side == "BUY":
            amount, asset = order.qty * order.price * (1 + self.fee_rate), quote
        else:
            amount, asset = order.qty, base
        self.free[asset] = self.free.get(asset, ZERO) - amount
        self.locked[asset] = self.locked.get(asset, ZERO) + amount

    def _unlock(self, order: FakeOrder) -> None:
        base, quote = self._assets(order)
        left = order.qty - order.executed
        if order.side == "BUY":
            amount, asset = left * order.price * (1 + self.fee_rate), quote
        else:
            amount, asset = left, base
        self.free[asset] += amount
        self.locked[asset] -= amount

    def _trade(self, order: FakeOrder, qty: Decimal, price: Decimal, maker: bool, *,
               at_ms: int | None = None) -> FakeTradeFill:
        base, quote = self._assets(order)
        self._next_trade_id += 1
        notional = qty * price
        commission = (notional * self.fee_rate).quantize(Decimal("0.00000001"))
        trade = FakeTradeFill(self._next_trade_id, order.order_id, order.symbol, order.side, price, qty,
                              commission, quote, maker, _now_ms() if at_ms is None else at_ms)
        resting = order.type == "LIMIT" and order.status in ("NEW", "PARTIALLY_FILLED") and order.price > 0
        if order.side == "BUY":
            if resting:  # release what was locked for this quantity at the limit
                held = qty * order.price * (1 + self.fee_rate)
                self.locked[quote] -= held
                self.free[quote] += held
            self.free[quote] = self.free.get(quote, ZERO) - notional - commission
            self.free[base] = self.free.get(base, ZERO) + qty
        else:
            if resting:
                self.locked[base] -= qty
            else:
                self.free[base] = self.free.get(base, ZERO) - qty
            self.free[quote] = self.free.get(quote, ZERO) + notional - commission
        order.executed += qty
        order.quote += notional
        order.status = "FILLED" if order.executed >= order.qty else "PARTIALLY_FILLED"
        order.update_ms = trade.ts_ms
        order.trades.append(trade)
        self.trades.append(trade)
        self._push(order, "TRADE", trade)
        return trade

    # --- handlers ------------------------------------------------------------------------------------

    def _log(self, request: web.Request, params: dict[str, str]) -> None:
        self.requests.append(f"{request.method} {request.path} {params.get('newClientOrderId', '')}".rstrip())

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response({
            "timezone": "UTC", "serverTime": _now_ms(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                            "limit": 6000}],
            "exchangeFilters": [],
            "symbols": [_market(symbol, base, quote) for symbol, (base, quote) in self.markets.items()],
        })

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": _now_ms()})

    # --- the user data stream (Binance's WebSocket API, userDataStream.subscribe.signature) ---------

    def _push(self, order: FakeOrder, execution: str, trade: FakeTradeFill | None = None) -> None:
        """An ``executionReport`` to every subscribed user data stream (sent without waiting)."""
        if self.mute_user_stream:
            return
        event = {"e": "executionReport", "E": _now_ms(), "s": order.symbol, "c": order.client_order_id,
                 "S": order.side, "o": order.type, "f": order.time_in_force, "q": _s(order.qty), "p": _s(order.price),
                 "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "", "x": execution, "X": order.status,
                 "r": "NONE", "i": order.order_id, "l": _s(trade.qty) if trade else "0", "z": _s(order.executed),
                 "L": _s(trade.price) if trade else "0", "n": _s(trade.commission) if trade else "0",
                 "N": trade.commission_asset if trade else None, "T": order.update_ms or order.ts_ms,
                 "t": trade.trade_id if trade else -1, "I": 1, "w": order.open, "m": trade.maker if trade else False,
                 "M": False, "O": order.ts_ms, "Z": _s(order.quote), "Y": _s(trade.price * trade.qty) if trade else "0",
                 "Q": "0.00000000", "W": order.ts_ms, "V": "NONE"}
        text = json.dumps({"subscriptionId": 0, "event": event})
        self.pushed.append(event)
        for stream in list(self._subscribers):
            if stream.subscribed and not stream.ws.closed:
                asyncio.get_running_loop().create_task(self._send(stream, text))

    async def _send(self, stream: _UserStream, text: str) -> None:
        try:
            await stream.ws.send_str(text)
        except ConnectionError:
            pass

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        stream = _UserStream(ws)
        self._subscribers.append(stream)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                command = json.loads(message.data)
                request_id = command.get("id")
                if command.get("method") != "userDataStream.subscribe.signature":
                    await ws.send_str(json.dumps({"id": request_id, "status": 400,
                                                  "error": {"code": -1100, "msg": "Unknown method."}}))
                    continue
                params = dict(command.get("params") or {})
                signature = str(params.pop("signature", ""))
                payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
                expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
                if params.get("apiKey") != self.api_key or not hmac.compare_digest(signature, expected):
                    self.bad_signatures += 1
                    await ws.send_str(json.dumps({"id": request_id, "status": 401, "error": {
                        "code": -1022, "msg": "Signature for this request is not valid."}}))
                    continue
                stream.subscribed = True
                await ws.send_str(json.dumps({"id": request_id, "status": 200, "result": {"subscriptionId": 0}}))
        finally:
            if stream in self._subscribers:
                self._subscribers.remove(stream)
        return ws

    async def _depth(self, request: web.Request) -> web.Response:
        """A one-level book around :attr:`market_price`: bid and ask ``spread`` apart."""
        mark = self.market_price.get(request.query.get("symbol", ""), Decimal("100"))
        half = self.spread / 2
        return web.json_response({"lastUpdateId": 1, "bids": [[_s(mark - half), "1.00000"]],
                                  "asks": [[_s(mark + half), "1.00000"]]})

    async def _signed(self, request: web.Request) -> dict[str, str] | web.Response:
        """The request's parameters once its key and signature check out; else Binance's error."""
        raw = request.query_string if request.method in ("GET", "DELETE") else await request.text()
        params = dict(parse_qsl(raw, keep_blank_values=True))
        self._log(request, params)
        if self._throttled > 0:
            self._throttled -= 1
            return web.json_response({"code": -1003, "msg": "Too many requests; current limit is 6000 request "
                                      "weight per 1 MINUTE."}, status=429, headers={"Retry-After": "1"})
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            return _error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        signed, _, signature = raw.rpartition("&signature=")
        expected = hmac.new(self.secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            self.bad_signatures += 1
            return _error(-1022, "Signature for this request is not valid.")
        return params

    def _find(self, params: dict[str, str]) -> FakeOrder | None:
        symbol = params.get("symbol")
        if "orderId" in params:
            order = self.orders.get(int(params["orderId"]))
        else:
            order = self.order_by_client_id(params.get("origClientOrderId", ""))
        return order if order is not None and order.symbol == symbol else None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        params = await self._signed(request)
        if isinstance(params, web.Response):
            return params
        fault = self._create_faults.pop(0) if self._create_faults else None
        if fault is not None and fault[0] == "reject":
            code, msg = fault[1]
            return _error(code, msg)
        if fault is not None and not fault[1]:  # lost before it reached the matching engine
            return await self._no_answer(request, fault[0])
        client_order_id = params.get("newClientOrderId") or f"web_{self._next_order_id + 1}"
        if params.get("symbol", "") in self.markets and self.order_by_client_id(client_order_id) is not None:
            return _error(-2010, "Duplicate order sent.")
        placed = self._place(params, client_order_id)
        if not isinstance(placed, FakeOrder):
            return _error(*placed)
        if fault is not None:  # placed, but the answer is lost
            return await self._no_answer(request, fault[0])
        return web.json_response(_new_order_body(placed))

    def _place(self, params: dict[str, str], client_order_id: str) -> FakeOrder | tuple[int, str]:
        """A new order from its parameters, matched at once where it crosses; Binance's (code, msg) if refused."""
        symbol = params.get("symbol", "")
        if symbol not in self.markets:
            return -1121, "Invalid symbol."
        type_ = params.get("type", "")
        qty = Decimal(params.get("quantity", "0"))
        price = Decimal(params.get("price", "0"))
        if qty <= 0 or qty % LOT:
            return -1013, "Filter failure: LOT_SIZE"
        if type_ == "LIMIT" and (price <= 0 or price % TICK):
            return -1013, "Filter failure: PRICE_FILTER"
        base, quote = self.markets[symbol]
        side = params.get("side", "")
        reference = price if type_ == "LIMIT" else self.market_price.get(symbol, ZERO)
        need, asset = ((qty * reference * (1 + self.fee_rate), quote) if side == "BUY" else (qty, base))
        if self.free.get(asset, ZERO) < need:
            return -2010, "Account has insufficient balance for requested action."
        order = self._new_order(symbol, side, type_, qty, price, params.get("timeInForce", "GTC"), client_order_id)
        if type_ == "MARKET":
            self._trade(order, qty, self.market_price[symbol], maker=False)
        else:
            mark = self.market_price.get(symbol)
            crosses = mark is not None and (mark <= price if side == "BUY" else mark >= price)
            self._lock_for(order)
            if crosses:
                self._trade(order, qty, price, maker=False)
        return order

    async def _cancel_replace(self, request: web.Request) -> web.StreamResponse:
        """Binance's cancelReplace: the cancel, then (as the mode says) the replacement."""
        params = await self._signed(request)
        if isinstance(params, web.Response):
            return params
        mode = params.get("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            return _error(-1102, "Mandatory parameter 'cancelReplaceMode' was not sent, was empty/null, or malformed.")
        restrictions = params.get("cancelRestrictions")
        if restrictions not in (None, "ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
            return _error(-1145, "Invalid cancelRestrictions")
        symbol = params.get("symbol", "")
        if symbol not in self.markets:
            return _error(-1121, "Invalid symbol.")
        timed_out = self._amend_faults.pop(0) if self._amend_faults else None
        if timed_out is False:  # lost before it reached the matching engine
            return await self._no_answer(request, "timeout")
        if "cancelOrderId" in params:
            old = self.orders.get(int(params["cancelOrderId"]))
        else:
            old = self.order_by_client_id(params.get("cancelOrigClientOrderId", ""))
        old = old if old is not None and old.symbol == symbol else None
        if old is not None and old.open and self._amend_fills:  # a fill races the request
            quantity = self._amend_fills.pop(0)
            left = old.qty - old.executed
            self._trade(old, left if quantity is None else min(left, quantity), old.price, True)
        cancel_error = None
        if old is None or not old.open:
            cancel_error = {"code": -2011, "msg": "Unknown order sent."}
        elif (restrictions == "ONLY_NEW" and old.status != "NEW") or (
                restrictions == "ONLY_PARTIALLY_FILLED" and old.status != "PARTIALLY_FILLED"):
            cancel_error = {"code": -2011, "msg": "Order was not canceled due to cancel restrictions."}
        if cancel_error is not None and mode == "STOP_ON_FAILURE":
            return _cancel_replace_error(-2022, "Order cancel-replace failed.", "FAILURE", "NOT_ATTEMPTED",
                                         cancel_error, None, 400)
        cancel_response = None
        if cancel_error is None:
            self._unlock(old)
            old.status = "CANCELED"
            old.update_ms = _now_ms()
            self._push(old, "CANCELED")
            cancel_response = {**old.json(), "origClientOrderId": old.client_order_id,
                               "clientOrderId": params.get("cancelNewClientOrderId") or f"cancel{old.order_id}",
                               "transactTime": old.update_ms}
            for key in ("isWorking", "workingTime", "time", "updateTime", "origQuoteOrderQty", "stopPrice",
                        "icebergQty"):
                cancel_response.pop(key, None)
        client_order_id = params.get("newClientOrderId") or f"web_{self._next_order_id + 1}"
        if any(o.open and o.client_order_id == client_order_id for o in self.orders.values()):
            placed: FakeOrder | tuple[int, str] = (-2010, "Duplicate order sent.")
        else:
            placed = self._place(params, client_order_id)
        if not isinstance(placed, FakeOrder):
            new_error = {"code": placed[0], "msg": placed[1]}
            if cancel_error is None:
                return _cancel_replace_error(-2021, "Order cancel-replace partially failed.", "SUCCESS", "FAILURE",
                                             cancel_response, new_error, 409)
            return _cancel_replace_error(-2022, "Order cancel-replace failed.", "FAILURE", "FAILURE", cancel_error,
                                         new_error, 400)
        if cancel_error is not None:  # ALLOW_FAILURE: the new order stands, the old one too
            return _cancel_replace_error(-2021, "Order cancel-replace partially failed.", "FAILURE", "SUCCESS",
                                         cancel_error, _new_order_body(placed), 409)
        if timed_out:  # carried out, but the answer is lost
            return await self._no_answer(request, "timeout")
        return web.json_response({"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
                                  "cancelResponse": cancel_response, "newOrderResponse": _new_order_body(placed)})

    async def _no_answer(self, request: web.Request, kind: str) -> web.StreamResponse:
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        await asyncio.sleep(self.answer_delay_s)
        return _error(-1007, "Timeout waiting for response from backend server. Send status unknown; "
                             "execution status unknown.", 408)

    async def _query(self, request: web.Request) -> web.Response:
        params = await self._signed(request)
        if isinstance(params, web.Response):
            return params
        order = self._find(params)
        if order is None:
            return _error(-2013, "Order does not exist.")
        return web.json_response(order.json())

    async def _cancel(self, request: web.Request) -> web.Response:
        params = await self._signed(request)
        if isinstance(params, web.Response):
            return params
        order = self._find(params)
        if order is not None and order.open and self._cancel_fills:
            quantity = self._cancel_fills.pop(0)
            left = order.qty - order.executed
            self._trade(order, left if quantity is None else min(left, quantity), order.price, True)
        if order is None or not order.open:
            return _error(-2011, "Unknown order sent.")
        self._unlock(order)
        order.status = "CANCELED"
        order.update_ms = _now_ms()
        self._push(order, "CANCELED")
        return web.json_response({**order.json(), "origClientOrderId": order.client_order_id,
                                  "clientOrderId": f"cancel{order.order_id}", "transactTime": order.update_ms})

    async def _open_orders(self, request: web.Request) -> web.Response:
        params = await self._signed(request)
        if isinstance(params, web.Response):
            return params
        symbol = params.get("symbol")
        return web.json_response([o.json() for o in self.orders.values()
                                  if o.open and (symbol is None or o.symbol == symbol)] + self.garbage_orders)

    async def _my_trades(self, request: web.Request) -> web.Response:
        params = await self._signed(request)
        if isinstance(params, web.Response):
            return params
        symbol = params.get("symbol")
        if symbol not in self.markets:
            return _error(-1121, "Invalid symbol.")
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return _error(-1100, "Illegal characters found in parameter 'limit'; legal range is '1' to '1000'.")
        start, end = params.get("startTime"), params.get("endTime")
        if "fromId" in params and (start is not None or end is not None):
            return _error(-1128, "Combination of optional parameters invalid.")
        self.my_trades_requests.append(dict(params))
        selected = sorted((t for t in self.trades if t.symbol == symbol), key=lambda t: t.trade_id)
        if "orderId" in params:
            selected = [t for t in selected if t.order_id == int(params["orderId"])]
        if "fromId" in params:
            selected = [t for t in selected if t.trade_id >= int(params["fromId"])]
        if start is not None or end is not None:
            first = int(start) if start is not None else int(end) - DAY_MS
            last = int(end) if end is not None else first + DAY_MS
            if last - first > DAY_MS:
                return _error(-1127, "More than 24 hours between startTime and endTime.")
            selected = [t for t in selected if first <= t.ts_ms <= last]
        elif "fromId" not in params and "orderId" not in params:
            selected = selected[-limit:]  # the newest
        return web.json_response([t.json() for t in selected[:limit]] + self.garbage_trades)

    async def _account(self, request: web.Request) -> web.Response:
        params = await self._signed(request)
        if isinstance(params, web.Response):
            return params
        assets = sorted(set(self.free) | set(self.locked))
        return web.json_response({
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0", "seller": "0"},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": _now_ms(),
            "accountType": "SPOT", "permissions": ["SPOT"], "uid": 1,
            "balances": [{"asset": a, "free": _s(self.free.get(a, ZERO)), "locked": _s(self.locked.get(a, ZERO))}
                         for a in assets]})


@dataclass
class _UserStream:
    ws: web.WebSocketResponse
    subscribed: bool = False


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def _new_order_body(order: FakeOrder) -> dict:
    """A new order's answer with newOrderRespType FULL: the order and its fills."""
    return {**order.json(), "transactTime": order.update_ms or order.ts_ms,
            "fills": [{"price": _s(t.price), "qty": _s(t.qty), "commission": _s(t.commission),
                       "commissionAsset": t.commission_asset, "tradeId": t.trade_id} for t in order.trades]}


def _cancel_replace_error(code: int, msg: str, cancel_result: str, new_result: str, cancel_response: dict | None,
                          new_response: dict | None, status: int) -> web.Response:
    """Binance's cancelReplace failure: the error with both halves' results in ``data``."""
    return web.json_response({"code": code, "msg": msg, "data": {
        "cancelResult": cancel_result, "newOrderResult": new_result, "cancelResponse": cancel_response,
        "newOrderResponse": new_response}}, status=status)


DAY_MS = 86_400_000


def _now_ms() -> int:
    return int(time.time() * 1000)
