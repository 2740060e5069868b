"""The live broker's pure rules: refusals to stable reasons, an exchange order to the missing
transitions in an order the state table takes, slippage in basis points."""

from __future__ import annotations

import json
from decimal import Decimal as D

import ccxt
import pytest
from tradeflow.messages import Fill, Order
from tradeflow_execution.adapters.live_broker import _cancel_replace_failure
from tradeflow_execution.domain.broker import FillUpdate, OrderUpdate
from tradeflow_execution.domain.live import (
    ExchangeOrder,
    exchange_reason,
    order_slippage,
    order_updates,
    slippage_bps,
)
from tradeflow_trading.orders import OrderState


@pytest.mark.parametrize(("kind", "message", "reason"), [
    ("InsufficientFunds", "binance Account has insufficient balance for requested action.", "insufficient_funds"),
    ("InvalidOrder", 'binance order price is invalid {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}',
     "invalid_price"),
    ("InvalidOrder", 'binance order amount should be evenly divisible by lot size {"code": -1013, '
                     '"msg": "Filter failure: LOT_SIZE"}', "invalid_quantity"),
    ("BadRequest", '{"code":-1013,"msg":"Filter failure: NOTIONAL"}', "invalid_quantity"),
    ("MarketClosed", "binance Market is closed.", "market_closed"),
    ("ExchangeError", '{"code":-1013,"msg":"Market is closed."}', "market_closed"),
    ("RateLimitExceeded", "binance 429 Too Many Requests", "rate_limited"),
    ("DDoSProtection", "binance 418", "rate_limited"),
    ("BadSymbol", "binance Invalid symbol.", "unknown_market"),
    ("InvalidOrder", "binance Order would immediately match and take.", "invalid_order"),
    ("PermissionDenied", "This account may not place or cancel orders.", "exchange_refused"),
])
def test_exchange_refusals_map_to_stable_reasons(kind, message, reason):
    assert exchange_reason(kind, message) == reason


def _order(quantity: str = "1") -> Order:
    return Order(client_order_id="c1", account_id="a", exchange="binance", symbol="BTC/USDT", side="buy",
                 order_type="limit", quantity=D(quantity), limit_price=D("100"), ts_event=1)


def _fill(fill_id: str, quantity: str, ts: int) -> Fill:
    return Fill(fill_id=fill_id, client_order_id="c1", account_id="a", exchange="binance", symbol="BTC/USDT",
                side="buy", quantity=D(quantity), price=D("100"), fee=D("0.1"), fee_currency="USDT", ts_event=ts)


def _apply(state: OrderState, updates) -> OrderState:
    for update in updates:
        if isinstance(update, FillUpdate):
            state = state.fill(update.fill.quantity, update.fill.price, fee=update.fill.fee, complete=update.complete)
        else:
            state = state.move(update.status, reason=update.reason, exchange_order_id=update.exchange_order_id)
    return state


def test_an_order_canceled_after_fills_gets_accepted_then_its_fills_in_time_order_then_canceled():
    theirs = ExchangeOrder("c1", "77", "CANCELED", D("0.5"), ts_event=10)
    updates = order_updates("submitted", D(0), theirs, [_fill("f2", "0.2", 5), _fill("f1", "0.3", 4)])
    assert [type(u).__name__ for u in updates] == ["OrderUpdate", "FillUpdate", "FillUpdate", "OrderUpdate"]
    assert [u.fill.fill_id for u in updates if isinstance(u, FillUpdate)] == ["f1", "f2"]
    final = _apply(OrderState(_order()), updates)
    assert (final.status, final.filled_quantity, final.exchange_order_id) == ("canceled", D("0.5"), "77")


def test_the_end_waits_for_fills_not_yet_known():
    theirs = ExchangeOrder("c1", "77", "CANCELED", D("0.5"), ts_event=10)
    updates = order_updates("accepted", D("0.2"), theirs, [])
    assert updates == []  # canceled now would close the order to its missing 0.3


def test_a_filled_order_is_finished_by_its_fills_alone():
    theirs = ExchangeOrder("c1", "77", "FILLED", D("1"), ts_event=10)
    updates = order_updates("partially_filled", D("0.4"), theirs, [_fill("f9", "0.6", 9)])
    assert [type(u) for u in updates] == [FillUpdate]
    state = OrderState(_order()).move("accepted").fill(D("0.4"), D("100"))
    assert _apply(state, updates).status == "filled"


def test_an_order_the_exchange_has_open_and_execution_in_flight_becomes_accepted_once():
    theirs = ExchangeOrder("c1", "77", "NEW", D(0), ts_event=3)
    assert order_updates("submitted", D(0), theirs, []) == [OrderUpdate("c1", "accepted", 3, exchange_order_id="77")]
    assert order_updates("accepted", D(0), theirs, []) == []


def test_an_exchange_rejection_rejects_an_order_in_flight_only():
    theirs = ExchangeOrder("c1", "77", "REJECTED", D(0), ts_event=3)
    assert [u.status for u in order_updates("submitted", D(0), theirs, [])] == ["rejected"]
    assert order_updates("accepted", D(0), theirs, []) == []


def test_slippage_is_positive_when_worse_for_the_order():
    assert slippage_bps("buy", D("100.1"), D("100")) == D("10.00")
    assert slippage_bps("sell", D("100.1"), D("100")) == D("-10.00")
    assert slippage_bps("buy", D("100"), None) is None
    assert order_slippage("buy", D("99.8"), D("100"), D("99.9")) == {
        "decision_price": "100", "mid_at_submission": "99.9", "vs_decision_bps": "-20.00", "vs_mid_bps": "-10.01"}
    assert order_slippage("buy", None, D("100"), None)["vs_decision_bps"] is None


def test_binance_cancel_replace_failures_say_whether_the_order_was_kept_or_canceled():
    kept = {"code": -2022, "msg": "Order cancel-replace failed.", "data": {
        "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
        "cancelResponse": {"code": -2011, "msg": "Order was not canceled due to cancel restrictions."},
        "newOrderResponse": None}}
    canceled = {"code": -2021, "msg": "Order cancel-replace partially failed.", "data": {
        "cancelResult": "SUCCESS", "newOrderResult": "FAILURE", "cancelResponse": {"orderId": 1, "status": "CANCELED"},
        "newOrderResponse": {"code": -2010, "msg": "Account has insufficient balance for requested action."}}}
    # ccxt raises with "<exchange id> <body>" as the message.
    assert _cancel_replace_failure(ccxt.BadResponse("binance " + json.dumps(kept))) == (
        "refused", "-2011 Order was not canceled due to cancel restrictions.")
    assert _cancel_replace_failure(ccxt.InvalidOrder("binance " + json.dumps(canceled))) == (
        "canceled", "-2010 Account has insufficient balance for requested action.")
    assert _cancel_replace_failure(ccxt.InvalidOrder('binance {"code":-1013,"msg":"Filter failure: LOT_SIZE"}')) is None
    assert _cancel_replace_failure(ccxt.RequestTimeout("binance POST http://127.0.0.1/api/v3/order/cancelReplace")) \
        is None
