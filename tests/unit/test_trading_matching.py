"""The exchange rules of paper trading (tradeflow_trading.matching): one order against a run of trades."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from tradeflow.messages import Order
from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.matching import MarketTrade, MatchProgress, match_trade
from tradeflow_trading.order_checks import order_problem

T0 = 1_700_000_040_000_000_000
RULE = FillRule(fees=FeeSchedule(maker=D("0.0002"), taker=D("0.001")), slippage_bps=D("10"))


def order(**overrides) -> Order:
    fields = dict(client_order_id="c1", account_id="a1", exchange="paper", symbol="BTC/USDT", side="buy",
                  order_type="market", quantity=D("2"), ts_event=T0)
    fields.update(overrides)
    return Order(**fields)


def trade(n: int, price: str, amount: str = "10", ts: int | None = None) -> MarketTrade:
    return MarketTrade(f"t{n}", D(price), D(amount), T0 + n if ts is None else ts)


def run(o: Order, trades: list[MarketTrade], rule: FillRule = RULE, position: D = D(0)):
    """Every trade in turn until the order finishes: (fills as (trade id, qty, price, fee, liquidity), end)."""
    progress, fills = MatchProgress(), []
    for t in trades:
        result = match_trade(o, progress, t, rule, position=position)
        if result is None:
            continue
        progress = result.progress
        if result.fill is not None:
            q = result.fill
            fills.append((t.trade_id, q.quantity, q.price, q.fee, q.liquidity))
            position += q.quantity if o.side == "buy" else -q.quantity
        if result.finished:
            return fills, (result.end.status, result.end.reason.split(":")[0]) if result.end else ("filled", "")
    return fills, None


def test_a_market_order_fills_at_the_first_trade_at_or_after_its_time_moved_by_the_slippage():
    fills, end = run(order(), [trade(-1, "99"), trade(0, "100"), trade(1, "101")])
    assert fills == [("t0", D("2"), D("100.1"), D("0.2002"), "taker")]
    assert end == ("filled", "")


def test_a_limit_order_is_taker_on_arrival_and_maker_once_it_rests():
    taker, _ = run(order(order_type="limit", limit_price=D("100")), [trade(1, "99.5")])
    assert taker == [("t1", D("2"), D("100"), D("0.200"), "taker")]  # at its limit, no slippage
    maker, _ = run(order(order_type="limit", limit_price=D("100")), [trade(1, "100.5"), trade(2, "101"), trade(3, "100")])
    assert maker == [("t3", D("2"), D("100"), D("0.0400"), "maker")]
    sell, _ = run(order(side="sell", order_type="limit", limit_price=D("100")), [trade(1, "99.9"), trade(2, "100")])
    assert sell == [("t2", D("2"), D("100"), D("0.0400"), "maker")]


def test_participation_caps_each_trade_and_the_rest_fills_later():
    rule = FillRule(fees=FeeSchedule(D(0), D(0)), participation=D("0.5"))
    fills, end = run(order(quantity=D("2")), [trade(1, "100", "1"), trade(2, "101", "1.2"), trade(3, "102", "9")], rule)
    assert [(t, q) for t, q, *_ in fills] == [("t1", D("0.5")), ("t2", D("0.6")), ("t3", D("0.9"))]
    assert end == ("filled", "")


def test_a_quote_sized_order_filled_in_parts_spends_at_most_its_amount():
    rule = FillRule(fees=FeeSchedule(D("0.001"), D("0.001")), participation=D("0.1"))
    fills, end = run(order(quantity=None, quote_quantity=D("1000")),
                     [trade(1, "100", "5"), trade(2, "110", "5"), trade(3, "90", "500")], rule)
    spent = sum(q * p + f for _, q, p, f, _ in fills)
    assert [t for t, *_ in fills] == ["t1", "t2", "t3"] and end == ("filled", "")
    assert spent <= D("1000") and D("1000") - spent < D("90") * D("1e-8") * D("1.001")


def test_ioc_fills_what_it_can_on_arrival_and_expires_the_rest():
    rule = FillRule(fees=FeeSchedule(D(0), D(0)), participation=D("0.5"))
    fills, end = run(order(time_in_force="IOC"), [trade(1, "100", "1"), trade(2, "100", "100")], rule)
    assert [(t, q) for t, q, *_ in fills] == [("t1", D("0.5"))] and end == ("expired", "ioc")
    fills, end = run(order(order_type="limit", limit_price=D("99"), time_in_force="IOC"), [trade(1, "100"), trade(2, "98")])
    assert fills == [] and end == ("expired", "ioc")


def test_fok_fills_whole_on_arrival_or_not_at_all():
    rule = FillRule(fees=FeeSchedule(D(0), D(0)), participation=D("0.5"))
    assert run(order(time_in_force="FOK"), [trade(1, "100", "1"), trade(2, "100", "100")], rule) == ([], ("expired", "fok"))
    fills, end = run(order(time_in_force="FOK"), [trade(1, "100", "4")], rule)
    assert [(t, q) for t, q, *_ in fills] == [("t1", D("2"))] and end == ("filled", "")


def test_an_order_expires_at_the_first_trade_at_or_after_its_expiry():
    o = order(order_type="limit", limit_price=D("90"), time_in_force="GTD", expires_at=T0 + 3)
    assert run(o, [trade(1, "95"), trade(2, "91"), trade(3, "80")]) == ([], ("expired", "expired"))
    filled, end = run(o, [trade(1, "95"), trade(2, "90"), trade(3, "80")])
    assert [t for t, *_ in filled] == ["t2"] and end == ("filled", "")


def test_reduce_only_never_flips_the_position_and_expires_without_one():
    exit_ = order(side="sell", quantity=D("5"), reduce_only=True)
    fills, end = run(exit_, [trade(1, "100")], position=D("1.5"))
    assert [(t, q) for t, q, *_ in fills] == [("t1", D("1.5"))] and end == ("filled", "")
    assert run(exit_, [trade(1, "100")], position=D("0")) == ([], ("expired", "reduce_only"))
    assert run(order(side="buy", reduce_only=True), [trade(1, "100")], position=D("3")) == ([], ("expired", "reduce_only"))
    cover, _ = run(order(side="buy", quantity=D("5"), reduce_only=True), [trade(1, "100")], position=D("-2"))
    assert [(t, q) for t, q, *_ in cover] == [("t1", D("2"))]


@pytest.mark.parametrize("overrides, code", [
    ({"quantity": D("0")}, "invalid_quantity"),
    ({"quantity": D("-1")}, "invalid_quantity"),
    ({"quantity": D("NaN")}, "invalid_quantity"),
    ({"quantity": None}, "invalid_quantity"),
    ({"quote_quantity": D("10")}, "invalid_quantity"),
    ({"quantity": None, "quote_quantity": D("10"), "side": "sell"}, "invalid_order"),
    ({"order_type": "limit"}, "invalid_price"),
    ({"limit_price": D("100")}, "invalid_price"),
    ({"order_type": "limit", "limit_price": D("100.005")}, "invalid_price"),
    ({"quantity": D("0.0001")}, "invalid_quantity"),
    ({"time_in_force": "GTD"}, "invalid_expiry"),
    ({"expires_at": T0}, "invalid_expiry"),
    ({"client_order_id": "has space"}, "invalid_client_order_id"),
    ({"symbol": "BTCUSDT"}, "unknown_market"),
])
def test_malformed_orders_are_refused_with_a_stable_reason_code(overrides, code):
    reason = order_problem(order(**overrides), price_step=D("0.01"), quantity_step=D("0.001"))
    assert reason is not None and reason.split(":")[0] == code, reason
    assert order_problem(order(order_type="limit", limit_price=D("100.01"), quantity=D("0.002")),
                         price_step=D("0.01"), quantity_step=D("0.001")) is None
