"""Every check of risk's gate, in its order, with the numbers a rejection carries."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from tradeflow.messages import Candle, Fill, Order
from tradeflow_risk.domain import gate
from tradeflow_risk.domain import requests as amend_request
from tradeflow_risk.domain.account import AccountBook, Breach
from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.domain.market import MarketData
from tradeflow_risk.domain.market_rules import UNKNOWN_MARKET, MarketRules
from tradeflow_risk.domain.reasons import text
from tradeflow_risk.domain.requests import OrderRequest
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.ids import client_order_id_for_signal

S = 1_000_000_000
T = 1_772_445_600 * S  # 2026-03-02 10:00 UTC


def book(cash: str = "10000", taker: str = "0", **balances: str) -> AccountBook:
    config = AccountConfig(id="a", exchange="x", balances={"USDT": cash, **balances}, fees={"maker": "0", "taker": taker})
    return AccountBook(config, "USDT")


def fill(symbol: str, side: str, quantity: str, price: str, n: int = 0, order: str = "o") -> Fill:
    return Fill(fill_id=f"f{n}-{symbol}", client_order_id=order, account_id="a", exchange="x", symbol=symbol, side=side,
                quantity=D(quantity), price=D(price), fee=D(0), fee_currency="USDT", ts_event=T + n)


def request(quantity: str | None = "1", *, side: str = "buy", symbol: str = "BTC/USDT", price: str = "100",
            order_type: str = "market", limit: str | None = None, reduce_only: bool = False, origin: str = "signal",
            quote: str | None = None, ts: int = T, n: int = 0) -> OrderRequest:
    return OrderRequest(decision_id=f"d{n}", client_order_id=client_order_id_for_signal(f"s{n}"), account_id="a",
                        exchange="x", symbol=symbol, side=side, order_type=order_type, ts_event=ts,
                        quantity=D(quantity) if quantity is not None else None,
                        quote_quantity=D(quote) if quote is not None else None,
                        limit_price=D(limit) if limit is not None else None, reduce_only=reduce_only, origin=origin,
                        decision_price=D(price))


def context(market: MarketData | None = None, rules: MarketRules = UNKNOWN_MARKET, market_open: bool | None = None,
            **limits) -> gate.GateContext:
    return gate.GateContext(RiskLimits(**limits), rules, market or MarketData("1m", 3, 10), market_open, "XNYS")


def order_of(r: OrderRequest) -> Order:
    return r.to_order()


def test_the_checks_run_in_the_documented_order():
    assert gate.CHECK_ORDER[0] == "account_state" and gate.CHECK_ORDER[-1] == "free_balance"
    # A request that breaks everything is refused by the first check only.
    b = book(cash="1")
    b.control.kill_switch = True
    refused = gate.check(request("1000"), b, context(max_order_notional=D(1), max_open_orders=0))
    assert refused.reason == "kill_switch"


def test_halted_refuses_everything_and_reducing_only_what_does_not_reduce():
    b = book(BTC="0")
    b.apply_fill(fill("BTC/USDT", "buy", "2", "100"))
    b.control.breaches["max_drawdown_pct"] = Breach("max_drawdown_pct", "halt", "dd", T)
    assert gate.check(request("1", side="sell"), b, context()).reason == "account_halted"
    b.control.breaches["max_drawdown_pct"] = Breach("max_drawdown_pct", "reduce", "dd", T)
    assert gate.check(request("1"), b, context()).reason == "account_reducing"
    assert gate.check(request("3", side="sell"), b, context()).reason == "account_reducing"  # would cross to short
    assert isinstance(gate.check(request("2", side="sell"), b, context()), OrderRequest)


def test_cooldown_after_losing_trades_holds_entries_until_it_ends_in_event_time():
    b = book()
    for n in range(2):  # two losing round trips
        b.apply_fill(fill("BTC/USDT", "buy", "1", "100", n=2 * n))
        b.apply_fill(fill("BTC/USDT", "sell", "1", "90", n=2 * n + 1))
    assert b.loss_streak == 2 and b.last_loss_ts == T + 3
    ctx = context(cooldown_losing_trades=2, cooldown_minutes=30)
    refused = gate.check(request(ts=T + 29 * 60 * S), b, ctx)
    assert refused.reason == "cooldown" and refused.details["losing_trades"] == "2"
    assert isinstance(gate.check(request(ts=T + 3 + 30 * 60 * S), b, ctx), OrderRequest)
    b.apply_fill(fill("BTC/USDT", "buy", "1", "100", n=10))  # an entry approved before the second loss
    assert isinstance(gate.check(request(side="sell", reduce_only=True, ts=T + 60 * S), b, ctx), OrderRequest)
    b.apply_fill(fill("BTC/USDT", "sell", "1", "110", n=11))  # a win resets the streak
    assert b.loss_streak == 0 and isinstance(gate.check(request(ts=T + 60 * S), b, ctx), OrderRequest)


def test_trading_hours_refuse_orders_while_the_market_is_closed_unless_turned_off():
    refused = gate.check(request(), book(), context(market_open=False))
    assert refused.reason == "market_closed" and refused.details["calendar"] == "XNYS"
    assert isinstance(gate.check(request(), book(), context(market_open=True)), OrderRequest)
    assert isinstance(gate.check(request(), book(), context(market_open=None)), OrderRequest)  # 24/7
    assert isinstance(gate.check(request(), book(), context(market_open=False, enforce_trading_hours=False)), OrderRequest)


def test_orders_per_minute_count_in_event_time_and_protective_exits_are_never_throttled():
    b = book()
    for n in range(3):
        b.track(order_of(request(ts=T + n * S, n=n)))
    assert gate.check(request(ts=T + 59 * S, n=9), b, context(max_orders_per_minute=3)).details == {
        "orders": "4", "limit": "3"}
    assert isinstance(gate.check(request(ts=T + 60 * S + 1, n=9), b, context(max_orders_per_minute=3)), OrderRequest)
    b.apply_fill(fill("BTC/USDT", "buy", "1", "100"))
    exit_ = request("1", side="sell", reduce_only=True, origin="protective", ts=T + 10 * S, n=8)
    assert isinstance(gate.check(exit_, b, context(max_orders_per_minute=3, max_open_orders=3)), OrderRequest)


def test_open_orders_count_until_terminal():
    b = book()
    for n in range(2):
        b.track(order_of(request(order_type="limit", limit="90", n=n)))
    assert gate.check(request(n=5), b, context(max_open_orders=2)).details == {"open_orders": "3", "limit": "2"}


def test_precision_cuts_quantities_down_and_enforces_the_market_minimums():
    rules = MarketRules(amount_step=D("0.01"), price_step=D("0.5"), min_amount=D("0.05"), min_cost=D(10))
    approved = gate.check(request("1.239"), book(), context(rules=rules))
    assert approved.quantity == D("1.23")
    assert gate.check(request("0.049"), book(), context(rules=rules)).reason == "below_min_quantity"
    assert gate.check(request("0.08", price="100"), book(), context(rules=rules)).details == {
        "notional": "8", "min_cost": "10"}
    assert gate.check(request("1", order_type="limit", limit="100.25"), book(), context(rules=rules)).reason == \
        "price_precision"
    assert gate.check(request(None, quote="5"), book(), context(rules=rules)).reason == "below_min_notional"


def test_order_position_gross_exposure_limits_count_positions_and_open_orders():
    b = book(BTC="0")
    b.apply_fill(fill("BTC/USDT", "buy", "2", "100"))  # position 200
    b.track(order_of(request("1", order_type="limit", limit="95", n=1)))  # open 95
    b.track(order_of(request("1", symbol="ETH/USDT", order_type="limit", limit="50", n=2)))  # open 50
    assert gate.check(request("3"), b, context(max_order_notional=D(299))).details == {"notional": "300", "limit": "299"}
    assert gate.check(request("1.06"), b, context(max_position_notional=D(400))).details == {
        "exposure": "295", "notional": "106", "limit": "400"}
    assert isinstance(gate.check(request("1.05"), b, context(max_position_notional=D(400))), OrderRequest)  # exactly 400
    per_symbol = context(max_position_notional=D(10_000), max_position_notional_by_symbol={"BTC/USDT": D(300)})
    assert gate.check(request("1"), b, per_symbol).reason == "max_position_notional"
    assert gate.check(request("1", symbol="SOL/USDT"), b, context(max_gross_exposure=D(444))).details == {
        "exposure": "345", "notional": "100", "limit": "444"}
    # Marks move the position's exposure; a reduce-only order skips the exposure checks.
    market = MarketData("1m", 3, 10)
    market.set_mark("x", "BTC/USDT", D(150), T)
    assert gate.check(request("1"), b, context(market, max_gross_exposure=D(500))).details["exposure"] == "445"
    assert isinstance(gate.check(request("1", side="sell", reduce_only=True), b, context(max_gross_exposure=D(1))),
                      OrderRequest)


def candle(symbol: str, minute: int, close: float) -> Candle:
    start = T + minute * 60 * S
    return Candle(exchange="x", symbol=symbol, timeframe="1m", ts_start=start, ts_end=start + 60 * S, open=close,
                  high=close, low=close, close=close, volume=1.0, trades=1)


def test_correlated_exposure_groups_symbols_whose_returns_move_together():
    market = MarketData("1m", 3, 20)
    for minute in range(15):
        wave = (1 if minute % 2 else -1) * (1 + minute % 3)
        market.on_candle(candle("BTC/USDT", minute, 100 + wave))
        market.on_candle(candle("ETH/USDT", minute, 50 + wave / 2))  # moves with BTC
        market.on_candle(candle("XRP/USDT", minute, 1 + (minute % 5) / 100))  # its own way
    assert market.correlation("x", "BTC/USDT", "ETH/USDT") > 0.99
    b = book()
    b.apply_fill(fill("ETH/USDT", "buy", "4", "50"))  # valued at its last close
    b.apply_fill(fill("XRP/USDT", "buy", "100", "1", n=1))
    ctx = context(market, max_correlated_exposure=D(300), correlation_threshold=D("0.9"))
    refused = gate.check(request("1.5"), b, ctx)
    eth = b.exposure("ETH/USDT", market.mark("x", "ETH/USDT"))
    assert refused.reason == "max_correlated_exposure"
    assert refused.details == {"exposure": text(eth), "notional": "150", "limit": "300", "group": "BTC/USDT,ETH/USDT"}
    assert isinstance(gate.check(request("0.5"), b, ctx), OrderRequest)


def test_free_balance_counts_open_orders_and_fees():
    b = book(cash="1000", taker="0.01")
    b.track(order_of(request(None, quote="400", n=1)))  # a quote-sized buy reserves its amount
    b.track(order_of(request("2", order_type="limit", limit="100", n=2)))  # 200 + 1% fee
    refused = gate.check(request("4"), b, context())
    assert refused.reason == "insufficient_balance"
    assert refused.details == {"need": "404", "free": "398", "currency": "USDT"}
    assert isinstance(gate.check(request("3.9"), b, context()), OrderRequest)  # 393.9
    assert gate.check(request("1", side="sell"), b, context()).details == {"need": "1", "free": "0", "currency": "BTC"}


@pytest.mark.parametrize("limit_name", ["max_order_notional", "max_position_notional", "max_gross_exposure"])
def test_an_order_landing_exactly_on_a_limit_passes(limit_name):
    assert isinstance(gate.check(request("2.5"), book(), context(**{limit_name: D(250)})), OrderRequest)
    assert gate.check(request("2.50000001"), book(), context(**{limit_name: D(250)})).reason == limit_name


def test_an_amendment_is_checked_as_the_order_it_makes_without_counting_the_order_twice():
    b = book(cash="1000")
    original = request("2", order_type="limit", limit="100")
    b.track(original.to_order())
    tracked = b.orders[original.client_order_id]
    ctx = context(max_order_notional=D("500"), max_position_notional=D("600"), max_open_orders=1)

    # 6 x 100 breaks max_order_notional, as a new order of that size would.
    bigger = amend_request.amendment(tracked, "amend:o:1", D("6"), None, T)
    refused = gate.check_amendment(bigger, b, ctx)
    assert (refused.reason, refused.details["notional"], refused.details["limit"]) == ("max_order_notional", "600", "500")
    # 5 x 100 fits: the order's own 200 is not counted on top (position, open orders, cash).
    fits = gate.check_amendment(amend_request.amendment(tracked, "amend:o:2", D("5"), None, T), b, ctx)
    assert isinstance(fits, OrderRequest) and fits.quantity == D("5")
    assert b.orders[original.client_order_id] is tracked  # the book is as it was
    # A higher price is checked at that price; cash is what the book has less other open orders.
    dearer = gate.check_amendment(amend_request.amendment(tracked, "amend:o:3", None, D("600"), T), b,
                                  context(max_order_notional=D("5000")))
    assert (dearer.reason, dearer.details["need"]) == ("insufficient_balance", "1200")
    # What the amendment itself cannot be: at or below the filled part, or no change at all.
    tracked.filled_quantity = D("1")
    assert amend_request.amendment(tracked, "amend:o:4", D("1"), None, T).reason == "invalid_quantity"
    assert amend_request.amendment(tracked, "amend:o:5", D("2"), D("100"), T).reason == "invalid_order"


def test_a_halted_account_refuses_an_amendment_and_a_reducing_one_passes_only_a_reducing_amendment():
    b = book(BTC="0")
    b.apply_fill(fill("BTC/USDT", "buy", "2", "100"))
    sell = request("1", side="sell", order_type="limit", limit="110", n=1)
    b.track(sell.to_order())
    tracked = b.orders[sell.client_order_id]
    b.control.breaches["max_daily_loss"] = Breach("max_daily_loss", "reduce", "loss", T)
    assert isinstance(gate.check_amendment(amend_request.amendment(tracked, "a1", D("2"), None, T), b, context()),
                      OrderRequest)
    assert gate.check_amendment(amend_request.amendment(tracked, "a2", D("3"), None, T), b,
                                context()).reason == "account_reducing"  # would cross to short
    b.control.kill_switch = True
    assert gate.check_amendment(amend_request.amendment(tracked, "a3", D("2"), None, T), b,
                                context()).reason == "kill_switch"
