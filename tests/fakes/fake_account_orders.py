"""The order endpoints of Bybit v5 spot and Kraken spot on top of their trade-history fakes
(fake_account_trades.py): create with the client order id, ask by it, cancel by it, with a tiny
order book of the account (orders by the exchange's id and by client id, their status) and the
exchanges' request and answer formats closely enough for ccxt's parsers.

Failures the tests drive: ``time_out_next_create(placed=...)`` answers the next create after
``answer_delay_s`` (past the client's timeout), having placed the order or not (a create the
exchange never received); ``fill(client_id, quantity, price)`` executes part or all of an order
(a trade in the account's history, the order's executed quantity and status).

* :class:`FakeBybitOrders`: ``POST /v5/order/create`` (JSON; ``category`` spot, ``symbol``,
  ``side`` Buy/Sell, ``orderType`` Limit/Market, ``qty``, ``price`` for Limit, ``orderLinkId`` at
  most 36 of ``[A-Za-z0-9_-]``, unique: retCode 170141 "Duplicate clientOrderId"); answers only
  ``orderId`` and ``orderLinkId``. ``GET /v5/order/realtime`` (``category``, ``symbol``,
  ``orderId`` / ``orderLinkId``: that order whatever its state while it is among the recent ones;
  without them the open orders; ``limit`` 1..50, 20 by default, then ``cursor``). ``GET /v5/order/history`` (ended orders; by ``orderId`` /
  ``orderLinkId``). ``POST /v5/order/cancel`` (``orderId`` or ``orderLinkId``; an order that is
  not open: retCode 170213 "Order does not exist."). ``GET /v5/user/query-api`` and ``GET
  /v5/account/info``: a unified trading account (ccxt asks before its first create).
* :class:`FakeKrakenOrders`: ``POST /0/private/AddOrder`` (form; ``pair``, ``type``,
  ``ordertype``, ``volume``, ``price``, ``cl_ord_id``: a long UUID, 32 hex digits or free text of
  at most 18 characters, else ``EGeneral:Invalid arguments:cl_ord_id``); answers ``descr`` and
  ``txid``. ``OpenOrders`` / ``ClosedOrders`` (``cl_ord_id`` restricts), ``QueryOrders`` (``txid``)
  and ``CancelOrder`` (``txid`` or ``cl_ord_id``; ``EOrder:Unknown order`` when none is open).
* :class:`FakeOkxOrders`: ``POST /api/v5/trade/batch-orders`` (ccxt's create; JSON list of
  ``instId``, ``tdMode`` cash, ``side``, ``ordType``, ``sz``, ``px``, ``clOrdId``: 1 to 32
  letters and digits, unique, else sCode 51000 / 51016), ``GET /api/v5/trade/order`` (``instId``
  and ``ordId`` or ``clOrdId``; code 51603 "Order does not exist"), ``GET
  /api/v5/trade/orders-pending``, ``POST /api/v5/trade/cancel-order`` (``ordId`` or ``clOrdId``;
  sCode 51400 when not open) and ``GET /api/v5/market/books``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal

from aiohttp import web

from tests.fakes.fake_account_trades import (
    FakeBybitAccount,
    FakeKrakenAccount,
    FakeOkxAccount,
    _bybit,
    _bybit_error,
    _kraken,
    _kraken_error,
    _okx,
    _okx_error,
)

BYBIT_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
OKX_CL_ORD_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
KRAKEN_CL_ORD_ID = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                              r"|[0-9a-fA-F]{32}|[\x21-\x7e]{1,18})$")


@dataclass
class AccountOrder:
    order_id: str
    client_id: str
    symbol: str  # the exchange's market id
    side: str  # buy or sell
    order_type: str  # limit or market
    quantity: Decimal
    price: Decimal | None
    created_ms: int
    status: str = "open"  # open, filled, canceled
    executed: Decimal = Decimal(0)
    updated_ms: int = 0


class _Orders:
    """The account's orders, shared by both fakes."""

    answer_delay_s = 3.0

    def _init_orders(self) -> None:
        self.orders: dict[str, AccountOrder] = {}
        self.creates: list[str] = []  # the client id of every create received, answered or not
        self._time_out: bool | None = None  # next create: answered late, placed (True) or not (False)
        self._ids = itertools.count(1)

    def place_external(self, symbol: str, client_id: str, quantity: str, price: str, side: str = "buy") -> AccountOrder:
        """A limit order placed on the exchange's website (``symbol``: the exchange's market id)."""
        return self._place(self._new_order_id(), client_id, symbol, side, "limit", quantity, price)

    def _new_order_id(self) -> str:
        raise NotImplementedError

    def time_out_next_create(self, *, placed: bool) -> None:
        self._time_out = placed

    def by_client_id(self, client_id: str) -> AccountOrder | None:
        found = [o for o in self.orders.values() if o.client_id == client_id]
        return found[-1] if found else None

    def fill(self, client_id: str, quantity: str | None = None, price: str = "100") -> None:
        order = self.by_client_id(client_id)
        amount = Decimal(quantity) if quantity is not None else order.quantity - order.executed
        now = int(time.time() * 1000)
        self.add_trade(order.symbol, order.order_id, now, side=order.side, price=price, quantity=str(amount))
        order.executed += amount
        order.updated_ms = now
        if order.executed >= order.quantity:
            order.status = "filled"

    def _place(self, order_id: str, client_id: str, symbol: str, side: str, order_type: str, quantity: str,
               price: str | None) -> AccountOrder:
        now = int(time.time() * 1000)
        order = AccountOrder(order_id, client_id, symbol, side, order_type, Decimal(quantity),
                             Decimal(price) if price is not None else None, now, updated_ms=now)
        self.orders[order_id] = order
        if order_type == "market":  # no book here: a market order fills at once
            self.fill(client_id, price=str(price or "100"))
        return order

    def _take_fault(self) -> bool | None:
        """The fault of this create (None: none, True: placed and answered late, False: not placed)."""
        fault, self._time_out = self._time_out, None
        self._late = fault is True
        return fault


