"""Local fakes of an account's own trade history at Bybit, OKX and Kraken, in their private REST
formats closely enough for ccxt's parsers, with their page sizes, cursors and time windows.

Private requests must carry the exchange's authentication headers (the signature is not
checked). Every request is recorded in ``requests`` ("GET /path?query" or "POST /path body").
Trades are added by the test (``add_trade``), at any time, also while a read is paging
(``on_request``: called with each recorded request before it is answered).

* :class:`FakeBybitAccount`: ``GET /v5/market/instruments-info`` (spot), ``GET
  /v5/asset/coin/query-info`` (no coins), ``GET /v5/execution/list`` (``category`` spot required;
  ``symbol``, ``orderId``, ``execType``; ``limit`` 1..100, default 50; newest first; the time rule
  of Bybit: neither ``startTime`` nor ``endTime``: the last 7 days; only ``startTime``: 7 days
  from it; only ``endTime``: 7 days up to it; both: at most 7 days apart, else retCode 10001;
  ``cursor``: the ``nextPageCursor`` of the previous page, which is given while a page is full).
* :class:`FakeOkxAccount` (market data of :class:`FakeOkx`): ``GET /api/v5/asset/currencies``
  (none), ``GET /api/v5/trade/fills`` (the last 3 days) and ``GET /api/v5/trade/fills-history``
  (the last 3 months): ``instType`` required, ``instId``, ``ordId``, ``begin``/``end`` (ms,
  exclusive), ``after`` (billId: older than) / ``before`` (newer than), ``limit`` 1..100 (default
  100, else 51000), newest first.
* :class:`FakeKrakenAccount` (market data of :class:`FakeKraken`): ``POST /0/private/TradesHistory``
  (every pair, newest first, 50 a page from offset ``ofs``, ``start`` exclusive and ``end``
  inclusive: seconds or a trade txid; ``result.count`` is the number in the range), ``POST
  /0/private/QueryOrders`` (``txid``, ``trades``: the order with its trade ids) and ``POST
  /0/private/QueryTrades`` (``txid``: 1..20 comma-separated trade ids, else ``EGeneral:Invalid
  arguments``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from aiohttp import web

from tests.fakes.fake_kraken import FakeKraken
from tests.fakes.fake_okx import FakeOkx
from tests.fakes.loopback_exchange import LoopbackExchange

DAY_MS = 86_400_000


@dataclass(frozen=True)
class AccountTrade:
    """One of the account's trades, as the test made it."""

    symbol: str  # the exchange's market id: BTCUSDT, BTC-USDT, XXBTZUSD
    trade_id: str
    order_id: str
    side: str  # buy or sell
    price: str
    quantity: str
    fee: str  # paid, positive
    ts_ms: int
    seq: int  # the order the exchange made them in (Bybit seq, OKX billId, Kraken's time order)


class _Account:
    """The trade book the three fakes share."""

    def __init__(self) -> None:
        self.account_trades: list[AccountTrade] = []
        self.requests: list[str] = []
        self.on_request: Callable[[str], None] | None = None

    def add_trade(self, symbol: str, order_id: str, ts_ms: int, *, side: str = "buy", price: str = "100.5",
                  quantity: str = "0.01", fee: str = "0.001", trade_id: str | None = None) -> AccountTrade:
        seq = len(self.account_trades) + 1
        trade = AccountTrade(symbol, trade_id or self._trade_id(seq), order_id, side, price, quantity, fee, ts_ms, seq)
        self.account_trades.append(trade)
        return trade

    def _trade_id(self, seq: int) -> str:
        return str(seq)

    def _record(self, line: str) -> None:
        self.requests.append(line)
        if self.on_request is not None:
            self.on_request(line)

    def _newest_first(self, trades: list[AccountTrade]) -> list[AccountTrade]:
        return sorted(trades, key=lambda t: (t.ts_ms, t.seq), reverse=True)


# --- Bybit ---------------------------------------------------------------------------------------------

BYBIT_WINDOW_MS = 7 * DAY_MS
BYBIT_MAX_LIMIT = 100
BYBIT_HEADERS = ("X-BAPI-API-KEY", "X-BAPI-SIGN", "X-BAPI-TIMESTAMP")


def _bybit(result: dict) -> web.Response:
    return web.json_response({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                              "time": int(time.time() * 1000)})


