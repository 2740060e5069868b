"""How a live account's orders are created, asked for and canceled, per exchange (ADR 0022, amendments).

The live broker sends every order with its client order id and, when a call's outcome is unknown,
asks the exchange for the order *by that id* (design.md, "identity and exactly-once effects").
ccxt's unified calls do not carry the id the same way on every exchange; what differs is here,
chosen by ccxt id, and nowhere else in the broker:

* Binance: ``clientOrderId`` becomes ``newClientOrderId`` (create) and ``origClientOrderId``
  (``GET``/``DELETE /api/v3/order``); the answers carry the order's state.
* Bybit v5 spot: ``clientOrderId`` becomes ``orderLinkId`` on ``POST /v5/order/create``. ccxt's
  ``fetch_order`` refuses to run without ``acknowledged`` and then reads only
  ``/v5/order/realtime`` (open orders and the last 500 ended ones), so an order is asked for on
  ``/v5/order/realtime`` by ``orderLinkId`` (ccxt's ``fetch_open_orders``) and, when absent there,
  on ``/v5/order/history`` (ccxt's ``fetch_canceled_and_closed_orders``). The open orders are
  read page by page (20 a page by default: an account with more would lose sight of some). Canceled by
  ``orderLinkId`` (``POST /v5/order/cancel``). Create and cancel answer only the ids: the state
  is asked for after them.
* Kraken spot: ``clientOrderId`` becomes ``cl_ord_id`` on ``AddOrder``, but ccxt's
  ``fetch_order`` sends it as ``userref`` (Kraken's 32-bit integer reference), and
  ``QueryOrders`` needs Kraken's txid anyway: an order is asked for on ``OpenOrders`` and then
  ``ClosedOrders`` by ``cl_ord_id``, canceled by ``cl_ord_id``. Kraken's order status is one word
  per state (``closed`` is filled), its ``price`` the average of the executions (the limit is
  ``descr.price``); create and cancel answer without the state.
* OKX spot: ccxt's unified calls send ``clientOrderId`` as ``clOrdId`` on create
  (``/api/v5/trade/batch-orders``), ``GET /api/v5/trade/order`` and ``cancel-order``; the
  cancel answers without the state. OKX's status is ``state``.
* Other exchanges: as Binance (ccxt's unified calls with ``clientOrderId``), not tested here.

The exchange's status is read as Binance's words (NEW, PARTIALLY_FILLED, FILLED, CANCELED,
EXPIRED, REJECTED: domain/live.py) from each exchange's own field, not from ccxt's unified
status, which loses a partly filled order that was canceled (Bybit ``PartiallyFilledCanceled``
is ccxt's ``closed``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Call = Callable[..., Awaitable[Any]]  # the broker's call(method, *args): one request through its hold and breaker
FetchList = Callable[..., Awaitable[list[dict]]]  # the broker's fetch_list(method name, parse name, symbol, *args)
BYBIT_OPEN_PAGE = 50  # /v5/order/realtime: 20 a page unless asked, at most 50

UNIFIED_STATUS: Mapping[str, str] = {"open": "NEW", "closed": "FILLED", "canceled": "CANCELED",
                                     "expired": "EXPIRED", "rejected": "REJECTED"}


class OrderCalls:
    """ccxt's unified calls with ``clientOrderId`` (Binance)."""

    status_field = "status"  # the exchange's own status in ccxt's ``info``
    price_field = "price"  # the limit price in ccxt's ``info``
    statuses: Mapping[str, str] | None = None  # the exchange's words as Binance's (None: already Binance's)

    def __init__(self, exchange: Any, call: Call, fetch_list: FetchList | None = None) -> None:
        self._exchange = exchange
        self._call = call
        self._fetch_list = fetch_list

    async def open_orders(self, symbol: str) -> list[dict]:
        """The account's open orders of ``symbol`` (one request)."""
        return await self._fetch_list("fetch_open_orders", "parse_order", symbol)

    def create_params(self, client_order_id: str) -> dict[str, Any]:
        return {"clientOrderId": client_order_id}

    def edit_params(self, client_order_id: str) -> dict[str, Any]:
        """``edit_order``'s parameters: the amended order keeps the client order id."""
        return {"newClientOrderId": client_order_id}

    async def by_client_id(self, symbol: str, client_order_id: str, exchange_order_id: str | None = None) -> dict:
        """The order sent with ``client_order_id``; ccxt's ``OrderNotFound`` when the exchange has none."""
        return await self._call(self._exchange.fetch_order, exchange_order_id, symbol,
                                {"clientOrderId": client_order_id})

    async def by_exchange_id(self, symbol: str, exchange_order_id: str) -> dict:
        """An order by the exchange's id (a trade of an order nobody knows names only that)."""
        return await self._call(self._exchange.fetch_order, exchange_order_id, symbol, {})

    async def cancel(self, symbol: str, client_order_id: str, exchange_order_id: str | None) -> dict:
        return await self._call(self._exchange.cancel_order, exchange_order_id, symbol,
                                {"clientOrderId": client_order_id})

    def status(self, raw: Mapping[str, Any]) -> str | None:
        """The exchange's status of a ccxt order as Binance's word; None when the answer has none
        (an answer that carries only the ids)."""
        info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
        word = info.get(self.status_field)
        if word is not None:
            return str(word) if self.statuses is None else self.statuses.get(str(word), str(word).upper())
        unified = raw.get("status")
        return UNIFIED_STATUS.get(unified) if unified is not None else None

    def limit_price(self, raw: Mapping[str, Any]) -> Any:
        """An order's limit price as the exchange wrote it (exact), else ccxt's number."""
        info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
        return info.get(self.price_field, raw.get("price"))

    async def _first(self, methods: tuple[str, ...], symbol: str, params: Mapping[str, Any], what: str) -> dict:
        """The order from the first of ``methods`` (list calls) that has it."""
        import ccxt  # imported on use: ccxt takes a second to import

        for method in methods:
            orders = await self._call(getattr(self._exchange, method), symbol, None, None, dict(params))
            if orders:
                # An id names one order; should a list name more, the newest is the one in question.
                return max(orders, key=lambda o: o.get("timestamp") or 0)
        raise ccxt.OrderNotFound(f"{self._exchange.id}: no order {what}")


