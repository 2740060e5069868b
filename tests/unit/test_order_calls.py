"""The exchange's own order status, read as Binance's words (adapters/order_calls.py)."""

from __future__ import annotations

import pytest
from tradeflow_execution.adapters.order_calls import BybitOrders, KrakenOrders, OkxOrders, OrderCalls


@pytest.mark.parametrize(("calls", "info", "unified", "word"), [
    # ccxt calls a partly filled order that was canceled "closed": it ended canceled, not filled.
    (BybitOrders, {"orderStatus": "PartiallyFilledCanceled"}, "closed", "CANCELED"),
    (BybitOrders, {"orderStatus": "PartiallyFilled"}, "open", "PARTIALLY_FILLED"),
    (BybitOrders, {"orderStatus": "PendingCancel"}, "open", "PENDING_CANCEL"),
    (KrakenOrders, {"status": "closed"}, "closed", "FILLED"),
    (KrakenOrders, {"status": "canceled"}, "canceled", "CANCELED"),
    (OkxOrders, {"state": "partially_filled"}, "open", "PARTIALLY_FILLED"),
    (OkxOrders, {"state": "mmp_canceled"}, "canceled", "CANCELED"),
    (OrderCalls, {"status": "EXPIRED_IN_MATCH"}, "expired", "EXPIRED_IN_MATCH"),  # Binance's word as it is
    # An answer with the ids only (Bybit's create and cancel): no state, the broker asks for it.
    (BybitOrders, {"orderId": "1", "orderLinkId": "a"}, None, None),
    (KrakenOrders, {"error": [], "result": {"count": 1}}, None, None),
])
def test_the_status_is_the_exchanges_own_word(calls, info, unified, word):
    assert calls(exchange=None, call=None).status({"info": info, "status": unified}) == word