def _bybit_error(code: int, message: str) -> web.Response:
    return web.json_response({"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {},
                              "time": int(time.time() * 1000)})


class FakeBybitAccount(_Account, LoopbackExchange):
    """Point ccxt at ``{"public": url, "private": url}``."""

    def __init__(self, symbols: tuple[tuple[str, str, str], ...] = (("BTCUSDT", "BTC", "USDT"),
                                                                    ("ETHUSDT", "ETH", "USDT"))) -> None:
        _Account.__init__(self)
        LoopbackExchange.__init__(self)
        self.symbols = symbols

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _trade_id(self, seq: int) -> str:
        return f"{seq:08x}-5866-4a15-9415-cf319b5d{seq:04x}"  # Bybit's execId: a UUID

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        app.router.add_get("/v5/asset/coin/query-info", self._coins)
        app.router.add_get("/v5/execution/list", self._executions)

    async def _instruments(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        if request.query.get("category") != "spot":
            return _bybit({"category": request.query.get("category"), "list": []})
        return _bybit({"category": "spot", "list": [{
            "symbol": symbol, "baseCoin": base, "quoteCoin": quote, "innovation": "0", "status": "Trading",
            "marginTrading": "none",
            "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001", "minOrderQty": "0.000048",
                              "maxOrderQty": "71.73956243", "minOrderAmt": "1", "maxOrderAmt": "2000000"},
            "priceFilter": {"tickSize": "0.01"}} for symbol, base, quote in self.symbols]})

    def _unauthenticated(self, request: web.Request) -> web.Response | None:
        if all(request.headers.get(name) for name in BYBIT_HEADERS):
            return None
        return _bybit_error(10003, "API key is invalid.")

    async def _coins(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        return self._unauthenticated(request) or _bybit({"rows": []})

    async def _executions(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        if (refused := self._unauthenticated(request)) is not None:
            return refused
        query = request.query
        if query.get("category") != "spot":
            return _bybit_error(10001, "params error: category")
        try:
            limit = int(query.get("limit", 50))
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
        except ValueError:
            return _bybit_error(10001, "params error: limit, startTime and endTime are integers")
        if not 1 <= limit <= BYBIT_MAX_LIMIT:
            return _bybit_error(10001, "params error: limit must be 1 to 100")
        if start is not None and end is not None and end - start > BYBIT_WINDOW_MS:
            return _bybit_error(10001, "params error: the time range between startTime and endTime cannot exceed 7 days")
        now = int(time.time() * 1000)
        if start is None and end is None:
            start, end = now - BYBIT_WINDOW_MS, now
        elif end is None:
            end = start + BYBIT_WINDOW_MS
        elif start is None:
            start = end - BYBIT_WINDOW_MS
        chosen = self._newest_first([
            t for t in self.account_trades
            if start <= t.ts_ms <= end and query.get("symbol", t.symbol) == t.symbol
            and query.get("orderId", t.order_id) == t.order_id and query.get("execType", "Trade") == "Trade"])
        if cursor := query.get("cursor"):
            ts_ms, seq = (int(part) for part in cursor.split(":"))
            chosen = [t for t in chosen if (t.ts_ms, t.seq) < (ts_ms, seq)]
        page = chosen[:limit]
        following = f"{page[-1].ts_ms}:{page[-1].seq}" if len(page) == limit else ""
        return _bybit({"category": "spot", "nextPageCursor": following, "list": [_bybit_row(t) for t in page]})


def _bybit_row(trade: AccountTrade) -> dict:
    value = Decimal(trade.price) * Decimal(trade.quantity)
    return {
        "symbol": trade.symbol, "orderType": "Limit", "underlyingPrice": "", "orderLinkId": f"cid-{trade.order_id}",
        "side": trade.side.capitalize(), "indexPrice": "", "orderId": trade.order_id, "stopOrderType": "",
        "leavesQty": "0", "execTime": str(trade.ts_ms), "feeCurrency": "", "isMaker": False, "execFee": trade.fee,
        "feeRate": "0.001", "execId": trade.trade_id, "tradeIv": "", "blockTradeId": "", "markPrice": "",
        "execPrice": trade.price, "markIv": "", "orderQty": trade.quantity, "orderPrice": trade.price,
        "execValue": str(value), "execType": "Trade", "execQty": trade.quantity, "closedSize": "",
        "seq": trade.seq,
    }


# --- OKX -----------------------------------------------------------------------------------------------

OKX_MAX_LIMIT = 100
OKX_FILLS_DAYS = 3
OKX_HISTORY_DAYS = 90
OKX_HEADERS = ("OK-ACCESS-KEY", "OK-ACCESS-SIGN", "OK-ACCESS-TIMESTAMP", "OK-ACCESS-PASSPHRASE")


def _okx(data: list) -> web.Response:
    return web.json_response({"code": "0", "msg": "", "data": data})


def _okx_error(code: str, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": []}, status=status)


class FakeOkxAccount(_Account, FakeOkx):
    """Point ccxt at ``{"rest": rest_url}`` and give it a password (OKX's passphrase)."""

    def __init__(self, inst_ids: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")) -> None:
        _Account.__init__(self)
        FakeOkx.__init__(self, inst_ids)
        self.requests = []  # one list for market data and account requests

    def _trade_id(self, seq: int) -> str:
        return str(1000 + seq)

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_get("/api/v5/asset/currencies", self._currencies)
        app.router.add_get("/api/v5/trade/fills", self._fills)
        app.router.add_get("/api/v5/trade/fills-history", self._fills_history)

    def _unauthenticated(self, request: web.Request) -> web.Response | None:
        if all(request.headers.get(name) for name in OKX_HEADERS):
            return None
        return _okx_error("50113", "Invalid Sign", status=401)

    async def _currencies(self, request: web.Request) -> web.Response:
        self._record(f"GET {request.path_qs}")
        return self._unauthenticated(request) or _okx([])

    async def _fills(self, request: web.Request) -> web.Response:
        return self._answer_fills(request, OKX_FILLS_DAYS)

    async def _fills_history(self, request: web.Request) -> web.Response:
        return self._answer_fills(request, OKX_HISTORY_DAYS)

    def _answer_fills(self, request: web.Request, kept_days: int) -> web.Response:
        self._record(f"GET {request.path_qs}")
        if (refused := self._unauthenticated(request)) is not None:
            return refused
        query = request.query
        if query.get("instType") not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            return _okx_error("51000", "Parameter instType error")
        try:
            limit = int(query.get("limit", OKX_MAX_LIMIT))
            bounds = {name: int(query[name]) for name in ("begin", "end", "after", "before") if name in query}
        except ValueError:
            return _okx_error("51000", "Parameter limit error")
        if not 1 <= limit <= OKX_MAX_LIMIT:
            return _okx_error("51000", "Parameter limit error")
        oldest_kept = int(time.time() * 1000) - kept_days * DAY_MS
        chosen = [
            t for t in self._newest_first(self.account_trades)
            if t.ts_ms >= oldest_kept and query.get("instId", t.symbol) == t.symbol
            and query.get("ordId", t.order_id) == t.order_id
            and t.ts_ms > bounds.get("begin", -1) and t.ts_ms < bounds.get("end", 2**63)
            and t.seq < bounds.get("after", 2**63) and t.seq > bounds.get("before", -1)]
        return _okx([_okx_row(t) for t in chosen[:limit]])


def _okx_row(trade: AccountTrade) -> dict:
    base, quote = trade.symbol.split("-")
    return {
        "instType": "SPOT", "instId": trade.symbol, "tradeId": trade.trade_id, "ordId": trade.order_id,
        "clOrdId": f"cid{trade.order_id}", "billId": str(trade.seq), "subType": "1", "tag": "",
        "fillPx": trade.price, "fillSz": trade.quantity, "fillIdxPx": trade.price, "fillPnl": "0",
        "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "", "fillFwdPx": "", "fillMarkPx": "",
        "side": trade.side, "posSide": "net", "execType": "T", "feeCcy": base if trade.side == "buy" else quote,
        "fee": f"-{trade.fee}", "ts": str(trade.ts_ms), "fillTime": str(trade.ts_ms), "feeRate": "-0.001",
    }


# --- Kraken --------------------------------------------------------------------------------------------

KRAKEN_PAGE = 50
KRAKEN_QUERY_TRADES_MAX = 20
KRAKEN_HEADERS = ("API-Key", "API-Sign")


def _kraken(result: dict) -> web.Response:
    return web.json_response({"error": [], "result": result})


def _kraken_error(message: str) -> web.Response:
    return web.json_response({"error": [message]})  # HTTP 200, as Kraken answers errors


class FakeKrakenAccount(_Account, FakeKraken):
    """Point ccxt at ``{"public": rest_url, "private": rest_url}`` (the secret must be base64)."""

    def __init__(self) -> None:
        _Account.__init__(self)
        FakeKraken.__init__(self)
        self.requests = []

    def _trade_id(self, seq: int) -> str:
        return f"T{seq:05d}-KRKN-{seq:06d}"  # Kraken's trade txid

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_post("/0/private/TradesHistory", self._trades_history)
        app.router.add_post("/0/private/QueryOrders", self._query_orders)
        app.router.add_post("/0/private/QueryTrades", self._query_trades)

    async def _form(self, request: web.Request) -> dict[str, str] | web.Response:
        form = dict(await request.post())
        self._record(f"POST {request.path} {sorted(form.items())}")
        if not all(request.headers.get(name) for name in KRAKEN_HEADERS) or "nonce" not in form:
            return _kraken_error("EAPI:Invalid key")
        return {key: str(value) for key, value in form.items()}

    def _bound(self, value: str | None) -> tuple[int, int] | None:
        """A ``start``/``end`` as a (time, seq) position: seconds, or a trade's txid."""
        if value is None:
            return None
        for trade in self.account_trades:
            if trade.trade_id == value:
                return trade.ts_ms, trade.seq
        return int(Decimal(value) * 1000), 2**63  # every trade of that millisecond or before

    async def _trades_history(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        try:
            start, end = self._bound(form.get("start")), self._bound(form.get("end"))
            offset = int(form.get("ofs", 0))
        except (ArithmeticError, ValueError):
            return _kraken_error("EGeneral:Invalid arguments")
        chosen = [t for t in self._newest_first(self.account_trades)
                  if (start is None or (t.ts_ms, t.seq) > start) and (end is None or (t.ts_ms, t.seq) <= end)]
        page = chosen[offset:offset + KRAKEN_PAGE]
        return _kraken({"trades": {t.trade_id: self._row(t) for t in page}, "count": len(chosen)})

    async def _query_orders(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        result = {}
        for order_id in form.get("txid", "").split(","):
            trades = [t for t in self.account_trades if t.order_id == order_id]
            if not trades:
                return _kraken_error("EOrder:Invalid order")
            result[order_id] = self._order(order_id, trades, with_trades=form.get("trades", "").lower() == "true")
        return _kraken(result)

    async def _query_trades(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        ids = [txid for txid in form.get("txid", "").split(",") if txid]
        if not 1 <= len(ids) <= KRAKEN_QUERY_TRADES_MAX:
            return _kraken_error("EGeneral:Invalid arguments")
        by_id = {t.trade_id: t for t in self.account_trades}
        if any(txid not in by_id for txid in ids):
            return _kraken_error("EGeneral:Invalid arguments:txid")
        return _kraken({txid: self._row(by_id[txid]) for txid in ids})

    def _row(self, trade: AccountTrade) -> dict:
        cost = Decimal(trade.price) * Decimal(trade.quantity)
        return {"ordertxid": trade.order_id, "postxid": "TKH2SE-M7IF5-CFI7LT", "pair": trade.symbol,
                "time": trade.ts_ms / 1000, "type": trade.side, "ordertype": "limit", "price": trade.price,
                "cost": str(cost), "fee": trade.fee, "vol": trade.quantity, "margin": "0.00000", "leverage": "0",
                "misc": "", "trade_id": trade.seq, "maker": False}

    def _order(self, order_id: str, trades: list[AccountTrade], *, with_trades: bool) -> dict:
        first = trades[0]
        volume = sum((Decimal(t.quantity) for t in trades), Decimal(0))
        order = {"refid": None, "userref": 0, "status": "closed", "opentm": first.ts_ms / 1000 - 1,
                 "closetm": trades[-1].ts_ms / 1000, "starttm": 0, "expiretm": 0,
                 "descr": {"pair": first.symbol, "type": first.side, "ordertype": "limit", "price": first.price,
                           "price2": "0", "leverage": "none", "order": f"{first.side} {volume} @ limit {first.price}",
                           "close": ""},
                 "vol": str(volume), "vol_exec": str(volume), "cost": "0", "fee": "0", "price": first.price,
                 "stopprice": "0", "limitprice": "0", "misc": "", "oflags": "fciq"}
        if with_trades:
            order["trades"] = [t.trade_id for t in trades]
        return order