class BybitOrders(OrderCalls):
    status_field = "orderStatus"
    statuses = {"Created": "NEW", "New": "NEW", "Untriggered": "NEW", "Triggered": "NEW", "Active": "NEW",
                "PartiallyFilled": "PARTIALLY_FILLED", "Filled": "FILLED", "PendingCancel": "PENDING_CANCEL",
                "Cancelled": "CANCELED",
                "PartiallyFilledCanceled": "CANCELED", "Deactivated": "CANCELED", "Rejected": "REJECTED"}
    # realtime: open orders and the last 500 ended ones; history: the ended ones of the last days.
    _lookups = ("fetch_open_orders", "fetch_canceled_and_closed_orders")

    async def open_orders(self, symbol: str) -> list[dict]:
        """Every page of the open orders (Bybit answers 20 unless asked for up to 50, then by
        ``cursor``; ccxt puts ``nextPageCursor`` into the first order's ``info``)."""
        orders: list[dict] = []
        cursor = ""
        while True:
            params = {"cursor": cursor} if cursor else {}
            page = await self._fetch_list("fetch_open_orders", "parse_order", symbol, None, BYBIT_OPEN_PAGE, params)
            orders += page
            following = next((str(o["info"]["nextPageCursor"]) for o in page
                              if isinstance(o.get("info"), dict) and o["info"].get("nextPageCursor")), "")
            if len(page) < BYBIT_OPEN_PAGE or not following or following == cursor:
                return orders
            cursor = following

    async def by_client_id(self, symbol: str, client_order_id: str, exchange_order_id: str | None = None) -> dict:
        return await self._first(self._lookups, symbol, {"orderLinkId": client_order_id},
                                 f"with orderLinkId {client_order_id}")

    async def by_exchange_id(self, symbol: str, exchange_order_id: str) -> dict:
        return await self._first(self._lookups, symbol, {"orderId": exchange_order_id},
                                 f"with orderId {exchange_order_id}")

    async def cancel(self, symbol: str, client_order_id: str, exchange_order_id: str | None) -> dict:
        return await self._call(self._exchange.cancel_order, None, symbol, {"orderLinkId": client_order_id})


class KrakenOrders(OrderCalls):
    statuses = {"pending": "NEW", "open": "NEW", "closed": "FILLED", "canceled": "CANCELED", "expired": "EXPIRED"}

    def limit_price(self, raw: Mapping[str, Any]) -> Any:
        # Kraken's ``price`` is the average price of the executions; the limit is the description's.
        info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
        descr = info.get("descr") if isinstance(info.get("descr"), dict) else {}
        return descr.get("price", raw.get("price"))

    async def by_client_id(self, symbol: str, client_order_id: str, exchange_order_id: str | None = None) -> dict:
        # ccxt sends clientOrderId as cl_ord_id on these two (as userref on fetch_order).
        return await self._first(("fetch_open_orders", "fetch_closed_orders"), symbol,
                                 {"clientOrderId": client_order_id}, f"with cl_ord_id {client_order_id}")

    async def cancel(self, symbol: str, client_order_id: str, exchange_order_id: str | None) -> dict:
        return await self._call(self._exchange.cancel_order, None, symbol, {"clientOrderId": client_order_id})


class BinanceOrders(OrderCalls):
    def edit_params(self, client_order_id: str) -> dict[str, Any]:
        # cancelReplace cancels only an order with nothing filled: a fill racing the amendment makes
        # the exchange refuse it, so the order can never be overfilled (docs/adr/0022).
        return {**super().edit_params(client_order_id), "cancelRestrictions": "ONLY_NEW"}


class OkxOrders(OrderCalls):
    status_field = "state"
    price_field = "px"
    statuses = {"live": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED", "canceled": "CANCELED",
                "mmp_canceled": "CANCELED"}


CALLS: Mapping[str, type[OrderCalls]] = {"binance": BinanceOrders, "bybit": BybitOrders, "kraken": KrakenOrders, "okx": OkxOrders}


def order_calls(exchange: Any, call: Call, fetch_list: FetchList) -> OrderCalls:
    """The order calls of ``exchange`` (a ccxt client)."""
    return CALLS.get(exchange.id, OrderCalls)(exchange, call, fetch_list)