# --- Bybit ---------------------------------------------------------------------------------------------

BYBIT_STATUS = {"open": "New", "filled": "Filled", "canceled": "Cancelled"}
BYBIT_ORDERS_PAGE, BYBIT_ORDERS_MAX = 20, 50  # realtime and history: 20 a page unless asked, at most 50
BYBIT_REALTIME_ENDED = 500  # /v5/order/realtime keeps the account's newest 500 ended orders


class FakeBybitOrders(_Orders, FakeBybitAccount):
    def __init__(self) -> None:
        FakeBybitAccount.__init__(self)
        self._init_orders()
        # Ended orders that realtime still has; 0 is Bybit after a restart of its service ("filled,
        # cancelled and rejected orders should only be queried through order history").
        self.realtime_ended = BYBIT_REALTIME_ENDED

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_get("/v5/user/query-api", self._api_key)
        app.router.add_get("/v5/account/info", self._account_info)
        app.router.add_post("/v5/order/create", self._create)
        app.router.add_get("/v5/order/realtime", self._realtime)
        app.router.add_get("/v5/order/history", self._history)
        app.router.add_post("/v5/order/cancel", self._cancel)
        app.router.add_get("/v5/market/orderbook", self._book)

    async def _book(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        return _bybit({"s": request.query.get("symbol"), "b": [["99", "1"]], "a": [["101", "1"]],
                       "ts": int(time.time() * 1000), "u": 1, "seq": 1})

    async def _api_key(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        return self._unauthenticated(request) or _bybit({"id": "1", "readOnly": 0, "unified": 0, "uta": 1,
                                                         "permissions": {"Spot": ["SpotTrade"]}})

    async def _account_info(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        return self._unauthenticated(request) or _bybit({"marginMode": "REGULAR_MARGIN", "unifiedMarginStatus": 5})

    async def _body(self, request: web.Request) -> dict | web.Response:
        body = json.loads(await request.text() or "{}")
        self._record(f"POST {request.path} {json.dumps(body, sort_keys=True)}")
        if (refused := self._unauthenticated(request)) is not None:
            return refused
        if body.get("category") != "spot":
            return _bybit_error(10001, "params error: category")
        return body

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        link_id = str(body.get("orderLinkId", ""))
        self.creates.append(link_id)
        if not BYBIT_LINK_ID.match(link_id):
            return _bybit_error(10001, "params error: orderLinkId")
        if self.by_client_id(link_id) is not None:
            return _bybit_error(170141, "Duplicate clientOrderId.")
        if body.get("side") not in ("Buy", "Sell") or body.get("orderType") not in ("Limit", "Market") \
                or "qty" not in body or (body["orderType"] == "Limit" and "price" not in body):
            return _bybit_error(10001, "params error: side, orderType, qty and price")
        if self._take_fault() is False:
            await asyncio.sleep(self.answer_delay_s)  # the client gives up before an answer: nothing placed
            return _bybit_error(10016, "Server error.")
        order = self._place(self._new_order_id(), link_id, body["symbol"],
                            body["side"].lower(), body["orderType"].lower(), body["qty"], body.get("price"))
        if self._late:
            await asyncio.sleep(self.answer_delay_s)  # placed; the answer comes after the client gave up
        return _bybit({"orderId": order.order_id, "orderLinkId": order.client_id})

    def _new_order_id(self) -> str:
        return f"{1_800_000_000_000_000_000 + next(self._ids)}"

    def _chosen(self, request: web.Request, ended: bool | None) -> list[AccountOrder]:
        query = request.query
        chosen = [o for o in self.orders.values()
                  if query.get("symbol", o.symbol) == o.symbol and query.get("orderId", o.order_id) == o.order_id
                  and query.get("orderLinkId", o.client_id) == o.client_id
                  and (ended is None or (o.status != "open") == ended)]
        return sorted(chosen, key=lambda o: o.created_ms, reverse=True)

    async def _realtime(self, request: web.Request) -> web.Response:
        return self._orders_page(request, realtime=True)

    async def _history(self, request: web.Request) -> web.Response:
        return self._orders_page(request, realtime=False)

    def _orders_page(self, request: web.Request, *, realtime: bool) -> web.Response:
        self._record(f"GET {request.path_qs}")
        if (refused := self._unauthenticated(request)) is not None:
            return refused
        if request.query.get("category") != "spot":
            return _bybit_error(10001, "params error: category")
        by_id = "orderId" in request.query or "orderLinkId" in request.query
        # realtime by id: the order whatever its state (ended: the recent ones); realtime: open only;
        # history: ended ones.
        chosen = self._chosen(request, None if realtime and by_id else not realtime)
        if realtime:
            recent = sorted((o for o in self.orders.values() if o.status != "open"), key=lambda o: o.updated_ms,
                            reverse=True)[:self.realtime_ended]
            chosen = [o for o in chosen if o.status == "open" or o in recent]
        try:
            limit = int(request.query.get("limit", BYBIT_ORDERS_PAGE))
        except ValueError:
            return _bybit_error(10001, "params error: limit")
        if not 1 <= limit <= BYBIT_ORDERS_MAX:
            return _bybit_error(10001, "params error: limit must be 1 to 50")
        start = int(request.query.get("cursor") or 0)  # the cursor: how many were listed before
        page = chosen[start:start + limit]
        following = str(start + limit) if start + limit < len(chosen) else ""
        return _bybit({"category": "spot", "nextPageCursor": following, "list": [self._row(o) for o in page]})

    async def _cancel(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        found = [o for o in self.orders.values() if o.status == "open"
                 and body.get("orderId", o.order_id) == o.order_id and body.get("orderLinkId", o.client_id) == o.client_id]
        if not found or not ({"orderId", "orderLinkId"} & set(body)):
            return _bybit_error(170213, "Order does not exist.")
        order = found[0]
        order.status, order.updated_ms = "canceled", int(time.time() * 1000)
        return _bybit({"orderId": order.order_id, "orderLinkId": order.client_id})

    def _row(self, order: AccountOrder) -> dict:
        price = str(order.price) if order.price is not None else "0"
        value = sum((Decimal(t.price) * Decimal(t.quantity) for t in self.account_trades
                     if t.order_id == order.order_id), Decimal(0))
        return {
            "orderId": order.order_id, "orderLinkId": order.client_id, "blockTradeId": "", "symbol": order.symbol,
            "price": price, "qty": str(order.quantity), "side": order.side.capitalize(), "isLeverage": "0",
            "positionIdx": 0, "orderStatus": BYBIT_STATUS[order.status], "cancelType": "UNKNOWN",
            "rejectReason": "EC_NoError", "avgPrice": str(value / order.executed) if order.executed else "",
            "leavesQty": str(order.quantity - order.executed if order.status == "open" else 0),
            "leavesValue": "0", "cumExecQty": str(order.executed), "cumExecValue": str(value), "cumExecFee": "0",
            "timeInForce": "GTC", "orderType": order.order_type.capitalize(), "stopOrderType": "", "orderIv": "",
            "triggerPrice": "0.00", "takeProfit": "0.00", "stopLoss": "0.00", "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "", "reduceOnly": False,
            "closeOnTrigger": False, "smpType": "None", "smpGroup": 0, "smpOrderId": "", "tpslMode": "",
            "tpLimitPrice": "", "slLimitPrice": "", "placeType": "", "createdTime": str(order.created_ms),
            "updatedTime": str(order.updated_ms)}


# --- Kraken --------------------------------------------------------------------------------------------

class FakeKrakenOrders(_Orders, FakeKrakenAccount):
    def __init__(self) -> None:
        FakeKrakenAccount.__init__(self)
        self._init_orders()

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_post("/0/private/AddOrder", self._add_order)
        app.router.add_post("/0/private/OpenOrders", self._open_orders)
        app.router.add_post("/0/private/ClosedOrders", self._closed_orders)
        app.router.add_post("/0/private/CancelOrder", self._cancel_order)
        app.router.add_get("/0/public/Depth", self._depth)

    async def _depth(self, request: web.Request) -> web.Response:
        self.requests.append(f"GET {request.path_qs}")
        now = int(time.time())
        return _kraken({request.query.get("pair", "XXBTZUSD"): {"asks": [["101.0", "1.000", now]],
                                                                "bids": [["99.0", "1.000", now]]}})

    async def _add_order(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        cl_ord_id = form.get("cl_ord_id", "")
        self.creates.append(cl_ord_id)
        if "userref" in form and "cl_ord_id" in form:
            return _kraken_error("EGeneral:Invalid arguments:cl_ord_id and userref")
        if not KRAKEN_CL_ORD_ID.match(cl_ord_id):
            return _kraken_error("EGeneral:Invalid arguments:cl_ord_id")
        if form.get("type") not in ("buy", "sell") or form.get("ordertype") not in ("limit", "market") \
                or "volume" not in form or (form["ordertype"] == "limit" and "price" not in form):
            return _kraken_error("EGeneral:Invalid arguments")
        if self._take_fault() is False:
            await asyncio.sleep(self.answer_delay_s)  # the client gives up before an answer: nothing placed
            return _kraken_error("EService:Unavailable")
        order = self._place(self._new_order_id(), cl_ord_id, form["pair"], form["type"],
                            form["ordertype"], form["volume"], form.get("price"))
        if self._late:
            await asyncio.sleep(self.answer_delay_s)  # placed; the answer comes after the client gave up
        return _kraken({"descr": {"order": self._description(order)}, "txid": [order.order_id]})

    def _new_order_id(self) -> str:
        n = next(self._ids)
        return f"O{n:05d}-ADD{n % 10}R-{n:06d}"

    async def _open_orders(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        chosen = [o for o in self.orders.values() if o.status == "open"
                  and form.get("cl_ord_id", o.client_id) == o.client_id]
        return _kraken({"open": {o.order_id: self._kraken_order(o) for o in chosen}})

    async def _closed_orders(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        chosen = sorted((o for o in self.orders.values() if o.status != "open"
                         and form.get("cl_ord_id", o.client_id) == o.client_id),
                        key=lambda o: o.updated_ms, reverse=True)
        return _kraken({"closed": {o.order_id: self._kraken_order(o) for o in chosen[:50]}, "count": len(chosen)})

    async def _cancel_order(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        found = [o for o in self.orders.values() if o.status == "open" and ("txid" in form or "cl_ord_id" in form)
                 and form.get("txid", o.order_id) == o.order_id and form.get("cl_ord_id", o.client_id) == o.client_id]
        if not found:
            return _kraken_error("EOrder:Unknown order")
        for order in found:
            order.status, order.updated_ms = "canceled", int(time.time() * 1000)
        return _kraken({"count": len(found)})

    async def _query_orders(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        result = {}
        for order_id in form.get("txid", "").split(","):
            order = self.orders.get(order_id)
            if order is None:
                return _kraken_error("EOrder:Invalid order")
            row = self._kraken_order(order)
            if form.get("trades", "").lower() == "true":
                row["trades"] = [t.trade_id for t in self.account_trades if t.order_id == order_id]
            result[order_id] = row
        return _kraken(result)

    def _description(self, order: AccountOrder) -> str:
        at = f"limit {order.price}" if order.price is not None else "market"
        return f"{order.side} {order.quantity} {order.symbol} @ {at}"

    def _kraken_order(self, order: AccountOrder) -> dict:
        trades = [t for t in self.account_trades if t.order_id == order.order_id]
        cost = sum((Decimal(t.price) * Decimal(t.quantity) for t in trades), Decimal(0))
        row = {"refid": None, "userref": 0, "cl_ord_id": order.client_id,
               "status": {"open": "open", "filled": "closed", "canceled": "canceled"}[order.status],
               "opentm": order.created_ms / 1000, "starttm": 0, "expiretm": 0,
               "descr": {"pair": order.symbol, "type": order.side, "ordertype": order.order_type,
                         "price": str(order.price or 0), "price2": "0", "leverage": "none",
                         "order": self._description(order), "close": ""},
               "vol": str(order.quantity), "vol_exec": str(order.executed), "cost": str(cost), "fee": "0",
               "price": str(cost / order.executed) if order.executed else "0", "stopprice": "0.00000",
               "limitprice": "0.00000", "misc": "", "oflags": "fciq"}
        if order.status != "open":
            row.update({"closetm": order.updated_ms / 1000,
                        "reason": "User requested" if order.status == "canceled" else None})
        return row


# --- OKX -----------------------------------------------------------------------------------------------

OKX_STATE = {"open": "live", "filled": "filled", "canceled": "canceled"}


def _okx_failed(item: dict, code: str, msg: str) -> web.Response:
    """OKX's answer to an order operation that failed: HTTP 200, code 1, the reason per item."""
    return web.json_response({"code": "1", "msg": "All operations failed",
                              "data": [{**item, "sCode": code, "sMsg": msg}]})


class FakeOkxOrders(_Orders, FakeOkxAccount):
    def __init__(self) -> None:
        FakeOkxAccount.__init__(self)
        self._init_orders()

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_post("/api/v5/trade/batch-orders", self._batch_orders)
        app.router.add_get("/api/v5/trade/order", self._order)
        app.router.add_get("/api/v5/trade/orders-pending", self._pending)
        app.router.add_post("/api/v5/trade/cancel-order", self._cancel)
        app.router.add_get("/api/v5/market/books", self._books)

    async def _books(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        return _okx([{"asks": [["101", "1", "0", "1"]], "bids": [["99", "1", "0", "1"]],
                      "ts": str(int(time.time() * 1000))}])

    async def _body(self, request: web.Request):
        body = json.loads(await request.text() or "{}")
        self._record(f"POST {request.path} {json.dumps(body, sort_keys=True)}")
        return self._unauthenticated(request) or body

    async def _batch_orders(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if not isinstance(body, list) or len(body) != 1:
            return _okx_error("51000", "Parameter orders error")  # one order a request here
        item = body[0]
        cl_ord_id = str(item.get("clOrdId", ""))
        self.creates.append(cl_ord_id)
        echo = {"clOrdId": cl_ord_id, "ordId": "", "tag": "", "ts": str(int(time.time() * 1000))}
        if not OKX_CL_ORD_ID.match(cl_ord_id):
            return _okx_failed(echo, "51000", "Parameter clOrdId error")
        if self.by_client_id(cl_ord_id) is not None:
            return _okx_failed(echo, "51016", "Duplicated clOrdId")
        if item.get("tdMode") != "cash" or item.get("side") not in ("buy", "sell") \
                or item.get("ordType") not in ("limit", "market") or "sz" not in item \
                or (item["ordType"] == "limit" and "px" not in item):
            return _okx_failed(echo, "51000", "Parameter tdMode, side, ordType, sz or px error")
        if self._take_fault() is False:
            await asyncio.sleep(self.answer_delay_s)  # the client gives up before an answer: nothing placed
            return _okx_error("50001", "Service temporarily unavailable", status=503)
        order = self._place(self._new_order_id(), cl_ord_id, item["instId"],
                            item["side"], item["ordType"], item["sz"], item.get("px"))
        if self._late:
            await asyncio.sleep(self.answer_delay_s)  # placed; the answer comes after the client gave up
        return _okx([{**echo, "ordId": order.order_id, "sCode": "0", "sMsg": "Order placed"}])

    def _new_order_id(self) -> str:
        return f"{700_000_000_000_000_000 + next(self._ids)}"

    async def _order(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        if (refused := self._unauthenticated(request)) is not None:
            return refused
        query = request.query
        if "instId" not in query or not ({"ordId", "clOrdId"} & set(query)):
            return _okx_error("51000", "Parameter instId, ordId or clOrdId error")
        found = [o for o in self.orders.values() if o.symbol == query["instId"]
                 and query.get("ordId", o.order_id) == o.order_id and query.get("clOrdId", o.client_id) == o.client_id]
        if not found:
            return web.json_response({"code": "51603", "msg": "Order does not exist", "data": []})
        return _okx([self._row(found[-1])])

    async def _pending(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        if (refused := self._unauthenticated(request)) is not None:
            return refused
        inst_id = request.query.get("instId")
        return _okx([self._row(o) for o in self.orders.values()
                     if o.status == "open" and inst_id in (None, o.symbol)])

    async def _cancel(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        echo = {"clOrdId": body.get("clOrdId", ""), "ordId": body.get("ordId", ""), "ts": str(int(time.time() * 1000))}
        found = [o for o in self.orders.values() if o.status == "open" and o.symbol == body.get("instId")
                 and ("ordId" in body or "clOrdId" in body)
                 and body.get("ordId", o.order_id) == o.order_id and body.get("clOrdId", o.client_id) == o.client_id]
        if not found:
            return _okx_failed(echo, "51400", "Order cancellation failed as the order has been filled, canceled "
                                              "or does not exist")
        order = found[0]
        order.status, order.updated_ms = "canceled", int(time.time() * 1000)
        return _okx([{**echo, "clOrdId": order.client_id, "ordId": order.order_id, "sCode": "0", "sMsg": ""}])

    def _row(self, order: AccountOrder) -> dict:
        trades = [t for t in self.account_trades if t.order_id == order.order_id]
        value = sum((Decimal(t.price) * Decimal(t.quantity) for t in trades), Decimal(0))
        state = "partially_filled" if order.status == "open" and order.executed else OKX_STATE[order.status]
        return {
            "instType": "SPOT", "instId": order.symbol, "ordId": order.order_id, "clOrdId": order.client_id,
            "tag": "", "px": str(order.price) if order.price is not None else "", "sz": str(order.quantity),
            "ordType": order.order_type, "side": order.side, "posSide": "net", "tdMode": "cash",
            "accFillSz": str(order.executed), "fillPx": trades[-1].price if trades else "",
            "tradeId": trades[-1].trade_id if trades else "", "fillSz": trades[-1].quantity if trades else "",
            "fillTime": str(trades[-1].ts_ms) if trades else "",
            "avgPx": str(value / order.executed) if order.executed else "", "state": state, "lever": "",
            "feeCcy": order.symbol.split("-")[0], "fee": "0", "rebateCcy": "", "rebate": "0", "pnl": "0",
            "category": "normal", "tgtCcy": "", "ccy": "", "slOrdPx": "", "slTriggerPx": "", "tpOrdPx": "",
            "tpTriggerPx": "", "uTime": str(order.updated_ms), "cTime": str(order.created_ms)}
